/*
 * An upstream's answer, read off the connection: its head (interim 1xx
 * answers skipped), then its body in whatever framing the head chose
 * (a length, chunks, or the end of the connection), piece by piece.
 *
 * proxy.c and status.c call up_read_head() once a request has gone
 * (up_request, upstream.c), then up_read_body() until it returns 0.  Each
 * piece of the body is handed back as soon as it arrives, de-chunked,
 * because the caller relays a stream event by event; nothing here ever
 * holds a whole answer.  The head is parsed in place at the start of the
 * connection's buffer (uphead.c) and struct up_resp points into it until
 * the next request; a chunked body is decoded from the rest of the
 * buffer, other bodies are read straight into the caller's.  Every wait
 * is bounded by the caller's deadline; no lock is taken here.
 *
 * Any failure drops the connection (up_abandon) and is recorded with its
 * kind (upstream.h); an answer read whole keeps it for the next request
 * unless the answer said otherwise (up_finish).
 *
 * up_fetch() is the whole of a short exchange on a connection of its own
 * (admin.c's /api/test_key, probe.c's probes).
 */
#include <bsd/string.h>
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "http.h"
#include "upconn.h"
#include "upstream.h"

/*
 * The answer has been read whole: keep the connection for the next request
 * unless it ends here, or the upstream sent more than the answer.
 */
static void
up_finish(struct upstream *u)
{
	u->state = UP_S_DONE;
	if (u->close || u->rpos != u->rlen || u->framing == UP_BODY_EOF)
		up_drop(u, u->framing != UP_BODY_EOF);
	else
		u->keep = 1;
}

/* The answer cannot be read on: the connection goes.  Returns -1. */
static int
up_abandon(struct upstream *u)
{
	u->state = UP_S_IDLE;
	up_drop(u, 0);
	return -1;
}

/*
 * Why the head did not come whole (n: what up_recv said), recorded.
 * Closed before a byte of the answer: perhaps the upstream had closed the
 * kept-alive connection just before we sent (up_stale).  A timeout or
 * garbage is no such thing.
 */
static void
up_head_failed(struct upstream *u, ssize_t n, int interim, const char *why)
{
	int	 nothing = u->rlen == 0 && !interim;

	u->stale = u->reused && nothing && n != UP_TIMEOUT && n != UP_GONE;
	if (up_gave_up(u, (int)n, "waiting for the upstream's answer") == -1)
		return;
	if (nothing && n == UP_EOF)
		up_seterr(u, UP_ERR_CLOSED, "upstream closed the connection "
		    "before answering");
	else if (nothing)
		up_seterr(u, UP_ERR_CLOSED, "upstream closed the connection "
		    "before answering (%s)", why);
	else if (n == UP_EOF)
		up_seterr(u, UP_ERR_CLOSED, "malformed answer from upstream: "
		    "connection closed in the head");
	else
		up_seterr(u, UP_ERR_IO, "reading the upstream's answer: %s",
		    why);
}

/*
 * The head r, buf[0..end), is read: set up the body's framing.  Body
 * bytes that came with the head stay buffered after it.
 */
static void
up_body_start(struct upstream *u, const struct up_resp *r, size_t end)
{
	u->head_end = u->rpos = end;
	u->close = r->close;
	u->state = UP_S_BODY;
	if (r->no_body) {
		u->framing = UP_BODY_NONE;
		up_finish(u);
	} else if (r->chunked) {
		u->framing = UP_BODY_CHUNKED;
		memset(&u->ch, 0, sizeof(u->ch));
	} else if (r->content_length >= 0) {
		u->framing = UP_BODY_LENGTH;
		u->remain = r->content_length;
		if (u->remain == 0)
			up_finish(u);
	} else
		u->framing = UP_BODY_EOF;
}

/*
 * Read the answer's head into r, skipping interim (1xx) answers.
 * head_request (UP_HEAD_*): UP_HEAD_REQ, the request was a HEAD, so no
 * body follows whatever the head says; UP_HEAD_UPGRADE, it asked for a
 * WebSocket, so a 101 is the answer (and the connection is uplink.c's).  Returns 0, or -1 with the failure recorded, its words in err
 * too (and the connection dropped).
 */
int
up_read_head(struct upstream *u, struct up_resp *r, int head_request,
    int64_t deadline, char *err, size_t errlen)
{
	char		 why[UP_ERR_MAX];
	const char	*bad;
	size_t		 scan = 0, ls = 0, end;
	ssize_t		 n;
	int		 rv, interim = 0;

	if (u->state != UP_S_SENT || u->ssl == NULL) {
		up_seterr(u, UP_ERR_USAGE,
		    "no request is waiting for an answer");
		return up_copy_err(u, err, errlen);
	}
	for (;;) {
		rv = up_scan_head(u->buf, u->rlen, &scan, &ls, &end, &bad);
		if (rv == 1)
			rv = up_parse_head(u->buf, end, r, head_request,
			    &bad) == 0 ? 1 : -1;
		if (rv == -1) {
			up_seterr(u, UP_ERR_PROTOCOL, "malformed answer from "
			    "upstream: %s", bad);
			break;
		}
		if (rv == 1 && r->status == 101) {
			/* Asked for (UP_HEAD_UPGRADE): what follows the
			 * head is the new protocol's, read by uplink.c. */
			u->head_end = u->rpos = end;
			u->state = UP_S_UPGRADED;
			return 0;
		}
		if (rv == 1 && r->status >= 200) {
			up_body_start(u, r, end);
			return 0;
		}
		if (rv == 1) {
			/* 100 Continue and the like: the answer follows. */
			interim = 1;
			memmove(u->buf, u->buf + end, u->rlen - end);
			u->rlen -= end;
			scan = ls = 0;
			continue;
		}
		/* Nothing yet, right after sending: a read now would only
		 * say EAGAIN (an answer takes the upstream a while), so wait
		 * first.  Whatever the wait says, up_recv() reads and finds
		 * it out again. */
		if (u->rlen == 0 && !interim && !SSL_has_pending(u->ssl))
			(void)up_wait(u, u->fd, POLLIN, deadline);
		n = up_recv(u, u->buf + u->rlen, sizeof(u->buf) - u->rlen,
		    deadline, why, sizeof(why));
		if (n <= 0) {
			up_head_failed(u, n, interim, why);
			break;
		}
		u->rlen += n;
	}
	(void)up_abandon(u);
	return up_copy_err(u, err, errlen);
}

/*
 * Why a read of the body got nothing (got: what up_recv said), recorded;
 * the connection goes.  Returns -1.
 */
static ssize_t
up_body_failed(struct upstream *u, ssize_t got, const char *why)
{
	if (up_gave_up(u, (int)got, "waiting for the rest of the upstream's "
	    "answer") == -1)
		return up_abandon(u);
	if (got == UP_EOF)
		up_seterr(u, UP_ERR_CLOSED, "upstream closed the connection in "
		    "the middle of its answer");
	else
		up_seterr(u, UP_ERR_IO, "reading the upstream's answer: %s",
		    why);
	return up_abandon(u);
}

/*
 * Hand over what is buffered at rpos (some is): de-chunked, or as it is
 * up to the length due.  Returns the count, 0 when only chunk framing was
 * there (read more, unless that was the end: up_body_done), or -1 for a
 * malformed chunk (the connection dropped).
 */
static ssize_t
up_body_buffered(struct upstream *u, char *buf, size_t len)
{
	const char	*bad;
	size_t		 avail = u->rlen - u->rpos, n, used, out;
	int		 rv;

	n = avail < len ? avail : len;
	if (u->framing == UP_BODY_CHUNKED) {
		rv = http_chunked_decode(&u->ch, u->buf + u->rpos, n, &used,
		    buf, &out, &bad);
		u->rpos += used;
		if (rv == HTTP_PARSE_ERROR) {
			up_seterr(u, UP_ERR_PROTOCOL, "malformed answer from "
			    "upstream: %s", bad);
			return up_abandon(u);
		}
		if (rv == HTTP_PARSE_DONE)
			up_finish(u);
		return out;
	}
	if (u->framing == UP_BODY_LENGTH && n > u->remain)
		n = u->remain;
	memcpy(buf, u->buf + u->rpos, n);
	u->rpos += n;
	if (u->framing == UP_BODY_LENGTH && (u->remain -= n) == 0)
		up_finish(u);
	return n;
}

/*
 * Nothing buffered, and the body is framed by its length or by the end of
 * the connection: read straight into buf.  Returns as up_read_body().
 */
static ssize_t
up_body_direct(struct upstream *u, char *buf, size_t len, int64_t deadline)
{
	char	 why[UP_ERR_MAX];
	ssize_t	 got;

	if (u->framing == UP_BODY_LENGTH && len > u->remain)
		len = u->remain;
	got = up_recv(u, buf, len, deadline, why, sizeof(why));
	if (got > 0) {
		if (u->framing == UP_BODY_LENGTH && (u->remain -= got) == 0)
			up_finish(u);
		return got;
	}
	if (got == UP_EOF && u->framing == UP_BODY_EOF) {
		up_finish(u);
		return 0;
	}
	return up_body_failed(u, got, why);
}

/*
 * The next piece of the answer's body, de-chunked, into buf[0..len): as
 * soon as any byte is there, never waiting to fill buf.  Returns the
 * count, 0 at the end of the body, or -1 on a timeout, a broken connection
 * or a malformed body (the connection is dropped; up_failure() and
 * up_error() say why).
 */
ssize_t
up_read_body(struct upstream *u, char *buf, size_t len, int64_t deadline)
{
	char	 why[UP_ERR_MAX];
	ssize_t	 got;

	if (u->state == UP_S_DONE)
		return 0;
	if (u->state != UP_S_BODY || u->ssl == NULL)
		return up_seterr(u, UP_ERR_USAGE, "no answer body to read");
	if (len == 0) {
		up_seterr(u, UP_ERR_USAGE, "no room to read the body into");
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		if (u->rpos < u->rlen) {
			got = up_body_buffered(u, buf, len);
			if (got != 0 || u->state == UP_S_DONE)
				return got;
			continue;
		}
		/* Nothing buffered: the body area is free again. */
		u->rpos = u->rlen = u->head_end;
		if (u->framing != UP_BODY_CHUNKED)
			return up_body_direct(u, buf, len, deadline);
		got = up_recv(u, u->buf + u->rlen, sizeof(u->buf) - u->rlen,
		    deadline, why, sizeof(why));
		if (got <= 0)
			return up_body_failed(u, got, why);
		u->rlen += got;
	}
}

/*
 * One short exchange on a connection of its own, for the operator's and
 * the prober's checks of a key: send head (and body), read the answer's
 * status and the start of its body (at most cap - 1 bytes, NUL-ended;
 * the status is what matters), close.  0, or -1 with err.
 */
int
up_fetch(const struct config *cfg, const char *head, size_t hlen,
    const char *body, size_t blen, int64_t deadline, int *status,
    char *out, size_t cap, size_t *olen, char *err, size_t errlen)
{
	struct upstream	*u;
	struct up_resp	 resp;
	ssize_t		 r;

	*olen = 0;
	out[0] = '\0';
	if ((u = up_new(cfg)) == NULL) {
		(void)strlcpy(err, "out of memory", errlen);
		return -1;
	}
	if (up_request(u, head, hlen, body, blen, deadline, err,
	    errlen) == -1 || up_read_head(u, &resp, 0, deadline, err,
	    errlen) == -1) {
		up_free(u);
		return -1;
	}
	*status = resp.status;
	while (*olen < cap - 1 && !resp.no_body && !up_body_done(u)) {
		if ((r = up_read_body(u, out + *olen, cap - 1 - *olen,
		    deadline)) <= 0)
			break;
		*olen += (size_t)r;
	}
	out[*olen] = '\0';
	up_free(u);
	return 0;
}

/* Has the answer been read to its end? */
int
up_body_done(const struct upstream *u)
{
	return u->state == UP_S_DONE;
}

/*
 * Will up_read_body hand back a piece of the body, or its end, at once,
 * from what came with the head?  Then the caller sends its head and that
 * piece in one write.  For right after up_read_head; a wrong "no" only
 * costs a write more.  Chunked: a whole size line, not of the last chunk,
 * and a byte of its data.
 */
int
up_body_ready(const struct upstream *u)
{
	const char	*p, *end;
	uint64_t	 size = 0;
	int		 digits = 0, c;

	if (u->state == UP_S_DONE)
		return 1;
	if (u->state != UP_S_BODY || u->ssl == NULL)
		return 0;
	if (u->framing != UP_BODY_CHUNKED)
		return u->rpos < u->rlen || SSL_pending(u->ssl) > 0;
	if (u->rpos != u->head_end)
		return 0;
	p = u->buf + u->rpos;
	end = u->buf + u->rlen;
	for (; p < end && digits < 15; p++, digits++) {
		if ((c = http_hexval((unsigned char)*p)) == -1)
			break;
		size = size * 16 + c;
	}
	if (digits == 0 || size == 0)
		return 0;
	p = memchr(p, '\n', end - p);
	return p != NULL && p + 1 < end;
}

/*
 * Could up_read_body return without the socket becoming readable?  Bytes
 * may wait in our buffer or inside OpenSSL while poll() on up_fd() shows
 * nothing: a caller that polls must ask this first.
 */
int
up_pending(const struct upstream *u)
{
	if (u->state == UP_S_DONE)
		return 1;
	if (u->state != UP_S_BODY || u->ssl == NULL)
		return 0;
	return u->rpos < u->rlen || SSL_has_pending(u->ssl);
}
