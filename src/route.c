/*
 * Which handler answers a request, by path.  Called by the worker for each
 * request it has read whole.
 */
#include <string.h>

#include <bsd/string.h>

#include "looper.h"

/* Does the len bytes at path start with p? */
int
route_prefix(const char *path, size_t len, const char *p)
{
	size_t	 n = strlen(p);

	return len >= n && memcmp(path, p, n) == 0;
}

/* Are the len bytes at path exactly p? */
int
route_exact(const char *path, size_t len, const char *p)
{
	return len == strlen(p) && memcmp(path, p, len) == 0;
}

void
route_request(struct conn *c)
{
	const char	*path = c->req.target;
	size_t		 len = c->req.path_len;

	if (route_exact(path, len, "/healthz")) {
		if (strcmp(c->req.method, "GET") != 0 &&
		    strcmp(c->req.method, "HEAD") != 0) {
			conn_error(c, 405, "use GET", "Allow: GET, HEAD\r\n");
			return;
		}
		conn_respond(c, 200, "application/json", NULL,
		    "{\"status\":\"ok\"}\n", 16);
		return;
	}
	if (route_prefix(path, len, "/v1beta/") || route_prefix(path, len, "/v1/") ||
	    route_prefix(path, len, "/upload/")) {
		proxy_handle(c);
		return;
	}
	if (route_exact(path, len, "/status") || route_prefix(path, len, "/status/") ||
	    route_prefix(path, len, "/api/") || route_exact(path, len, "/metrics")) {
		status_handle(c);
		return;
	}
	conn_error(c, 404, "no such endpoint: gemini-looper serves /v1beta/,"
	    " /v1/, /upload/, /status, /api/, /metrics and /healthz", NULL);
}

/*
 * The request target as logs may show it: query parameters that carry a
 * secret (key=, token=) have their values replaced by "-".
 */
void
route_log_path(const char *target, char *out, size_t len)
{
	const char	*q, *p, *amp;
	size_t		 o = 0, n;

	if (len == 0)
		return;
	q = strchr(target, '?');
	n = q != NULL ? (size_t)(q - target) : strlen(target);
	if (n >= len)
		n = len - 1;
	memcpy(out, target, n);
	o = n;
	out[o] = '\0';
	if (q == NULL)
		return;
	for (p = q + 1; *p != '\0'; p = amp + 1) {
		amp = strchr(p, '&');
		if (amp == NULL)
			amp = p + strlen(p);
		n = amp - p;
		if (o + 2 + n >= len)
			break;
		out[o++] = p == q + 1 ? '?' : '&';
		if (strncmp(p, "key=", 4) == 0 || strncmp(p, "token=", 6) == 0) {
			n = strchr(p, '=') - p + 1;
			memcpy(out + o, p, n);
			o += n;
			out[o++] = '-';
		} else {
			memcpy(out + o, p, n);
			o += n;
		}
		out[o] = '\0';
		if (*amp == '\0')
			break;
	}
}
