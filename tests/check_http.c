/*
 * Unit tests of src/http.c: request heads, chunked bodies, reason phrases
 * and error bodies.  The parser writes into its buffer, so every case is
 * copied into a fresh buffer first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "http.h"

static char			 buf[4 * HTTP_MAX_HEAD];
static struct http_request	 req;

/* Parse the first len bytes of s from a private copy. */
static int
parse_n(const char *s, size_t len, int *status, const char **why)
{
	ck_assert_uint_le(len, sizeof(buf));
	memcpy(buf, s, len);
	*status = 0;
	*why = NULL;
	return http_parse_head(buf, len, &req, status, why);
}

static int
parse(const char *s, int *status, const char **why)
{
	return parse_n(s, strlen(s), status, why);
}

/* Expect s to parse completely. */
static void
parse_ok(const char *s)
{
	int		 status, rv;
	const char	*why;

	rv = parse(s, &status, &why);
	ck_assert_msg(rv == HTTP_PARSE_DONE, "%s: rv %d status %d (%s)", s, rv,
	    status, why != NULL ? why : "");
}

/* Expect s to be refused with the given status. */
static void
parse_err(const char *s, int want)
{
	int		 status, rv;
	const char	*why;

	rv = parse(s, &status, &why);
	ck_assert_msg(rv == HTTP_PARSE_ERROR, "%s: rv %d, want error %d", s, rv,
	    want);
	ck_assert_msg(status == want, "%s: status %d, want %d (%s)", s, status,
	    want, why);
	ck_assert_ptr_nonnull(why);
	ck_assert_uint_gt(strlen(why), 0);
}

START_TEST(test_simple_get)
{
	const char	*s = "GET /v1beta/models?pageSize=5 HTTP/1.1\r\n"
			    "Host: localhost:48888\r\n"
			    "User-Agent: curl/8.0\r\n"
			    "Accept: */*\r\n"
			    "\r\n";

	parse_ok(s);
	ck_assert_str_eq(req.method, "GET");
	ck_assert_str_eq(req.target, "/v1beta/models?pageSize=5");
	ck_assert_uint_eq(req.path_len, strlen("/v1beta/models"));
	ck_assert_int_eq(req.minor, 1);
	ck_assert_uint_eq(req.nhdr, 3);
	ck_assert_str_eq(req.hdr[0].name, "Host");
	ck_assert_str_eq(req.hdr[0].value, "localhost:48888");
	ck_assert_str_eq(req.hdr[2].value, "*/*");
	ck_assert_uint_eq(req.head_len, strlen(s));
	ck_assert_int_eq(req.content_length, -1);
	ck_assert_int_eq(req.chunked, 0);
	ck_assert_int_eq(req.keepalive, 1);
	ck_assert_int_eq(req.expect_continue, 0);
}
END_TEST

START_TEST(test_header_lookup)
{
	parse_ok("GET / HTTP/1.1\r\nHost: a\r\nX-Goog-Api-Key: k1\r\n"
	    "x-goog-api-key: k2\r\nEmpty:\r\nSpaces: \t v a l \t \r\n\r\n");
	ck_assert_str_eq(http_header(&req, "x-goog-api-key"), "k1");
	ck_assert_str_eq(http_header(&req, "HOST"), "a");
	ck_assert_str_eq(http_header(&req, "empty"), "");
	ck_assert_str_eq(http_header(&req, "spaces"), "v a l");
	ck_assert_ptr_null(http_header(&req, "authorization"));
	ck_assert_ptr_null(http_header(&req, "x-goog-api-ke"));
	ck_assert_uint_eq(req.path_len, 1);
}
END_TEST

/* A query parameter, percent-decoded. */
START_TEST(test_query_param)
{
	char	 b[16];

	ck_assert_int_eq(http_query_param("a=1&token=ab%2Bc+d&b",
	    "token", b, sizeof(b)), 6);
	ck_assert_str_eq(b, "ab+c+d");
	ck_assert_int_eq(http_query_param("token=", "token", b,
	    sizeof(b)), 0);
	ck_assert_str_eq(b, "");
	ck_assert_int_eq(http_query_param("tokens=1&xtoken=2", "token",
	    b, sizeof(b)), -1);
	ck_assert_int_eq(http_query_param(NULL, "token", b, sizeof(b)), -1);
	ck_assert_int_eq(http_query_param("token=%zz", "token", b,
	    sizeof(b)), -1);
	ck_assert_int_eq(http_query_param("token=%4", "token", b,
	    sizeof(b)), -1);
	ck_assert_int_eq(http_query_param("token=0123456789abcdef",
	    "token", b, sizeof(b)), -1);
	ck_assert_int_eq(http_query_param("a&token=z", "token", b,
	    sizeof(b)), 1);
	ck_assert_str_eq(b, "z");
}
END_TEST

/* Authorization: Bearer <token>, and nothing after the token. */
START_TEST(test_bearer)
{
	static const struct {
		const char	*v;
		const char	*tok;	/* NULL: refused */
	} cases[] = {
		{ "Bearer abc", "abc" },
		{ "bearer abc", "abc" },
		{ "BEARER \t abc \t", "abc" },
		{ "Bearer abc junk", NULL },
		{ "Bearer abc\tjunk", NULL },
		{ "Bearer", NULL },
		{ "Bearer ", NULL },
		{ "Bearerabc", NULL },
		{ "Basic abc", NULL },
		{ "", NULL },
	};
	const char	*t;
	size_t		 i, n;

	ck_assert_ptr_null(http_bearer(NULL, &n));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		t = http_bearer(cases[i].v, &n);
		if (cases[i].tok == NULL) {
			ck_assert_msg(t == NULL, "accepted: %s", cases[i].v);
			continue;
		}
		ck_assert_msg(t != NULL, "refused: %s", cases[i].v);
		ck_assert_uint_eq(n, strlen(cases[i].tok));
		ck_assert(memcmp(t, cases[i].tok, n) == 0);
	}
}
END_TEST

START_TEST(test_post_content_length)
{
	const char	*s = "POST /v1beta/models/gemini-2.5-flash:generateContent"
			    " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
			    "\r\nContent-Length: 13\r\n\r\n{\"contents\":1}";

	parse_ok(s);
	ck_assert_str_eq(req.method, "POST");
	ck_assert_int_eq(req.content_length, 13);
	ck_assert_int_eq(req.chunked, 0);
	ck_assert_uint_eq(req.head_len, strlen(s) - 14);
	ck_assert_int_eq(memcmp(buf + req.head_len, "{\"contents\":1}", 14), 0);

	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
	ck_assert_int_eq(req.content_length, 0);
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n");
	ck_assert_int_eq(req.content_length, 7);
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 9223372036854775807\r\n\r\n");
	ck_assert_int_eq(req.content_length, INT64_MAX);
	/* Identical values, in a list or in several fields, are one. */
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n");
	ck_assert_int_eq(req.content_length, 5);
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	    "content-length: 5\r\n\r\n");
	ck_assert_int_eq(req.content_length, 5);
}
END_TEST

START_TEST(test_pipelined)
{
	const char	*s = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
			    "\r\nhelloGET /b HTTP/1.1\r\nHost: y\r\n"
			    "Connection: close\r\n\r\nPUT";
	char		 copy[256];
	size_t		 first, len = strlen(s);
	int		 status, rv;
	const char	*why;

	parse_ok(s);
	first = req.head_len;
	ck_assert_uint_eq(first, strstr(s, "hello") - s);
	ck_assert_int_eq(req.content_length, 5);
	ck_assert_int_eq(req.keepalive, 1);

	/* The next request starts right after the body. */
	memcpy(copy, buf, len);
	rv = http_parse_head(copy + first + 5, len - first - 5, &req, &status,
	    &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_str_eq(req.method, "GET");
	ck_assert_str_eq(req.target, "/b");
	ck_assert_str_eq(http_header(&req, "host"), "y");
	ck_assert_int_eq(req.keepalive, 0);
	ck_assert_str_eq(copy + first + 5 + req.head_len, "PUT");

	/* A third, incomplete one. */
	rv = http_parse_head(copy + len - 3, 3, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
}
END_TEST

static const char *const partial_cases[] = {
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	("\r\n\r\nPOST /v1beta/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
	    "Expect: 100-continue\r\nA:\r\nB: \t b \t\r\n\r\n"),
	"GET / HTTP/1.0\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
};

/* Every proper prefix of a good head asks for more and leaves buf alone. */
START_TEST(test_partial_heads)
{
	const char	*s = partial_cases[_i];
	size_t		 n, len = strlen(s);
	int		 status, rv;
	const char	*why;

	for (n = 0; n < len; n++) {
		rv = parse_n(s, n, &status, &why);
		ck_assert_msg(rv == HTTP_PARSE_MORE,
		    "prefix %zu of case %d: rv %d (%s)", n, _i, rv,
		    why != NULL ? why : "");
		ck_assert_int_eq(memcmp(buf, s, n), 0);
	}
	rv = parse_n(s, len, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(req.head_len, len);
}
END_TEST

START_TEST(test_leading_crlf)
{
	const char	*s = "\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n";

	parse_ok(s);
	ck_assert_uint_eq(req.head_len, strlen(s));
	ck_assert_str_eq(req.method, "GET");
	ck_assert_str_eq(req.target, "/x");
	parse_err("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
	parse_err("\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}
END_TEST

START_TEST(test_target_forms)
{
	parse_ok("GET http://example.com/v1beta/models?x=1 HTTP/1.1\r\n"
	    "Host: example.com\r\n\r\n");
	ck_assert_str_eq(req.target, "/v1beta/models?x=1");
	ck_assert_uint_eq(req.path_len, strlen("/v1beta/models"));
	parse_ok("GET HTTPS://example.com:443/a HTTP/1.1\r\nHost: e\r\n\r\n");
	ck_assert_str_eq(req.target, "/a");
	parse_ok("GET http://example.com HTTP/1.1\r\nHost: e\r\n\r\n");
	ck_assert_str_eq(req.target, "/");
	ck_assert_uint_eq(req.path_len, 1);
	parse_ok("GET http://example.com?q=1 HTTP/1.1\r\nHost: e\r\n\r\n");
	ck_assert_str_eq(req.target, "/?q=1");
	ck_assert_uint_eq(req.path_len, 1);
	parse_ok("OPTIONS * HTTP/1.1\r\nHost: e\r\n\r\n");
	ck_assert_str_eq(req.target, "*");

	parse_err("GET * HTTP/1.1\r\nHost: e\r\n\r\n", 400);
	parse_err("GET http:///a HTTP/1.1\r\nHost: e\r\n\r\n", 400);
	parse_err("GET ftp://e/a HTTP/1.1\r\nHost: e\r\n\r\n", 400);
	parse_err("CONNECT e:443 HTTP/1.1\r\nHost: e\r\n\r\n", 400);
	parse_err("GET a/b HTTP/1.1\r\nHost: e\r\n\r\n", 400);
}
END_TEST

struct bad_case {
	const char	*req;
	int		 status;
};

static const struct bad_case bad_cases[] = {
	/* line endings */
	{ "GET / HTTP/1.1\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\n\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\n\rY: z\r\n\r\n", 400 },
	{ "GET /\r HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	/* obs-fold, field names */
	{ "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\tc\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nA(b): c\r\n\r\n", 400 },
	/* request line */
	{ "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ " GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET / \tHTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 400 },
	{ "GET / http/1.1\r\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400 },
	{ "GET /\r\nHost: x\r\n\r\n", 400 },
	{ "GET / \r\nHost: x\r\n\r\n", 400 },
	{ "GET\r\nHost: x\r\n\r\n", 400 },
	{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400 },
	/* field values */
	{ "GET / HTTP/1.1\r\nHost: x\r\nA: b\x01" "c\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nA: b\x7f\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nA: \x1b[31m\r\n\r\n", 400 },
	/* Host */
	{ "GET / HTTP/1.1\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nA: b\r\n\r\n", 400 },
	{ "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400 },
	{ "GET / HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n", 400 },
	/* framing */
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
	    "Content-Length: 6\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 0\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 9223372036854775808\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 99999999999999999999999\r\n\r\n", 400 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
	    501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
	    "\r\n", 501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n"
	    "\r\n", 501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
	    501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
	    501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", 501 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n", 400 },
	{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
	/* Expect */
	{ "POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417 },
	{ "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, x\r\n\r\n",
	    417 },
};

/*
 * One test over the whole table rather than a loop test: each loop test
 * forks, and the messages of parse_err() already name the failing case.
 */
START_TEST(test_malformed)
{
	size_t	 i;

	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
		parse_err(bad_cases[i].req, bad_cases[i].status);
}
END_TEST

START_TEST(test_chunked_head)
{
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: CHUNKED\r\n\r\n");
	ck_assert_int_eq(req.chunked, 1);
	ck_assert_int_eq(req.content_length, -1);
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n");
	ck_assert_int_eq(req.chunked, 1);
}
END_TEST

START_TEST(test_expect)
{
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
	    "Expect: 100-Continue\r\n\r\n");
	ck_assert_int_eq(req.expect_continue, 1);
	parse_ok("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n");
	ck_assert_int_eq(req.expect_continue, 0);
	/* RFC 9110 §10.1.1: ignored from HTTP/1.0. */
	parse_ok("POST / HTTP/1.0\r\nContent-Length: 1\r\n"
	    "Expect: 100-continue\r\n\r\n");
	ck_assert_int_eq(req.expect_continue, 0);
}
END_TEST

/* Build a head of exactly total bytes, padding with one long field. */
static size_t
build_head(size_t total)
{
	const char	*pre = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ";
	size_t		 n = strlen(pre);

	ck_assert_uint_gt(total, n + 4);
	memcpy(buf, pre, n);
	memset(buf + n, 'a', total - n - 4);
	memcpy(buf + total - 4, "\r\n\r\n", 4);
	return total;
}

START_TEST(test_oversized)
{
	int		 status, rv;
	const char	*why;
	size_t		 len, i, n;

	/* Exactly at the limit is fine. */
	len = build_head(HTTP_MAX_HEAD);
	rv = http_parse_head(buf, len, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(req.head_len, HTTP_MAX_HEAD);

	/* One byte more is not, whole or still arriving. */
	len = build_head(HTTP_MAX_HEAD + 1);
	rv = http_parse_head(buf, len, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
	ck_assert_int_eq(status, 431);
	len = build_head(HTTP_MAX_HEAD + 1000);
	rv = http_parse_head(buf, HTTP_MAX_HEAD - 1, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
	rv = http_parse_head(buf, HTTP_MAX_HEAD, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
	ck_assert_int_eq(status, 431);
	len = build_head(70000);
	rv = http_parse_head(buf, len, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
	ck_assert_int_eq(status, 431);

	/* A request line that alone does not fit. */
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', HTTP_MAX_HEAD + 10);
	rv = http_parse_head(buf, HTTP_MAX_HEAD + 15, &req, &status, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
	ck_assert_int_eq(status, 414);

	/* Too many fields. */
	for (n = HTTP_MAX_HEADERS; n <= HTTP_MAX_HEADERS + 1; n++) {
		len = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
		for (i = 0; i < n; i++)
			len += snprintf(buf + len, sizeof(buf) - len,
			    "%s: %zu\r\n", i == 0 ? "Host" : "X-H", i);
		len += snprintf(buf + len, sizeof(buf) - len, "\r\n");
		rv = http_parse_head(buf, len, &req, &status, &why);
		if (n == HTTP_MAX_HEADERS) {
			ck_assert_int_eq(rv, HTTP_PARSE_DONE);
			ck_assert_uint_eq(req.nhdr, HTTP_MAX_HEADERS);
		} else {
			ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
			ck_assert_int_eq(status, 431);
		}
	}
}
END_TEST

struct ka_case {
	const char	*version;
	const char	*conn;		/* NULL: no Connection field */
	int		 keepalive;
};

static const struct ka_case ka_cases[] = {
	{ "1.1", NULL, 1 },
	{ "1.1", "close", 0 },
	{ "1.1", "Close", 0 },
	{ "1.1", "keep-alive", 1 },
	{ "1.1", "keep-alive, Upgrade", 1 },
	{ "1.1", "Upgrade, close", 0 },
	{ "1.1", "closed", 1 },
	{ "1.0", NULL, 0 },
	{ "1.0", "keep-alive", 1 },
	{ "1.0", "Keep-Alive", 1 },
	{ "1.0", "keep-alive, Upgrade", 1 },
	{ "1.0", "Upgrade ,  keep-alive ", 1 },
	{ "1.0", "close", 0 },
	{ "1.0", "keep-alive, close", 0 },
	{ "1.0", "keep-alivex", 0 },
};

START_TEST(test_keepalive)
{
	const struct ka_case	*k;
	char			 s[256];
	size_t			 i;

	for (i = 0; i < sizeof(ka_cases) / sizeof(ka_cases[0]); i++) {
		k = &ka_cases[i];
		snprintf(s, sizeof(s), "GET / HTTP/%s\r\nHost: x\r\n%s%s%s"
		    "\r\n", k->version, k->conn != NULL ? "Connection: " : "",
		    k->conn != NULL ? k->conn : "",
		    k->conn != NULL ? "\r\n" : "");
		parse_ok(s);
		ck_assert_msg(req.keepalive == k->keepalive,
		    "HTTP/%s Connection: %s", k->version,
		    k->conn != NULL ? k->conn : "(none)");
	}
}
END_TEST

START_TEST(test_two_connection_fields)
{
	parse_ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
	    "Connection: close\r\n\r\n");
	ck_assert_int_eq(req.keepalive, 0);
}
END_TEST

/*
 * Feed a chunked body to a fresh decoder in pieces cut at cuts[0..ncuts).
 * Returns the last result; *used is the bytes of in the decoder took,
 * out/outlen what it decoded.
 */
static int
feed(const char *in, size_t len, const size_t *cuts, size_t ncuts,
    char *out, size_t *outlen, size_t *used, const char **why)
{
	struct http_chunked	 c;
	size_t			 from = 0, to, k, consumed, n;
	int			 rv = HTTP_PARSE_MORE;

	memset(&c, 0, sizeof(c));
	*outlen = 0;
	*why = NULL;
	for (k = 0; k <= ncuts && from <= len; k++) {
		to = k < ncuts ? cuts[k] : len;
		rv = http_chunked_decode(&c, in + from, to - from, &consumed,
		    out + *outlen, &n, why);
		ck_assert_uint_le(n, to - from);
		*outlen += n;
		if (rv == HTTP_PARSE_MORE)
			ck_assert_uint_eq(consumed, to - from);
		from += consumed;
		if (rv != HTTP_PARSE_MORE)
			break;
	}
	*used = from;
	return rv;
}

static const char chunked_body[] =
	"5\r\nhello\r\n"
	"6;name=value;flag\r\n, worl\r\n"
	"1 ; ext=\"q;uoted\"\r\nd\r\n"
	"0000A\r\n\r\n\0\x01\r\n\xff\n78\r\n"
	"0;last\r\n"
	"X-Trailer: one\r\n"
	"Another: two\r\n"
	"\r\n"
	"GET /next HTTP/1.1\r\n";
#define CHUNKED_DECODED	"hello, world\r\n\0\x01\r\n\xff\n78"
#define CHUNKED_USED	(sizeof(chunked_body) - 1 - strlen("GET /next HTTP/1.1\r\n"))

static void
check_decoded(int rv, const char *out, size_t outlen, size_t used)
{
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(outlen, sizeof(CHUNKED_DECODED) - 1);
	ck_assert_int_eq(memcmp(out, CHUNKED_DECODED, outlen), 0);
	ck_assert_uint_eq(used, CHUNKED_USED);
	ck_assert_int_eq(memcmp(chunked_body + used, "GET /next", 9), 0);
}

START_TEST(test_chunked_whole)
{
	char		 out[sizeof(chunked_body)];
	size_t		 outlen, used;
	const char	*why;
	int		 rv;

	rv = feed(chunked_body, sizeof(chunked_body) - 1, NULL, 0, out,
	    &outlen, &used, &why);
	check_decoded(rv, out, outlen, used);
}
END_TEST

START_TEST(test_chunked_bytewise)
{
	char		 out[sizeof(chunked_body)];
	size_t		 cuts[sizeof(chunked_body)], outlen, used, i;
	size_t		 len = sizeof(chunked_body) - 1;
	const char	*why;
	int		 rv;

	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	rv = feed(chunked_body, len, cuts, len, out, &outlen, &used, &why);
	check_decoded(rv, out, outlen, used);
}
END_TEST

START_TEST(test_chunked_splits)
{
	char		 out[sizeof(chunked_body)];
	size_t		 cuts[2], outlen, used, i, j;
	size_t		 len = sizeof(chunked_body) - 1;
	const char	*why;
	int		 rv;

	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		rv = feed(chunked_body, len, cuts, 1, out, &outlen, &used,
		    &why);
		check_decoded(rv, out, outlen, used);
	}
	/* Every pair of cut points, too: it is small enough. */
	for (i = 0; i <= len; i++)
		for (j = i; j <= len; j++) {
			cuts[0] = i;
			cuts[1] = j;
			rv = feed(chunked_body, len, cuts, 2, out, &outlen,
			    &used, &why);
			check_decoded(rv, out, outlen, used);
		}
}
END_TEST

START_TEST(test_chunked_in_place)
{
	char			 b[sizeof(chunked_body)];
	struct http_chunked	 c;
	size_t			 consumed, outlen;
	const char		*why;
	int			 rv;

	memcpy(b, chunked_body, sizeof(b));
	memset(&c, 0, sizeof(c));
	rv = http_chunked_decode(&c, b, sizeof(b) - 1, &consumed, b, &outlen,
	    &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(consumed, CHUNKED_USED);
	ck_assert_uint_eq(outlen, sizeof(CHUNKED_DECODED) - 1);
	ck_assert_int_eq(memcmp(b, CHUNKED_DECODED, outlen), 0);

	/* Once done, the decoder takes nothing more. */
	rv = http_chunked_decode(&c, "xyz", 3, &consumed, b, &outlen, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(consumed, 0);
	ck_assert_uint_eq(outlen, 0);
}
END_TEST

START_TEST(test_chunked_minimal)
{
	char		 out[64];
	size_t		 outlen, used;
	const char	*why;
	int		 rv;

	rv = feed("0\r\n\r\n", 5, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(outlen, 0);
	ck_assert_uint_eq(used, 5);
	rv = feed("0\r\n", 3, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
	rv = feed("3\r\nabc\r\n", 8, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
	ck_assert_uint_eq(outlen, 3);
	rv = feed("", 0, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
}
END_TEST

static const char *const chunk_bad[] = {
	"g\r\n",			/* not hex */
	"\r\n",				/* no size */
	";ext\r\n",
	"-1\r\n",
	"0x5\r\n",
	"5 \r\nhello\r\n0\r\n\r\n",	/* BWS without an extension */
	"5\nhello\r\n0\r\n\r\n",	/* bare LF */
	"5\rhello\r\n0\r\n\r\n",	/* bare CR */
	"5;a\nhello\r\n0\r\n\r\n",
	"5;a\x01\r\nhello\r\n0\r\n\r\n",
	"5\r\nhelloX\r\n0\r\n\r\n",	/* data not followed by CRLF */
	"5\r\nhello\rX0\r\n\r\n",
	"5\r\nhello\n0\r\n\r\n",
	"4\r\nhello\r\n0\r\n\r\n",
	"10000000000000000\r\n",	/* 2^64 */
	"4000000000000001\r\n",		/* just over 2^62 */
	"FFFFFFFFFFFFFFFFFFFFFFFF\r\n",
	"0\r\nX: y\n\r\n",		/* bare LF in a trailer */
	"0\r\nX: y\r\r\n",
	"0\r\n\n",
	"0\r\n\rX",
	"0\r\nX: \x7f\r\n\r\n",
};

START_TEST(test_chunked_errors)
{
	const char	*s;
	char		 out[256];
	size_t		 cuts[256], outlen, used, i, k, len;
	const char	*why;
	int		 rv;

	for (k = 0; k < sizeof(chunk_bad) / sizeof(chunk_bad[0]); k++) {
		s = chunk_bad[k];
		len = strlen(s);
		rv = feed(s, len, NULL, 0, out, &outlen, &used, &why);
		ck_assert_msg(rv == HTTP_PARSE_ERROR, "case %zu: rv %d", k, rv);
		ck_assert_ptr_nonnull(why);
		/* The same, a byte at a time. */
		for (i = 0; i < len; i++)
			cuts[i] = i + 1;
		rv = feed(s, len, cuts, len, out, &outlen, &used, &why);
		ck_assert_msg(rv == HTTP_PARSE_ERROR, "case %zu bytewise: rv %d",
		    k, rv);
	}
}
END_TEST

START_TEST(test_chunked_limits)
{
	static char	 in[2 * HTTP_MAX_HEAD], out[sizeof(in)];
	size_t		 outlen, used, n;
	const char	*why;
	int		 rv;

	/* Exactly 2^62 is allowed as a size. */
	rv = feed("4000000000000000\r\nab", 20, NULL, 0, out, &outlen, &used,
	    &why);
	ck_assert_int_eq(rv, HTTP_PARSE_MORE);
	ck_assert_uint_eq(outlen, 2);

	/* A size line of up to 4 KiB, not more. */
	memcpy(in, "1;", 2);
	memset(in + 2, 'x', 4096 - 2);
	memcpy(in + 4096, "\r\na\r\n0\r\n\r\n", 10);
	rv = feed(in, 4106, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_DONE);
	ck_assert_uint_eq(outlen, 1);
	memset(in + 2, 'x', 4096 - 1);
	memcpy(in + 4097, "\r\na\r\n0\r\n\r\n", 10);
	rv = feed(in, 4107, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);

	/* Leading zeros count toward the line too. */
	memset(in, '0', 5000);
	rv = feed(in, 5000, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);

	/* An endless trailer section is cut off. */
	memcpy(in, "0\r\n", 3);
	for (n = 3; n + 8 <= sizeof(in); n += 8)
		memcpy(in + n, "A: bcd\r\n", 8);
	rv = feed(in, n, NULL, 0, out, &outlen, &used, &why);
	ck_assert_int_eq(rv, HTTP_PARSE_ERROR);
}
END_TEST

START_TEST(test_error_body)
{
	char	 b[256];
	int	 n, want, i;

	n = http_error_body(b, sizeof(b), 429, "No key can serve");
	ck_assert_str_eq(b, "{\"error\":{\"code\":429,\"message\":"
	    "\"No key can serve\",\"status\":\"RESOURCE_EXHAUSTED\"}}");
	ck_assert_int_eq(n, (int)strlen(b));

	n = http_error_body(b, sizeof(b), 400, "a \"q\" \\ b\n\t\x01\x7f/\xc3\xa9");
	ck_assert_str_eq(b, "{\"error\":{\"code\":400,\"message\":"
	    "\"a \\\"q\\\" \\\\ b\\u000a\\u0009\\u0001\\u007f/\xc3\xa9\","
	    "\"status\":\"INVALID_ARGUMENT\"}}");
	ck_assert_int_eq(n, (int)strlen(b));

	n = http_error_body(b, sizeof(b), 503, NULL);
	ck_assert_str_eq(b, "{\"error\":{\"code\":503,\"message\":\"\","
	    "\"status\":\"UNAVAILABLE\"}}");

	/* Every buffer too small is refused, the exact size is not. */
	want = http_error_body(b, sizeof(b), 431, "head \"too\" large\x02");
	ck_assert_int_gt(want, 0);
	for (i = 0; i <= want; i++) {
		memset(b, 'Z', sizeof(b));
		ck_assert_int_eq(http_error_body(b, i, 431,
		    "head \"too\" large\x02"), -1);
		ck_assert_int_eq(b[i], 'Z');	/* nothing past len */
	}
	ck_assert_int_eq(http_error_body(b, want + 1, 431,
	    "head \"too\" large\x02"), want);
	ck_assert_uint_eq(strlen(b), (size_t)want);
}
END_TEST

START_TEST(test_reason_and_status)
{
	static const int	 codes[] = { 100, 200, 201, 204, 206, 301,
				    302, 304, 308, 400, 401, 403, 404, 405,
				    408, 409, 411, 412, 413, 414, 415, 416,
				    417, 422, 429, 431, 499, 500, 501, 502,
				    503, 504, 505 };
	size_t			 i;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		ck_assert_msg(strcmp(http_reason(codes[i]), "Unknown") != 0,
		    "no reason for %d", codes[i]);
	ck_assert_str_eq(http_reason(200), "OK");
	ck_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
	ck_assert_str_eq(http_reason(599), "Unknown");
	ck_assert_str_eq(http_reason(-1), "Unknown");

	ck_assert_str_eq(http_status_name(400), "INVALID_ARGUMENT");
	ck_assert_str_eq(http_status_name(401), "UNAUTHENTICATED");
	ck_assert_str_eq(http_status_name(403), "PERMISSION_DENIED");
	ck_assert_str_eq(http_status_name(404), "NOT_FOUND");
	ck_assert_str_eq(http_status_name(408), "DEADLINE_EXCEEDED");
	ck_assert_str_eq(http_status_name(409), "ABORTED");
	ck_assert_str_eq(http_status_name(429), "RESOURCE_EXHAUSTED");
	ck_assert_str_eq(http_status_name(431), "INVALID_ARGUMENT");
	ck_assert_str_eq(http_status_name(499), "CANCELLED");
	ck_assert_str_eq(http_status_name(500), "INTERNAL");
	ck_assert_str_eq(http_status_name(501), "UNIMPLEMENTED");
	ck_assert_str_eq(http_status_name(502), "UNAVAILABLE");
	ck_assert_str_eq(http_status_name(503), "UNAVAILABLE");
	ck_assert_str_eq(http_status_name(504), "DEADLINE_EXCEEDED");
	ck_assert_str_eq(http_status_name(418), "UNKNOWN");
}
END_TEST

Suite *
http_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("http");

	tc = tcase_create("head");
	tcase_add_test(tc, test_simple_get);
	tcase_add_test(tc, test_header_lookup);
	tcase_add_test(tc, test_bearer);
	tcase_add_test(tc, test_query_param);
	tcase_add_test(tc, test_post_content_length);
	tcase_add_test(tc, test_pipelined);
	tcase_add_loop_test(tc, test_partial_heads, 0,
	    sizeof(partial_cases) / sizeof(partial_cases[0]));
	tcase_add_test(tc, test_leading_crlf);
	tcase_add_test(tc, test_target_forms);
	tcase_add_test(tc, test_malformed);
	tcase_add_test(tc, test_chunked_head);
	tcase_add_test(tc, test_expect);
	tcase_add_test(tc, test_oversized);
	tcase_add_test(tc, test_keepalive);
	tcase_add_test(tc, test_two_connection_fields);
	suite_add_tcase(s, tc);

	tc = tcase_create("chunked");
	tcase_add_test(tc, test_chunked_whole);
	tcase_add_test(tc, test_chunked_bytewise);
	tcase_add_test(tc, test_chunked_splits);
	tcase_add_test(tc, test_chunked_in_place);
	tcase_add_test(tc, test_chunked_minimal);
	tcase_add_test(tc, test_chunked_errors);
	tcase_add_test(tc, test_chunked_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("answers");
	tcase_add_test(tc, test_error_body);
	tcase_add_test(tc, test_reason_and_status);
	suite_add_tcase(s, tc);

	return s;
}
