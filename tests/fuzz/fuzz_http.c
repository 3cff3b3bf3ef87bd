/*
 * Fuzz target: the client request parser of src/http.c.
 *
 * The input is what a client sends on a connection.  http_parse_head()
 * reads it the way a worker does (from a private, exactly sized copy, so
 * that ASan sees a read past the end); a head it accepts must end in
 * CRLFCRLF within the bytes given, hold no bare LF and no control byte, and
 * its fields must point inside it.  A prefix of an accepted head must ask
 * for more, and a longer buffer must give the same head: the worker parses
 * a buffer that grows.  Then the bytes after the head (all of them when
 * there is no head) go through the chunked decoder whole, byte by byte, in
 * two pieces split where the input says, and in place: every way must give
 * the same verdict, the same bytes consumed and the same output.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http.h"

static int
tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* p points into buf[0..len). */
static int
inside(const char *p, const char *buf, size_t len)
{
	return p != NULL && p >= buf && p < buf + len;
}

static void
check_done(const uint8_t *data, size_t len, char *buf,
    const struct http_request *req)
{
	size_t		 i, hl = req->head_len;
	const char	*s;
	int		 cl = 0, te = 0;

	FUZZ_CHECK(hl >= 4 && hl <= len && hl <= HTTP_MAX_HEAD,
	    "head_len %zu, len %zu", hl, len);
	FUZZ_CHECK(memcmp(data + hl - 4, "\r\n\r\n", 4) == 0,
	    "head of %zu bytes does not end in CRLFCRLF", hl);
	for (i = 0; i < hl; i++) {
		FUZZ_CHECK(data[i] != '\n' || (i > 0 && data[i - 1] == '\r'),
		    "bare LF at %zu accepted", i);
		FUZZ_CHECK(data[i] != '\r' || (i + 1 < hl &&
		    data[i + 1] == '\n'), "bare CR at %zu accepted", i);
		FUZZ_CHECK(data[i] >= ' ' || data[i] == '\t' ||
		    data[i] == '\r' || data[i] == '\n',
		    "control byte 0x%02x at %zu accepted", data[i], i);
		FUZZ_CHECK(data[i] != 0x7f, "DEL at %zu accepted", i);
	}

	FUZZ_CHECK(inside(req->method, buf, hl) && req->method[0] != '\0',
	    "method");
	for (s = req->method; *s != '\0'; s++)
		FUZZ_CHECK(tchar((unsigned char)*s), "method byte 0x%02x",
		    (unsigned char)*s);
	FUZZ_CHECK(inside(req->target, buf, hl), "target");
	FUZZ_CHECK(req->target[0] == '/' || strcmp(req->target, "*") == 0,
	    "target %.40s", req->target);
	FUZZ_CHECK(req->path_len <= strlen(req->target), "path_len");
	FUZZ_CHECK(memchr(req->target, '?', req->path_len) == NULL,
	    "a '?' inside the path");
	FUZZ_CHECK(req->minor == 0 || req->minor == 1, "minor %d", req->minor);
	FUZZ_CHECK(req->nhdr <= HTTP_MAX_HEADERS, "nhdr %zu", req->nhdr);
	for (i = 0; i < req->nhdr; i++) {
		FUZZ_CHECK(inside(req->hdr[i].name, buf, hl) &&
		    req->hdr[i].name[0] != '\0', "header %zu name", i);
		FUZZ_CHECK(inside(req->hdr[i].value, buf, hl + 1),
		    "header %zu value", i);
		for (s = req->hdr[i].name; *s != '\0'; s++)
			FUZZ_CHECK(tchar((unsigned char)*s),
			    "header name byte 0x%02x", (unsigned char)*s);
		FUZZ_CHECK(strpbrk(req->hdr[i].value, "\r\n") == NULL,
		    "CR or LF in a header value");
		if (strcasecmp(req->hdr[i].name, "content-length") == 0)
			cl = 1;
		if (strcasecmp(req->hdr[i].name, "transfer-encoding") == 0)
			te = 1;
	}
	/* The framing a smuggler would play with is never ambiguous. */
	FUZZ_CHECK(!(cl && te), "both Content-Length and Transfer-Encoding");
	FUZZ_CHECK(req->content_length >= -1, "content_length %lld",
	    (long long)req->content_length);
	FUZZ_CHECK(cl == (req->content_length != -1), "Content-Length lost");
	FUZZ_CHECK(te == req->chunked, "Transfer-Encoding not chunked");
	FUZZ_CHECK(!req->chunked || req->minor == 1, "chunked in HTTP/1.0");
	FUZZ_CHECK(req->minor == 0 || http_header(req, "host") != NULL,
	    "HTTP/1.1 without Host");
}

/*
 * Parse a private copy of data[0..len); returns what the parser did, with
 * *req, *status and *why as it left them.
 */
static int
parse_copy(const uint8_t *data, size_t len, char **bufp,
    struct http_request *req, int *status, const char **why)
{
	char	*buf;
	int	 rv;

	if ((buf = malloc(len > 0 ? len : 1)) == NULL)
		abort();
	if (len > 0)
		memcpy(buf, data, len);
	*status = 0;
	*why = NULL;
	rv = http_parse_head(buf, len, req, status, why);
	FUZZ_CHECK(rv == HTTP_PARSE_MORE || rv == HTTP_PARSE_DONE ||
	    rv == HTTP_PARSE_ERROR, "rv %d", rv);
	if (rv == HTTP_PARSE_MORE) {
		FUZZ_CHECK(len < HTTP_MAX_HEAD, "MORE at %zu bytes", len);
		FUZZ_CHECK(len == 0 || memcmp(buf, data, len) == 0,
		    "MORE but the buffer was written to");
	}
	if (rv == HTTP_PARSE_ERROR) {
		FUZZ_CHECK(*status == 400 || *status == 414 || *status == 417 ||
		    *status == 431 || *status == 501, "status %d", *status);
		FUZZ_CHECK(*why != NULL && (*why)[0] != '\0', "no reason");
		FUZZ_CHECK(*status != 414 || len >= HTTP_MAX_HEAD,
		    "414 for %zu bytes", len);
	}
	*bufp = buf;
	return rv;
}

/* Returns the offset of the body: head_len, or 0 without a head. */
static size_t
check_head(const uint8_t *data, size_t len, size_t cut)
{
	static struct http_request	 req, preq;
	char				*buf, *pbuf;
	const char			*why, *pwhy;
	size_t				 off = 0;
	int				 rv, prv, status, pstatus;

	rv = parse_copy(data, len, &buf, &req, &status, &why);
	if (rv == HTTP_PARSE_DONE) {
		check_done(data, len, buf, &req);
		off = req.head_len;
	}

	/* A shorter buffer, as the worker has before the rest arrives. */
	prv = parse_copy(data, cut, &pbuf, &preq, &pstatus, &pwhy);
	if (rv == HTTP_PARSE_DONE && cut < req.head_len)
		FUZZ_CHECK(prv == HTTP_PARSE_MORE,
		    "prefix of %zu bytes of a %zu-byte head: rv %d", cut,
		    req.head_len, prv);
	if (prv == HTTP_PARSE_DONE) {
		FUZZ_CHECK(rv == HTTP_PARSE_DONE, "more bytes undid a head");
		FUZZ_CHECK(preq.head_len == req.head_len &&
		    preq.nhdr == req.nhdr &&
		    preq.content_length == req.content_length &&
		    preq.chunked == req.chunked &&
		    preq.keepalive == req.keepalive &&
		    preq.method - pbuf == req.method - buf &&
		    preq.target - pbuf == req.target - buf,
		    "the head read differently from %zu and %zu bytes", cut,
		    len);
	}
	if (prv == HTTP_PARSE_ERROR && cut < HTTP_MAX_HEAD)
		FUZZ_CHECK(rv == HTTP_PARSE_ERROR && status == pstatus,
		    "an error in %zu bytes (%d) but %d for %zu", cut, pstatus,
		    rv == HTTP_PARSE_ERROR ? status : 0, len);
	free(pbuf);
	free(buf);
	return off;
}

struct chunk_result {
	int		 rv;
	size_t		 used;
	size_t		 olen;
	const char	*why;
};

static void
chunk_check_eq(const struct chunk_result *a, const char *aout,
    const struct chunk_result *b, const char *bout, const char *how)
{
	FUZZ_CHECK(a->rv == b->rv, "%s: rv %d, whole %d", how, b->rv, a->rv);
	FUZZ_CHECK(a->used == b->used, "%s: used %zu, whole %zu", how,
	    b->used, a->used);
	FUZZ_CHECK(a->olen == b->olen, "%s: %zu bytes out, whole %zu", how,
	    b->olen, a->olen);
	FUZZ_CHECK(a->olen == 0 || memcmp(aout, bout, a->olen) == 0,
	    "%s: other bytes out", how);
	if (a->rv == HTTP_PARSE_ERROR)
		FUZZ_CHECK(strcmp(a->why, b->why) == 0, "%s: \"%s\", whole "
		    "\"%s\"", how, b->why, a->why);
}

/* Feed in[0..n) in pieces of at most step bytes, or split at cut. */
static void
chunk_pieces(const char *in, size_t n, size_t step, size_t cut, char *out,
    struct chunk_result *r)
{
	struct http_chunked	 c;
	size_t			 off = 0, piece, used, olen;
	const char		*why = NULL;
	int			 rv = HTTP_PARSE_MORE;

	memset(&c, 0, sizeof(c));
	r->olen = 0;
	while (off < n) {
		piece = step != 0 ? step : (off < cut ? cut : n - off);
		if (piece > n - off)
			piece = n - off;
		rv = http_chunked_decode(&c, in + off, piece, &used,
		    out + r->olen, &olen, &why);
		FUZZ_CHECK(used <= piece && olen <= used, "used %zu of %zu, "
		    "%zu out", used, piece, olen);
		FUZZ_CHECK(rv != HTTP_PARSE_MORE || used == piece,
		    "MORE with %zu of %zu used", used, piece);
		off += used;
		r->olen += olen;
		if (rv != HTTP_PARSE_MORE)
			break;
	}
	r->rv = rv;
	r->used = off;
	r->why = why;
}

static void
check_chunked(const char *in, size_t n, size_t cut)
{
	struct http_chunked	 c;
	struct chunk_result	 whole, r;
	char			*out, *out2, *tmp;
	size_t			 used, olen;
	const char		*why = NULL;

	if ((out = malloc(n + 1)) == NULL || (out2 = malloc(n + 1)) == NULL ||
	    (tmp = malloc(n + 1)) == NULL)
		abort();

	memset(&c, 0, sizeof(c));
	whole.rv = http_chunked_decode(&c, in, n, &whole.used, out,
	    &whole.olen, &whole.why);
	FUZZ_CHECK(whole.used <= n && whole.olen <= whole.used,
	    "used %zu of %zu, %zu out", whole.used, n, whole.olen);
	switch (whole.rv) {
	case HTTP_PARSE_MORE:
		FUZZ_CHECK(whole.used == n, "MORE with %zu of %zu used",
		    whole.used, n);
		break;
	case HTTP_PARSE_DONE:
		FUZZ_CHECK(c.done, "DONE but not done");
		/* Once done, it stays done and takes nothing more. */
		FUZZ_CHECK(http_chunked_decode(&c, in + whole.used,
		    n - whole.used, &used, out2, &olen, &why) ==
		    HTTP_PARSE_DONE && used == 0 && olen == 0,
		    "a finished body read on");
		break;
	case HTTP_PARSE_ERROR:
		FUZZ_CHECK(whole.why != NULL && whole.why[0] != '\0',
		    "no reason");
		break;
	default:
		FUZZ_CHECK(0, "rv %d", whole.rv);
	}

	chunk_pieces(in, n, 1, 0, out2, &r);
	chunk_check_eq(&whole, out, &r, out2, "byte by byte");
	chunk_pieces(in, n, 0, cut, out2, &r);
	chunk_check_eq(&whole, out, &r, out2, "in two pieces");

	/* In place, as the doc allows: output only moves to the front. */
	if (n > 0)
		memcpy(tmp, in, n);
	memset(&c, 0, sizeof(c));
	r.rv = http_chunked_decode(&c, tmp, n, &r.used, tmp, &r.olen, &r.why);
	chunk_check_eq(&whole, out, &r, tmp, "in place");

	free(tmp);
	free(out2);
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	size_t	 off, cut;

	/* A split point that depends on the input but not on its start. */
	cut = len > 0 ? (data[len - 1] * 257u + len) % (len + 1) : 0;
	off = check_head(data, len, cut);
	cut = len - off > 0 ? cut % (len - off + 1) : 0;
	check_chunked((const char *)data + off, len - off, cut);
	return 0;
}
