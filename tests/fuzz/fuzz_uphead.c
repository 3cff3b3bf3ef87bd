/*
 * Fuzz target: the upstream answer's head, src/uphead.c.
 *
 * The input is what an upstream sends on a connection.  up_scan_head()
 * looks for the end of the head the way upread.c does, with the bytes
 * given whole, byte by byte and in two pieces split where the input says:
 * every way must find the same end or the same fault.  A head it finds is
 * parsed by up_parse_head() from an exactly sized copy (so that ASan sees
 * a read past its end), as the answer to a HEAD request or not, as the
 * input says; after an interim (1xx) answer the next head is read.  A head it accepts holds no bare CR or LF and no control
 * byte, its fields point inside it and are tokens and clean values, and
 * its framing is never ambiguous: chunked or a length or neither, never
 * chunked in HTTP/1.0, no body where none may come, and a close when the
 * body runs to the end of the connection.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "http.h"
#include "upstream.h"

/* RFC 9110 tchar, the bytes of a field name. */
#define TCHARS	"!#$%&'*+-.^_`|~0123456789" \
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

struct scan_result {
	int		 rv;
	size_t		 end;
	const char	*why;
};

/* Scan data[0..len) fed in pieces of step bytes (0: whole, or cut). */
static void
scan_pieces(const uint8_t *data, size_t len, size_t step, size_t cut,
    struct scan_result *r)
{
	const char	*buf = (const char *)data;
	size_t		 scan = 0, ls = 0, have;

	r->why = NULL;
	r->end = 0;
	have = step != 0 ? 0 : cut;
	for (;;) {
		if (step != 0)
			have = have + step < len ? have + step : len;
		r->rv = up_scan_head(buf, have, &scan, &ls, &r->end, &r->why);
		FUZZ_CHECK(r->rv >= -1 && r->rv <= 1, "rv %d", r->rv);
		if (r->rv != 0 || have == len)
			return;
		FUZZ_CHECK(scan == have, "more wanted but scanned %zu of %zu",
		    scan, have);
		if (step == 0)
			have = len;
	}
}

static void
check_scan(const uint8_t *data, size_t len, size_t cut,
    struct scan_result *whole)
{
	struct scan_result	 r;
	size_t			 i;

	scan_pieces(data, len, 0, len, whole);
	if (whole->rv == -1)
		FUZZ_CHECK(whole->why != NULL && whole->why[0] != '\0',
		    "no reason");
	if (whole->rv == 0)
		FUZZ_CHECK(len < UP_MAX_HEAD, "more wanted at %zu bytes", len);
	if (whole->rv == 1) {
		FUZZ_CHECK(whole->end >= 2 && whole->end <= len &&
		    whole->end <= UP_MAX_HEAD, "end %zu of %zu", whole->end,
		    len);
		/* An empty first line is a head of its own (refused). */
		FUZZ_CHECK(whole->end == 2 ? memcmp(data, "\r\n", 2) == 0 :
		    memcmp(data + whole->end - 4, "\r\n\r\n", 4) == 0,
		    "head of %zu bytes does not end in CRLFCRLF", whole->end);
		for (i = 0; i < whole->end; i++)
			FUZZ_CHECK(data[i] != '\n' || (i > 0 &&
			    data[i - 1] == '\r'), "bare LF at %zu", i);
	}

	scan_pieces(data, len, 1, 0, &r);
	FUZZ_CHECK(r.rv == whole->rv && (r.rv != 1 || r.end == whole->end),
	    "byte by byte: rv %d end %zu, whole rv %d end %zu", r.rv, r.end,
	    whole->rv, whole->end);
	scan_pieces(data, len, 0, cut, &r);
	FUZZ_CHECK(r.rv == whole->rv && (r.rv != 1 || r.end == whole->end),
	    "split at %zu: rv %d end %zu, whole rv %d end %zu", cut, r.rv,
	    r.end, whole->rv, whole->end);
}

static void
check_fields(const struct up_resp *r, const char *buf, size_t end)
{
	const char	*n, *v;
	size_t		 i;
	int		 cl = 0, te = 0;

	FUZZ_CHECK(r->nhdr <= UP_MAX_HEADERS, "nhdr %zu", r->nhdr);
	for (i = 0; i < r->nhdr; i++) {
		n = r->hdr[i].name;
		v = r->hdr[i].value;
		/* Both point into the head, the value at its CR at most. */
		FUZZ_CHECK(n >= buf && n < buf + end && v >= n &&
		    v < buf + end, "header %zu outside the head", i);
		FUZZ_CHECK(n[0] != '\0' && strspn(n, TCHARS) == strlen(n),
		    "header %zu name is not a token", i);
		FUZZ_CHECK(strpbrk(v, "\r\n") == NULL,
		    "CR or LF in a header value");
		if (strcasecmp(n, "content-length") == 0)
			cl = 1;
		if (strcasecmp(n, "transfer-encoding") == 0)
			te = 1;
	}
	FUZZ_CHECK(cl == (r->content_length != -1), "Content-Length lost");
	FUZZ_CHECK(cl == (up_header(r, "Content-Length") != NULL),
	    "up_header does not find Content-Length");
	FUZZ_CHECK(te == r->chunked, "Transfer-Encoding not chunked");
}

static void
check_parsed(const struct up_resp *r, const uint8_t *data, const char *buf,
    size_t end, int head_request)
{
	size_t	 i;

	for (i = 0; i < end; i++) {
		FUZZ_CHECK(data[i] != '\r' || (i + 1 < end &&
		    data[i + 1] == '\n'), "bare CR at %zu accepted", i);
		FUZZ_CHECK(data[i] >= ' ' || data[i] == '\t' ||
		    data[i] == '\r' || data[i] == '\n',
		    "control byte 0x%02x at %zu accepted", data[i], i);
		FUZZ_CHECK(data[i] != 0x7f, "DEL at %zu accepted", i);
	}
	FUZZ_CHECK(r->status >= 100 && r->status <= 599 && r->status != 101,
	    "status %d", r->status);
	FUZZ_CHECK(r->minor == 0 || r->minor == 1, "minor %d", r->minor);
	check_fields(r, buf, end);
	/* The framing a smuggler would play with is never ambiguous. */
	FUZZ_CHECK(r->content_length >= -1, "content_length %lld",
	    (long long)r->content_length);
	FUZZ_CHECK(!(r->chunked && r->content_length != -1),
	    "both chunked and a length");
	FUZZ_CHECK(!r->chunked || r->minor == 1, "chunked in HTTP/1.0");
	FUZZ_CHECK(r->no_body == (head_request || r->status < 200 ||
	    r->status == 204 || r->status == 304), "no_body %d for %d%s",
	    r->no_body, r->status, head_request ? " to HEAD" : "");
	FUZZ_CHECK(r->no_body || r->chunked || r->content_length != -1 ||
	    r->close, "a body to the end of a connection that stays open");
}

/*
 * One head at data[0..len): scanned, and parsed when found.  Returns how
 * many bytes an interim (1xx) answer took, after which the next head
 * follows, else 0.
 */
static size_t
check_head(const uint8_t *data, size_t len, size_t cut, int head_request)
{
	struct scan_result	 whole;
	static struct up_resp	 r;
	const char		*why = NULL;
	char			*buf;
	size_t			 next = 0;
	int			 rv;

	check_scan(data, len, cut, &whole);
	if (whole.rv != 1)
		return 0;
	if ((buf = malloc(whole.end)) == NULL)
		abort();
	memcpy(buf, data, whole.end);
	rv = up_parse_head(buf, whole.end, &r, head_request, &why);
	FUZZ_CHECK(rv == 0 || rv == -1, "rv %d", rv);
	if (rv == -1)
		FUZZ_CHECK(why != NULL && why[0] != '\0', "no reason");
	else {
		check_parsed(&r, data, buf, whole.end, head_request);
		if (r.status < 200)
			next = whole.end;
	}
	free(buf);
	return next;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	size_t	 off = 0, n, cut;
	int	 head_request;

	/* A split point and a HEAD flag that depend on the input but not on
	 * its start. */
	cut = len > 0 ? (data[len - 1] * 257u + len) % (len + 1) : 0;
	head_request = len > 0 && (data[len - 1] & 0x80) != 0;
	/* Interim answers (100 Continue) are skipped as upread.c does: the
	 * next head starts right after. */
	while ((n = check_head(data + off, len - off, cut % (len - off + 1),
	    head_request)) > 0)
		off += n;
	return 0;
}
