/*
 * The upstream: one kept-alive TLS connection per worker to the Gemini API
 * (or whatever "upstream" names), and HTTP/1.1 answers read from it.
 *
 * proxy.c drives it, one request at a time: up_request() (reuse the
 * connection or make a new one, then send), up_read_head(), then
 * up_read_body() until it returns 0.  Each piece of the body is handed back
 * as soon as it arrives, already de-chunked, because the caller relays a
 * stream event by event.  Sockets are non-blocking; every wait is a poll()
 * bounded by the caller's absolute monotonic deadline.  No lock is taken
 * here, and nothing here may be called under one.
 *
 * One buffer per upstream, allocated with it: the answer's head is parsed in
 * place at its start (struct up_resp points into it until the next
 * up_request) and the rest is where chunked bodies are decoded from.  Bodies
 * framed by length or by the end of the connection are read straight into
 * the caller's buffer.  Small requests are copied into it too, so that head
 * and body leave in one TLS record.
 *
 * The request head carries an API key: it is never logged, no error text
 * quotes it, and its copy in the buffer is wiped once sent.
 *
 * Any I/O failure drops the connection at once ("quietly": without writing
 * a close_notify into a connection that may be dead, and with the TLS
 * session kept for resumption), so after -1 up_fd() is -1 and the next
 * up_request() connects afresh.
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
#include <stddef.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "resolve.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

#define UP_READ_MAX	(16 * 1024)	/* one TLS record's worth */
#define UP_BUF_SIZE	(UP_MAX_HEAD + UP_READ_MAX)
#define UP_ERR_MAX	256

/* Results of the read/wait helpers besides a byte count. */
#define UP_EOF		0
#define UP_FAIL		(-1)
#define UP_TIMEOUT	(-2)
#define UP_GONE		(-3)	/* the watched client went away */

/* How the answer's body is delimited. */
enum up_framing {
	UP_BODY_NONE = 0,
	UP_BODY_LENGTH,
	UP_BODY_CHUNKED,
	UP_BODY_EOF		/* until the upstream closes */
};

/* Where the connection is in the request/answer cycle. */
enum up_state {
	UP_S_IDLE = 0,		/* nothing in flight */
	UP_S_SENT,		/* request sent, head not read yet */
	UP_S_BODY,		/* head read, body under way */
	UP_S_DONE		/* whole answer read */
};

struct upstream {
	char		 host[256];	/* a name or an IP literal */
	char		 port[16];
	char		 prefix[256];
	char		 name[300];	/* "host:port", "[v6]:port" */
	int		 is_ip;

	int		 fd;
	SSL		*ssl;
	SSL_SESSION	*sess;		/* the newest, to resume */
	int		 keep;		/* may carry another request */
	int		 reused;	/* last request: older conn. */
	int		 stale;		/* failed as a dead kept conn. does */
	int		 resumed;	/* last handshake resumed */
	int		 dns_valid_s;	/* resolver_valid_s */
	int		 watch;		/* the client's socket, or -1 */
	int		 gone;		/* it hung up while we waited */

	enum up_state	 state;
	enum up_framing	 framing;
	int		 close;		/* the answer ends the link */
	uint64_t	 remain;	/* UP_BODY_LENGTH: bytes due */
	struct http_chunked ch;

	size_t		 head_end;	/* bytes of buf the head uses */
	size_t		 rpos;		/* unread: rpos to rlen */
	size_t		 rlen;

	enum up_fail	 fail;		/* the last failure's kind */
	char		 err[UP_ERR_MAX];	/* and its words */
	char		 buf[UP_BUF_SIZE];
};

static void	 up_drop(struct upstream *, int);
static int	 up_seterr(struct upstream *, enum up_fail, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));

/*
 * Record a failure: its kind, for the caller to act on, and its words, for
 * the log.  This is the one place where a failure gets its kind: each call
 * names the one that fits its words.  Returns -1.
 */
static int
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
 * Copy the failure's words to the caller's err[0..errlen) too (errlen 0:
 * err is not wanted, and may be NULL).  Returns -1.
 */
static int
up_copy_err(struct upstream *u, char *err, size_t errlen)
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
static int
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
static ssize_t
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
static void
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
		if ((rv = up_wait(u, fd, POLLOUT, deadline)) == UP_TIMEOUT) {
			up_seterr(u, UP_ERR_TIMEOUT, "timeout connecting to %s",
			    where);
			goto fail;
		}
		if (rv == UP_GONE) {
			up_seterr(u, UP_ERR_GONE, "the client went away");
			goto fail;
		}
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
	int		 n, left, fd = -1, r, serr, rv;
	int		 offered;

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
	if ((u->ssl = tls_client(fd, u->host, &u->sess, why,
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
		if (rv == UP_GONE)
			up_seterr(u, UP_ERR_GONE, "the client went away");
		else if (rv == UP_TIMEOUT)
			up_seterr(u, UP_ERR_TIMEOUT, "timeout in the TLS "
			    "handshake with %s", u->name);
		else if (rv == UP_EOF)
			up_seterr(u, UP_ERR_TLS, "TLS handshake with %s: "
			    "connection closed by the server", u->name);
		else
			up_seterr(u, UP_ERR_TLS, "TLS handshake with %s: %s",
			    u->name, why);
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
	if (rv == UP_GONE)
		up_seterr(u, UP_ERR_GONE, "the client went away");
	else if (rv == UP_TIMEOUT)
		up_seterr(u, UP_ERR_TIMEOUT, "timeout sending the request "
		    "to %s", u->name);
	else if (rv != 0)
		up_seterr(u, UP_ERR_IO, "sending the request to %s: %s",
		    u->name, why);
	if (rv != 0) {
		u->stale = u->reused && rv != UP_TIMEOUT && rv != UP_GONE;
		u->state = UP_S_IDLE;
		up_drop(u, 0);
		return up_copy_err(u, err, errlen);
	}
	return 0;
}

/* Content-Length: 1*DIGIT, or a list of identical values. */
static int
up_content_length(const char *v, int64_t *cl)
{
	int64_t	 n;
	int	 d, digits;

	for (;;) {
		while (*v == ' ' || *v == '\t')
			v++;
		for (n = 0, digits = 0; *v >= '0' && *v <= '9'; v++, digits++) {
			d = *v - '0';
			if (n > (INT64_MAX - d) / 10)
				return -1;
			n = n * 10 + d;
		}
		while (*v == ' ' || *v == '\t')
			v++;
		if (digits == 0 || (*cl != -1 && *cl != n))
			return -1;
		*cl = n;
		if (*v == '\0')
			return 0;
		if (*v++ != ',')
			return -1;
	}
}

/* Does the comma-separated list v hold the token word (any case)? */
static int
up_list_has(const char *v, const char *word, int *others)
{
	const char	*e;
	size_t		 wl = strlen(word), n;
	int		 found = 0;

	for (;;) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		if (*v == '\0')
			return found;
		for (e = v; *e != ',' && *e != '\0'; e++)
			;
		n = e - v;
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == wl && strncasecmp(v, word, wl) == 0)
			found++;
		else if (others != NULL)
			(*others)++;
		v = e;
	}
}

/*
 * Parse an answer head in buf[0..end), which ends in CRLFCRLF with every LF
 * after a CR (up_scan_head made sure).  Names and values are NUL-terminated
 * in place.  Returns 0, or -1 with *why set.
 */
static int
up_parse_head(char *buf, size_t end, struct up_resp *r, int head_request,
    const char **why)
{
	char		*p = buf, *name, *value, *last;
	unsigned char	 c;
	size_t		 nlen;
	int		 te = 0, te_chunked = 0, te_other = 0;
	int		 conn_close = 0, conn_keep = 0;

	r->nhdr = 0;
	r->content_length = -1;
	r->chunked = r->close = r->no_body = 0;

	/* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF */
	if (end < 16 || memcmp(p, "HTTP/1.", 7) != 0 ||
	    (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
		*why = "invalid status line";
		return -1;
	}
	r->minor = p[7] - '0';
	p += 9;
	if (p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
	    p[2] < '0' || p[2] > '9') {
		*why = "invalid status code";
		return -1;
	}
	r->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	p += 3;
	/* Some servers leave out the space before an empty reason. */
	if (*p == ' ') {
		for (p++; (c = *p) != '\r'; p++)
			if ((c < ' ' && c != '\t') || c == 0x7f) {
				*why = "control character in the status line";
				return -1;
			}
	}
	if (p[0] != '\r' || p[1] != '\n') {
		*why = "invalid status line";
		return -1;
	}
	p += 2;

	/* field-line = field-name ":" OWS field-value OWS CRLF */
	while (p[0] != '\r') {
		if (*p == ' ' || *p == '\t') {
			*why = "obsolete line folding";
			return -1;
		}
		name = p;
		while (http_tchar[(unsigned char)*p])
			p++;
		if (*p != ':' || p == name) {
			*why = "invalid header field name";
			return -1;
		}
		nlen = p - name;
		*p++ = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		value = last = p;
		for (; (c = *p) != '\r'; p++) {
			if ((c < ' ' && c != '\t') || c == 0x7f) {
				*why = "control character in a header field";
				return -1;
			}
			if (c != ' ' && c != '\t')
				last = p + 1;
		}
		if (p[1] != '\n') {
			*why = "bare CR in the head";
			return -1;
		}
		*last = '\0';
		p += 2;

		if (r->nhdr == UP_MAX_HEADERS) {
			*why = "too many header fields";
			return -1;
		}
		r->hdr[r->nhdr].name = name;
		r->hdr[r->nhdr].value = value;
		r->nhdr++;

		if (nlen == 14 && strcasecmp(name, "content-length") == 0) {
			if (up_content_length(value, &r->content_length) ==
			    -1) {
				*why = "invalid or conflicting Content-Length";
				return -1;
			}
		} else if (nlen == 17 &&
		    strcasecmp(name, "transfer-encoding") == 0) {
			te = 1;
			te_chunked += up_list_has(value, "chunked", &te_other);
		} else if (nlen == 10 && strcasecmp(name, "connection") == 0) {
			conn_close |= up_list_has(value, "close", NULL) > 0;
			conn_keep |= up_list_has(value, "keep-alive", NULL) > 0;
		}
	}
	if (p + 2 != buf + end) {
		*why = "bare CR in the head";
		return -1;
	}

	if (r->status == 101) {
		*why = "unexpected 101 Switching Protocols";
		return -1;
	}
	/* Framing two ways is how answers get smuggled: refuse, not guess. */
	if (te) {
		if (r->minor == 0) {
			*why = "Transfer-Encoding in an HTTP/1.0 answer";
			return -1;
		}
		if (r->content_length != -1) {
			*why = "both Transfer-Encoding and Content-Length";
			return -1;
		}
		if (te_chunked != 1 || te_other != 0) {
			*why = "unsupported Transfer-Encoding";
			return -1;
		}
		r->chunked = 1;
	}
	r->no_body = head_request || r->status < 200 || r->status == 204 ||
	    r->status == 304;
	r->close = conn_close || (r->minor == 0 && !conn_keep) ||
	    (!r->no_body && !r->chunked && r->content_length == -1);
	return 0;
}

/*
 * Look for the end of the head in buf[0..len), going on from *scan (with
 * *ls the start of the current line).  Returns 1 with *end just past the
 * empty line, 0 when more is needed, or -1 with *why set.
 */
static int
up_scan_head(const char *buf, size_t len, size_t *scan, size_t *ls,
    size_t *end, const char **why)
{
	const char	*nl;
	size_t		 lim, i;

	lim = len < UP_MAX_HEAD ? len : UP_MAX_HEAD;
	while (*scan < lim &&
	    (nl = memchr(buf + *scan, '\n', lim - *scan)) != NULL) {
		i = nl - buf;
		if (i == *ls || buf[i - 1] != '\r') {
			*why = "bare LF in the head";
			return -1;
		}
		if (i - 1 == *ls) {
			*end = i + 1;
			return 1;
		}
		*ls = *scan = i + 1;
	}
	*scan = lim;
	if (len >= UP_MAX_HEAD) {
		*why = "head too large";
		return -1;
	}
	return 0;
}

/*
 * Read the answer's head into r, skipping interim (1xx) answers.  Body
 * bytes that came with it stay buffered for up_read_body.  head_request:
 * the request was a HEAD, so no body follows whatever the head says.
 * Returns 0, or -1 with the failure recorded, its words in err too (and
 * the connection dropped).
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
		if (rv == -1)
			goto malformed;
		if (rv == 1) {
			if (up_parse_head(u->buf, end, r, head_request,
			    &bad) == -1)
				goto malformed;
			if (r->status >= 200)
				break;
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
		if (n > 0) {
			u->rlen += n;
			continue;
		}
		/* Closed before a byte of the answer: perhaps the upstream
		 * had closed the kept-alive connection just before we sent.
		 * A timeout or garbage is no such thing. */
		u->stale = u->reused && u->rlen == 0 && !interim &&
		    n != UP_TIMEOUT && n != UP_GONE;
		if (n == UP_GONE)
			up_seterr(u, UP_ERR_GONE, "the client went away");
		else if (n == UP_TIMEOUT)
			up_seterr(u, UP_ERR_TIMEOUT, "timeout waiting for the "
			    "upstream's answer");
		else if (u->rlen == 0 && !interim && n == UP_EOF)
			up_seterr(u, UP_ERR_CLOSED, "upstream closed the "
			    "connection before answering");
		else if (u->rlen == 0 && !interim)
			up_seterr(u, UP_ERR_CLOSED, "upstream closed the "
			    "connection before answering (%s)", why);
		else if (n == UP_EOF)
			up_seterr(u, UP_ERR_CLOSED, "malformed answer from "
			    "upstream: connection closed in the head");
		else
			up_seterr(u, UP_ERR_IO, "reading the upstream's "
			    "answer: %s", why);
		goto fail;
	}

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
	return 0;

malformed:
	up_seterr(u, UP_ERR_PROTOCOL, "malformed answer from upstream: %s",
	    bad);
fail:
	u->state = UP_S_IDLE;
	up_drop(u, 0);
	return up_copy_err(u, err, errlen);
}

/*
 * The next piece of the answer's body, de-chunked, into buf[0..len): as
 * soon as any byte is there, never waiting to fill buf.  Returns the
 * count, 0 at the end of the body, or -1 on a timeout, a broken connection
 * or a malformed body (the connection is dropped; up_error() says why).
 */
ssize_t
up_read_body(struct upstream *u, char *buf, size_t len, int64_t deadline)
{
	char		 why[UP_ERR_MAX];
	const char	*bad;
	size_t		 avail, n, used, out;
	ssize_t		 got;
	int		 rv;

	if (u->state == UP_S_DONE)
		return 0;
	if (u->state != UP_S_BODY || u->ssl == NULL) {
		up_seterr(u, UP_ERR_USAGE, "no answer body to read");
		return -1;
	}
	if (len == 0) {
		up_seterr(u, UP_ERR_USAGE, "no room to read the body into");
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		if ((avail = u->rlen - u->rpos) > 0) {
			n = avail < len ? avail : len;
			if (u->framing == UP_BODY_CHUNKED) {
				rv = http_chunked_decode(&u->ch,
				    u->buf + u->rpos, n, &used, buf, &out,
				    &bad);
				u->rpos += used;
				if (rv == HTTP_PARSE_ERROR) {
					up_seterr(u, UP_ERR_PROTOCOL,
					    "malformed answer from "
					    "upstream: %s", bad);
					goto fail;
				}
				if (rv == HTTP_PARSE_DONE)
					up_finish(u);
				if (out > 0 || rv == HTTP_PARSE_DONE)
					return out;
				continue;
			}
			if (u->framing == UP_BODY_LENGTH && n > u->remain)
				n = u->remain;
			memcpy(buf, u->buf + u->rpos, n);
			u->rpos += n;
			if (u->framing == UP_BODY_LENGTH &&
			    (u->remain -= n) == 0)
				up_finish(u);
			return n;
		}

		/* Nothing buffered: the body area is free again. */
		u->rpos = u->rlen = u->head_end;
		if (u->framing == UP_BODY_CHUNKED) {
			got = up_recv(u, u->buf + u->rlen,
			    sizeof(u->buf) - u->rlen, deadline, why,
			    sizeof(why));
			if (got > 0) {
				u->rlen += got;
				continue;
			}
		} else {
			n = len;
			if (u->framing == UP_BODY_LENGTH && n > u->remain)
				n = u->remain;
			got = up_recv(u, buf, n, deadline, why, sizeof(why));
			if (got > 0) {
				if (u->framing == UP_BODY_LENGTH &&
				    (u->remain -= got) == 0)
					up_finish(u);
				return got;
			}
			if (got == UP_EOF && u->framing == UP_BODY_EOF) {
				up_finish(u);
				return 0;
			}
		}
		if (got == UP_GONE)
			up_seterr(u, UP_ERR_GONE, "the client went away");
		else if (got == UP_TIMEOUT)
			up_seterr(u, UP_ERR_TIMEOUT, "timeout waiting for the "
			    "rest of the upstream's answer");
		else if (got == UP_EOF)
			up_seterr(u, UP_ERR_CLOSED, "upstream closed the "
			    "connection in the middle of its answer");
		else
			up_seterr(u, UP_ERR_IO, "reading the upstream's "
			    "answer: %s", why);
		goto fail;
	}
fail:
	u->state = UP_S_IDLE;
	up_drop(u, 0);
	return -1;
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

/* The first header field called name (any case), or NULL. */
const char *
up_header(const struct up_resp *r, const char *name)
{
	return http_lookup(r->hdr, r->nhdr, name);
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
