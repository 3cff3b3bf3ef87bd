/*
 * A worker: waits for a connection, serves it (keep-alive, pipelining),
 * and goes back to waiting, one connection at a time like Apache prefork.
 * So that slow clients cannot hold the whole pool, a worker still waiting
 * for a request head watches the listening socket too, and gives its
 * client up when connections queue there and the pool is full
 * (wait_client); it reads the scoreboard for that, and takes no lock.
 *
 * Signals stay blocked while a request is served, so no system call of the
 * proxy path is ever interrupted; they are let in only where the worker
 * waits with nothing in hand (for a connection, or for the next request on
 * a kept-alive one), via epoll_pwait/ppoll.  SIGTERM (stop), SIGHUP (a new
 * config generation) and SIGUSR2 (the pool shrinks) all mean: finish the
 * request in hand, then exit 0.  The worker dies with the master
 * (PR_SET_PDEATHSIG): without a master nobody would persist its counts or
 * replace it, and a restarted master needs the port.
 */
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/sockios.h>

#include <bsd/libutil.h>
#include <bsd/string.h>
#include <bsd/unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "looper.h"
#include "priv.h"
#include "route.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define BUF_SIZE	(HTTP_MAX_HEAD + 16 * 1024)
#define BODY_KEEP	(1024 * 1024)	/* a larger body buffer is freed */
#define LINGER_MS	1000		/* lingering close, at most, */
#define LINGER_IDLE_MS	200		/* and no longer than this idle */

/*
 * Slow request heads while the pool is full (see wait_client): a head may
 * be given up once it has been arriving for YIELD_GRACE_MS; a worker that
 * does not give its client up looks again after YIELD_BACKOFF_MS at most;
 * while the pool is not full, a waiting worker looks whether it has become
 * so every YIELD_RECHECK_MS.
 */
#define YIELD_GRACE_MS		100
#define YIELD_BACKOFF_MS	50
#define YIELD_RECHECK_MS	250

/* How conn_fill() failed, besides an error or the client's EOF. */
#define FILL_TIMEOUT		1	/* the deadline passed */
#define FILL_YIELD		2	/* given up for a queued connection */

static volatile sig_atomic_t	 wsig_stop, wsig_usr1;
static sigset_t			 wait_mask;	/* mask while waiting idle */

static void
worker_sig(int sig)
{
	if (sig == SIGUSR1)
		wsig_usr1 = 1;
	else
		wsig_stop = 1;
}

/* Should this worker stop after the request in hand? */
int
wrk_stopping(void)
{
	sigset_t	 p;

	if (wsig_stop)
		return 1;
	if (sigpending(&p) == 0 && (sigismember(&p, SIGTERM) ||
	    sigismember(&p, SIGHUP) || sigismember(&p, SIGUSR2) ||
	    sigismember(&p, SIGINT)))
		return 1;
	if (__atomic_load_n(&looper.shm->generation, __ATOMIC_ACQUIRE) !=
	    looper.generation)
		return 1;
	return 0;
}

static int
wait_fd(int fd, short events, int64_t deadline, int interruptible)
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
		n = ppoll(&pfd, 1, &ts, interruptible ? &wait_mask : NULL);
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR || interruptible)
			return -1;
	}
}

/*
 * Is the pool full: no worker idle (or starting), and as many as max, so
 * that the master will not fork another?
 */
static int
pool_full(void)
{
	const struct shm_slot	*s = SHM_SLOTS(looper.shm);
	uint32_t		 i, st;
	int			 total = 0;

	for (i = 0; i < looper.shm->max_workers; i++) {
		st = __atomic_load_n(&s[i].state, __ATOMIC_ACQUIRE);
		if (st == SHM_W_IDLE || st == SHM_W_STARTING)
			return 0;
		if (st != SHM_W_FREE)
			total++;
	}
	return total >= looper.cfg->max_workers;
}

/* In the order in which workers give up their clients: lower first. */
static int
yield_before(uint32_t st_a, int64_t start_a, uint32_t a, uint32_t st_b,
    int64_t start_b, uint32_t b)
{
	if (st_a != st_b)
		return st_a == SHM_W_KEEPALIVE;
	if (st_a == SHM_W_READING && start_a != start_b)
		return start_a < start_b;
	return a < b;
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
yield_check(void)
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
		if (yield_before(st, start, i, mine, mystart,
		    (uint32_t)looper.slot))
			rank++;
	}
	if (idle > 0 || total < looper.cfg->max_workers)
		return YIELD_BACKOFF_MS;
	return rank < pending ? 0 : YIELD_BACKOFF_MS;
}

/*
 * Wait until the client sends more, or deadline.  Returns 1 (readable),
 * 0 (deadline), -1 (error, or a signal when interruptible), or FILL_YIELD.
 *
 * Slowloris: a worker serves one connection at a time, so clients that
 * send their request heads a byte at a time can hold every worker of the
 * pool while new connections wait in the listen queue, each one for up to
 * client_timeout_s.  With mayyield (the client owes a request head, or is
 * kept alive between requests), while the pool is full the listening
 * socket is watched too, and when connections wait there yield_check()
 * decides whether this worker gives its client up for them: the pool's max
 * then bounds how many slow clients are held, not how many clients are
 * served.  While the pool is not full the listening socket is left to the
 * idle workers, so that a new connection wakes no busy one.
 */
static int
wait_client(struct conn *c, int64_t deadline, int interruptible,
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
				if (pool_full())
					nfd = 2;
				else
					quiet = now + YIELD_RECHECK_MS;
			}
			if (nfd == 1 && quiet - now < left)
				left = quiet - now;
		}
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000;
		n = ppoll(pfd, nfd, &ts, interruptible ? &wait_mask : NULL);
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
			if ((wait = yield_check()) == 0)
				return FILL_YIELD;
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
			if (wait_fd(c->fd, POLLOUT, mono_ms() +
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
		c->bytes_out -= 0;
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

/*
 * Read more bytes into the connection buffer.  Returns bytes read, 0 on EOF,
 * -1 on error, timeout (*timedout FILL_TIMEOUT) or, with mayyield, when
 * the client is given up for a queued connection (*timedout FILL_YIELD).
 */
static ssize_t
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
		w = wait_client(c, deadline, interruptible, mayyield);
		if (w == 0)
			*timedout = FILL_TIMEOUT;
		if (w == FILL_YIELD)
			*timedout = FILL_YIELD;
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

static int
body_reserve(struct conn *c, size_t more)
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

static int
read_body_length(struct conn *c)
{
	int64_t	 cl = c->req.content_length;
	size_t	 avail, take;
	ssize_t	 n;
	int	 w;

	if (body_reserve(c, (size_t)cl) == -1) {
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
		w = wait_fd(c->fd, POLLIN, c->deadline, 0);
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

static int
read_body_chunked(struct conn *c)
{
	struct http_chunked	 ch;
	const char		*why = NULL;
	size_t			 pos = c->req.head_len, used, out;
	ssize_t			 n;
	int			 rv, to;

	memset(&ch, 0, sizeof(ch));
	for (;;) {
		if (pos < c->len) {
			if (body_reserve(c, c->len - pos) == -1) {
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
give_up(struct conn *c)
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
static void
board_what(const struct conn *c, char *what, size_t len)
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
head_ready(const char *buf, size_t from, size_t len)
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
 * a lingering close (serve: body_unread stays set).  Returns
 * read_request's verdict: 1 (answered, the connection goes on) for a
 * request without a body, else -1.
 */
static int
refuse_body(struct conn *c)
{
	c->next = c->req.head_len;
	if (c->req.content_length <= 0 && !c->req.chunked)
		return 1;
	explicit_bzero(c->buf + c->req.head_len, c->len - c->req.head_len);
	c->len = c->next = c->req.head_len;
	c->close = 1;	/* conn_respond() said so in its answer */
	return -1;
}

/*
 * Read one request: head, then (once route_admit() has let it through)
 * its body.  Returns 0 with c->req and c->body set, 1 when the request
 * has been answered already (refused before its body), or -1 when the
 * connection is to be closed (any answer already sent).
 */
static int
read_request(struct conn *c, int first)
{
	const struct config	*cfg = looper.cfg;
	const char		*why = NULL;
	size_t			 scan = 0;
	ssize_t			 n;
	int64_t			 idle;
	char			 what[96];
	int			 rv, status = 400, to;

	c->status = 0;
	c->sent_head = 0;
	c->body_unread = 0;
	c->bytes_out = 0;
	c->body_len = 0;
	c->log[0] = '\0';
	c->next = 0;
	memset(&c->req, 0, sizeof(c->req));

	/* Wait for the first byte: an idle kept-alive connection may be
	 * dropped at any time, and is when the worker must stop. */
	if (c->len == 0) {
		idle = first ? cfg->client_timeout_s : cfg->keepalive_timeout_s;
		n = conn_fill(c, mono_ms() + idle * 1000, !first, 1, &to);
		if (n <= 0) {
			if (to == FILL_YIELD)
				log_debug("peer=%s given up before its request "
				    "for a queued connection", c->peer);
			return -1;
		}
	}
	board_set(looper.shm, looper.slot, SHM_W_READING, NULL);
	c->started = mono_ms();
	c->deadline = c->started + (int64_t)cfg->client_timeout_s * 1000;

	for (;;) {
		/* Parse only once the blank line is here: cheap, and the
		 * parser sees each head once. */
		if (head_ready(c->buf, scan, c->len) ||
		    c->len >= HTTP_MAX_HEAD) {
			rv = http_parse_head(c->buf, c->len, &c->req, &status,
			    &why);
			if (rv == HTTP_PARSE_DONE)
				break;
			if (rv == HTTP_PARSE_ERROR) {
				c->close = 1;
				memset(&c->req, 0, sizeof(c->req));
				conn_error(c, status, why != NULL ? why :
				    "malformed request", NULL);
				return -1;
			}
		}
		scan = c->len;	/* head_ready() looks back from each LF */
		n = conn_fill(c, c->deadline, 0, 1, &to);
		if (n <= 0) {
			if (to == FILL_TIMEOUT) {
				c->close = 1;
				conn_error(c, 408, "the request did not arrive "
				    "in time", NULL);
			} else if (to == FILL_YIELD)
				give_up(c);
			return -1;
		}
	}
	/* Named on the board: a request in its body is not given up. */
	board_what(c, what, sizeof(what));
	board_set(looper.shm, looper.slot, SHM_W_READING, what);

	if (!c->req.keepalive)
		c->close = 1;
	/* Route, credentials and method before the body: a body nobody
	 * will serve is never read, nor asked for with 100 Continue. */
	c->body_unread = c->req.content_length > 0 || c->req.chunked;
	if (route_admit(c) == -1)
		return refuse_body(c);
	if (c->req.content_length > cfg->max_body_bytes) {
		conn_error(c, 413, "request body too large", NULL);
		return refuse_body(c);
	}
	if (c->req.expect_continue && (c->req.chunked ||
	    c->req.content_length > 0) && c->len == c->req.head_len) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (conn_write(c, cont, sizeof(cont) - 1) == -1)
			return -1;
		c->bytes_out = 0;
	}
	if (c->req.chunked)
		rv = read_body_chunked(c);
	else if (c->req.content_length > 0)
		rv = read_body_length(c);
	else {
		c->next = c->req.head_len;
		rv = 0;
	}
	c->body_unread = 0;
	return rv;
}

static void
access_log(struct conn *c)
{
	char	 path[1024];

	route_log_path(c->req.target != NULL ? c->req.target : "-", path,
	    sizeof(path));
	log_access("peer=%s method=%s path=%s status=%d bytes=%llu ms=%lld%s%s",
	    c->peer, c->req.method != NULL ? c->req.method : "-", path,
	    c->status, (unsigned long long)c->bytes_out,
	    (long long)(mono_ms() - c->started), c->log[0] ? " " : "",
	    c->log);
}

static int
readable(int fd)
{
	char	 b;

	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* A big body buffer is not kept for the next request or connection. */
static void
body_shrink(struct conn *c)
{
	if (c->body_cap > BODY_KEEP) {
		free(c->body);
		c->body = NULL;
		c->body_cap = 0;
	}
}

/*
 * A lingering close, as nginx and Apache do it: the client may still be
 * sending the body of a request we refused, and closing a socket with
 * unread bytes sends a reset, which can destroy our answer before the
 * client has read it.  So stop writing, then read and throw away what
 * comes until the client closes too, for a short while only: bytes in
 * flight arrive within a round trip, and a worker that lingers serves no
 * one (nginx's lingering_time and lingering_timeout, made small).
 */
static void
linger(struct conn *c)
{
	char	 sink[4096];
	int64_t	 end = mono_ms() + LINGER_MS, idle;
	ssize_t	 n;

	if (shutdown(c->fd, SHUT_WR) == -1)
		return;
	for (;;) {
		n = recv(c->fd, sink, sizeof(sink), 0);
		if (n > 0)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR))
			return;
		idle = mono_ms() + LINGER_IDLE_MS;
		if (wait_fd(c->fd, POLLIN, idle < end ? idle : end, 0) != 1)
			return;
	}
}

static void
serve(struct conn *c)
{
	int	 first = 1, one = 1, rv;
	char	 what[96];

	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->len = 0;
	c->close = 0;
	for (;;) {
		board_set(looper.shm, looper.slot, first ? SHM_W_READING :
		    SHM_W_KEEPALIVE, NULL);
		if ((rv = read_request(c, first)) == -1) {
			if (c->status != 0)
				access_log(c);
			break;
		}
		first = 0;
		if (rv == 0) {
			/* Never show a key or token from a query string. */
			board_what(c, what, sizeof(what));
			board_set(looper.shm, looper.slot, SHM_W_WRITING, what);
			route_request(c);
		}
		board_served(looper.shm, looper.slot);
		access_log(c);
		if (c->close)
			break;
		/* Stopping: an idle connection goes, but a request that has
		 * already started to arrive is in flight and gets served. */
		if (wrk_stopping() && c->len == c->next && !readable(c->fd))
			break;
		/* Pipelining: what follows this request stays buffered. */
		memmove(c->buf, c->buf + c->next, c->len - c->next);
		c->len -= c->next;
		body_shrink(c);
	}
	body_shrink(c);
	/* A body never read may still be on its way (refuse_body). */
	if (c->body_unread)
		linger(c);
	close(c->fd);
	c->fd = -1;
}

static void
peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
		    buf, len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, len);
	else
		strlcpy(buf, "unix", len);
}

void
worker_main(int slot)
{
	struct sigaction	 sa;
	struct epoll_event	 ev;
	struct sockaddr_storage	 ss;
	struct conn		 c;
	socklen_t		 sslen;
	sigset_t		 block;
	char			 errbuf[256];
	int			 epfd, fd;

	looper.slot = slot;
	looper.generation = looper.shm->generation;
	/* A fixed threshold (glibc's moves up to 32 MiB after a big free):
	 * a large request body is mmap()ed, and free() gives it back. */
	(void)mallopt(M_MMAP_THRESHOLD, BODY_KEEP / 4);
	/* One arena: the resolver's thread (resolve.c) needs no other. */
	(void)mallopt(M_ARENA_MAX, 1);
	/* TLS first: the CA file may be readable by root only. */
	if (tls_init(looper.cfg, errbuf, sizeof(errbuf)) == -1) {
		log_errx("worker: upstream TLS: %s", errbuf);
		_exit(WRK_EXIT_FATAL);
	}
	priv_drop();	/* before PDEATHSIG: a change of uid clears it */
	/* Die with the master; check it did not die already. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
	    getppid() != looper.master_pid)
		_exit(WRK_EXIT_OK);
	setproctitle("worker");
	/* A daemon's stderr is the waiting parent's pipe: let go of it. */
	if (!looper.foreground && (fd = open("/dev/null", O_WRONLY)) != -1) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	if (looper.pfh != NULL)
		pidfile_close(looper.pfh);
	looper.pfh = NULL;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = worker_sig;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGHUP);
	sigdelset(&wait_mask, SIGUSR1);
	sigdelset(&wait_mask, SIGUSR2);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGCHLD);
	sigdelset(&wait_mask, SIGALRM);

	/* Exclusive wake-ups: one idle worker per connection, no herd. */
	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		_exit(WRK_EXIT_SLOW);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, looper.listen_fd, &ev) == -1)
		_exit(WRK_EXIT_SLOW);

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	c.cap = BUF_SIZE;
	if ((c.buf = malloc(c.cap + 1)) == NULL)
		_exit(WRK_EXIT_SLOW);

	for (;;) {
		board_set(looper.shm, looper.slot, SHM_W_IDLE, NULL);
		if (wsig_usr1) {
			wsig_usr1 = 0;
			(void)log_reopen();
		}
		if (wrk_stopping() || getppid() != looper.master_pid)
			break;
		/* Wake every second to notice a missed signal or generation. */
		if (epoll_pwait(epfd, &ev, 1, 1000, &wait_mask) <= 0)
			continue;
		sslen = sizeof(ss);
		fd = accept4(looper.listen_fd, (struct sockaddr *)&ss, &sslen,
		    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Pause instead of spinning (relayd). */
				struct timespec ts = { 0, 100 * 1000 * 1000 };

				log_err("accept");
				nanosleep(&ts, NULL);
			}
			continue;
		}
		c.fd = fd;
		peer_name(&ss, c.peer, sizeof(c.peer));
		serve(&c);
	}
	board_set(looper.shm, looper.slot, SHM_W_CLOSING, NULL);
	_exit(WRK_EXIT_OK);
}
