/*
 * A worker: waits for a connection, serves it (keep-alive, pipelining),
 * and goes back to waiting, one connection at a time like Apache prefork.
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <bsd/libutil.h>
#include <bsd/string.h>
#include <bsd/unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "looper.h"
#include "shm.h"

#define BUF_SIZE	(HTTP_MAX_HEAD + 16 * 1024)

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

static void
http_date(char *buf, size_t len)
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
	strlcpy(buf, cached, len);
}

/*
 * Send a whole answer: status line, our headers, extra (each line ending
 * in CRLF, or NULL), and the body.  HEAD gets the head only.
 */
int
conn_respond(struct conn *c, int status, const char *ctype,
    const char *extra, const void *body, size_t len)
{
	char		 head[2048], date[64];
	struct iovec	 iov[2];
	int		 n, head_only;
	ssize_t		 w;
	size_t		 total, done;

	if (c->sent_head)
		return -1;
	if (wrk_stopping())
		c->close = 1;
	http_date(date, sizeof(date));
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
	    "Date: %s\r\nServer: %s\r\n"
	    "%s%s%s"
	    "Content-Length: %zu\r\n"
	    "%s"
	    "%s\r\n",
	    status, http_reason(status), date, LOOPER_NAME,
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
 * -1 on error or timeout (*timedout set).
 */
static ssize_t
conn_fill(struct conn *c, int64_t deadline, int interruptible,
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
		w = wait_fd(c->fd, POLLIN, deadline, interruptible);
		if (w == 0)
			*timedout = 1;
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
		n = conn_fill(c, c->deadline, 0, &to);
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
 * Read one request: head and body.  Returns 0 with c->req and c->body set,
 * or -1 when the connection is to be closed (any answer already sent).
 */
static int
read_request(struct conn *c, int first)
{
	const struct config	*cfg = looper.cfg;
	const char		*why = NULL;
	size_t			 scan = 0;
	ssize_t			 n;
	int64_t			 idle;
	int			 rv, status = 400, to;

	c->status = 0;
	c->sent_head = 0;
	c->bytes_out = 0;
	c->body_len = 0;
	c->log[0] = '\0';
	c->next = 0;
	memset(&c->req, 0, sizeof(c->req));

	/* Wait for the first byte: an idle kept-alive connection may be
	 * dropped at any time, and is when the worker must stop. */
	if (c->len == 0) {
		idle = first ? cfg->client_timeout_s : cfg->keepalive_timeout_s;
		n = conn_fill(c, mono_ms() + idle * 1000, !first, &to);
		if (n <= 0)
			return -1;
	}
	board_set(looper.shm, looper.slot, SHM_W_READING, NULL);
	c->started = mono_ms();
	c->deadline = c->started + (int64_t)cfg->client_timeout_s * 1000;

	for (;;) {
		/* Parse only once the blank line is here: cheap, and the
		 * parser sees each head once. */
		if (memmem(c->buf + scan, c->len - scan, "\r\n\r\n", 4) !=
		    NULL || memmem(c->buf + scan, c->len - scan, "\n\n", 2) !=
		    NULL || c->len >= HTTP_MAX_HEAD) {
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
		scan = c->len > 3 ? c->len - 3 : 0;
		n = conn_fill(c, c->deadline, 0, &to);
		if (n <= 0) {
			if (to) {
				c->close = 1;
				conn_error(c, 408, "the request did not arrive "
				    "in time", NULL);
			}
			return -1;
		}
	}

	if (!c->req.keepalive)
		c->close = 1;
	if (c->req.content_length > cfg->max_body_bytes) {
		c->close = 1;
		conn_error(c, 413, "request body too large", NULL);
		return -1;
	}
	if (c->req.expect_continue && (c->req.chunked ||
	    c->req.content_length > 0) && c->len == c->req.head_len) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (conn_write(c, cont, sizeof(cont) - 1) == -1)
			return -1;
		c->bytes_out = 0;
	}
	if (c->req.chunked)
		return read_body_chunked(c);
	if (c->req.content_length > 0)
		return read_body_length(c);
	c->next = c->req.head_len;
	return 0;
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

static void
serve(struct conn *c)
{
	int	 first = 1, one = 1;
	char	 what[96], path[64];

	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->len = 0;
	c->close = 0;
	for (;;) {
		board_set(looper.shm, looper.slot, first ? SHM_W_READING :
		    SHM_W_KEEPALIVE, NULL);
		if (read_request(c, first) == -1) {
			if (c->status != 0)
				access_log(c);
			break;
		}
		first = 0;
		/* Never show a key or token that came in a query string. */
		route_log_path(c->req.target, path, sizeof(path));
		snprintf(what, sizeof(what), "%.15s %s", c->req.method, path);
		board_set(looper.shm, looper.slot, SHM_W_WRITING, what);
		route_request(c);
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
		/* A big body buffer is not kept for the next request. */
		if (c->body_cap > 1024 * 1024) {
			free(c->body);
			c->body = NULL;
			c->body_cap = 0;
		}
	}
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
	/* TLS first: the CA file may be readable by root only. */
	if (tls_init(looper.cfg, errbuf, sizeof(errbuf)) == -1) {
		log_warnx("worker: upstream TLS: %s", errbuf);
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

				log_warn("accept");
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
