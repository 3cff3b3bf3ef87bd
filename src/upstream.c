/*
 * The upstream: one kept-alive TLS connection per worker to the Gemini API
 * (or whatever "upstream" names), and the requests sent over it.
 *
 * proxy.c drives it, one request at a time (status.c's key test too, on a
 * connection of its own): up_request() reuses the connection, or makes a
 * new one (the name looked up by resolve.c, each address tried in turn,
 * the TLS handshake by tls.c), and sends; upread.c then reads the answer
 * off it.  Sockets are non-blocking; every wait is a poll() bounded by the
 * caller's absolute monotonic deadline, and watches the client's socket
 * too (up_watch), so that a client that leaves ends the wait at once.  No
 * lock is taken here, and nothing here may be called under one.
 *
 * One buffer per upstream, allocated with it (struct upstream, upconn.h):
 * answers are read into it, and small requests are copied into it so that
 * head and body leave in one TLS record.  The request head carries an API
 * key: it is never logged, no error text quotes it, and its copy in the
 * buffer is wiped once sent.
 *
 * Every failure is recorded with its kind and its words (up_seterr,
 * upstream.h).  Any I/O failure drops the connection at once ("quietly":
 * without writing a close_notify into a connection that may be dead, and
 * with the TLS session kept for resumption), so after -1 up_fd() is -1
 * and the next up_request() connects afresh.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <bsd/string.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "resolve.h"
#include "tls.h"
#include "upconn.h"
#include "upstream.h"
#include "util.h"

/*
 * Record a failure: its kind, for the caller to act on, and its words, for
 * the log.  This is the one place where a failure gets its kind: each call
 * names the one that fits its words.  Returns -1.
 */
int
up_seterr(struct upstream *u, enum up_fail kind, const char *fmt, ...)
{
	va_list	 ap;

	u->fail = kind;
	va_start(ap, fmt);
	(void)vsnprintf(u->err, sizeof(u->err), fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * A wait that ended early: the watched client went away (UP_GONE), or the
 * deadline passed (UP_TIMEOUT: "timeout " and what we were doing, as fmt
 * says).  Records it and returns -1; any other rv is left to the caller
 * (returns 0).
 */
int
up_gave_up(struct upstream *u, int rv, const char *fmt, ...)
{
	char	 what[UP_ERR_MAX];
	va_list	 ap;

	if (rv == UP_GONE)
		return up_seterr(u, UP_ERR_GONE, "the client went away");
	if (rv != UP_TIMEOUT)
		return 0;
	va_start(ap, fmt);
	(void)vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return up_seterr(u, UP_ERR_TIMEOUT, "timeout %s", what);
}

/*
 * Copy the failure's words to the caller's err[0..errlen) too (errlen 0:
 * err is not wanted, and may be NULL).  Returns -1.
 */
int
up_copy_err(const struct upstream *u, char *err, size_t errlen)
{
	if (errlen > 0)
		(void)strlcpy(err, u->err, errlen);
	return -1;
}

/*
 * Wait until fd is ready for events or the deadline passes, watching the
 * client's socket (up_watch) too: a client that hangs up ends the wait at
 * once, so that the upstream can be closed and stop generating.  Returns 1
 * (ready, or in error: the next call says which), UP_TIMEOUT, UP_GONE, or
 * UP_FAIL with errno set.
 */
int
up_wait(struct upstream *u, int fd, short events, int64_t deadline)
{
	struct pollfd	 pfd[2];
	int64_t		 left;
	int		 n;

	for (;;) {
		if ((left = deadline - mono_ms()) <= 0)
			return UP_TIMEOUT;
		pfd[0].fd = fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		pfd[1].fd = u->watch;
		pfd[1].events = POLLRDHUP;
		pfd[1].revents = 0;
		n = poll(pfd, u->watch != -1 ? 2 : 1,
		    left > INT_MAX ? INT_MAX : (int)left);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return UP_FAIL;
		}
		if (u->watch != -1 && pfd[1].revents != 0) {
			u->gone = 1;
			return UP_GONE;
		}
		if (n > 0)
			return 1;
		/* poll() may wake a little early: the clock decides. */
	}
}

/*
 * After an SSL call returned r (with errno saved as serr), wait for what
 * OpenSSL needs.  Returns 1 to call again, UP_EOF when the upstream closed
 * the connection, UP_TIMEOUT, or UP_FAIL with why set.
 */
static int
up_ssl_again(struct upstream *u, int r, int serr, int64_t deadline,
    char *why, size_t whylen)
{
	short	 ev;
	int	 rv;

	switch (SSL_get_error(u->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ev = POLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		ev = POLLOUT;
		break;
	case SSL_ERROR_ZERO_RETURN:
		return UP_EOF;
	case SSL_ERROR_SYSCALL:
		if (serr == 0)
			return UP_EOF;
		if (serr == EINTR)
			return 1;
		snprintf(why, whylen, "%s", strerror(serr));
		return UP_FAIL;
	case SSL_ERROR_SSL:
		tls_strerror(u->ssl, why, whylen);
		return UP_FAIL;
	default:
		snprintf(why, whylen, "unexpected TLS state");
		return UP_FAIL;
	}
	if ((rv = up_wait(u, u->fd, ev, deadline)) == UP_FAIL) {
		snprintf(why, whylen, "poll: %s", strerror(errno));
		return UP_FAIL;
	}
	return rv;
}

/*
 * Read at most n (> 0) bytes.  Returns the count, UP_EOF, UP_TIMEOUT, or
 * UP_FAIL with why set.  OpenSSL may hold decrypted bytes the socket no
 * longer shows, so SSL_read is always tried before any poll.
 */
ssize_t
up_recv(struct upstream *u, void *dst, size_t n, int64_t deadline,
    char *why, size_t whylen)
{
	int	 r, serr, rv;

	if (n > INT_MAX)
		n = INT_MAX;
	for (;;) {
		ERR_clear_error();
		errno = 0;
		r = SSL_read(u->ssl, dst, (int)n);
		serr = errno;
		if (r > 0)
			return r;
		if ((rv = up_ssl_again(u, r, serr, deadline, why,
		    whylen)) != 1)
			return rv;
	}
}

/* Write all of p[0..len).  Returns 0, UP_TIMEOUT or UP_FAIL with why. */
static int
up_send(struct upstream *u, const char *p, size_t len, int64_t deadline,
    char *why, size_t whylen)
{
	size_t	 n;
	int	 r, serr, rv;

	while (len > 0) {
		n = len > INT_MAX ? INT_MAX : len;
		ERR_clear_error();
		errno = 0;
		r = SSL_write(u->ssl, p, (int)n);
		serr = errno;
		if (r > 0) {
			p += r;
			len -= r;
			continue;
		}
		rv = up_ssl_again(u, r, serr, deadline, why, whylen);
		if (rv == UP_EOF) {
			snprintf(why, whylen, "connection closed");
			return UP_FAIL;
		}
		if (rv != 1)
			return rv;
	}
	return 0;
}

/*
 * Drop the connection.  polite: send a close_notify (once, without
 * waiting), for a connection that still works.  Either way the session
 * stays resumable: OpenSSL marks a session bad when an SSL is freed without
 * its shutdown flags set, and a quiet shutdown sets them without writing.
 * The buffer is left alone: struct up_resp may still point into it.
 */
void
up_drop(struct upstream *u, int polite)
{
	if (u->ssl != NULL) {
		if (!polite)
			SSL_set_quiet_shutdown(u->ssl, 1);
		ERR_clear_error();
		(void)SSL_shutdown(u->ssl);
		ERR_clear_error();
		SSL_free(u->ssl);
		u->ssl = NULL;
	}
	if (u->fd != -1) {
		(void)close(u->fd);
		u->fd = -1;
	}
	u->keep = 0;
}

/*
 * Connect to one address by the deadline.  Returns the socket, or -1 with
 * u->err set.
 */
static int
up_connect_addr(struct upstream *u, const struct addrinfo *ai,
    int64_t deadline)
{
	char		 addr[NI_MAXHOST];
	char		 where[sizeof(u->name) + NI_MAXHOST + 4];
	socklen_t	 sl;
	int		 fd, soerr, rv, on = 1;

	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL,
	    0, NI_NUMERICHOST) != 0)
		(void)strlcpy(addr, "?", sizeof(addr));
	if (u->is_ip)
		snprintf(where, sizeof(where), "%s", u->name);
	else
		snprintf(where, sizeof(where), "%s (%s)", u->name, addr);

	if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol)) == -1) {
		return up_seterr(u, UP_ERR_CONNECT, "connect %s: socket: %s",
		    where, strerror(errno));
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		/* After EINTR the connection goes on in the background. */
		if (errno != EINPROGRESS && errno != EINTR) {
			up_seterr(u, UP_ERR_CONNECT, "connect %s: %s", where,
			    strerror(errno));
			goto fail;
		}
		rv = up_wait(u, fd, POLLOUT, deadline);
		if (up_gave_up(u, rv, "connecting to %s", where) == -1)
			goto fail;
		if (rv == UP_FAIL) {
			up_seterr(u, UP_ERR_CONNECT, "connect %s: poll: %s",
			    where, strerror(errno));
			goto fail;
		}
		sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
			soerr = errno;
		if (soerr != 0) {
			up_seterr(u, UP_ERR_CONNECT, "connect %s: %s", where,
			    strerror(soerr));
			goto fail;
		}
	}
	/* Requests and stream events are small: no Nagle delay. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1)
		log_debug("upstream %s: TCP_NODELAY: %s", where,
		    strerror(errno));
	return fd;
fail:
	(void)close(fd);
	return -1;
}

/*
 * The TLS handshake over the new connection u->fd, offering the last
 * session to resume.  Returns 0, or -1 (recorded, the connection
 * dropped).
 */
static int
up_handshake(struct upstream *u, int64_t deadline)
{
	char	 why[UP_ERR_MAX];
	int	 r, serr, rv, offered;

	if ((u->ssl = tls_client(u->fd, u->host, &u->sess, why,
	    sizeof(why))) == NULL) {
		up_seterr(u, UP_ERR_TLS, "TLS with %s: %s", u->name, why);
		up_drop(u, 0);
		return -1;
	}
	offered = u->sess != NULL;
	for (;;) {
		ERR_clear_error();
		errno = 0;
		r = SSL_connect(u->ssl);
		serr = errno;
		if (r == 1)
			break;
		rv = up_ssl_again(u, r, serr, deadline, why, sizeof(why));
		if (rv == 1)
			continue;
		if (up_gave_up(u, rv, "in the TLS handshake with %s",
		    u->name) == 0)
			up_seterr(u, UP_ERR_TLS, "TLS handshake with %s: %s",
			    u->name, rv == UP_EOF ? "connection closed by the "
			    "server" : why);
		/* The session might be why it failed: start afresh. */
		if (offered && rv != UP_TIMEOUT && rv != UP_GONE &&
		    u->sess != NULL) {
			SSL_SESSION_free(u->sess);
			u->sess = NULL;
		}
		up_drop(u, 0);
		return -1;
	}
	u->resumed = SSL_session_reused(u->ssl);
	log_debug("upstream: connected to %s, %s%s", u->name,
	    SSL_get_version(u->ssl), u->resumed ? ", session resumed" : "");
	return 0;
}

/*
 * A new connection: every address of the host in turn (IPv6 and IPv4, as
 * the resolver orders them), then the TLS handshake.  An address that is
 * not the last gets its share of the time left, so that one black hole
 * does not eat the whole deadline.  The addresses come from resolve.c,
 * which bounds a lookup by the deadline too.
 */
static int
up_connect(struct upstream *u, int64_t deadline)
{
	const struct addrinfo *res, *ai;
	char		 why[UP_ERR_MAX];
	int64_t		 now, slice;
	int		 n, left, fd = -1, rv;

	if ((rv = resolve_upstream(u->host, u->port, u->dns_valid_s,
	    deadline, u->watch, &res, why, sizeof(why))) != 0) {
		if (rv == RESOLVE_GONE) {
			u->gone = 1;
			return up_seterr(u, UP_ERR_GONE,
			    "the client went away");
		}
		return up_seterr(u, rv == RESOLVE_TIMEOUT ? UP_ERR_TIMEOUT :
		    UP_ERR_RESOLVE, "%s", why);
	}
	for (n = 0, ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	up_seterr(u, UP_ERR_RESOLVE, "cannot resolve %s: no address", u->host);
	for (left = n, ai = res; ai != NULL; ai = ai->ai_next, left--) {
		if ((now = mono_ms()) >= deadline) {
			up_seterr(u, UP_ERR_TIMEOUT, "timeout connecting to %s",
			    u->name);
			break;
		}
		slice = left > 1 ? now + (deadline - now) / left : deadline;
		if ((fd = up_connect_addr(u, ai, slice)) != -1 || u->gone)
			break;
	}
	if (fd == -1)
		return -1;
	u->fd = fd;
	return up_handshake(u, deadline);
}

/*
 * Is the kept-alive connection still open?  Nothing should arrive between
 * two answers except TLS housekeeping (a TLS 1.3 session ticket, a
 * close_notify), so anything readable is read: housekeeping leaves
 * SSL_read wanting more, while an end of stream, an error or unasked-for
 * bytes (which would put the next answer out of step) mean it is not.
 */
static int
up_alive(struct upstream *u)
{
	struct pollfd	 pfd;
	char		 c;
	int		 n, r;

	if (!SSL_has_pending(u->ssl)) {
		pfd.fd = u->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		while ((n = poll(&pfd, 1, 0)) == -1 && errno == EINTR)
			;
		if (n == 0)
			return 1;
		if (n == -1)
			return 0;
	}
	ERR_clear_error();
	r = SSL_read(u->ssl, &c, 1);
	if (r > 0)
		return 0;
	n = SSL_get_error(u->ssl, r);
	ERR_clear_error();
	return n == SSL_ERROR_WANT_READ;
}

struct upstream *
up_new(const struct config *cfg)
{
	struct upstream	*u;
	unsigned char	 a[sizeof(struct in6_addr)];
	int		 n;

	/* The buffer is not zeroed: its pages stay untouched (and out of
	 * the worker's private memory) until answers fill them. */
	if ((u = malloc(sizeof(*u))) == NULL)
		return NULL;
	memset(u, 0, offsetof(struct upstream, buf));
	u->fd = -1;
	u->watch = -1;
	u->dns_valid_s = cfg->resolver_valid_s;
	if (strlcpy(u->host, cfg->upstream_host, sizeof(u->host)) >=
	    sizeof(u->host) ||
	    strlcpy(u->port, cfg->upstream_port, sizeof(u->port)) >=
	    sizeof(u->port) ||
	    strlcpy(u->prefix, cfg->upstream_prefix, sizeof(u->prefix)) >=
	    sizeof(u->prefix))
		goto toolong;
	if (strchr(u->host, ':') != NULL)
		n = snprintf(u->name, sizeof(u->name), "[%s]:%s", u->host,
		    u->port);
	else
		n = snprintf(u->name, sizeof(u->name), "%s:%s", u->host,
		    u->port);
	if (n < 0 || (size_t)n >= sizeof(u->name))
		goto toolong;
	u->is_ip = inet_pton(AF_INET, u->host, a) == 1 ||
	    inet_pton(AF_INET6, u->host, a) == 1;
	return u;
toolong:
	free(u);
	errno = ENAMETOOLONG;
	return NULL;
}

void
up_free(struct upstream *u)
{
	if (u == NULL)
		return;
	up_drop(u, 1);
	if (u->sess != NULL)
		SSL_SESSION_free(u->sess);
	free(u);
}

/*
 * Send a request: head[0..headlen) then body[0..bodylen), over the
 * kept-alive connection when the upstream has not closed it, else over a
 * new one.  deadline bounds connecting, the handshake and the sending.
 * Returns 0, or -1 with the failure recorded, its words in err too (and
 * the connection dropped).
 */
int
up_request(struct upstream *u, const char *head, size_t headlen,
    const char *body, size_t bodylen, int64_t deadline, char *err,
    size_t errlen)
{
	char	 why[UP_ERR_MAX];
	int	 rv;

	u->reused = 0;
	u->stale = 0;
	u->fail = UP_ERR_NONE;
	u->err[0] = '\0';
	if (u->ssl != NULL && !(u->keep && up_alive(u)))
		up_drop(u, 0);
	if (u->ssl == NULL) {
		if (up_connect(u, deadline) == -1)
			return up_copy_err(u, err, errlen);
	} else
		u->reused = 1;

	u->keep = 0;
	u->state = UP_S_SENT;
	u->framing = UP_BODY_NONE;
	u->close = 0;
	u->remain = 0;
	u->head_end = u->rpos = u->rlen = 0;

	if (bodylen <= sizeof(u->buf) && headlen <= sizeof(u->buf) - bodylen) {
		memcpy(u->buf, head, headlen);
		if (bodylen > 0)
			memcpy(u->buf + headlen, body, bodylen);
		rv = up_send(u, u->buf, headlen + bodylen, deadline, why,
		    sizeof(why));
		explicit_bzero(u->buf, headlen);
	} else {
		rv = up_send(u, head, headlen, deadline, why, sizeof(why));
		if (rv == 0)
			rv = up_send(u, body, bodylen, deadline, why,
			    sizeof(why));
	}
	if (rv != 0) {
		if (up_gave_up(u, rv, "sending the request to %s",
		    u->name) == 0)
			up_seterr(u, UP_ERR_IO, "sending the request to %s: "
			    "%s", u->name, why);
		u->stale = u->reused && rv != UP_TIMEOUT && rv != UP_GONE;
		u->state = UP_S_IDLE;
		up_drop(u, 0);
		return up_copy_err(u, err, errlen);
	}
	return 0;
}

/*
 * Watch fd (a client's socket; -1: none) during every wait from now on: a
 * hang-up there ends the wait as a failure, and up_gone() says so.
 */
void
up_watch(struct upstream *u, int fd)
{
	u->watch = fd;
	u->gone = 0;
}

/* Did the watched client hang up during a wait? */
int
up_gone(const struct upstream *u)
{
	return u->gone;
}

/*
 * Drop the connection (the client went away mid-answer, or the answer said
 * Connection: close); the TLS session is kept for the next handshake.
 */
void
up_close(struct upstream *u)
{
	if (u->state != UP_S_DONE)
		u->state = UP_S_IDLE;
	up_drop(u, 1);
}

int
up_fd(const struct upstream *u)
{
	return u->fd;
}

/* Did the last request go over a connection kept from an earlier one? */
int
up_reused(const struct upstream *u)
{
	return u->reused;
}

/*
 * Did the last request fail the way it does when the upstream closed the
 * kept-alive connection as we reused it (closed or reset before any byte
 * of the answer)?  Then it is worth sending once more, on a new one.
 */
int
up_stale(const struct upstream *u)
{
	return u->stale;
}

/* Did the last handshake resume a TLS session? */
int
up_resumed(const struct upstream *u)
{
	return u->resumed;
}

/* Why the last call failed, in words ("" when none did). */
const char *
up_error(const struct upstream *u)
{
	return u->err;
}

/* What kind of failure the last one was (UP_ERR_NONE when none). */
enum up_fail
up_failure(const struct upstream *u)
{
	return u->fail;
}

/*
 * The status a client gets for an upstream that could not be reached or
 * did not answer, by what failed: 504 when a deadline passed (the lookup,
 * the connection, the handshake, the sending or the wait for the answer's
 * head), 502 for every other way.  The one place that maps a failure to a
 * status.
 */
int
up_fail_status(enum up_fail fault)
{
	return fault == UP_ERR_TIMEOUT ? 504 : 502;
}
