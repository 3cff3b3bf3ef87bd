/*
 * The Live API: a WebSocket session (BidiGenerateContent) through the
 * pool.  route.c sends /ws/... and //ws/... here.
 *
 *   1. live_admit: the path names a Live method, the request is a valid
 *      WebSocket upgrade (ws_check_upgrade: 405, 400, 426) and the client
 *      presents an access token (401) -- HTTP answers, before any upgrade;
 *   2. the client's handshake is answered (101) and its first message
 *      read: it must be setup (else close 1007), and its model is the one
 *      the key is chosen for (shm_live_pick: the pool's rules, plus the
 *      model's sessions_limit per project);
 *   3. an attempt: a TLS connection and a WebSocket handshake upstream
 *      with the pool key (x-goog-api-key; the client's credentials never
 *      go), then the client's messages so far; an error answer to the
 *      handshake, or a close before setupComplete, is weighed like a REST
 *      error (classify.c, livemsg.c) and the next key tried, up to
 *      max_attempts, the client seeing none of it;
 *   4. the session, relayed frame by frame (liverelay.c) until either side
 *      closes; usageMetadata metered as it comes; one request counted.
 *
 * A session holds its worker for its life, as a stream does.  SIGHUP
 * leaves it running (the worker goes once it is over); TERM closes it
 * with 1001 once the shutdown timeout is nearly spent.  The scoreboard
 * slot names the session (shm_live_pick), so that a worker killed
 * mid-session frees its place in sessions_limit when the master reaps it.
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "classify.h"
#include "config.h"
#include "http.h"
#include "live.h"
#include "live_int.h"
#include "livemsg.h"
#include "log.h"
#include "looper.h"
#include "proxy.h"
#include "route.h"
#include "shm.h"
#include "upstream.h"
#include "util.h"
#include "verdict.h"
#include "worker.h"
#include "ws.h"

#define LIVE_ERRBODY_MAX	(16 * 1024)

static const char live_service[] = "google.ai.generativelanguage.";

/*
 * The Live method a path names, "v1beta.GenerativeService.Bidi...", or
 * NULL: /ws/ (or //ws/, as @google/genai 3.x sends it) then the service,
 * a version, and one of the two methods.
 */
static const char *
live_method(const char *path, size_t len)
{
	static const char *const versions[] = { "v1", "v1beta", "v1alpha" };
	static const char *const methods[] = {
		".GenerativeService.BidiGenerateContent",
		".GenerativeService.BidiGenerateContentConstrained"
	};
	const char	*p;
	size_t		 v, m, n, rest;

	p = route_prefix(path, len, "//ws/") ? path + 5 :
	    route_prefix(path, len, "/ws/") ? path + 4 : NULL;
	if (p == NULL || !route_prefix(p, path + len - p, live_service))
		return NULL;
	p += sizeof(live_service) - 1;
	rest = path + len - p;
	for (v = 0; v < 3; v++) {
		n = strlen(versions[v]);
		if (rest <= n || memcmp(p, versions[v], n) != 0)
			continue;
		for (m = 0; m < 2; m++)
			if (route_exact(p + n, rest - n, methods[m]))
				return p;
	}
	return NULL;
}

/*
 * Once the head is in: a Live method, a valid upgrade, an authorized
 * client.  0, or -1 when the HTTP answer has been sent.
 */
int
live_admit(struct conn *c)
{
	const char	*why;
	int		 status;

	if (live_method(c->req.target, c->req.path_len) == NULL) {
		conn_error(c, 404, "no such Live API method: use /ws/google.ai."
		    "generativelanguage.v1beta.GenerativeService."
		    "BidiGenerateContent", NULL);
		return -1;
	}
	if (ws_check_upgrade(&c->req, &status, &why) == -1) {
		conn_error(c, status, why, status == 426 ?
		    "Sec-WebSocket-Version: 13\r\n" : status == 405 ?
		    "Allow: GET\r\n" : NULL);
		return -1;
	}
	if (!proxy_authorized(c, 1)) {
		conn_error(c, 401, "a valid access token is required: send it "
		    "as ?key=, ?access_token= or x-goog-api-key",
		    "WWW-Authenticate: Bearer\r\n");
		return -1;
	}
	return 0;
}

/* 101 to the client.  0, or -1 when it could not be sent. */
static int
live_switch(struct conn *c)
{
	char		 head[256], accept[WS_ACCEPT_LEN + 1];
	const char	*key = http_header(&c->req, "sec-websocket-key");
	int		 n;

	if (key == NULL || ws_accept(key, strlen(key), accept) == -1)
		return -1;
	n = snprintf(head, sizeof(head), "HTTP/1.1 101 Switching Protocols"
	    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
	c->status = 101;
	c->sent_head = 1;
	c->close = 1;
	return conn_write(c, head, (size_t)n);
}

/*
 * The upstream handshake's head, with the pool key: the client's
 * credentials and query are not sent, only what identifies its SDK.
 * Returns its length, or -1 when it does not fit.
 */
static int
live_head(struct live *l, const char *wskey, char *buf, size_t len)
{
	const struct config	*cfg = looper.cfg;
	const char		*ua = http_header(&l->c->req, "user-agent");
	const char		*api = http_header(&l->c->req,
				    "x-goog-api-client");
	int			 n;

	n = snprintf(buf, len, "GET %s/ws/%s%.*s HTTP/1.1\r\nHost: %s\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
	    "x-goog-api-key: %s\r\n%s%s%s%s%s%s\r\n", cfg->upstream_prefix,
	    live_service, (int)l->method_len, l->method,
	    cfg->upstream_authority, wskey,
	    l->pick.key_str, ua != NULL ? "User-Agent: " : "",
	    ua != NULL ? ua : "", ua != NULL ? "\r\n" : "",
	    api != NULL ? "x-goog-api-client: " : "", api != NULL ? api : "",
	    api != NULL ? "\r\n" : "");
	return n > 0 && (size_t)n < len ? n : -1;
}

/* An error answer to the handshake: its body read and weighed. */
static void
live_http_refusal(struct live *l, int status, struct gem_verdict *v)
{
	char	*body;
	ssize_t	 n, got = 0;

	if ((body = malloc(LIVE_ERRBODY_MAX + 1)) != NULL) {
		while (got < LIVE_ERRBODY_MAX && !up_body_done(l->up) &&
		    (n = up_read_body(l->up, body + got, LIVE_ERRBODY_MAX -
		    got, mono_ms() + 5000)) > 0)
			got += n;
		body[got] = '\0';
	}
	gem_classify(status, body != NULL ? body : "", (size_t)got, v);
	free(body);
	up_close(l->up);
}

/*
 * The upstream's WebSocket handshake with the key picked.  Returns 0 when
 * it switched (the session's upstream side is made), else -1 with v
 * saying what the refusal means for the key.
 */
static int
live_connect(struct live *l, struct gem_verdict *v)
{
	struct up_resp	*r;
	char		 wskey[WS_KEY_LEN + 1], head[2048];
	const char	*why;
	int64_t		 deadline = mono_ms() +
			    (int64_t)looper.cfg->upstream_timeout_s * 1000;
	int		 n, rv = -1;

	memset(v, 0, sizeof(*v));
	v->action = GEM_RETRY;
	if ((r = calloc(1, sizeof(*r))) == NULL || ws_new_key(wskey) == -1 ||
	    (n = live_head(l, wskey, head, sizeof(head))) == -1) {
		free(r);
		strlcpy(v->why, "out of memory", sizeof(v->why));
		return -1;
	}
	l->sent++;
	if (up_request(l->up, head, (size_t)n, NULL, 0, deadline, NULL,
	    0) == -1 || up_read_head(l->up, r, UP_HEAD_UPGRADE, deadline, NULL,
	    0) == -1)
		strlcpy(v->why, up_error(l->up), sizeof(v->why));
	else if (r->status != 101)
		live_http_refusal(l, r->status, v);
	else if (ws_check_switch(r->status, up_header(r, "upgrade"),
	    up_header(r, "connection"), up_header(r, "sec-websocket-accept"),
	    wskey, &why) == -1) {
		strlcpy(v->why, why, sizeof(v->why));
		up_close(l->up);
	} else if (lr_upstream_side(l) == -1) {
		strlcpy(v->why, "out of memory", sizeof(v->why));
		up_close(l->up);
	} else
		rv = 0;
	explicit_bzero(head, sizeof(head));
	shm_note_upstream(looper.shm, &l->pick, rv == 0 ? 101 : r->status >
	    0 ? r->status : 0, 0);
	free(r);
	return rv;
}

/* No key to open the session with: the client's close says why. */
static void
live_no_key(struct live *l)
{
	char	 msg[320];	/* cut to WS_REASON_MAX when sent */

	if (l->pick.all_invalid)
		snprintf(msg, sizeof(msg), "UNAVAILABLE: every API key in the "
		    "pool was rejected as invalid");
	else if (l->pick.sessions_full)
		snprintf(msg, sizeof(msg), "RESOURCE_EXHAUSTED: every project "
		    "has sessions_limit Live sessions of %s open", l->model);
	else
		snprintf(msg, sizeof(msg), "RESOURCE_EXHAUSTED: every API key "
		    "is rate-limited or out of quota for %s; retry in %llds",
		    l->model, (long long)((l->pick.free_ms >= 0 ?
		    l->pick.free_ms : 60000) + 999) / 1000);
	lr_close_client(l, WS_CLOSE_INTERNAL, msg);
	l->why = "no key";
}

/*
 * A key for the session: picked at once, or once one frees within
 * max_wait_s while the client stays.  0, or -1 (the client is told).
 */
static int
live_pick(struct live *l)
{
	int64_t		 wait_end = mono_ms() +
			    (int64_t)looper.cfg->max_wait_s * 1000;
	struct pollfd	 pfd;

	for (;;) {
		if (l->sent >= looper.cfg->max_attempts)
			break;
		if (shm_live_pick(looper.shm, looper.slot, l->model_slot,
		    l->tried, l->ntried, now_ms(), &l->pick) == 0) {
			l->picked = 1;
			return 0;
		}
		if (l->pick.all_invalid || l->pick.sessions_full ||
		    l->pick.wait_ms < 0 ||
		    mono_ms() + l->pick.wait_ms > wait_end)
			break;
		pfd.fd = l->c->fd;
		pfd.events = POLLRDHUP;
		if (poll(&pfd, 1, (int)l->pick.wait_ms + 1) > 0) {
			l->why = "the client went away";
			return -1;
		}
	}
	live_no_key(l);
	return -1;
}

/* The attempt's key is done with: its place freed, the next one tried. */
static void
live_attempt_over(struct live *l, const struct gem_verdict *v, int status)
{
	int	 retry = v->action == GEM_RETRY && !l->retried_fault;

	verdict_apply(&l->pick, l->model, status, v, retry);
	if (v->action == GEM_RETRY)
		l->retried_fault = 1;
	if (l->ntried < LIVE_TRIED_MAX)
		l->tried[l->ntried++] = l->pick.key;
	shm_live_end(looper.shm, looper.slot, &l->pick, 0);
	l->picked = 0;
	if (l->us != NULL) {
		ws_free(l->us);
		l->us = NULL;
	}
	up_close(l->up);
}

/*
 * Attempts until one opens the session, within max_attempts.  0 when it
 * is open, -1 when the client has been told it will not be (or left).
 */
static int
live_open(struct live *l)
{
	struct gem_verdict	 v;
	enum live_end		 e;
	int			 status;

	for (;;) {
		if (live_pick(l) == -1)
			return -1;
		if (live_connect(l, &v) == 0) {
			e = lr_pump(l, mono_ms() +
			    (int64_t)looper.cfg->upstream_timeout_s * 1000);
			if (e == LIVE_OPEN)
				return 0;
			if (e == LIVE_OVER)
				return -1;
			status = l->uclose.got ? l->uclose.code : 0;
			if (l->uclose.got)
				lm_close_verdict(l->uclose.code,
				    l->uclose.reason, l->uclose.len, &v);
			else
				strlcpy(v.why, "no setupComplete", sizeof(v.why));
			log_info("key=%s model=%s: Live session refused (%d %s)",
			    l->pick.id, l->model, status, l->uclose.reason);
		} else
			status = 0;
		if (v.action == GEM_PASS || (v.action == GEM_RETRY &&
		    l->retried_fault)) {
			/* The client's own fault, or the second fault: it
			 * hears of it as the upstream said it. */
			lr_close_client(l, l->uclose.got ? l->uclose.code :
			    WS_CLOSE_INTERNAL, l->uclose.got ?
			    l->uclose.reason : "the upstream did not open the "
			    "session");
			live_attempt_over(l, &v, status);
			return -1;
		}
		live_attempt_over(l, &v, status);
	}
}

/* The access log's fields for the session. */
static void
live_log(struct live *l)
{
	struct conn	*c = l->c;

	snprintf(c->log, sizeof(c->log), "key=%s model=%s attempts=%d "
	    "live=1 prompt=%lld candidates=%lld total=%lld up=%llu down=%llu "
	    "end=\"%s\"", l->pick.id[0] ? l->pick.id : "-", l->model, l->sent,
	    (long long)l->usage.prompt, (long long)l->usage.candidates,
	    (long long)l->usage.total, (unsigned long long)l->to_upstream,
	    (unsigned long long)l->to_client, l->why != NULL ? l->why : "-");
}

/* The session from the 101 on: setup, a key, attempts, the relay. */
static void
live_session(struct live *l)
{
	int	 rv;

	if (lr_client_side(l) == -1)
		return;
	if (lr_first_message(l) == -1)
		goto out;
	rv = lm_setup_model(l->early[0].data, l->early[0].len, l->model,
	    sizeof(l->model));
	if (rv == -1) {
		lr_close_client(l, WS_CLOSE_BAD_DATA, "the first message must "
		    "be setup");
		goto out;
	}
	if (rv == 1)
		strlcpy(l->model, looper.cfg->default_model, sizeof(l->model));
	if ((l->model_slot = shm_model_slot(looper.shm, l->model)) < 0) {
		lr_close_client(l, WS_CLOSE_INTERNAL, "no model slot");
		goto out;
	}
	board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
	if ((l->up = up_new(looper.cfg)) == NULL) {
		lr_close_client(l, WS_CLOSE_INTERNAL, "out of memory");
		goto out;
	}
	up_watch(l->up, l->c->fd);
	if (live_open(l) == 0) {
		lr_early_free(l);
		board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
		(void)lr_pump(l, 0);
	}
out:
	if (!l->closing || l->cs == NULL || !ws_close_sent(l->cs))
		(void)lr_pump(l, 0);
}

/* A Live session, its 101 and all, on the connection admitted. */
void
live_handle(struct conn *c)
{
	struct live	*l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	l->c = c;
	l->method = live_method(c->req.target, c->req.path_len);
	l->method_len = c->req.target + c->req.path_len - l->method;
	l->pick.key = -1;
	l->model_slot = -1;
	l->last_client = mono_ms();
	if (looper.cfg->live_ping_s > 0)
		l->next_ping = l->last_client +
		    (int64_t)looper.cfg->live_ping_s * 1000;
	if (live_switch(c) == 0)
		live_session(l);
	if (l->picked)
		shm_live_end(looper.shm, looper.slot, &l->pick, l->opened);
	if (l->model_slot >= 0)
		shm_note_request(looper.shm, l->model_slot, 101,
		    mono_ms() - c->started, l->sent > 1 ? l->sent - 1 : 0, 0);
	live_log(l);
	lr_finish(l);
	if (l->up != NULL)
		up_free(l->up);
	explicit_bzero(&l->pick.key_str, sizeof(l->pick.key_str));
	free(l);
}
