/*
 * route.c: which handler a path goes to, and what is answered before a
 * body is read -- a path nobody serves, a method the endpoint does not
 * take, a client without the token that endpoint's handler asks for; the
 * request target as logs show it.  Each request head is parsed as the
 * worker parses it, and what route_admit() sends is read back from the
 * other end of a socketpair.
 */
#include <sys/socket.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>

#include "check_suites.h"
#include "config.h"
#include "http.h"
#include "looper.h"
#include "route.h"
#include "shm.h"
#include "worker.h"

#define TOKEN	"tok-route-access"	/* access_tokens: the proxy's */
#define ADMIN	"adm-route-admin"	/* admin_token: the dashboard's */

static struct config	 cfg;
static char		*tokens[] = { TOKEN };

static void
setup(void)
{
	struct shm_sizes	 sz;

	memset(&cfg, 0, sizeof(cfg));
	cfg.client_timeout_s = 5;
	looper.cfg = &cfg;
	shm_sizes_for(1, 1, 4, 0, &sz);
	looper.shm = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(looper.shm);
}

static void
teardown(void)
{
	if (looper.shm != NULL)
		shm_destroy(looper.shm);
	looper.shm = NULL;
	looper.cfg = NULL;
}

/* Who guards what: access_tokens the proxy, admin_token the dashboard. */
static void
guard(int access, int admin)
{
	cfg.access_tokens = access ? tokens : NULL;
	cfg.naccess_tokens = access ? 1 : 0;
	(void)strlcpy(cfg.admin_token, admin ? ADMIN : "",
	    sizeof(cfg.admin_token));
}

/*
 * The request head through fn (route_admit, or route_request after it).
 * Returns what fn returned; what it sent is in out.
 */
static int
run(const char *head, int (*fn)(struct conn *), char *out, size_t outlen)
{
	struct conn	 c;
	char		 buf[4096];
	const char	*why = NULL;
	ssize_t		 n;
	size_t		 got = 0;
	int		 sv[2], status = 0, rv;

	memset(&c, 0, sizeof(c));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_uint_lt(strlcpy(buf, head, sizeof(buf)), sizeof(buf));
	ck_assert_int_eq(http_parse_head(buf, strlen(buf), &c.req, &status,
	    &why), HTTP_PARSE_DONE);
	c.fd = sv[0];
	rv = fn(&c);
	close(sv[0]);
	while (got < outlen - 1 &&
	    (n = read(sv[1], out + got, outlen - 1 - got)) > 0)
		got += n;
	out[got] = '\0';
	close(sv[1]);
	return rv;
}

static int
admit(struct conn *c)
{
	return route_admit(c);
}

static int
admit_and_serve(struct conn *c)
{
	if (route_admit(c) == -1)
		return -1;
	route_request(c);
	return 0;
}

#define H	" HTTP/1.1\r\nHost: x\r\n"
#define END	"\r\n"
#define BODY0	"Content-Length: 0\r\n\r\n"

static const struct {
	int		 access;	/* access_tokens set */
	int		 admin;		/* admin_token set */
	const char	*head;
	int		 status;	/* 0: admitted, nothing sent */
	const char	*says;		/* in the answer, when refused */
} admits[] = {
	/* /healthz: GET and HEAD, whoever asks. */
	{ 0, 0, "GET /healthz" H END, 0, NULL },
	{ 0, 0, "HEAD /healthz" H END, 0, NULL },
	{ 0, 0, "GET /healthz?probe=1" H END, 0, NULL },
	{ 1, 1, "GET /healthz" H END, 0, NULL },
	{ 0, 0, "POST /healthz" H BODY0, 405, "Allow: GET, HEAD\r\n" },
	{ 0, 0, "DELETE /healthz" H END, 405, "Allow: GET, HEAD\r\n" },

	/* Paths nobody serves: exact names and whole segments only. */
	{ 0, 0, "GET /" H END, 404, "gemini-looper serves /v1beta/" },
	{ 0, 0, "GET /healthz/" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /healthzz" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /v1beta" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /v1betax/models" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /V1BETA/models" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /v2/models" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /upload" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /statusx" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /api" H END, 404, "gemini-looper serves" },
	{ 0, 0, "GET /metrics/" H END, 404, "gemini-looper serves" },
	{ 1, 1, "POST /nothing" H BODY0, 404, "gemini-looper serves" },

	/* The proxy: any method; access_tokens, when set, as the key. */
	{ 0, 0, "POST /v1beta/models/m:generateContent" H BODY0, 0, NULL },
	{ 0, 0, "GET /v1/models" H END, 0, NULL },
	{ 0, 0, "POST /upload/v1beta/files" H BODY0, 0, NULL },
	{ 0, 0, "DELETE /v1beta/files/abc" H END, 0, NULL },
	{ 0, 1, "GET /v1beta/models" H END, 0, NULL },
	{ 1, 0, "GET /v1beta/models" H END, 401,
	    "WWW-Authenticate: Bearer\r\n" },
	{ 1, 0, "GET /v1beta/models" H "x-goog-api-key: " TOKEN "\r\n" END, 0,
	    NULL },
	{ 1, 0, "GET /v1/models" H "Authorization: Bearer " TOKEN "\r\n" END,
	    0, NULL },
	{ 1, 0, "GET /v1beta/models?key=" TOKEN H END, 0, NULL },
	{ 1, 0, "GET /v1beta/models?key=nope" H END, 401, "access token" },
	{ 1, 0, "GET /v1beta/models?token=" TOKEN H END, 401, "access token" },
	{ 1, 1, "GET /v1beta/models" H "Authorization: Bearer " ADMIN "\r\n"
	    END, 401, "access token" },

	/* The dashboard, its data and metrics: GET and HEAD, test_key POST;
	 * admin_token, when set; access_tokens are not its business. */
	{ 0, 0, "GET /status" H END, 0, NULL },
	{ 0, 0, "GET /status/" H END, 0, NULL },
	{ 0, 0, "HEAD /status/status.html" H END, 0, NULL },
	{ 0, 0, "GET /api/status_data" H END, 0, NULL },
	{ 0, 0, "GET /metrics" H END, 0, NULL },
	{ 1, 0, "GET /metrics" H END, 0, NULL },
	{ 0, 0, "POST /status" H BODY0, 405, "Allow: GET, HEAD\r\n" },
	{ 0, 0, "PUT /api/status_data" H BODY0, 405, "Allow: GET, HEAD\r\n" },
	{ 0, 0, "POST /api/test_key" H BODY0, 0, NULL },
	{ 0, 0, "GET /api/test_key" H END, 405, "Allow: POST\r\n" },
	{ 0, 0, "GET /api/nothing" H END, 404, "/api/status_data, /api/test_key" },
	{ 0, 1, "GET /status" H END, 401, "admin token" },
	{ 0, 1, "GET /api/status_data" H "Authorization: Bearer " TOKEN "\r\n"
	    END, 401, "admin token" },
	{ 0, 1, "GET /status" H "Authorization: Bearer " ADMIN "\r\n" END, 0,
	    NULL },
	{ 0, 1, "GET /api/status_data?token=" ADMIN H END, 0, NULL },
};

START_TEST(test_admit)
{
	char	 out[4096], status[16];
	int	 rv;

	guard(admits[_i].access, admits[_i].admin);
	rv = run(admits[_i].head, admit, out, sizeof(out));
	if (admits[_i].status == 0) {
		ck_assert_msg(rv == 0 && out[0] == '\0', "%s: refused: %s",
		    admits[_i].head, out);
		return;
	}
	(void)snprintf(status, sizeof(status), "HTTP/1.1 %d ",
	    admits[_i].status);
	ck_assert_msg(rv == -1 && strncmp(out, status, strlen(status)) == 0,
	    "%s: want %d, got %d: %s", admits[_i].head, admits[_i].status, rv,
	    out);
	ck_assert_msg(strstr(out, admits[_i].says) != NULL, "%s: %s",
	    admits[_i].head, out);
}
END_TEST

/* /healthz is answered by route.c itself. */
START_TEST(test_healthz_served)
{
	char	 out[4096];

	guard(1, 1);
	ck_assert_int_eq(run("GET /healthz" H END, admit_and_serve, out,
	    sizeof(out)), 0);
	ck_assert_msg(strncmp(out, "HTTP/1.1 200 ", 13) == 0, "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "\r\n\r\n{\"status\":\"ok\"}\n"));
	ck_assert_ptr_nonnull(strstr(out, "Content-Length: 16\r\n"));
	/* HEAD: the same head, no body. */
	ck_assert_int_eq(run("HEAD /healthz" H END, admit_and_serve, out,
	    sizeof(out)), 0);
	ck_assert_ptr_nonnull(strstr(out, "Content-Length: 16\r\n"));
	ck_assert_str_eq(strstr(out, "\r\n\r\n"), "\r\n\r\n");
}
END_TEST

/* Matching is over the path's length, not up to a NUL. */
START_TEST(test_prefix_exact)
{
	static const struct {
		const char	*path;
		size_t		 len;
		const char	*p;
		int		 prefix, exact;
	} t[] = {
		{ "/healthz", 8, "/healthz", 1, 1 },
		{ "/healthz?x=1", 8, "/healthz", 1, 1 },
		{ "/healthzz", 9, "/healthz", 1, 0 },
		{ "/healthz", 7, "/healthz", 0, 0 },
		{ "/health", 7, "/healthz", 0, 0 },
		{ "/v1beta/x", 9, "/v1beta/", 1, 0 },
		{ "/v1beta/", 8, "/v1beta/", 1, 1 },
		{ "/v1beta", 7, "/v1beta/", 0, 0 },
		{ "/v1beta/x", 5, "/v1beta/", 0, 0 },
		{ "", 0, "", 1, 1 },
		{ "/x", 2, "", 1, 0 },
	};
	size_t	 i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(route_prefix(t[i].path, t[i].len, t[i].p) ==
		    t[i].prefix, "prefix %zu", i);
		ck_assert_msg(route_exact(t[i].path, t[i].len, t[i].p) ==
		    t[i].exact, "exact %zu", i);
	}
}
END_TEST

START_TEST(test_log_path)
{
	static const struct {
		const char	*target;
		const char	*shown;
	} t[] = {
		{ "/v1beta/models", "/v1beta/models" },
		{ "/x?", "/x" },
		{ "/x?key=AIzaSECRET", "/x?key=-" },
		{ "/x?alt=sse&key=AIzaSECRET&y=2", "/x?alt=sse&key=-&y=2" },
		{ "/x?token=SECRET", "/x?token=-" },
		{ "/ws/x?access_token=SECRET", "/ws/x?access_token=-" },
		{ "/x?key=", "/x?key=-" },
		{ "/x?keys=1&mykey=2&apikey=3", "/x?keys=1&mykey=2&apikey=3" },
		{ "/x?a&&key=SECRET", "/x?a&&key=-" },
		{ "/x?key=SECRET&key=SECRET2", "/x?key=-&key=-" },
	};
	static const char	 target[] = "/v1beta/models/m?alt=sse&key=SECRET";
	static const char	 shown[] = "/v1beta/models/m?alt=sse&key=-";
	char			 out[256];
	size_t			 i, len, n;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		route_log_path(t[i].target, out, sizeof(out));
		ck_assert_str_eq(out, t[i].shown);
	}
	/* Any room: what fits is shown, the path cut or parameters whole,
	 * never a secret; no room, nothing written. */
	for (len = 1; len <= sizeof(target) + 1; len++) {
		memset(out, 'Z', sizeof(out));
		route_log_path(target, out, len);
		n = strlen(out);
		ck_assert_uint_lt(n, len);
		ck_assert_msg(strncmp(out, shown, n) == 0 && (n <= 16 ||
		    n == 24 || n == 30), "room %zu: %s", len, out);
	}
	out[0] = 'Z';
	route_log_path(target, out, 0);
	ck_assert_int_eq(out[0], 'Z');
}
END_TEST

Suite *
route_suite(void)
{
	Suite	*s = suite_create("route");
	TCase	*tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_admit, 0, sizeof(admits) /
	    sizeof(admits[0]));
	tcase_add_test(tc, test_healthz_served);
	tcase_add_test(tc, test_prefix_exact);
	tcase_add_test(tc, test_log_path);
	suite_add_tcase(s, tc);
	return s;
}
