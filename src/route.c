/*
 * Which handler answers a request, by path.  The worker calls
 * route_admit() once a request's head is in (the handler checks the
 * client's credentials and the method before any body is read) and
 * route_request() once its body is.
 */
#include <string.h>

#include <bsd/string.h>

#include "live.h"
#include "proxy.h"
#include "route.h"
#include "status.h"
#include "worker.h"

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

static int	 route_healthz_admit(struct conn *);
static void	 route_healthz(struct conn *);

/*
 * Who answers which paths, first match wins: exact paths, or prefixes
 * (ending in '/').  The entry route_admit() finds is kept in the
 * connection for route_request().
 */
struct route {
	const char	*path;
	int		 prefix;
	int		(*admit)(struct conn *);	/* 0, or -1: answered */
	void		(*handle)(struct conn *);
};

static const struct route route_table[] = {
	{ "/healthz",		0, route_healthz_admit,	route_healthz },
	{ "/v1beta/",		1, proxy_admit,		proxy_handle },
	{ "/v1/",		1, proxy_admit,		proxy_handle },
	{ "/upload/",		1, proxy_admit,		proxy_handle },
	{ "/ws/",		1, live_admit,		live_handle },
	{ "//ws/",		1, live_admit,		live_handle },
	{ "/status",		0, status_admit,	status_handle },
	{ "/status/",		1, status_admit,	status_handle },
	{ "/api/",		1, status_admit,	status_handle },
	{ "/metrics",		0, status_admit,	status_handle },
};

static const struct route *
route_of(const char *path, size_t len)
{
	const struct route	*r;

	for (r = route_table; r < route_table + sizeof(route_table) /
	    sizeof(route_table[0]); r++)
		if (r->prefix ? route_prefix(path, len, r->path) :
		    route_exact(path, len, r->path))
			return r;
	return NULL;
}

static int
route_healthz_admit(struct conn *c)
{
	if (strcmp(c->req.method, "GET") != 0 &&
	    strcmp(c->req.method, "HEAD") != 0) {
		conn_error(c, 405, "use GET", "Allow: GET, HEAD\r\n");
		return -1;
	}
	return 0;
}

static void
route_healthz(struct conn *c)
{
	static const char	 ok[] = "{\"status\":\"ok\"}\n";

	conn_respond(c, 200, "application/json", NULL, ok, sizeof(ok) - 1);
}

/*
 * Called once a request's head is in, before its body is read: is there
 * such an endpoint, may this client use it, with this method?  Returns 0
 * when the body is to be read and the request served (route_request), or
 * -1 when the answer (401, 404, 405) has been sent: a body nobody will
 * serve is never read, and 100 Continue goes only to requests that will
 * be served.
 */
int
route_admit(struct conn *c)
{
	if ((c->route = route_of(c->req.target, c->req.path_len)) == NULL) {
		conn_error(c, 404, "no such endpoint: gemini-looper serves "
		    "/v1beta/, /v1/, /upload/, /ws/ (the Live API), /status, "
		    "/api/, /metrics and /healthz", NULL);
		return -1;
	}
	return c->route->admit(c);
}

/* A request that route_admit() let through, its body read. */
void
route_request(struct conn *c)
{
	if (c->route != NULL)
		c->route->handle(c);
}

/*
 * The request target as logs may show it: query parameters that carry a
 * secret (key=, token=, access_token=) have their values replaced by "-".
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
		if (strncmp(p, "key=", 4) == 0 || strncmp(p, "token=", 6) == 0 ||
		    strncmp(p, "access_token=", 13) == 0) {
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
