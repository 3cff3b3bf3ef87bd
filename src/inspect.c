/*
 * What a request names: its model (in the path, or in the body on the
 * OpenAI-compatible paths), and how many input tokens it may count for
 * (a conservative estimate, reserved before the request goes out).
 *
 * Called by proxy.c for every proxied request.  No I/O, no state.
 */
#include <bsd/sys/cdefs.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "inspect.h"
#include "jsontext.h"
#include "wire.h"

static int
gem_model_ok(const char *m, size_t n)
{
	size_t	 i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!gem_namech((unsigned char)m[i]))
			return 0;
	return 1;
}

/*
 * The model of /v1beta/models/{model}:{action} (or /v1/, /v1alpha/; the
 * action may be missing: GET models/{model}).  path is the request target,
 * len its length up to '?' (a '?' inside stops the path too).  Returns 0
 * and the name in out, or -1: not a models/ path, or a name that is empty,
 * has unexpected characters, or does not fit.
 */
int
gem_model_from_path(const char *path, size_t len, char *out, size_t outlen)
{
	static const char *const pre[] = {
		"/v1beta/models/", "/v1/models/", "/v1alpha/models/"
	};
	const char	*q;
	size_t		 i, start = 0, end, plen;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if ((q = memchr(path, '?', len)) != NULL)
		len = (size_t)(q - path);
	for (i = 0; i < __arraycount(pre); i++) {
		plen = strlen(pre[i]);
		if (len > plen && memcmp(path, pre[i], plen) == 0) {
			start = plen;
			break;
		}
	}
	if (i == __arraycount(pre))
		return -1;
	for (end = start; end < len; end++) {
		if (path[end] == ':' || path[end] == '/')
			break;
		/* Some HTTP libraries send the colon as %3A. */
		if (path[end] == '%' && end + 2 < len && path[end + 1] == '3' &&
		    (path[end + 2] == 'A' || path[end + 2] == 'a'))
			break;
	}
	if (end < len && path[end] == '/')
		return -1;	/* models/x/operations/y: not a model call */
	if (!gem_model_ok(path + start, end - start) ||
	    end - start >= outlen)
		return -1;
	memcpy(out, path + start, end - start);
	out[end - start] = '\0';
	return 0;
}

/*
 * The "model" member of a JSON request body (the OpenAI-compatible
 * endpoints name the model there, not in the path), without a leading
 * "models/".  Only the top-level object's members are looked at, and the
 * body is walked, not parsed: it may be megabytes of inline data.  Returns
 * 0 and the name in out, or -1.
 */
int
gem_model_from_body(const char *body, size_t len, char *out, size_t outlen)
{
	static const char	 mpre[] = "models/";
	const char		*end = body + len, *p, *k, *ke;
	size_t			 o;
	char			 c;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	p = jt_ws(body, end);
	if (p == end || *p != '{')
		return -1;
	for (p++;;) {
		p = jt_ws(p, end);
		if (p == end || *p != '"' ||
		    (ke = jt_string(k = p, end)) == NULL)
			return -1;
		p = jt_ws(ke, end);
		if (p == end || *p != ':')
			return -1;
		p = jt_ws(p + 1, end);
		if (ke - k == 7 && memcmp(k + 1, "model", 5) == 0)
			break;
		if ((p = jt_value(p, end)) == NULL)
			return -1;
		p = jt_ws(p, end);
		if (p == end || *p != ',')
			return -1;
		p++;
	}
	if (p == end || *p != '"')
		return -1;
	for (p++, o = 0; p < end && *p != '"'; p++) {
		c = *p;
		if (c == '\\') {
			/* Only "\/" can be in a name we accept. */
			if (p + 1 == end || p[1] != '/')
				return -1;
			c = *++p;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = c;
	}
	if (p == end)
		return -1;
	out[o] = '\0';
	if (strncmp(out, mpre, sizeof(mpre) - 1) == 0) {
		o -= sizeof(mpre) - 1;
		memmove(out, out + sizeof(mpre) - 1, o + 1);
	}
	if (!gem_model_ok(out, o)) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

/*
 * Input tokens a request may count for, from its body size: bytes / 4,
 * rounded up, at least 1.  The estimate is reserved against the per-minute
 * and per-day token limits before the request is sent and replaced by the
 * real promptTokenCount when the answer arrives.  It errs high on purpose:
 * text runs about 4 bytes a token and JSON framing only adds bytes, so a
 * reservation too high turns a request away a little early, while one too
 * low lets requests through that the upstream answers with a 429, and that
 * cools the key for a minute.  Inline base64 media inflates it a lot; the
 * caller should clamp it to the model's limit.
 */
int64_t
gem_estimate_tokens(size_t body_len)
{
	int64_t	 t;

	t = (int64_t)(body_len / 4 + (body_len % 4 != 0));
	return t < 1 ? 1 : t;
}
