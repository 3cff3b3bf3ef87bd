/*
 * A Live session's frames, both ways: the client's side (ws.c in the
 * server role, over the client's socket) and the upstream's (the client
 * role, over the upgraded TLS connection, uplink.c), pumped by one poll()
 * loop.  Whole messages go across unchanged (a fragmented message may go
 * on in one frame, as RFC 6455 lets an intermediary do); pings are
 * answered by each side itself, and our own pings keep idle paths open
 * and tell a dead client from a quiet one.  Close frames pass through
 * with their codes: each side answers its peer's close itself, and the
 * close goes on to the other side, whose answer ends the session.
 *
 * Before setupComplete (live.c's attempts), what the client sends is kept
 * (struct live_early) as well as sent, so that a refused attempt can be
 * made again on another key with the same messages; the upstream's close
 * then ends the attempt, not the session, and the client sees none of it.
 *
 * The server's messages are read for setupComplete and usageMetadata
 * (livemsg.c), which is metered as it comes (shm_live_usage).
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "config.h"
#include "live_int.h"
#include "livemsg.h"
#include "looper.h"
#include "scrub.h"
#include "shm.h"
#include "upstream.h"
#include "util.h"
#include "verdict.h"
#include "worker.h"
#include "ws.h"

/* The client's bytes: what came after the request head first. */
static ssize_t
lr_client_recv(void *arg, void *buf, size_t len)
{
	struct conn	*c = ((struct live *)arg)->c;
	ssize_t		 n;

	if (c->next < c->len) {
		n = (ssize_t)(c->len - c->next < len ? c->len - c->next : len);
		memcpy(buf, c->buf + c->next, n);
		c->next += n;
		return n;
	}
	n = recv(c->fd, buf, len, 0);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return WS_IO_AGAIN;
	return WS_IO_ERROR;
}

static ssize_t
lr_client_send(void *arg, const void *buf, size_t len)
{
	struct conn	*c = ((struct live *)arg)->c;
	ssize_t		 n;

	n = send(c->fd, buf, len, MSG_NOSIGNAL);
	if (n >= 0) {
		c->bytes_out += n;
		return n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return WS_IO_AGAIN;
	return WS_IO_ERROR;
}

static ssize_t
lr_up_recv(void *arg, void *buf, size_t len)
{
	return up_link_recv(((struct live *)arg)->up, buf, len);
}

static ssize_t
lr_up_send(void *arg, const void *buf, size_t len)
{
	return up_link_send(((struct live *)arg)->up, buf, len);
}

/* Keep a message sent before the session opened; -1 when too much. */
static int
lr_early_add(struct live *l, int op, const uint8_t *d, size_t n)
{
	struct live_early	*e;

	if (l->early_bytes + n > LIVE_EARLY_MAX)
		return -1;
	e = reallocarray(l->early, l->nearly + 1, sizeof(*e));
	if (e == NULL)
		return -1;
	l->early = e;
	e = &l->early[l->nearly];
	if ((e->data = malloc(n > 0 ? n : 1)) == NULL)
		return -1;
	memcpy(e->data, d, n);
	e->op = op;
	e->len = n;
	l->nearly++;
	l->early_bytes += n;
	return 0;
}

void
lr_early_free(struct live *l)
{
	size_t	 i;

	for (i = 0; i < l->nearly; i++)
		free(l->early[i].data);
	free(l->early);
	l->early = NULL;
	l->nearly = 0;
	l->early_bytes = 0;
}

/* Start ending the session: these closes go, their answers are awaited. */
static void
lr_close_both(struct live *l, int ccode, const char *cwhy, int ucode,
    const char *uwhy)
{
	if (l->cs != NULL && !ws_close_sent(l->cs))
		(void)ws_queue_close(l->cs, ccode, cwhy, strlen(cwhy));
	if (l->us != NULL && !ws_close_sent(l->us))
		(void)ws_queue_close(l->us, ucode, uwhy, strlen(uwhy));
	if (!l->closing) {
		l->closing = 1;
		l->close_by = mono_ms() + LIVE_CLOSE_WAIT_MS;
	}
}

/* Close the client's side (and the upstream's, going away) with why. */
void
lr_close_client(struct live *l, int code, const char *why)
{
	if (l->why == NULL)
		l->why = why;
	lr_close_both(l, code, why, WS_CLOSE_GOING_AWAY,
	    "the client's session is over");
}

/* A whole message from the client. */
static void
lr_c_msg(void *arg, int op, const uint8_t *d, size_t n)
{
	struct live	*l = arg;

	l->last_client = mono_ms();
	if (l->closing)
		return;
	if (!l->opened && lr_early_add(l, op, d, n) == -1) {
		lr_close_client(l, WS_CLOSE_TOO_BIG, "too much was sent "
		    "before the session opened");
		return;
	}
	if (l->us != NULL && !ws_close_sent(l->us)) {
		(void)ws_queue(l->us, op, d, n);
		l->to_upstream++;
	}
}

/* The client's close: it goes on upstream as it came. */
static void
lr_c_close(void *arg, int code, const char *reason, size_t len)
{
	struct live	*l = arg;

	l->last_client = mono_ms();
	l->cclose.got = 1;
	l->cclose.code = code;
	l->cclose.len = len < WS_REASON_MAX ? len : WS_REASON_MAX;
	memcpy(l->cclose.reason, reason, l->cclose.len);
	l->cclose.reason[l->cclose.len] = '\0';
	if (l->why == NULL)
		l->why = "closed by the client";
	if (l->us != NULL && !ws_close_sent(l->us))
		(void)ws_queue_close(l->us, code, reason, l->cclose.len);
	if (!l->closing) {
		l->closing = 1;
		l->close_by = mono_ms() + LIVE_CLOSE_WAIT_MS;
	}
}

static void
lr_c_pong(void *arg)
{
	((struct live *)arg)->last_client = mono_ms();
}

/* A whole message from the upstream: read for the pool, then passed on. */
static void
lr_u_msg(void *arg, int op, const uint8_t *d, size_t n)
{
	struct live		*l = arg;
	struct shm_tokens	 t;
	int			 what;

	what = lm_server(d, n, &t);
	if (!l->opened) {
		/* setupComplete, or anything: the upstream took it. */
		l->opened = 1;
		shm_live_open(looper.shm, &l->pick, now_ms());
	}
	if (what & LM_USAGE) {
		shm_live_usage(looper.shm, &l->pick, &t, now_ms());
		l->usage.prompt += t.prompt;
		l->usage.candidates += t.candidates;
		l->usage.cached += t.cached;
		l->usage.thoughts += t.thoughts;
		l->usage.total += t.total;
	}
	if (!ws_close_sent(l->cs)) {
		(void)ws_queue(l->cs, op, d, n);
		l->to_client++;
	}
}

/*
 * The upstream's close.  Before the session opened it ends the attempt
 * (live.c weighs it); after, a quota or key close tells on the key, and
 * the close goes on to the client, its reason scrubbed of keys.
 */
static void
lr_u_close(void *arg, int code, const char *reason, size_t len)
{
	struct live		*l = arg;
	struct gem_verdict	 v;

	l->uclose.got = 1;
	l->uclose.code = code;
	l->uclose.len = len < WS_REASON_MAX ? len : WS_REASON_MAX;
	memcpy(l->uclose.reason, reason, l->uclose.len);
	l->uclose.reason[l->uclose.len] = '\0';
	l->uclose.len = scrub_text(looper.cfg->scrub, l->uclose.reason,
	    l->uclose.len);
	l->uclose.reason[l->uclose.len] = '\0';
	if (!l->opened || l->closing)
		return;
	lm_close_verdict(code, l->uclose.reason, l->uclose.len, &v);
	if (v.action == GEM_COOL || v.action == GEM_EXHAUST ||
	    v.action == GEM_INVALID)
		verdict_apply(&l->pick, l->model, code, &v, 0);
	if (l->why == NULL)
		l->why = "closed by the upstream";
	(void)ws_queue_close(l->cs, code, l->uclose.reason, l->uclose.len);
	l->closing = 1;
	l->close_by = mono_ms() + LIVE_CLOSE_WAIT_MS;
}

/* The client's side of the session.  0, or -1 (out of memory). */
int
lr_client_side(struct live *l)
{
	struct ws_io		 io = { lr_client_recv, lr_client_send, l };
	struct ws_cb		 cb = { lr_c_msg, lr_c_close, lr_c_pong, l };
	struct ws_limits	 lim = { looper.cfg->live_max_message,
				    LIVE_FRAGMENTS_MAX };

	l->cs = ws_new(1, &io, &cb, &lim);
	return l->cs != NULL ? 0 : -1;
}

/*
 * The upstream's side, on the upgraded connection: what the client sent
 * so far goes first.  0, or -1 (out of memory).
 */
int
lr_upstream_side(struct live *l)
{
	struct ws_io		 io = { lr_up_recv, lr_up_send, l };
	struct ws_cb		 cb = { lr_u_msg, lr_u_close, NULL, l };
	struct ws_limits	 lim = { looper.cfg->live_max_message,
				    LIVE_FRAGMENTS_MAX };
	size_t			 i;

	memset(&l->uclose, 0, sizeof(l->uclose));
	if ((l->us = ws_new(0, &io, &cb, &lim)) == NULL)
		return -1;
	for (i = 0; i < l->nearly; i++)
		if (ws_queue(l->us, l->early[i].op, l->early[i].data,
		    l->early[i].len) == -1)
			return -1;
	l->to_upstream += l->nearly;
	return 0;
}

/* Is a side done: failed, or closed both ways with nothing left to send? */
static int
lr_side_done(const struct ws *s)
{
	int	 code;

	if (s == NULL || ws_failed(s, &code))
		return 1;
	return ws_close_sent(s) && ws_close_received(s) && ws_queued(s) == 0;
}

/* Pings, a dead client, a TERM's deadline: what the clock says to do. */
static void
lr_timers(struct live *l, int64_t now)
{
	const struct config	*cfg = looper.cfg;
	int64_t			 ping = (int64_t)cfg->live_ping_s * 1000;

	if (l->term_at == 0 && wrk_terminating()) {
		l->term_at = now + (int64_t)cfg->shutdown_timeout_s * 1000 -
		    1000;
		if (l->term_at <= now)
			l->term_at = now;
	}
	if (l->closing)
		return;
	if (l->term_at != 0 && now >= l->term_at) {
		lr_close_both(l, WS_CLOSE_GOING_AWAY, "the proxy is shutting "
		    "down", WS_CLOSE_GOING_AWAY, "the proxy is shutting down");
		l->why = "the proxy shut down";
		return;
	}
	if (ping <= 0)
		return;
	if (now - l->last_client > 2 * ping) {
		l->why = "the client stopped answering pings";
		lr_close_both(l, WS_CLOSE_GOING_AWAY, "no answer to pings",
		    WS_CLOSE_GOING_AWAY, "the client went away");
		return;
	}
	if (now >= l->next_ping) {
		(void)ws_ping(l->cs);
		if (l->us != NULL && l->opened)
			(void)ws_ping(l->us);
		l->next_ping = now + ping;
	}
}

/*
 * Has the pump reached an end?  -1: not yet.  Before the session opened,
 * the upstream's close, failure or silence past deadline refuse the
 * attempt; the client's close or failure end everything.
 */
static int
lr_check(struct live *l, int was_open, int64_t deadline, int64_t now)
{
	int	 code;

	if (!was_open && l->opened)
		return LIVE_OPEN;
	if (!l->opened && !l->closing && l->us != NULL &&
	    (l->uclose.got || ws_failed(l->us, &code) ||
	    (deadline > 0 && now >= deadline)))
		return LIVE_REFUSED;
	if (l->cs != NULL && ws_failed(l->cs, &code) && !l->closing) {
		l->why = code == WS_CLOSE_ABNORMAL ? "the client went away" :
		    "the client broke the protocol";
		lr_close_both(l, code, "", WS_CLOSE_GOING_AWAY,
		    "the client went away");
	}
	if (l->opened && l->us != NULL && ws_failed(l->us, &code) &&
	    !l->closing) {
		l->why = "the upstream connection failed";
		lr_close_both(l, WS_CLOSE_INTERNAL, "the upstream connection "
		    "was lost", code, "");
	}
	if (l->closing && ((lr_side_done(l->cs) && lr_side_done(l->us)) ||
	    now >= l->close_by))
		return LIVE_OVER;
	return -1;
}

/* poll() events for a side: read unless the other side is backed up. */
static short
lr_events(const struct ws *s, const struct ws *other)
{
	short	 ev = 0;

	if (s == NULL)
		return 0;
	if (ws_want_read(s) && (other == NULL ||
	    ws_queued(other) < LIVE_HIGH_WATER))
		ev |= POLLIN;
	if (ws_want_write(s))
		ev |= POLLOUT;
	return ev;
}

/* One round: write what is queued, wait, read what came. */
static void
lr_round(struct live *l, int64_t now, int64_t deadline)
{
	struct pollfd	 pfd[2];
	int64_t		 wait = 1000;
	int		 cready, uready;

	if (l->cs != NULL)
		(void)ws_write(l->cs);
	if (l->us != NULL)
		(void)ws_write(l->us);
	pfd[0].fd = l->c->fd;
	pfd[0].events = lr_events(l->cs, l->us);
	pfd[1].fd = l->us != NULL ? up_fd(l->up) : -1;
	pfd[1].events = lr_events(l->us, l->cs);
	pfd[0].revents = pfd[1].revents = 0;
	cready = (pfd[0].events & POLLIN) && l->c->next < l->c->len;
	uready = (pfd[1].events & POLLIN) && up_link_pending(l->up);
	if (l->next_ping > 0 && l->next_ping - now < wait)
		wait = l->next_ping - now;
	if (deadline > 0 && deadline - now < wait)
		wait = deadline - now;
	if (l->closing && l->close_by - now < wait)
		wait = l->close_by - now;
	if (cready || uready || wait < 0)
		wait = 0;
	if (poll(pfd, 2, (int)wait) > 0) {
		cready |= (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
		uready |= (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
	}
	if (cready && ws_want_read(l->cs))
		(void)ws_read(l->cs);
	if (uready && l->us != NULL && ws_want_read(l->us))
		(void)ws_read(l->us);
}

/*
 * Pump frames until something ends it: the session opening (when it was
 * not open yet), the attempt refused, or the session over.  deadline
 * (mono ms, 0: none) bounds the wait for setupComplete.
 */
enum live_end
lr_pump(struct live *l, int64_t deadline)
{
	int	 was_open = l->opened, end;
	int64_t	 now;

	for (;;) {
		now = mono_ms();
		if ((end = lr_check(l, was_open, deadline, now)) != -1)
			break;
		lr_timers(l, now);
		lr_round(l, now, deadline);
	}
	if (l->cs != NULL)
		(void)ws_write(l->cs);
	if (l->us != NULL)
		(void)ws_write(l->us);
	return end;
}

/*
 * The client's first message, within client_timeout_s: kept in early[0]
 * (lr_c_msg).  0, or -1 when the client closed, failed or said nothing.
 */
int
lr_first_message(struct live *l)
{
	int64_t	 deadline = mono_ms() +
		    (int64_t)looper.cfg->client_timeout_s * 1000, now;
	int	 code;

	for (;;) {
		now = mono_ms();
		if (l->nearly > 0)
			return 0;
		if (l->closing || ws_failed(l->cs, &code))
			return -1;
		if (now >= deadline) {
			lr_close_client(l, WS_CLOSE_POLICY, "no setup "
			    "message in time");
			return -1;
		}
		lr_round(l, now, deadline);
	}
}

/* The session is over: the last closes flushed, both sides freed. */
void
lr_finish(struct live *l)
{
	if (l->cs != NULL) {
		(void)ws_write(l->cs);
		ws_free(l->cs);
		l->cs = NULL;
	}
	if (l->us != NULL) {
		ws_free(l->us);
		l->us = NULL;
	}
	lr_early_free(l);
}
