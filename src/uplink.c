/*
 * The upstream connection once it has switched protocols (a 101 to a
 * WebSocket upgrade, up_read_head with UP_HEAD_UPGRADE): bytes both ways,
 * never waiting.  live.c polls the socket itself and frames what passes
 * (ws.c); the bytes that came in the same read as the 101's head are
 * handed out first.
 *
 * The calls follow struct ws_io's convention: a count, 0 for the
 * upstream's EOF (reads only), -2 when it would block, -1 on an error
 * (recorded: up_failure, up_error).
 */
#include <sys/types.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "tls.h"
#include "upconn.h"
#include "upstream.h"

#define UP_LINK_AGAIN	(-2)

/* What an SSL call that returned r means here. */
static ssize_t
up_link_result(struct upstream *u, int r, int serr, const char *what)
{
	char	 why[UP_ERR_MAX];

	switch (SSL_get_error(u->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return UP_LINK_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (serr == 0)
			return 0;
		if (serr == EINTR || serr == EAGAIN)
			return UP_LINK_AGAIN;
		up_seterr(u, UP_ERR_IO, "%s %s: %s", what, u->name,
		    strerror(serr));
		return -1;
	case SSL_ERROR_SSL:
		tls_strerror(u->ssl, why, sizeof(why));
		up_seterr(u, UP_ERR_IO, "%s %s: %s", what, u->name, why);
		return -1;
	default:
		up_seterr(u, UP_ERR_IO, "%s %s: unexpected TLS state", what,
		    u->name);
		return -1;
	}
}

/* Read at most n bytes of what the upstream sent. */
ssize_t
up_link_recv(struct upstream *u, void *dst, size_t n)
{
	size_t	 have;
	int	 r, serr;

	if (u->state != UP_S_UPGRADED || u->ssl == NULL) {
		up_seterr(u, UP_ERR_USAGE, "the connection was not upgraded");
		return -1;
	}
	if ((have = u->rlen - u->rpos) > 0) {
		if (n > have)
			n = have;
		memcpy(dst, u->buf + u->rpos, n);
		u->rpos += n;
		return (ssize_t)n;
	}
	if (n > INT_MAX)
		n = INT_MAX;
	ERR_clear_error();
	errno = 0;
	r = SSL_read(u->ssl, dst, (int)n);
	serr = errno;
	if (r > 0)
		return r;
	return up_link_result(u, r, serr, "reading from");
}

/* Write at most n bytes (a part may go: the count says how much). */
ssize_t
up_link_send(struct upstream *u, const void *src, size_t n)
{
	int	 r, serr;

	if (u->state != UP_S_UPGRADED || u->ssl == NULL) {
		up_seterr(u, UP_ERR_USAGE, "the connection was not upgraded");
		return -1;
	}
	if (n > INT_MAX)
		n = INT_MAX;
	ERR_clear_error();
	errno = 0;
	r = SSL_write(u->ssl, src, (int)n);
	serr = errno;
	if (r > 0)
		return r;
	if ((r = (int)up_link_result(u, r, serr, "writing to")) == 0) {
		up_seterr(u, UP_ERR_CLOSED, "%s closed the connection",
		    u->name);
		return -1;
	}
	return r;
}

/* Are bytes at hand that a poll of the socket would not show? */
int
up_link_pending(const struct upstream *u)
{
	return u->rpos < u->rlen || (u->ssl != NULL &&
	    SSL_has_pending(u->ssl));
}
