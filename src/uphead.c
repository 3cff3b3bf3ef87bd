/*
 * The head of an upstream's answer: its end found as the bytes arrive,
 * then its status line, header fields and framing parsed in place.
 *
 * upread.c calls it on the upstream's buffer; the fuzz target
 * tests/fuzz/fuzz_uphead.c calls it on anything.  It does no I/O, keeps
 * no state and takes no lock.  The header section is read by http.c's
 * pieces (http_head_scan, http_parse_fields), the very ones that read a
 * client's request, so that both sides of the proxy agree on what a
 * field line is; what differs is the first line and the rules after it.
 *
 * As strict as the request parser, for the same reason: an answer that
 * two parsers could frame two ways (Transfer-Encoding with Content-Length,
 * two different lengths, chunked in HTTP/1.0) is refused, never guessed
 * at, so that no answer can be smuggled into the next one.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"
#include "upstream.h"

/*
 * Look for the end of the head in buf[0..len), going on from *scan (with
 * *ls the start of the current line; both 0 at first).  Returns 1 with
 * *end just past the empty line, 0 when more is needed, or -1 with *why
 * set.
 */
int
up_scan_head(const char *buf, size_t len, size_t *scan, size_t *ls,
    size_t *end, const char **why)
{
	int	 rv;

	rv = http_head_scan(buf, len < UP_MAX_HEAD ? len : UP_MAX_HEAD, scan,
	    ls, end);
	if (rv == HTTP_PARSE_DONE)
		return 1;
	if (rv == HTTP_PARSE_ERROR) {
		*why = "bare LF in the head";
		return -1;
	}
	if (len >= UP_MAX_HEAD) {
		*why = "head too large";
		return -1;
	}
	return 0;
}

/*
 * status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF, at the
 * start of buf[0..end).  Returns where the header section starts, or NULL
 * with *why set.
 */
static char *
up_status_line(char *buf, size_t end, struct up_resp *r, const char **why)
{
	char		*p = buf;
	unsigned char	 c;

	if (end < 16 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
		*why = "invalid status line";
		return NULL;
	}
	r->minor = p[7] - '0';
	p += 9;
	if (p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
	    p[2] < '0' || p[2] > '9') {
		*why = "invalid status code";
		return NULL;
	}
	r->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	p += 3;
	/* Some servers leave out the space before an empty reason. */
	if (*p == ' ') {
		for (p++; (c = *p) != '\r'; p++)
			if ((c < ' ' && c != '\t') || c == 0x7f) {
				*why = "control character in the status line";
				return NULL;
			}
	}
	if (p[0] != '\r' || p[1] != '\n') {
		*why = "invalid status line";
		return NULL;
	}
	return p + 2;
}

/*
 * How the answer's body is framed and whether the connection outlives
 * it, from what its fields said.  Framing two ways is how answers get
 * smuggled: refused, not guessed.  Returns 0, or -1 with *why set.
 */
static int
up_framing(struct up_resp *r, const struct http_fields *f, int head_request,
    const char **why)
{
	if (r->status == 101) {
		if (!(head_request & UP_HEAD_UPGRADE)) {
			*why = "unexpected 101 Switching Protocols";
			return -1;
		}
		/* The connection now carries another protocol. */
		r->no_body = 1;
		r->close = 0;
		return 0;
	}
	r->content_length = f->content_length;
	if (f->te) {
		if (r->minor == 0) {
			*why = "Transfer-Encoding in an HTTP/1.0 answer";
			return -1;
		}
		if (r->content_length != -1) {
			*why = "both Transfer-Encoding and Content-Length";
			return -1;
		}
		if (f->te_chunked != 1 || f->te_other != 0) {
			*why = "unsupported Transfer-Encoding";
			return -1;
		}
		r->chunked = 1;
	}
	r->no_body = (head_request & UP_HEAD_REQ) || r->status < 200 || r->status == 204 ||
	    r->status == 304;
	r->close = f->conn_close || (r->minor == 0 && !f->conn_keepalive) ||
	    (!r->no_body && !r->chunked && r->content_length == -1);
	return 0;
}

/*
 * Parse an answer head in buf[0..end), which up_scan_head() found whole
 * (it ends in CRLFCRLF, every LF after a CR).  Names and values are
 * NUL-terminated in place, and r points into buf.  head_request: the
 * request was a HEAD, so no body follows whatever the head says.
 * Returns 0, or -1 with *why set.
 */
int
up_parse_head(char *buf, size_t end, struct up_resp *r, int head_request,
    const char **why)
{
	struct http_fields	 f;
	enum http_field_err	 ferr;
	char			*p;

	r->nhdr = 0;
	r->content_length = -1;
	r->chunked = r->close = r->no_body = 0;

	if ((p = up_status_line(buf, end, r, why)) == NULL)
		return -1;
	ferr = http_parse_fields(&p, r->hdr, UP_MAX_HEADERS, &r->nhdr, &f);
	if (ferr != HTTP_FIELD_OK) {
		*why = http_field_why(ferr, 1);
		return -1;
	}
	return up_framing(r, &f, head_request, why);
}

/* The first header field of the answer called name (any case), or NULL. */
const char *
up_header(const struct up_resp *r, const char *name)
{
	return http_lookup(r->hdr, r->nhdr, name);
}
