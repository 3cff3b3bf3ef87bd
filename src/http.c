/*
 * HTTP/1.1 requests from clients (RFC 9110, RFC 9112), and the pieces of
 * the answers the proxy writes itself: reason phrases, Gemini-shaped error
 * bodies.
 *
 * Called by a worker's connection loop (request.c): http_parse_head()
 * each time more bytes of a request head arrive.  The header section's
 * pieces (http_head_scan, http_parse_fields) serve the upstream's answers
 * too (uphead.c), as chunked.c's decoder serves both directions' bodies:
 * both directions read HTTP the same way.  Nothing here allocates or
 * keeps state outside the caller's structs, and no lock is taken here.
 *
 * The parser is strict on purpose.  This proxy sits in front of an upstream
 * that parses the request again, so anything two parsers could read two
 * ways (bare LF, obs-fold, whitespace before a colon, Content-Length next to
 * Transfer-Encoding, differing Content-Lengths) is refused rather than
 * repaired: a lenient front end is how request smuggling happens.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"


/*
 * tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~", digits and letters.  A table
 * because it is asked once per byte of every method and header name.
 */
static const unsigned char http_tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
	['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
	['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1
};

static int
http_fail(int *status, const char **why, int code, const char *msg)
{
	*status = code;
	*why = msg;
	return HTTP_PARSE_ERROR;
}

static int
http_ows(int c)
{
	return c == ' ' || c == '\t';
}

/*
 * One element of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed.
 * *pp walks the list and is set to NULL after the last element; empty
 * elements are returned too, so that the caller decides whether they are
 * allowed.  Returns 0 when the list is done.
 */
static int
http_list_next(const char **pp, const char **elem, size_t *elen)
{
	const char	*p = *pp, *e;

	if (p == NULL)
		return 0;
	while (http_ows(*p))
		p++;
	*elem = p;
	while (*p != ',' && *p != '\0')
		p++;
	e = p;
	while (e > *elem && http_ows(e[-1]))
		e--;
	*elen = e - *elem;
	*pp = *p == ',' ? p + 1 : NULL;
	return 1;
}

static int
http_elem_is(const char *elem, size_t elen, const char *word)
{
	return elen == strlen(word) && strncasecmp(elem, word, elen) == 0;
}

/*
 * Content-Length: 1*DIGIT, or a list of identical values (a recipient may
 * accept "5, 5", RFC 9110 §8.6).  *cl is -1 until a first value is seen;
 * every later value, in this field or another, must equal it.
 */
static int
http_content_length(const char *value, int64_t *cl)
{
	const char	*p = value, *elem;
	size_t		 elen, i;
	int64_t		 v;
	int		 d;

	while (http_list_next(&p, &elem, &elen)) {
		if (elen == 0)
			return -1;
		v = 0;
		for (i = 0; i < elen; i++) {
			if (elem[i] < '0' || elem[i] > '9')
				return -1;
			d = elem[i] - '0';
			if (v > (INT64_MAX - d) / 10)
				return -1;
			v = v * 10 + d;
		}
		if (*cl != -1 && *cl != v)
			return -1;
		*cl = v;
	}
	return 0;
}

/*
 * A header field that says something about the framing, the connection
 * or an expectation, tallied into *f.  Returns -1 for a Content-Length
 * that is invalid or differs from an earlier one, else 0.
 */
static int
http_field(struct http_fields *f, const char *name, size_t nlen,
    const char *value)
{
	const char	*p = value, *elem;
	size_t		 elen;

	switch (nlen) {
	case 4:
		if (strcasecmp(name, "host") == 0)
			f->nhost++;
		break;
	case 6:
		if (strcasecmp(name, "expect") != 0)
			break;
		while (http_list_next(&p, &elem, &elen)) {
			if (http_elem_is(elem, elen, "100-continue"))
				f->expect_continue = 1;
			else if (elen != 0)
				f->expect_other = 1;
		}
		break;
	case 10:
		if (strcasecmp(name, "connection") != 0)
			break;
		while (http_list_next(&p, &elem, &elen)) {
			if (http_elem_is(elem, elen, "close"))
				f->conn_close = 1;
			else if (http_elem_is(elem, elen, "keep-alive"))
				f->conn_keepalive = 1;
		}
		break;
	case 14:
		if (strcasecmp(name, "content-length") == 0)
			return http_content_length(value, &f->content_length);
		break;
	case 17:
		if (strcasecmp(name, "transfer-encoding") != 0)
			break;
		f->te = 1;
		while (http_list_next(&p, &elem, &elen)) {
			if (http_elem_is(elem, elen, "chunked"))
				f->te_chunked++;
			else if (elen != 0)
				f->te_other++;
		}
		break;
	}
	return 0;
}

/*
 * field-line = field-name ":" OWS field-value OWS CRLF, at *pp.  The name
 * and the value (without its OWS) are NUL-terminated in place, and *pp
 * moves past the CRLF.  Returns HTTP_FIELD_OK or what is wrong.
 */
static enum http_field_err
http_field_line(char **pp, char **name, size_t *nlen, char **value)
{
	char		*p = *pp, *last;
	unsigned char	 c;

	if (http_ows(*p))
		return HTTP_FIELD_FOLD;
	*name = p;
	while (http_tchar[(unsigned char)*p])
		p++;
	if (*p != ':')
		return http_ows(*p) ? HTTP_FIELD_WS_COLON : HTTP_FIELD_NAME;
	if (p == *name)
		return HTTP_FIELD_EMPTY_NAME;
	*nlen = p - *name;
	*p++ = '\0';

	while (http_ows(*p))
		p++;
	*value = last = p;
	for (; (c = *p) != '\r'; p++) {
		if ((c < ' ' && c != '\t') || c == 0x7f)
			return HTTP_FIELD_CTL;
		if (!http_ows(c))
			last = p + 1;
	}
	if (p[1] != '\n')
		return HTTP_FIELD_BARE_CR;
	*last = '\0';
	*pp = p + 2;
	return HTTP_FIELD_OK;
}

/*
 * The header section that starts at *pp, in a head http_head_scan() found
 * whole (it ends in CRLFCRLF and every LF follows a CR, so no loop here
 * can run past it): each field into hdr[0..max), *n of them, and what the
 * fields say about framing, the connection and expectations into *f.
 * Names and values are NUL-terminated in place.  Returns HTTP_FIELD_OK
 * with *pp just past the head, or what is wrong with it (worded by
 * http_field_why: a client hears it, an upstream's is logged).
 */
enum http_field_err
http_parse_fields(char **pp, struct http_header *hdr, size_t max, size_t *n,
    struct http_fields *f)
{
	char			*p = *pp, *name, *value;
	size_t			 nlen;
	enum http_field_err	 rv;

	memset(f, 0, sizeof(*f));
	f->content_length = -1;
	*n = 0;
	while (*p != '\r') {
		if ((rv = http_field_line(&p, &name, &nlen, &value)) !=
		    HTTP_FIELD_OK)
			return rv;
		if (*n == max)
			return HTTP_FIELD_TOO_MANY;
		hdr[*n].name = name;
		hdr[*n].value = value;
		(*n)++;
		if (http_field(f, name, nlen, value) == -1)
			return HTTP_FIELD_LENGTH;
	}
	if (p[1] != '\n')
		return HTTP_FIELD_BARE_CR;
	*pp = p + 2;
	return HTTP_FIELD_OK;
}

/*
 * What is wrong with a header section, in words: a client hears them in
 * its 400 (request), the log shows them after "malformed answer from
 * upstream: " (answer: nonzero).  Both sets of words side by side, so
 * that they change together.
 */
const char *
http_field_why(enum http_field_err err, int answer)
{
	static const struct {
		const char	*request;
		const char	*answer;
	} words[] = {
		[HTTP_FIELD_OK] = { "no error", "no error" },
		[HTTP_FIELD_FOLD] = { "obsolete line folding in request head",
		    "obsolete line folding" },
		[HTTP_FIELD_WS_COLON] = {
		    "whitespace before colon in header field",
		    "invalid header field name" },
		[HTTP_FIELD_NAME] = { "invalid header field name",
		    "invalid header field name" },
		[HTTP_FIELD_EMPTY_NAME] = { "empty header field name",
		    "invalid header field name" },
		[HTTP_FIELD_CTL] = { "control character in header field value",
		    "control character in a header field" },
		[HTTP_FIELD_BARE_CR] = { "bare CR in request head",
		    "bare CR in the head" },
		[HTTP_FIELD_TOO_MANY] = { "too many header fields",
		    "too many header fields" },
		[HTTP_FIELD_LENGTH] = { "invalid or conflicting Content-Length",
		    "invalid or conflicting Content-Length" }
	};

	if ((size_t)err >= sizeof(words) / sizeof(words[0]))
		return "invalid header section";
	return answer ? words[err].answer : words[err].request;
}

/*
 * Look for the empty line that ends a head in buf[0..lim), going on from
 * *scan with *ls the start of the line *scan is in (both 0, or where the
 * head starts, at first): a head that arrives piece by piece is scanned
 * once.  On the way every LF must follow a CR, so that a bare LF is
 * refused even before the head is whole.  Returns HTTP_PARSE_DONE with
 * *end just past the empty line, HTTP_PARSE_MORE (*scan is lim), or
 * HTTP_PARSE_ERROR at a bare LF.
 */
int
http_head_scan(const char *buf, size_t lim, size_t *scan, size_t *ls,
    size_t *end)
{
	const char	*nl;
	size_t		 i;

	while (*scan < lim &&
	    (nl = memchr(buf + *scan, '\n', lim - *scan)) != NULL) {
		i = nl - buf;
		if (i == *ls || buf[i - 1] != '\r')
			return HTTP_PARSE_ERROR;
		if (i - 1 == *ls) {
			*end = i + 1;
			return HTTP_PARSE_DONE;
		}
		*ls = *scan = i + 1;
	}
	*scan = lim;
	return HTTP_PARSE_MORE;
}

/*
 * Point req->target at the path of the request-target that starts at t:
 * origin-form as it is, absolute-form ("http://host/p?q") by skipping the
 * scheme and authority, "*" for OPTIONS only.  Returns -1 for anything
 * else (authority-form is CONNECT's, which a proxy of one API does not do).
 */
static int
http_target(struct http_request *req, char *t, size_t tlen)
{
	char	*p, *end = t + tlen, *q;

	if (t[0] == '/') {
		req->target = t;
	} else if (tlen == 1 && t[0] == '*') {
		if (strcmp(req->method, "OPTIONS") != 0)
			return -1;
		req->target = t;
	} else {
		if (tlen > 7 && strncasecmp(t, "http://", 7) == 0)
			p = t + 7;
		else if (tlen > 8 && strncasecmp(t, "https://", 8) == 0)
			p = t + 8;
		else
			return -1;
		q = p;
		while (p < end && *p != '/' && *p != '?')
			p++;
		if (p == q)
			return -1;	/* no authority */
		if (p == end || *p == '?') {
			/*
			 * No path: it is "/" (RFC 9112 §3.2.1).  The last
			 * byte of the authority is not needed any more and
			 * makes room for the slash.
			 */
			*--p = '/';
		}
		req->target = p;
	}
	q = memchr(req->target, '?', end - req->target);
	req->path_len = (q != NULL ? q : end) - req->target;
	return 0;
}

/*
 * Look for the end of a request head in buf[0..len): the empty line, with
 * every LF after a CR (http_head_scan).  Returns HTTP_PARSE_DONE with
 * *start at the request line and *end just past the empty line.
 */
static int
http_find_head(const char *buf, size_t len, size_t *start, size_t *end,
    int *status, const char **why)
{
	size_t		 lim, ls, scan = 0;
	int		 rv;

	lim = len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD;

	/* Empty lines before the request line are ignored (RFC 9112 §2.2). */
	while (scan + 1 < lim && buf[scan] == '\r' && buf[scan + 1] == '\n')
		scan += 2;
	*start = ls = scan;

	rv = http_head_scan(buf, lim, &scan, &ls, end);
	if (rv == HTTP_PARSE_ERROR)
		return http_fail(status, why, 400, "bare LF in request head");
	if (rv == HTTP_PARSE_DONE || len < HTTP_MAX_HEAD)
		return rv;
	if (ls == *start && *start < lim)
		return http_fail(status, why, 414, "request line too long");
	return http_fail(status, why, 431, "request head too large");
}

/*
 * request-line = method SP request-target SP HTTP-version CRLF, at *pp in
 * a head that ends at end.  Returns HTTP_PARSE_DONE with *pp at the next
 * line, or HTTP_PARSE_ERROR.
 */
static int
http_request_line(char **pp, const char *end, struct http_request *req,
    int *status, const char **why)
{
	char		*p = *pp, *t;
	unsigned char	 c;

	req->method = p;
	while (http_tchar[(unsigned char)*p])
		p++;
	if (p == req->method || *p != ' ')
		return http_fail(status, why, 400, "invalid method");
	*p++ = '\0';

	t = p;
	while ((c = *p) > ' ' && c < 0x7f)
		p++;
	if (p == t)
		return http_fail(status, why, 400, "invalid request target");
	if (*p == '\r')
		return http_fail(status, why, 400, "missing HTTP version");
	if (*p != ' ')
		return http_fail(status, why, 400, "invalid request target");
	*p++ = '\0';
	if (http_target(req, t, p - 1 - t) == -1)
		return http_fail(status, why, 400, "invalid request target");

	if ((size_t)(end - p) < 10 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1') || p[8] != '\r' || p[9] != '\n')
		return http_fail(status, why, 400, "unsupported HTTP version");
	req->minor = p[7] - '0';
	*pp = p + 10;
	return HTTP_PARSE_DONE;
}

/*
 * What the fields of a parsed head say, checked and applied to req: Host,
 * framing (never two ways: that is how requests get smuggled),
 * expectations and keep-alive.  Returns HTTP_PARSE_DONE or
 * HTTP_PARSE_ERROR.
 */
static int
http_request_fields(struct http_request *req, const struct http_fields *f,
    int *status, const char **why)
{
	if (f->nhost > 1)
		return http_fail(status, why, 400, "more than one Host field");
	if (f->nhost == 0 && req->minor == 1)
		return http_fail(status, why, 400, "missing Host field");

	req->content_length = f->content_length;
	if (f->te) {
		/* HTTP/1.0 has no chunked: a 1.0 peer would misframe it. */
		if (req->minor == 0)
			return http_fail(status, why, 400,
			    "Transfer-Encoding in an HTTP/1.0 request");
		if (req->content_length != -1)
			return http_fail(status, why, 400,
			    "both Transfer-Encoding and Content-Length");
		if (f->te_chunked + f->te_other == 0)
			return http_fail(status, why, 400,
			    "empty Transfer-Encoding");
		if (f->te_chunked != 1 || f->te_other != 0)
			return http_fail(status, why, 501,
			    "unsupported Transfer-Encoding");
		req->chunked = 1;
	}

	if (f->expect_other)
		return http_fail(status, why, 417, "unsupported expectation");
	/* RFC 9110 §10.1.1: a 100-continue from HTTP/1.0 is ignored. */
	req->expect_continue = f->expect_continue && req->minor == 1;

	if (f->conn_close)
		req->keepalive = 0;
	else if (req->minor == 1)
		req->keepalive = 1;
	else
		req->keepalive = f->conn_keepalive;
	return HTTP_PARSE_DONE;
}

/*
 * Parse a request head from buf[0..len), which holds the start of a
 * connection's unread bytes.  Returns HTTP_PARSE_MORE until the head's
 * empty line has arrived (buf is left untouched), HTTP_PARSE_DONE with *req
 * filled in and strings NUL-terminated in place in buf, or
 * HTTP_PARSE_ERROR with *status the HTTP status to answer and *why a
 * static message; after an error buf may have been written to.
 */
int
http_parse_head(char *buf, size_t len, struct http_request *req,
    int *status, const char **why)
{
	struct http_fields	 f;
	enum http_field_err	 ferr;
	char			*p;
	size_t			 start, end;
	int			 rv;

	rv = http_find_head(buf, len, &start, &end, status, why);
	if (rv != HTTP_PARSE_DONE)
		return rv;

	req->method = req->target = NULL;
	req->path_len = 0;
	req->nhdr = 0;
	req->content_length = -1;
	req->chunked = 0;
	req->keepalive = 0;
	req->expect_continue = 0;

	p = buf + start;
	if ((rv = http_request_line(&p, buf + end, req, status, why)) !=
	    HTTP_PARSE_DONE)
		return rv;
	ferr = http_parse_fields(&p, req->hdr, HTTP_MAX_HEADERS, &req->nhdr,
	    &f);
	if (ferr != HTTP_FIELD_OK)
		return http_fail(status, why, ferr == HTTP_FIELD_TOO_MANY ?
		    431 : 400, http_field_why(ferr, 0));
	req->head_len = p - buf;
	return http_request_fields(req, &f, status, why);
}

/* The value of the first of n fields called name (any case), or NULL. */
const char *
http_lookup(const struct http_header *hdr, size_t n, const char *name)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcasecmp(hdr[i].name, name) == 0)
			return hdr[i].value;
	return NULL;
}

/* The first header field of a request called name (any case), or NULL. */
const char *
http_header(const struct http_request *req, const char *name)
{
	return http_lookup(req->hdr, req->nhdr, name);
}

/*
 * The value of parameter name in query q (what follows the '?'),
 * percent-decoded into out ('+' stays '+': a token may hold one, and
 * clients encode with encodeURIComponent).  Returns its length, or -1
 * when absent, malformed or too long for out (which is then wiped: it may
 * have held part of a secret).
 */
int
http_query_param(const char *q, const char *name, char *out, size_t len)
{
	const char	*p, *e;
	size_t		 nl = strlen(name), o;
	int		 hi, lo;

	if (len == 0 || q == NULL)
		return -1;
	for (p = q; *p != '\0'; p = *e == '\0' ? e : e + 1) {
		e = p + strcspn(p, "&");
		if ((size_t)(e - p) <= nl || strncmp(p, name, nl) != 0 ||
		    p[nl] != '=')
			continue;
		for (p += nl + 1, o = 0; p < e; p++) {
			if (o + 1 >= len)
				goto bad;
			if (*p == '%') {
				if (e - p < 3 ||
				    (hi = http_hexval((unsigned char)p[1])) ==
				    -1 ||
				    (lo = http_hexval((unsigned char)p[2])) ==
				    -1)
					goto bad;
				out[o++] = (char)(hi << 4 | lo);
				p += 2;
			} else
				out[o++] = *p;
		}
		out[o] = '\0';
		return (int)o;
	}
	return -1;
 bad:
	explicit_bzero(out, len);
	return -1;
}

/*
 * The token of an "Authorization: Bearer <token>" value (RFC 6750 2.1:
 * the scheme in any case, spaces, the token, nothing after it but
 * blanks), with its length in *len; NULL when the value is not that.
 */
const char *
http_bearer(const char *v, size_t *len)
{
	const char	*t;
	size_t		 n;

	if (v == NULL || strncasecmp(v, "Bearer", 6) != 0 ||
	    (v[6] != ' ' && v[6] != '\t'))
		return NULL;
	for (t = v + 6; *t == ' ' || *t == '\t'; t++)
		;
	n = strcspn(t, " \t");
	if (n == 0 || t[n + strspn(t + n, " \t")] != '\0')
		return NULL;
	*len = n;
	return t;
}

/* The value of a hex digit, or -1. */
int
http_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The reason phrase for a status line. */
const char *
http_reason(int status)
{
	switch (status) {
	case 100:	return "Continue";
	case 200:	return "OK";
	case 201:	return "Created";
	case 204:	return "No Content";
	case 206:	return "Partial Content";
	case 301:	return "Moved Permanently";
	case 302:	return "Found";
	case 304:	return "Not Modified";
	case 307:	return "Temporary Redirect";
	case 308:	return "Permanent Redirect";
	case 400:	return "Bad Request";
	case 401:	return "Unauthorized";
	case 403:	return "Forbidden";
	case 404:	return "Not Found";
	case 405:	return "Method Not Allowed";
	case 408:	return "Request Timeout";
	case 409:	return "Conflict";
	case 411:	return "Length Required";
	case 412:	return "Precondition Failed";
	case 413:	return "Content Too Large";
	case 414:	return "URI Too Long";
	case 415:	return "Unsupported Media Type";
	case 416:	return "Range Not Satisfiable";
	case 417:	return "Expectation Failed";
	case 422:	return "Unprocessable Content";
	case 429:	return "Too Many Requests";
	case 431:	return "Request Header Fields Too Large";
	case 499:	return "Client Closed Request";
	case 500:	return "Internal Server Error";
	case 501:	return "Not Implemented";
	case 502:	return "Bad Gateway";
	case 503:	return "Service Unavailable";
	case 504:	return "Gateway Timeout";
	case 505:	return "HTTP Version Not Supported";
	default:	return "Unknown";
	}
}

/*
 * The google.rpc.Code name that goes in an error body's "status", after
 * the HTTP mapping in google/rpc/code.proto.  Request-shape errors (411,
 * 413, 414, 431, ...) are the client's argument being wrong, so
 * INVALID_ARGUMENT; 412 and 417 are preconditions about the request.
 */
const char *
http_status_name(int status)
{
	switch (status) {
	case 400:
	case 405:
	case 411:
	case 413:
	case 414:
	case 415:
	case 422:
	case 431:
		return "INVALID_ARGUMENT";
	case 401:
		return "UNAUTHENTICATED";
	case 403:
		return "PERMISSION_DENIED";
	case 404:
		return "NOT_FOUND";
	case 408:
	case 504:
		return "DEADLINE_EXCEEDED";
	case 409:
		return "ABORTED";
	case 412:
	case 417:
		return "FAILED_PRECONDITION";
	case 416:
		return "OUT_OF_RANGE";
	case 429:
		return "RESOURCE_EXHAUSTED";
	case 499:
		return "CANCELLED";
	case 500:
		return "INTERNAL";
	case 501:
	case 505:
		return "UNIMPLEMENTED";
	case 502:
	case 503:
		return "UNAVAILABLE";
	default:
		if (status >= 200 && status < 300)
			return "OK";
		return "UNKNOWN";
	}
}

/* Append s[0..n) at *off in buf; -1 when it does not fit with a NUL. */
static int
http_put(char *buf, size_t len, size_t *off, const char *s, size_t n)
{
	if (n >= len - *off)
		return -1;
	memcpy(buf + *off, s, n);
	*off += n;
	return 0;
}

/*
 * Write Gemini's error shape, {"error":{"code":N,"message":"...",
 * "status":"..."}}, NUL-terminated, into buf.  The message is escaped for
 * JSON: it may quote a client's bytes.  Returns the length written without
 * the NUL, or -1 when buf is too small.
 */
int
http_error_body(char *buf, size_t len, int code, const char *message)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*m;
	char			 num[32], esc[6];
	size_t			 off = 0;
	int			 n;

	if (len == 0)
		return -1;
	if (message == NULL)
		message = "";
	n = snprintf(num, sizeof(num), "%d", code);
	if (n < 0 || (size_t)n >= sizeof(num))
		return -1;

	if (http_put(buf, len, &off, "{\"error\":{\"code\":", 17) == -1 ||
	    http_put(buf, len, &off, num, n) == -1 ||
	    http_put(buf, len, &off, ",\"message\":\"", 12) == -1)
		return -1;
	for (m = (const unsigned char *)message; *m != '\0'; m++) {
		if (*m == '"' || *m == '\\') {
			esc[0] = '\\';
			esc[1] = *m;
			n = 2;
		} else if (*m < 0x20 || *m == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*m >> 4];
			esc[5] = hex[*m & 0xf];
			n = 6;
		} else {
			esc[0] = *m;
			n = 1;
		}
		if (http_put(buf, len, &off, esc, n) == -1)
			return -1;
	}
	if (http_put(buf, len, &off, "\",\"status\":\"", 12) == -1 ||
	    http_put(buf, len, &off, http_status_name(code),
	    strlen(http_status_name(code))) == -1 ||
	    http_put(buf, len, &off, "\"}}", 3) == -1)
		return -1;
	buf[off] = '\0';
	return (int)off;
}
