/*
 * The operator's side of the daemon, in a worker: GET /status (the
 * dashboard, embedded from web/ at build time) and its files, and the
 * dispatch to /api/status_data (status_json.c), /metrics (metrics.c) and
 * POST /api/test_key (admin.c).  route.c calls status_admit() once a
 * request's head is in and status_handle() once its body is, for /status,
 * /status/..., everything under /api/, and /metrics.  Every endpoint here
 * wants the admin token when one is configured.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "http.h"
#include "looper.h"
#include "route.h"
#include "status.h"
#include "util.h"
#include "worker.h"

/* The dashboard's files, generated from web/ by tests/embed.sh. */
struct web_file {
	const char		*name;
	const char		*type;
	const unsigned char	*data;
	size_t			 len;
};

#include "web.h"

static int
st_get(struct conn *c)
{
	if (strcmp(c->req.method, "GET") == 0 ||
	    strcmp(c->req.method, "HEAD") == 0)
		return 1;
	conn_error(c, 405, "use GET", "Allow: GET, HEAD\r\n");
	return 0;
}

static void
st_file(struct conn *c, const char *name, size_t len)
{
	const struct web_file	*f;

	/* Exact names only: nothing here can reach outside the table. */
	if (len == 0 || memchr(name, '/', len) != NULL ||
	    (len >= 2 && memmem(name, len, "..", 2) != NULL)) {
		conn_error(c, 404, "no such file", NULL);
		return;
	}
	for (f = web_files; f->name != NULL; f++) {
		if (strlen(f->name) != len || memcmp(f->name, name, len) != 0)
			continue;
		conn_respond(c, 200, f->type,
		    "Cache-Control: no-cache\r\n"
		    "X-Content-Type-Options: nosniff\r\n"
		    "X-Frame-Options: DENY\r\n"
		    "Referrer-Policy: no-referrer\r\n"
		    "Content-Security-Policy: default-src 'none'; "
		    "script-src 'self' 'unsafe-inline'; "
		    "style-src 'self' 'unsafe-inline'; connect-src 'self'; "
		    "img-src 'self' data:; frame-ancestors 'none'\r\n",
		    f->data, f->len);
		return;
	}
	conn_error(c, 404, "no such file", NULL);
}

static void
st_send(struct conn *c, const char *ctype, char *body, size_t len)
{
	if (body == NULL) {
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	conn_respond(c, 200, ctype, "Cache-Control: no-store\r\n", body, len);
	free(body);
}

/* What a path under /status, /api/ or /metrics asks for. */
enum st_what {
	ST_NONE,
	ST_PAGE,		/* /status */
	ST_FILE,		/* /status/<file> */
	ST_DATA,		/* /api/status_data */
	ST_METRICS,		/* /metrics */
	ST_TEST_KEY,		/* /api/test_key */
	ST_PROBE		/* /api/keys/{id}/probe */
};

static enum st_what
st_what(const char *path, size_t len)
{
	if (route_exact(path, len, "/status") ||
	    route_exact(path, len, "/status/"))
		return ST_PAGE;
	if (len > 8 && memcmp(path, "/status/", 8) == 0)
		return ST_FILE;
	if (route_exact(path, len, "/api/status_data"))
		return ST_DATA;
	if (route_exact(path, len, "/metrics"))
		return ST_METRICS;
	if (route_exact(path, len, "/api/test_key"))
		return ST_TEST_KEY;
	if (len > 16 && memcmp(path, "/api/keys/", 10) == 0 &&
	    memcmp(path + len - 6, "/probe", 6) == 0)
		return ST_PROBE;
	return ST_NONE;
}

/*
 * Once a request's head is in, before its body is read: the admin token,
 * the endpoint and its method.  Returns 0, or -1 when the answer (401,
 * 404, 405) has been sent.
 */
int
status_admit(struct conn *c)
{
	enum st_what	 w = st_what(c->req.target, c->req.path_len);

	if (looper.cfg == NULL || looper.shm == NULL) {
		conn_error(c, 503, "not ready", NULL);
		return -1;
	}
	if (!admin_token_ok(looper.cfg->admin_token,
	    http_header(&c->req, "Authorization"), c->req.target)) {
		conn_error(c, 401, "this endpoint needs the admin token: "
		    "Authorization: Bearer <admin_token>, or ?token=",
		    "WWW-Authenticate: Bearer\r\n");
		return -1;
	}
	if (w == ST_NONE) {
		conn_error(c, 404, "no such endpoint: the API has "
		    "/api/status_data, /api/test_key and /api/keys/{id}/probe",
		    NULL);
		return -1;
	}
	if (w == ST_TEST_KEY || w == ST_PROBE) {
		if (strcmp(c->req.method, "POST") != 0) {
			conn_error(c, 405, "use POST", "Allow: POST\r\n");
			return -1;
		}
		return 0;
	}
	return st_get(c) ? 0 : -1;
}

/* A request that status_admit() let through, its body read. */
void
status_handle(struct conn *c)
{
	const char	*path = c->req.target;
	size_t		 len = c->req.path_len, n;
	char		*body;

	switch (st_what(path, len)) {
	case ST_PAGE:
		st_file(c, "status.html", strlen("status.html"));
		break;
	case ST_FILE:
		st_file(c, path + 8, len - 8);
		break;
	case ST_DATA:
		body = status_data_json(looper.shm, looper.cfg, now_ms(), &n);
		st_send(c, "application/json; charset=UTF-8", body, n);
		break;
	case ST_METRICS:
		body = metrics_text(looper.shm, now_ms(), &n);
		st_send(c, "text/plain; version=0.0.4; charset=utf-8", body, n);
		break;
	case ST_TEST_KEY:
		admin_test_key(c);
		break;
	case ST_PROBE:
		admin_probe_key(c, path + 10, len - 16);
		break;
	case ST_NONE:
		break;
	}
}

