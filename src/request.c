/*
 * One request read off a client connection: its head (parsed by http.c
 * once its blank line is here), then, once route.c has admitted it, its
 * body, whole, de-chunked if need be.
 *
 * worker.c calls rq_read() for each request of a kept-alive connection;
 * what follows a request (pipelining) stays in the connection's buffer
 * for the next call.  A request refused before its body (a wrong route or
 * credentials, 413) never has its body read: the connection closes after
 * the answer instead (a lingering close, worker.c).  Reads are bounded by
 * client_timeout_s (408); a client still owing its head may be given up
 * for a queued connection when the pool is full (conn.c).  The
 * scoreboard says what the worker reads; no lock is taken here.
 */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <linux/sockios.h>

#include <bsd/string.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "looper.h"
#include "route.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

/* Room in c->body for more bytes, and a NUL after them.  0 or -1. */
static int
rq_body_reserve(struct conn *c, size_t more)
{
	size_t	 want = c->body_len + more, ncap;
	char	*nb;

	if (want <= c->body_cap)
		return 0;
	ncap = c->body_cap ? c->body_cap : 16384;
	while (ncap < want)
		ncap *= 2;
	if ((nb = realloc(c->body, ncap + 1)) == NULL)
		return -1;
	c->body = nb;
	c->body_cap = ncap;
	return 0;
}

/*
 * A body of Content-Length bytes: what came with the head, then the rest
 * straight into c->body.  Returns 0, or -1 when the connection is to be
 * closed (408 or 500 sent, or the client gone).
 */
static int
rq_body_length(struct conn *c)
{
	int64_t	 cl = c->req.content_length;
	size_t	 avail, take;
	ssize_t	 n;
	int	 w;

	if (rq_body_reserve(c, (size_t)cl) == -1) {
		conn_error(c, 500, "out of memory", NULL);
		return -1;
	}
	avail = c->len - c->req.head_len;
	take = avail < (size_t)cl ? avail : (size_t)cl;
	memcpy(c->body, c->buf + c->req.head_len, take);
	c->body_len = take;
	c->next = c->req.head_len + take;
	while (c->body_len < (size_t)cl) {
		n = recv(c->fd, c->body + c->body_len, cl - c->body_len, 0);
		if (n > 0) {
			c->body_len += n;
			continue;
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		w = conn_wait(c->fd, POLLIN, c->deadline, 0);
		if (w == 0) {
			c->close = 1;
			conn_error(c, 408, "the request body did not arrive "
			    "in time", NULL);
		}
		if (w != 1)
			return -1;
	}
	return 0;
}

/*
 * A chunked body, decoded into c->body as it comes, at most
 * max_body_bytes of it.  Returns 0, or -1 when the connection is to be
 * closed (400, 408, 413 or 500 sent, or the client gone).
 */
static int
rq_body_chunked(struct conn *c)
{
	struct http_chunked	 ch;
	const char		*why = NULL;
	size_t			 pos = c->req.head_len, used, out;
	ssize_t			 n;
	int			 rv, to;

	memset(&ch, 0, sizeof(ch));
	for (;;) {
		if (pos < c->len) {
			if (rq_body_reserve(c, c->len - pos) == -1) {
				conn_error(c, 500, "out of memory", NULL);
				return -1;
			}
			rv = http_chunked_decode(&ch, c->buf + pos,
			    c->len - pos, &used, c->body + c->body_len, &out,
			    &why);
			pos += used;
			c->body_len += out;
			if (rv == HTTP_PARSE_ERROR) {
				c->close = 1;
				conn_error(c, 400, why != NULL ? why :
				    "malformed chunked body", NULL);
				return -1;
			}
			if ((int64_t)c->body_len > looper.cfg->max_body_bytes) {
				c->close = 1;
				conn_error(c, 413, "request body too large",
				    NULL);
				return -1;
			}
			if (rv == HTTP_PARSE_DONE) {
				c->next = pos;
				return 0;
			}
		}
		/* Raw chunk bytes are decoded: reuse their room. */
		c->len = pos = c->req.head_len;
		n = conn_fill(c, c->deadline, 0, 0, &to);
		if (n <= 0) {
			if (to) {
				c->close = 1;
				conn_error(c, 408, "the request body did not "
				    "arrive in time", NULL);
			}
			return -1;
		}
	}
}

/*
 * The client is given up for a queued connection while it still owes its
 * request head: a 408, like a timeout, unless earlier answers still sit
 * unread in the socket (a client that does not read them could make the
 * worker wait on its write, the very thing giving up avoids).
 */
static void
rq_give_up(struct conn *c)
{
	int	 unsent = 0;

	c->close = 1;
	log_debug("peer=%s given up with %zu bytes of a request head for a "
	    "queued connection", c->peer, c->len);
	if (ioctl(c->fd, SIOCOUTQ, &unsent) == 0 && unsent == 0)
		conn_error(c, 408, "the request head did not arrive in time "
		    "while every worker was busy", NULL);
}

/* "METHOD /path" for the scoreboard, with no key or token shown. */
void
rq_board_what(const struct conn *c, char *what, size_t len)
{
	char	 path[64];

	route_log_path(c->req.target, path, sizeof(path));
	snprintf(what, len, "%.15s %s", c->req.method, path);
}

/*
 * Is buf[0..len) worth parsing, now that buf[from..len) came in?  Yes once
 * the empty line that ends a head is there, and at the first bare LF: the
 * parser refuses it at once, so a client that ends lines with LF alone
 * ("...\n\r\n" is no CRLFCRLF) hears 400 now instead of 408 after
 * client_timeout_s, its worker held all that time.
 */
static int
rq_head_ready(const char *buf, size_t from, size_t len)
{
	const char	*p = buf + from, *end = buf + len;

	while ((p = memchr(p, '\n', end - p)) != NULL) {
		if (p == buf || p[-1] != '\r')
			return 1;
		if (p - buf >= 3 && p[-2] == '\n' && p[-3] == '\r')
			return 1;
		p++;
	}
	return 0;
}

/*
 * A request refused once its head was in (route_admit, 413) has been
 * answered; its body is never read.  What of it arrived with the head is
 * wiped (it may hold a key) and dropped, and the connection closes after
 * a lingering close (worker.c: body_unread stays set).  Returns
 * rq_read's verdict: 1 (answered, the connection goes on) for a request
 * without a body, else -1.
 */
static int
rq_refuse_body(struct conn *c)
{
	c->next = c->req.head_len;
	if (c->req.content_length <= 0 && !c->req.chunked)
		return 1;
	explicit_bzero(c->buf + c->req.head_len, c->len - c->req.head_len);
	c->len = c->next = c->req.head_len;
	c->close = 1;	/* conn_respond() said so in its answer */
	return -1;
}

/* A new request on the connection: nothing of the last one is left. */
static void
rq_reset(struct conn *c)
{
	c->status = 0;
	c->sent_head = 0;
	c->body_unread = 0;
	c->bytes_out = 0;
	c->body_len = 0;
	c->log[0] = '\0';
	c->route = NULL;
	c->next = 0;
	memset(&c->req, 0, sizeof(c->req));
}

/*
 * Wait for the request's first byte: an idle kept-alive connection may be
 * dropped at any time, and is when the worker must stop (first: the
 * connection is new, and owes a request within client_timeout_s).
 * Returns 0, or -1 when the connection is to be closed.
 */
static int
rq_first_byte(struct conn *c, int first)
{
	const struct config	*cfg = looper.cfg;
	int64_t			 idle;
	ssize_t			 n;
	int			 to;

	if (c->len > 0)
		return 0;	/* it came with the last request */
	idle = first ? cfg->client_timeout_s : cfg->keepalive_timeout_s;
	n = conn_fill(c, mono_ms() + idle * 1000, !first, 1, &to);
	if (n > 0)
		return 0;
	if (to == CONN_FILL_YIELD)
		log_debug("peer=%s given up before its request for a queued "
		    "connection", c->peer);
	return -1;
}

/*
 * Read the request head by c->deadline, parsing it only once its blank
 * line is here (cheap, and the parser sees each head once).  Returns 0
 * with c->req set, or -1 when the connection is to be closed (any answer
 * already sent: 400 and the like, or 408).
 */
static int
rq_head(struct conn *c)
{
	const char	*why = NULL;
	size_t		 scan = 0;
	ssize_t		 n;
	int		 rv, status = 400, to;

	for (;;) {
		if (rq_head_ready(c->buf, scan, c->len) ||
		    c->len >= HTTP_MAX_HEAD) {
			rv = http_parse_head(c->buf, c->len, &c->req, &status,
			    &why);
			if (rv == HTTP_PARSE_DONE)
				return 0;
			if (rv == HTTP_PARSE_ERROR) {
				c->close = 1;
				memset(&c->req, 0, sizeof(c->req));
				conn_error(c, status, why != NULL ? why :
				    "malformed request", NULL);
				return -1;
			}
		}
		scan = c->len;	/* rq_head_ready() looks back from each LF */
		n = conn_fill(c, c->deadline, 0, 1, &to);
		if (n <= 0) {
			if (to == CONN_FILL_TIMEOUT) {
				c->close = 1;
				conn_error(c, 408, "the request did not arrive "
				    "in time", NULL);
			} else if (to == CONN_FILL_YIELD)
				rq_give_up(c);
			return -1;
		}
	}
}

/*
 * The head is in: route, credentials and method are checked before the
 * body, so that a body nobody will serve is never read, nor asked for
 * with 100 Continue.  Then the body.  Returns as rq_read().
 */
static int
rq_admit_body(struct conn *c)
{
	static const char	 cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
	int			 rv;

	c->body_unread = c->req.content_length > 0 || c->req.chunked;
	if (route_admit(c) == -1)
		return rq_refuse_body(c);
	if (c->req.content_length > looper.cfg->max_body_bytes) {
		conn_error(c, 413, "request body too large", NULL);
		return rq_refuse_body(c);
	}
	if (c->req.expect_continue && (c->req.chunked ||
	    c->req.content_length > 0) && c->len == c->req.head_len) {
		if (conn_write(c, cont, sizeof(cont) - 1) == -1)
			return -1;
		c->bytes_out = 0;
	}
	if (c->req.chunked)
		rv = rq_body_chunked(c);
	else if (c->req.content_length > 0)
		rv = rq_body_length(c);
	else {
		c->next = c->req.head_len;
		rv = 0;
	}
	c->body_unread = 0;
	return rv;
}

/*
 * Read one request: head, then (once route_admit() has let it through)
 * its body.  first: the connection's first request.  Returns 0 with
 * c->req and c->body set, 1 when the request has been answered already
 * (refused before its body), or -1 when the connection is to be closed
 * (any answer already sent).
 */
int
rq_read(struct conn *c, int first)
{
	char	 what[96];

	rq_reset(c);
	if (rq_first_byte(c, first) == -1)
		return -1;
	board_set(looper.shm, looper.slot, SHM_W_READING, NULL);
	c->started = mono_ms();
	c->deadline = c->started +
	    (int64_t)looper.cfg->client_timeout_s * 1000;
	if (rq_head(c) == -1)
		return -1;
	/* Named on the board: a request in its body is not given up. */
	rq_board_what(c, what, sizeof(what));
	board_set(looper.shm, looper.slot, SHM_W_READING, what);
	if (!c->req.keepalive)
		c->close = 1;
	return rq_admit_body(c);
}
