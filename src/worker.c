/*
 * A worker: waits for a connection, serves it (keep-alive, pipelining),
 * and goes back to waiting, one connection at a time like Apache prefork.
 * Its connection's reads and answers are conn.c's, each request's reading
 * request.c's, and route.c hands each request to its handler.
 *
 * Signals stay blocked while a request is served, so no system call of the
 * proxy path is ever interrupted; they are let in only where the worker
 * waits with nothing in hand (for a connection, or for the next request on
 * a kept-alive one), via epoll_pwait/ppoll.  SIGTERM (stop), SIGHUP (a new
 * config generation) and SIGUSR2 (the pool shrinks) all mean: finish the
 * request in hand, then exit 0.  The worker dies with the master
 * (PR_SET_PDEATHSIG): without a master nobody would persist its counts or
 * replace it, and a restarted master needs the port.  The worker writes
 * its state to its scoreboard slot (shm/board.c) and takes no lock.
 */
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

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

static volatile sig_atomic_t	 wsig_stop, wsig_usr1;
static sigset_t			 wrk_wait_mask;	/* mask while waiting idle */

/* Handlers only set a flag (and keep errno): the loops look at them. */
static void
wrk_sig(int sig)
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

/*
 * Is the worker told to stop for good (TERM, INT), not only to make way
 * for a new generation or a smaller pool?  A Live session runs on through
 * the latter, and is closed (1001) on the former.
 */
int
wrk_terminating(void)
{
	sigset_t	 p;

	return sigpending(&p) == 0 && (sigismember(&p, SIGTERM) ||
	    sigismember(&p, SIGINT));
}

/* One access log line a request, with what proxy.c put in c->log. */
static void
wrk_access_log(struct conn *c)
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

/* Has the client sent something (a next request, under way)? */
static int
wrk_readable(int fd)
{
	char	 b;

	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

/* A big body buffer is not kept for the next request or connection. */
static void
wrk_body_shrink(struct conn *c)
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
wrk_linger(struct conn *c)
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
		if (conn_wait(c->fd, POLLIN, idle < end ? idle : end, 0) != 1)
			return;
	}
}

/*
 * The connection is to end with a TCP reset, not a FIN (SO_LINGER 0): a
 * cut answer whose end only the close would mark (relay.c).
 */
static void
wrk_abort(int fd)
{
	struct linger	 l = { 1, 0 };

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

/*
 * Serve one connection: request after request (kept alive, pipelined),
 * until the client or the answer closes it, or the worker must stop.
 */
static void
wrk_serve(struct conn *c)
{
	int	 first = 1, one = 1, rv;
	char	 what[96];

	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->len = 0;
	c->close = 0;
	c->reset = 0;
	for (;;) {
		board_set(looper.shm, looper.slot, first ? SHM_W_READING :
		    SHM_W_KEEPALIVE, NULL);
		if ((rv = rq_read(c, first)) == -1) {
			if (c->status != 0)
				wrk_access_log(c);
			break;
		}
		first = 0;
		if (rv == 0) {
			/* Never show a key or token from a query string. */
			rq_board_what(c, what, sizeof(what));
			board_set(looper.shm, looper.slot, SHM_W_WRITING, what);
			route_request(c);
		}
		board_served(looper.shm, looper.slot);
		wrk_access_log(c);
		if (c->close)
			break;
		/* Stopping: an idle connection goes, but a request that has
		 * already started to arrive is in flight and gets served. */
		if (wrk_stopping() && c->len == c->next && !wrk_readable(c->fd))
			break;
		/* Pipelining: what follows this request stays buffered. */
		memmove(c->buf, c->buf + c->next, c->len - c->next);
		c->len -= c->next;
		wrk_body_shrink(c);
	}
	wrk_body_shrink(c);
	/* A body never read may still be on its way (request.c). */
	if (c->body_unread)
		wrk_linger(c);
	if (c->reset)
		wrk_abort(c->fd);
	close(c->fd);
	c->fd = -1;
}

/* The client's address, for the logs. */
static void
wrk_peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
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

/*
 * The worker's start: what needs root first (the CA file may be readable
 * by root only), then the privilege drop and what must follow it.  Exits
 * when the worker cannot work.
 */
static void
wrk_start(int slot)
{
	char	 errbuf[256];

	looper.slot = slot;
	looper.generation = looper.shm->generation;
	/* A fixed threshold (glibc's moves up to 32 MiB after a big free):
	 * a large request body is mmap()ed, and free() gives it back. */
	(void)mallopt(M_MMAP_THRESHOLD, BODY_KEEP / 4);
	/* One arena: the resolver's thread (resolve.c) needs no other. */
	(void)mallopt(M_ARENA_MAX, 1);
	if (tls_init(looper.cfg, errbuf, sizeof(errbuf)) == -1) {
		log_errx("worker: upstream TLS: %s", errbuf);
		_exit(WRK_EXIT_FATAL);
	}
	priv_child(WRK_EXIT_OK);
	setproctitle("worker");
}

/*
 * The signals that end the worker (after the request in hand) or reopen
 * its log are blocked, and let in only by the waits of an idle worker:
 * wrk_wait_mask here, and conn.c's interruptible waits.
 */
static void
wrk_signals(void)
{
	static const int	 stop[] = { SIGTERM, SIGHUP, SIGUSR1, SIGUSR2,
				    SIGINT };
	struct sigaction	 sa;
	sigset_t		 block;
	size_t			 i;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = wrk_sig;
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
	for (i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
		sigaddset(&block, stop[i]);
	sigprocmask(SIG_BLOCK, &block, &wrk_wait_mask);
	for (i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
		sigdelset(&wrk_wait_mask, stop[i]);
	sigdelset(&wrk_wait_mask, SIGCHLD);
	sigdelset(&wrk_wait_mask, SIGALRM);
	conn_init(&wrk_wait_mask);
}

/* The listening socket, watched with exclusive wake-ups: no herd. */
static int
wrk_listen(void)
{
	struct epoll_event	 ev;
	int			 epfd;

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		_exit(WRK_EXIT_SLOW);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, looper.listen_fd, &ev) == -1)
		_exit(WRK_EXIT_SLOW);
	return epfd;
}

/*
 * The next connection into c, waiting a second at most (to notice a
 * missed signal or generation).  Returns 0, or -1 when none came.
 */
static int
wrk_accept(int epfd, struct conn *c)
{
	struct epoll_event	 ev;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);
	int			 fd;

	if (epoll_pwait(epfd, &ev, 1, 1000, &wrk_wait_mask) <= 0)
		return -1;
	fd = accept4(looper.listen_fd, (struct sockaddr *)&ss, &sslen,
	    SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd == -1) {
		if (errno == EMFILE || errno == ENFILE) {
			/* Pause instead of spinning (relayd). */
			struct timespec ts = { 0, 100 * 1000 * 1000 };

			log_err("accept");
			nanosleep(&ts, NULL);
		}
		return -1;
	}
	c->fd = fd;
	wrk_peer_name(&ss, c->peer, sizeof(c->peer));
	return 0;
}

/*
 * A worker's life: start, then wait for a connection and serve it, one at
 * a time, until told to stop (or the master is gone).
 */
void
worker_main(int slot)
{
	struct conn	 c;
	int		 epfd;

	wrk_start(slot);
	wrk_signals();
	epfd = wrk_listen();

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
		if (wrk_accept(epfd, &c) == 0)
			wrk_serve(&c);
	}
	board_set(looper.shm, looper.slot, SHM_W_CLOSING, NULL);
	_exit(WRK_EXIT_OK);
}
