/*
 * Fuzz target: gem_classify() of src/classify.c, the reading of an upstream
 * answer that is not 2xx.
 *
 * The first two bytes pick the status (mostly the ones with rules: 429,
 * 400, 401, 403, 5xx; else any from 100 to 599); the rest is the body,
 * from an exactly sized copy that is not NUL-terminated.  Whatever the
 * body, the verdict is one of the actions, a cool-down is positive and at
 * most a day, and why is a short terminated string that holds no part of
 * an API key found in the body (Google echoes keys in some bodies, and why
 * goes to logs and the dashboard).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "fuzz.h"

#define DAY_MS		(24LL * 3600 * 1000)
#define KEY_LEN		39	/* "AIza" and 35 more */
#define WINDOW		12	/* this much of a key is already too much */

static int
gch(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* How often the n bytes at s occur in body[0..len). */
static size_t
occurs(const char *body, size_t len, const char *s, size_t n)
{
	const char	*p = body, *q;
	size_t		 c = 0;

	while ((q = memmem(p, len - (size_t)(p - body), s, n)) != NULL) {
		c++;
		p = q + 1;
	}
	return c;
}

/*
 * No WINDOW bytes of any key-shaped token of body appear in why, unless
 * they also stand elsewhere in the body (a key whose tail happens to read
 * like a quotaId does not make the quotaId a leak).  Elsewhere is looked
 * for in the body as identifiers are copied out of it, every byte but
 * [A-Za-z0-9._-] made '_'.
 */
static void
check_no_key(const char *body, size_t len, const char *why)
{
	const char	*k;
	char		*ids;
	size_t		 i, j, w;

	if ((ids = malloc(len > 0 ? len : 1)) == NULL)
		abort();
	for (i = 0; i < len; i++)
		ids[i] = gch((unsigned char)body[i]) || body[i] == '.' ?
		    body[i] : '_';

	for (i = 0; i + KEY_LEN <= len; i++) {
		if (memcmp(body + i, "AIza", 4) != 0)
			continue;
		for (j = 4; j < KEY_LEN && gch((unsigned char)body[i + j]); j++)
			;
		if (j < KEY_LEN)
			continue;
		k = body + i;
		for (w = 0; w + WINDOW <= KEY_LEN; w++)
			FUZZ_CHECK(memmem(why, strlen(why), k + w, WINDOW) ==
			    NULL || occurs(ids, len, k + w, WINDOW) > 1,
			    "why \"%s\" holds part of the key %.39s", why, k);
	}
	free(ids);
}

/* Printable ASCII, and the ellipsis of a masked key: one log line. */
static void
check_one_line(const char *why)
{
	const unsigned char	*u;

	for (u = (const unsigned char *)why; *u != '\0'; u++) {
		if (u[0] == 0xe2 && u[1] == 0x80 && u[2] == 0xa6) {
			u += 2;
			continue;
		}
		FUZZ_CHECK(*u >= ' ' && *u < 0x7f, "why \"%s\": byte 0x%02x",
		    why, *u);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const int	 rules[] = { 429, 429, 429, 400, 401, 403, 403,
				    500, 502, 503, 504, 404, 408 };
	struct gem_verdict	 v;
	char			*body;
	size_t			 n;
	int			 status;

	if (len < 2)
		return 0;
	if (data[0] < 192)
		status = rules[data[1] % (sizeof(rules) / sizeof(rules[0]))];
	else
		status = 100 + (data[0] * 256 + data[1]) % 500;
	n = len - 2;
	if ((body = malloc(n > 0 ? n : 1)) == NULL)
		abort();
	if (n > 0)
		memcpy(body, data + 2, n);

	memset(&v, 0xa5, sizeof(v));	/* nothing may be left unset */
	gem_classify(status, n > 0 ? body : NULL, n, &v);

	FUZZ_CHECK(v.action == GEM_PASS || v.action == GEM_COOL ||
	    v.action == GEM_EXHAUST || v.action == GEM_INVALID ||
	    v.action == GEM_RETRY, "action %d", (int)v.action);
	FUZZ_CHECK(v.delay_ms >= 0 && v.delay_ms <= DAY_MS, "delay %lld",
	    (long long)v.delay_ms);
	FUZZ_CHECK(v.action != GEM_COOL || v.delay_ms > 0, "cool for 0 ms");
	FUZZ_CHECK(v.action != GEM_COOL && v.action != GEM_EXHAUST ?
	    1 : status == 429, "%s for a %d", gem_action_name(v.action),
	    status);
	FUZZ_CHECK(v.action != GEM_INVALID || status == 400 || status == 401 ||
	    status == 403, "invalid for a %d", status);
	FUZZ_CHECK(memchr(v.why, '\0', sizeof(v.why)) != NULL,
	    "why unterminated");
	FUZZ_CHECK(v.why[0] != '\0', "why empty");
	check_one_line(v.why);
	check_no_key(body, n, v.why);

	free(body);
	return 0;
}
