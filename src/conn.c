/*
 * A client connection, as the handlers see it: reads bounded by a
 * deadline, writes, and whole answers of our own (conn_respond,
 * conn_error in Gemini's shape).
 *
 * worker.c and request.c read with conn_fill(); route.c, proxy.c (its
 * relay) and status.c answer with conn_respond(), conn_error() and
 * conn_write().  Sockets are non-blocking; every wait is a ppoll()
 * bounded by an absolute monotonic deadline.  A wait is interruptible
 * only where the worker has nothing in hand (conn_init: the signals let
 * in then), so that no system call of a request is ever interrupted.
 *
 * So that slow clients cannot hold the whole pool, a connection still
 * owing a request head watches the listening socket too, and is given up
 * when connections queue there and the pool is full (conn_wait_client);
 * each worker decides that from the scoreboard alone, taking no lock.
 */
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "looper.h"
#include "pool.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

/*
 * Slow request heads while the pool is full (see conn_wait_client): a
 * head may be given up once it has been arriving for YIELD_GRACE_MS; a
 * worker that does not give its client up looks again after
 * YIELD_BACKOFF_MS at most; while the pool is not full, a waiting worker
 * looks whether it has become so every YIELD_RECHECK_MS.
 */
#define YIELD_GRACE_MS		100
#define YIELD_BACKOFF_MS	50
#define YIELD_RECHECK_MS	250

static sigset_t	 conn_idle_mask;	/* the mask while waiting idle */

static int	 conn_wait_client(struct conn *, int64_t, int, int);

/*
 * The signal mask of interruptible waits: the worker's, with the signals
 * that end an idle wait let in.  Called once, as the worker starts.
 */
void
conn_init(const sigset_t *idle_mask)
{
	conn_idle_mask = *idle_mask;
}

/*
 * Wait until fd is ready for events, or deadline.  Returns 1 (ready), 0
 * (deadline), or -1 (an error, or a signal when interruptible: the
 * signals conn_init() let in are then let in during the wait).
 */
int
conn_wait(int fd, short events, int64_t deadline, int interruptible)
{
	struct pollfd	 pfd;
	struct timespec	 ts;
	int64_t		 left;
	int		 n;

	pfd.fd = fd;
	pfd.events = events;
	for (;;) {
		left = deadline - mono_ms();
		if (left <= 0)
			return 0;
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		n = ppoll(&pfd, 1, &ts, interruptible ? &conn_idle_mask : NULL);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR || interruptible)
			return -1;
	}
}

/*
 * Read more bytes into the connection buffer.  Returns bytes read, 0 on EOF,
 * -1 on error, timeout (*timedout CONN_FILL_TIMEOUT) or, with mayyield, when
 * the client is given up for a queued connection (*timedout CONN_FILL_YIELD).
 */
ssize_t
conn_fill(struct conn *c, int64_t deadline, int interruptible, int mayyield,
    int *timedout)
{
	ssize_t	 n;
	int	 w;

	*timedout = 0;
	for (;;) {
		if (c->len >= c->cap)
			return -1;
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n >= 0) {
			c->len += n;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		w = conn_wait_client(c, deadline, interruptible, mayyield);
		if (w == 0)
			*timedout = CONN_FILL_TIMEOUT;
		if (w == CONN_FILL_YIELD)
			*timedout = CONN_FILL_YIELD;
		if (w == -1 && interruptible && errno == EINTR) {
			/* Told to stop while idle: serve what already came. */
			n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
			if (n > 0) {
				c->len += n;
				return n;
			}
		}
		if (w != 1)
			return -1;
	}
}

/*
 * Is the pool full: no worker idle (or starting), and as many as max, so
 * that the master will not fork another?
 */
static int
conn_pool_full(void)
{
	int	 total, idle, busy;

	board_count(looper.shm, &total, &idle, &busy);
	return idle == 0 && total >= looper.cfg->max_workers;
}

/*
 * Should this worker give up its client for a connection waiting in the
 * listen queue?  Only when nothing else can take it: no worker is idle
 * and the pool is at its max, so the master will not fork one either.
 * Then the clients to give up are, first, kept-alive connections between
 * requests and, after them, the request heads that have been arriving for
 * longest (at least YIELD_GRACE_MS), as many as connections wait; a
 * request whose head is in (its body, or its answer) is never given up.
 * Each worker ranks itself from the scoreboard, so no two need to talk;
 * a stale view costs at most one drop too many or a look again later.
 * Returns 0 to give up now, else how many ms to wait before looking again.
 */
static int64_t
conn_yield_check(void)
{
	const struct shm_slot	*s = SHM_SLOTS(looper.shm), *o;
	struct tcp_info		 ti;
	socklen_t		 tl = sizeof(ti);
	uint32_t		 i, st, mine;
	int64_t			 start, mystart, age;
	int			 total = 0, idle = 0, rank = 0, pending;

	/* A listening socket's tcpi_unacked is its accept queue's length. */
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(looper.listen_fd, IPPROTO_TCP, TCP_INFO, &ti,
	    &tl) == -1)
		pending = 1;
	else
		pending = (int)ti.tcpi_unacked;
	if (pending <= 0)
		return YIELD_BACKOFF_MS;

	mine = __atomic_load_n(&s[looper.slot].state, __ATOMIC_ACQUIRE);
	mystart = s[looper.slot].req_start;
	if (mine == SHM_W_READING) {
		age = now_ms() - mystart;
		if (age < YIELD_GRACE_MS)
			return YIELD_GRACE_MS - age;
	}
	for (i = 0; i < looper.shm->max_workers; i++) {
		o = s + i;
		st = __atomic_load_n(&o->state, __ATOMIC_ACQUIRE);
		if (st == SHM_W_FREE)
			continue;
		total++;
		if (st == SHM_W_IDLE || st == SHM_W_STARTING)
			idle++;
		if ((int)i == looper.slot)
			continue;
		/* In its head: reading, and not yet named on the board. */
		if (st != SHM_W_KEEPALIVE &&
		    (st != SHM_W_READING || o->req[0] != '\0'))
			continue;
		start = o->req_start;
		if (pool_yield_before(st, start, i, mine, mystart,
		    (uint32_t)looper.slot))
			rank++;
	}
	if (idle > 0 || total < looper.cfg->max_workers)
		return YIELD_BACKOFF_MS;
	return rank < pending ? 0 : YIELD_BACKOFF_MS;
}

/*
 * Wait until the client sends more, or deadline.  Returns 1 (readable),
 * 0 (deadline), -1 (error, or a signal when interruptible), or CONN_FILL_YIELD.
 *
 * Slowloris: a worker serves one connection at a time, so clients that
 * send their request heads a byte at a time can hold every worker of the
 * pool while new connections wait in the listen queue, each one for up to
 * client_timeout_s.  With mayyield (the client owes a request head, or is
 * kept alive between requests), while the pool is full the listening
 * socket is watched too, and when connections wait there conn_yield_check()
 * decides whether this worker gives its client up for them: the pool's max
 * then bounds how many slow clients are held, not how many clients are
 * served.  While the pool is not full the listening socket is left to the
 * idle workers, so that a new connection wakes no busy one.
 */
static int
conn_wait_client(struct conn *c, int64_t deadline, int interruptible,
    int mayyield)
{
	struct pollfd	 pfd[2];
	struct timespec	 ts;
	int64_t		 now, left, quiet = 0, wait;
	nfds_t		 nfd;
	int		 n;

	pfd[0].fd = c->fd;
	pfd[0].events = POLLIN;
	pfd[1].fd = looper.listen_fd;
	pfd[1].events = POLLIN;
	for (;;) {
		now = mono_ms();
		if ((left = deadline - now) <= 0)
			return 0;
		nfd = 1;
		if (mayyield) {
			if (now >= quiet) {
				if (conn_pool_full())
					nfd = 2;
				else
					quiet = now + YIELD_RECHECK_MS;
			}
			if (nfd == 1 && quiet - now < left)
				left = quiet - now;
		}
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		n = ppoll(pfd, nfd, &ts, interruptible ? &conn_idle_mask :
		    NULL);
		if (n == -1) {
			if (errno != EINTR || interruptible)
				return -1;
			continue;
		}
		if (n == 0)
			continue;
		if (pfd[0].revents != 0)
			return 1;
		if (nfd == 2 && pfd[1].revents != 0) {
			if ((wait = conn_yield_check()) == 0)
				return CONN_FILL_YIELD;
			quiet = mono_ms() + wait;
		}
	}
}

/* Write all of buf, waiting at most client_timeout_s for each stall. */
int
conn_write(struct conn *c, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= n;
			c->bytes_out += n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (conn_wait(c->fd, POLLOUT, mono_ms() +
			    (int64_t)looper.cfg->client_timeout_s * 1000,
			    0) == 1)
				continue;
		}
		c->close = 1;
		return -1;
	}
	return 0;
}

/* The Date header's value, formatted once a second. */
const char *
conn_date(void)
{
	static time_t	 last;
	static char	 cached[64];
	struct tm	 tm;
	time_t		 t = time(NULL);

	if (t != last) {
		gmtime_r(&t, &tm);
		strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT",
		    &tm);
		last = t;
	}
	return cached;
}

/*
 * Send a whole answer: status line, our headers, extra (each line ending
 * in CRLF, or NULL), and the body.  HEAD gets the head only.
 */
int
conn_respond(struct conn *c, int status, const char *ctype,
    const char *extra, const void *body, size_t len)
{
	char		 head[2048];
	struct iovec	 iov[2];
	int		 n, head_only;
	ssize_t		 w;
	size_t		 total, done;

	if (c->sent_head)
		return -1;
	/* An answer before the body was read: the body is never read,
	 * so the connection cannot carry another request. */
	if (wrk_stopping() || c->body_unread)
		c->close = 1;
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
	    "Date: %s\r\nServer: %s\r\n"
	    "%s%s%s"
	    "Content-Length: %zu\r\n"
	    "%s"
	    "%s\r\n",
	    status, http_reason(status), conn_date(), LOOPER_NAME,
	    ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "",
	    ctype != NULL ? "\r\n" : "", len,
	    c->close ? "Connection: close\r\n" :
	    (c->req.minor == 0 ? "Connection: keep-alive\r\n" : ""),
	    extra != NULL ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(head)) {
		c->close = 1;
		return -1;
	}
	c->status = status;
	c->sent_head = 1;
	head_only = c->req.method != NULL &&
	    strcmp(c->req.method, "HEAD") == 0;
	iov[0].iov_base = head;
	iov[0].iov_len = n;
	iov[1].iov_base = (void *)(uintptr_t)body;
	iov[1].iov_len = head_only ? 0 : len;
	total = iov[0].iov_len + iov[1].iov_len;
	/* One writev for the common case of a small answer. */
	w = writev(c->fd, iov, 2);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			c->close = 1;
			return -1;
		}
		w = 0;
	}
	c->bytes_out += w;
	if ((size_t)w == total)
		return 0;
	done = w;
	if (done < iov[0].iov_len) {
		if (conn_write(c, head + done, iov[0].iov_len - done) == -1)
			return -1;
		done = iov[0].iov_len;
	}
	return conn_write(c, (const char *)body + (done - iov[0].iov_len),
	    total - done);
}

/* An error of our own, in Gemini's shape. */
int
conn_error(struct conn *c, int status, const char *msg, const char *extra)
{
	char	 body[1024];
	int	 n;

	n = http_error_body(body, sizeof(body), status, msg);
	if (n < 0)
		n = 0;
	return conn_respond(c, status, "application/json; charset=UTF-8",
	    extra, body, n);
}
