/*
 * Small readers that the Gemini wire parsers share (classify.c,
 * usagescan.c, inspect.c): an integer that JSON writes as a number or a
 * string, an identifier copied out of an answer with nothing else riding
 * along, and the characters of names.  No I/O, no state.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* [A-Za-z0-9._-]: the characters of a model name, an identifier of
 * Google's, or a pool key ("AQ." keys have a dot). */
int
gem_namech(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

/*
 * Copies an identifier from the upstream (quotaId, reason, status) keeping
 * only [A-Za-z0-9_.-]: it ends up in logs and on the dashboard, so nothing
 * else the body holds may ride along.  No identifier of Google's holds
 * "AIza" and every API key starts with it, so the copy ends there, with
 * "...": a key glued to other characters, or cut short by dstlen, has no
 * longer the shape scrub_text() masks, and would show (found by
 * tests/fuzz/fuzz_classify.c).
 */
void
gem_idcopy(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t	 i, o = 0, d;

	for (i = 0; i < n && o + 1 < dstlen; i++) {
		if (n - i >= 4 && memcmp(src + i, "AIza", 4) == 0) {
			for (d = 0; d < 3 && o + 1 < dstlen; d++)
				dst[o++] = '.';
			break;
		}
		dst[o++] = gem_namech((unsigned char)src[i]) ? src[i] : '_';
	}
	dst[o] = '\0';
}

/* An integer that JSON may write as a number or, proto-style, a string. */
int
gem_json_int(const cJSON *j, int64_t *v)
{
	char	*end;
	double	 d;

	if (cJSON_IsNumber(j)) {
		d = j->valuedouble;
		if (!(d >= 0))
			return -1;
		*v = d > 9e15 ? (int64_t)9e15 : (int64_t)d;
		return 0;
	}
	if (cJSON_IsString(j) && j->valuestring[0] != '\0') {
		*v = strtoll(j->valuestring, &end, 10);
		if (*end != '\0' || *v < 0)
			return -1;
		return 0;
	}
	return -1;
}
