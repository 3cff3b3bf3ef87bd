/*
 * A request's journey to the upstream and back.  Called by the worker (via
 * route.c) for everything under /v1beta/, /v1/ and /upload/.
 *
 *   1. once the head is in, the client's credentials are checked
 *      (access_tokens, proxy_admit) and never forwarded;
 *   2. the model is found (path, or the body on /openai/ paths) and a key is
 *      picked for it in shared memory, with room reserved (shm/pick.c),
 *      the key that owns a named resource first (owner.c); with no
 *      key free the request waits up to max_wait_s, else 429; a model
 *      paused by a 429 storm (shm/storm.c) gets 429 at once;
 *   3. the request goes upstream over the worker's kept-alive TLS
 *      connection (upstream.c), its head rewritten with the pool key
 *      (rewrite.c);
 *   4. an error answer is read whole (up to 64 KiB) and classified
 *      (classify.c): quota errors cool or exhaust the key, key errors mark
 *      it invalid, 5xx and dead connections are retried once on another
 *      key - all while nothing has been sent to the client, and at most
 *      max_attempts times;
 *   5. a good answer is relayed piece by piece as it arrives (relay.c:
 *      SSE events reach the client one by one) while its usage is scanned
 *      on the fly, and the reservation is settled with the real counts.
 *
 * Each step below is a function that says what comes next (enum
 * px_next); an upstream that fails says how (enum up_fail), and
 * up_fail_status() alone turns that into 502 or 504.  A client that
 * closes its connection at any point stops the upstream request at once
 * (499).  Locks: none held here; shm/pick.c and shm/affinity.c take
 * hdr->lock for each short step.  No secret leaves: answer heads and
 * error bodies are scrubbed (rewrite.c, relay.c), and the request head,
 * which holds the pool key, is wiped once sent.
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "classify.h"
#include "config.h"
#include "http.h"
#include "inspect.h"
#include "log.h"
#include "looper.h"
#include "proxy.h"
#include "px.h"
#include "route.h"
#include "shm.h"
#include "upstream.h"
#include "usagescan.h"
#include "util.h"
#include "verdict.h"
#include "worker.h"

/* The deadline of one exchange with the upstream. */
static int64_t
px_deadline(void)
{
	return mono_ms() + (int64_t)looper.cfg->upstream_timeout_s * 1000;
}

/* Constant-time: is tok[0..n) one of the access tokens? */
static int
px_token_ok(const char *tok, size_t n)
{
	const struct config	*cfg = looper.cfg;
	size_t			 i;
	int			 ok = 0;

	for (i = 0; i < cfg->naccess_tokens; i++)
		if (strlen(cfg->access_tokens[i]) == n &&
		    CRYPTO_memcmp(cfg->access_tokens[i], tok, n) == 0)
			ok = 1;
	return ok;
}

/*
 * Does the client present one of the access tokens (x-goog-api-key,
 * Authorization: Bearer, ?key= and, live: the Live API's ?access_token=),
 * or are there none to present?
 */
int
proxy_authorized(struct conn *c, int live)
{
	static const char *const params[] = { "key", "access_token" };
	const char	*v, *q;
	char		 tok[CFG_TOKEN_MAX];
	size_t		 n, i;
	int		 ok;

	if (looper.cfg->naccess_tokens == 0)
		return 1;
	if ((v = http_header(&c->req, "x-goog-api-key")) != NULL &&
	    px_token_ok(v, strlen(v)))
		return 1;
	if ((v = http_bearer(http_header(&c->req, "authorization"),
	    &n)) != NULL && px_token_ok(v, n))
		return 1;
	q = c->req.target + c->req.path_len;
	for (i = 0; *q == '?' && i < (live ? 2u : 1u); i++) {
		if (http_query_param(q + 1, params[i], tok, sizeof(tok)) < 0)
			continue;
		ok = px_token_ok(tok, strlen(tok));
		explicit_bzero(tok, sizeof(tok));
		if (ok)
			return 1;
	}
	return 0;
}

/*
 * Once a request's head is in, before its body is read: with access_tokens
 * set, the client must present one as its key, else 401.  Returns 0, or
 * -1 when the answer has been sent.
 */
int
proxy_admit(struct conn *c)
{
	if (proxy_authorized(c, 0))
		return 0;
	conn_error(c, 401, "a valid access token is required: send it as "
	    "x-goog-api-key, ?key= or Authorization: Bearer",
	    "WWW-Authenticate: Bearer\r\n");
	return -1;
}

/* What kind of request is this, and on which model is it metered? */
static void
px_classify(struct px *x)
{
	const char	*colon;
	int		 have_model = 0;

	x->openai = memmem(x->path, x->path_len, "/openai/", 8) != NULL;
	x->upload = route_prefix(x->path, x->path_len, "/upload/");
	x->kind = PX_OTHER;
	x->scan_mode = GEM_SCAN_JSON;
	if (x->openai) {
		x->scan_mode = GEM_SCAN_OPENAI;
		if (strcmp(x->c->req.method, "POST") == 0 &&
		    x->c->body_len > 0 && gem_model_from_body(x->c->body,
		    x->c->body_len, x->model, sizeof(x->model)) == 0) {
			have_model = 1;
			x->kind = PX_GENERATE;
		}
	} else if (gem_model_from_path(x->path, x->path_len, x->model,
	    sizeof(x->model)) == 0) {
		have_model = 1;
		colon = memchr(x->path, ':', x->path_len);
		if (colon != NULL && strcmp(x->c->req.method, "POST") == 0) {
			if (route_prefix(colon, x->path + x->path_len - colon,
			    ":countTokens"))
				x->kind = PX_COUNT;
			else if (route_prefix(colon, x->path + x->path_len -
			    colon, ":batchGenerateContent") || route_prefix(colon,
			    x->path + x->path_len - colon,
			    ":asyncBatchEmbedContent"))
				x->kind = PX_BATCH;
			else
				x->kind = PX_GENERATE;
		}
	}
	if (x->query != NULL && strstr(x->query, "alt=sse") != NULL &&
	    !x->openai)
		x->scan_mode = GEM_SCAN_SSE;
	if (!have_model)
		strlcpy(x->model, looper.cfg->default_model,
		    sizeof(x->model));
	x->model_slot = shm_model_slot(looper.shm, x->model);
	x->est = x->kind == PX_GENERATE ?
	    gem_estimate_tokens(x->c->body_len) : -1;
}

/* The worker's upstream, made with its first request, into x->up. */
static int
px_upstream(struct px *x)
{
	static struct upstream	*up;

	if (up == NULL && (up = up_new(looper.cfg)) == NULL) {
		conn_error(x->c, 502, "out of memory", NULL);
		return -1;
	}
	x->up = up;
	return 0;
}

/* Wait ms for a key to free, unless the client goes away first. */
static int
px_throttle_wait(struct px *x, int64_t ms)
{
	struct pollfd	 pfd;
	int64_t		 end = mono_ms() + ms, left;

	pfd.fd = x->c->fd;
	pfd.events = POLLRDHUP;
	while ((left = end - mono_ms()) > 0) {
		if (poll(&pfd, 1, (int)left) > 0 &&
		    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return -1;
	}
	return 0;
}

/*
 * No key can serve: 429 with when to come back (free_ms: until the
 * earliest key of the pool frees, tried ones included; -1: none will
 * before the daily reset), or 503 when every key is invalid.
 */
static void
px_no_key(struct px *x, int64_t free_ms, int all_invalid)
{
	char		 extra[64], msg[320];
	int64_t		 secs, now = now_ms();

	if (all_invalid) {
		conn_error(x->c, 503, "every API key in the pool was rejected "
		    "by the upstream as invalid; fix the keys and reload",
		    NULL);
		return;
	}
	if (free_ms >= 0)
		secs = (free_ms + 999) / 1000;
	else if (looper.shm->next_reset > now)
		secs = (looper.shm->next_reset - now + 999) / 1000;
	else
		secs = 60;
	if (secs < 1)
		secs = 1;
	snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n",
	    (long long)secs);
	if (x->sent >= looper.cfg->max_attempts)
		snprintf(msg, sizeof(msg), "%d API keys tried for model %s "
		    "were rate-limited or out of quota (max_attempts); retry "
		    "in %llds", x->sent, x->model, (long long)secs);
	else
		snprintf(msg, sizeof(msg), "every API key in the pool is "
		    "rate-limited or out of quota for model %s; retry in "
		    "%llds", x->model, (long long)secs);
	conn_error(x->c, 429, msg, extra);
}

/*
 * The model is paused by a 429 storm (shm/storm.c): 429 at once, no
 * upstream call, and when to come back: the pause's end, or later when no
 * key of the pool frees before (every key spent: the daily reset).
 */
static void
px_paused(struct px *x, int64_t retry_ms)
{
	char		 extra[64], msg[320];
	int64_t		 free_ms, now = now_ms();
	int		 all_invalid;
	long long	 secs;

	free_ms = shm_free_ms(looper.shm, x->model_slot, x->est, now,
	    &all_invalid);
	if (free_ms < 0 && looper.shm->next_reset > now)
		free_ms = looper.shm->next_reset - now;
	if (free_ms > retry_ms)
		retry_ms = free_ms;
	secs = (retry_ms + 999) / 1000;
	if (secs < 1)
		secs = 1;
	snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n", secs);
	snprintf(msg, sizeof(msg), "model %s is paused: the upstream "
	    "throttles the pool (a 429 storm: 429s that the projects' own "
	    "usage does not explain); retry in %llds", x->model, secs);
	conn_error(x->c, 429, msg, extra);
}

/* key is not to be picked again for this request. */
static void
px_tried_add(struct px *x, int key)
{
	if (x->ntried < PX_MAX_TRIED)
		x->tried[x->ntried++] = key;
}

/*
 * The access log's key=, model=, attempts= and token counts; broken= when
 * the answer broke off mid-way (its status is the one the client got).
 */
static void
px_log_usage(struct px *x)
{
	const struct gem_usage	*u = &x->scan.usage;

	if (!log_wants(LOG_NOTICE))
		return;		/* only the access log shows it */
	snprintf(x->c->log, sizeof(x->c->log), "key=%s model=%s attempts=%d "
	    "prompt=%lld candidates=%lld cached=%lld thoughts=%lld total=%lld"
	    "%s%s", x->pick.id[0] ? x->pick.id : "-", x->model, x->sent,
	    (long long)u->prompt, (long long)u->candidates,
	    (long long)u->cached, (long long)u->thoughts, (long long)u->total,
	    x->broken != NULL ? " broken=" : "",
	    x->broken != NULL ? x->broken : "");
}

/* Settle the pick with what the scanner saw (or only count the request). */
static void
px_settle(struct px *x)
{
	struct shm_tokens	 t;
	const struct gem_usage	*u = &x->scan.usage;

	if (u->seen) {
		t.prompt = u->prompt;
		t.candidates = u->candidates;
		t.cached = u->cached;
		t.thoughts = u->thoughts;
		t.total = u->total;
		shm_settle(looper.shm, &x->pick, &t, now_ms());
	} else if (x->scan.error_seen)
		shm_release(looper.shm, &x->pick);
	else
		shm_settle(looper.shm, &x->pick, NULL, now_ms());
}

/*
 * The client went away (while the request waited for a key, went upstream,
 * or was relayed): the upstream connection is closed at once, so that
 * Gemini stops generating, and the request is logged as nginx does, 499.
 * Usage is settled by the caller.
 */
static void
px_client_gone(struct px *x)
{
	if (up_fd(x->up) != -1)
		up_close(x->up);
	x->c->status = 499;
	x->c->close = 1;
}

/*
 * No attempt left, or no key to make one with: what the client gets.  A
 * held upstream answer (an upstream fault that the one retry did not get
 * past, or the answer to a request that costs no quota) goes as it came;
 * a fault without an answer is a 502 or 504; otherwise our 429 or 503.
 */
static void
px_give_up(struct px *x, int64_t free_ms, int all_invalid)
{
	if (x->held == PX_HELD_ANSWER)
		relay_pass_error(x);
	else if (x->held == PX_HELD_FAULT)
		conn_error(x->c, up_fail_status(x->fault),
		    "the upstream did not answer", NULL);
	else
		px_no_key(x, free_ms, all_invalid);
}

/*
 * A 429 to a metered request: does it start a storm (shm/storm.c)?  Said
 * before the pick is released, so that the project's counters still hold
 * this request.
 */
static void
px_storm_note(struct px *x, const struct gem_verdict *v)
{
	struct shm_429	 q;
	size_t		 i;

	memset(&q, 0, sizeof(q));
	q.delay_ms = v->retry_ms > 0 ? v->retry_ms :
	    v->action == GEM_COOL ? v->delay_ms : -1;
	for (i = 0; i < v->nnamed && i < SHM_NAMED_MAX; i++) {
		q.kind[q.nnamed] = v->named_kind[i];
		q.value[q.nnamed] = v->named_value[i];
		q.nnamed++;
	}
	if (shm_storm_note(looper.shm, &x->pick, &q, looper.cfg->storm_keys,
	    looper.cfg->storm_window_s, x->storm_probe, now_ms()) ==
	    SHM_STORM_PAUSED)
		log_warnx("model=%s paused: 429 storm (key=%s, %s%s)",
		    x->model, x->pick.id, x->storm_probe ?
		    "the half-open probe failed: " : "", v->why);
}

/*
 * Send the request upstream with the pick and read the answer's head.
 * A kept-alive connection that the upstream had just closed is tried once
 * more on a new one, same key.  Returns 0, or -1 with the failure kept by
 * the upstream (up_failure, up_error).
 */
static int
px_exchange(struct px *x)
{
	struct conn	*c = x->c;
	int64_t		 deadline;
	int		 rv, fresh = 0;

	for (;;) {
		deadline = px_deadline();
		rv = up_request(x->up, x->head, x->head_len, c->body,
		    c->body_len, deadline, NULL, 0);
		if (rv == 0) {
			x->sent++;
			rv = up_read_head(x->up, &x->resp,
			    strcmp(c->req.method, "HEAD") == 0, deadline, NULL,
			    0);
		}
		if (rv == -1 && up_stale(x->up) && !fresh) {
			up_close(x->up);
			fresh = 1;
			if (x->sent > 0)
				x->sent--;	/* it never arrived */
			continue;
		}
		return rv;
	}
}

/* What a step of the request's loop says: go round again, or it is over. */
enum px_next {
	PX_AGAIN,
	PX_DONE
};

/*
 * A key to send with, reserved in x->pick: PX_AGAIN once there is one.
 * No key can take the request: it waits, when one frees within
 * max_wait_s and the client stays, else the client gets its answer
 * (px_give_up), as it does once max_attempts requests went out.
 */
static enum px_next
px_pick_or_wait(struct px *x)
{
	int64_t	 free_ms;
	int	 all_invalid;

	for (;;) {
		if (x->sent >= looper.cfg->max_attempts) {
			free_ms = shm_free_ms(looper.shm, x->model_slot, x->est,
			    now_ms(), &all_invalid);
			px_give_up(x, free_ms, all_invalid);
			return PX_DONE;
		}
		if (x->est >= 0 && shm_storm_gate(looper.shm, x->model_slot,
		    &x->storm_probe, now_ms(), &free_ms) == -1) {
			px_paused(x, free_ms);
			return PX_DONE;
		}
		if (shm_pick(looper.shm, x->model_slot, x->est, x->tried,
		    x->ntried, x->prefer, now_ms(), &x->pick) == 0)
			return PX_AGAIN;
		if (x->wait_end == 0)
			x->wait_end = mono_ms() +
			    (int64_t)looper.cfg->max_wait_s * 1000;
		if (x->pick.all_invalid || x->pick.wait_ms < 0 ||
		    mono_ms() + x->pick.wait_ms > x->wait_end) {
			px_give_up(x, x->pick.free_ms, x->pick.all_invalid);
			return PX_DONE;
		}
		/* The seed's small delay: a key frees soon. */
		board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
		if (px_throttle_wait(x, x->pick.wait_ms + 1) == -1) {
			px_client_gone(x);
			return PX_DONE;
		}
		x->waited = 1;
	}
}

/*
 * The exchange failed before an answer's head came: the client left
 * (the request counts if it went out), or the upstream could not be
 * reached or did not answer, which is retried once on another key.
 */
static enum px_next
px_exchange_failed(struct px *x, int sent_before)
{
	int	 key = x->pick.key;

	shm_note_upstream(looper.shm, &x->pick, 0, 0);
	if (up_gone(x->up)) {
		if (x->sent > sent_before)
			shm_settle(looper.shm, &x->pick, NULL, now_ms());
		else
			shm_cancel(looper.shm, &x->pick);
		px_client_gone(x);
		return PX_DONE;
	}
	up_close(x->up);
	shm_release(looper.shm, &x->pick);
	log_warnx("upstream: %s (key=%s model=%s)", up_error(x->up), x->pick.id,
	    x->model);
	x->held = PX_HELD_FAULT;
	x->fault = up_failure(x->up);
	/* Before the answer started: once more, elsewhere. */
	if (!x->retried_fault && x->prefer < 0) {
		x->retried_fault = 1;
		px_tried_add(x, key);
		return PX_AGAIN;
	}
	px_give_up(x, -1, 0);
	return PX_DONE;
}

/*
 * An error answer's body, read whole into x->ebody.  Returns 0, or -1
 * when the request is over: the client left, or the upstream broke off.
 * That is a 502 whatever broke it, a timeout too: the upstream had begun
 * to answer (up_fail_status is for no answer at all).
 */
static int
px_error_body(struct px *x)
{
	int	 over;

	if (x->ebody == NULL &&
	    (x->ebody = malloc(PX_ERRBODY_MAX + 1)) == NULL) {
		up_close(x->up);
		shm_release(looper.shm, &x->pick);
		conn_error(x->c, 500, "out of memory", NULL);
		return -1;
	}
	x->elen = relay_read_error(x, x->ebody, PX_ERRBODY_MAX, &over);
	if (x->elen < 0) {
		shm_note_upstream(looper.shm, &x->pick, x->resp.status, 0);
		if (up_gone(x->up)) {
			shm_settle(looper.shm, &x->pick, NULL, now_ms());
			px_client_gone(x);
			return -1;
		}
		up_close(x->up);
		shm_release(looper.shm, &x->pick);
		conn_error(x->c, 502, "the upstream's answer was cut short",
		    NULL);
		return -1;
	}
	x->ebody[x->elen] = '\0';
	x->held_over = over;
	return 0;
}

/*
 * An error answer: read it whole, classify it, apply the verdict to the
 * key, and either pass it on or try again (another key, or the same one
 * once its short cool-down is over).
 */
static enum px_next
px_error_answer(struct px *x)
{
	struct gem_verdict	 v;
	int			 key;

	if (px_error_body(x) == -1)
		return PX_DONE;
	gem_classify(x->resp.status, x->ebody, x->elen, &v);
	/* A request that costs no quota says nothing about the model's
	 * quota: its 429 leaves the key alone, and the next key is tried. */
	if (x->est < 0 && (v.action == GEM_COOL || v.action == GEM_EXHAUST))
		v.action = GEM_PASS;
	shm_note_upstream(looper.shm, &x->pick, x->resp.status,
	    v.action == GEM_EXHAUST ? SHM_Q_DAY : v.action == GEM_COOL &&
	    v.reason != SHM_R_429 ? SHM_Q_MINUTE : SHM_Q_OTHER);
	verdict_apply(&x->pick, x->model, x->resp.status, &v,
	    !x->retried_fault && x->prefer < 0);
	if (x->resp.status == 429 && x->est >= 0 &&
	    (v.action == GEM_COOL || v.action == GEM_EXHAUST))
		px_storm_note(x, &v);
	key = x->pick.key;
	shm_release(looper.shm, &x->pick);
	switch (v.action) {
	case GEM_PASS:
		x->held = PX_HELD_ANSWER;
		if (x->resp.status == 429 && x->prefer < 0) {
			px_tried_add(x, key);
			return PX_AGAIN;	/* another key may answer */
		}
		break;
	case GEM_RETRY:
		x->held = PX_HELD_ANSWER;
		if (x->retried_fault || x->prefer >= 0)
			break;
		x->retried_fault = 1;
		px_tried_add(x, key);
		return PX_AGAIN;
	default:
		/* The key's state now keeps it out (or in, after a short
		 * cool-down: it counts for the wait). */
		return PX_AGAIN;
	}
	relay_pass_error(x);
	return PX_DONE;
}

/*
 * One attempt with the key picked: build the request head, send it and
 * read the answer's head, then relay a good answer or weigh an error one.
 */
static enum px_next
px_attempt(struct px *x)
{
	int	 sent = x->sent, rv;

	if (rw_request_head(x) == -1) {
		shm_release(looper.shm, &x->pick);
		conn_error(x->c, 431, "request head too large to forward",
		    NULL);
		return PX_DONE;
	}
	board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
	x->held = PX_HELD_NONE;
	rv = px_exchange(x);
	rw_wipe_request_head(x);
	if (rv == -1)
		return px_exchange_failed(x, sent);
	if (x->resp.status >= 400)
		return px_error_answer(x);
	shm_note_upstream(looper.shm, &x->pick, x->resp.status, 0);
	if (x->storm_probe != 0 && shm_storm_done(looper.shm, x->model_slot,
	    x->storm_probe, 1))
		log_warnx("model=%s resumed: the half-open probe was answered "
		    "(key=%s status=%d)", x->model, x->pick.id, x->resp.status);
	if (relay_answer(x) == -1)
		px_client_gone(x);
	if (x->kind == PX_BATCH && x->resp.status < 300)
		shm_settle_batch(looper.shm, &x->pick);
	else
		px_settle(x);
	return PX_DONE;
}

/*
 * What the request is, which key owns what it names, the worker's
 * upstream watching this client.  Returns 0, or -1 when the request has
 * been answered already.
 */
static int
px_begin(struct px *x, struct conn *c)
{
	const char	*q;

	memset(x, 0, offsetof(struct px, resp));
	x->c = c;
	x->path = c->req.target;
	x->path_len = c->req.path_len;
	q = c->req.target + c->req.path_len;
	x->query = *q == '?' ? q + 1 : NULL;
	x->pick.key = -1;

	px_classify(x);
	if (x->model_slot < 0) {
		conn_error(c, 500, "no model slot", NULL);
		return -1;
	}
	if (owner_find(x) == -1)
		return -1;
	if (px_upstream(x) == -1)
		return -1;
	gem_scan_init(&x->scan, x->scan_mode);
	up_watch(x->up, c->fd);
	return 0;
}

/* The request is over: counted, logged, and its secrets wiped. */
static void
px_end(struct px *x)
{
	struct conn	*c = x->c;

	up_watch(x->up, -1);	/* the client's fd is closed and reused next */
	/* A probe that ended unanswered hands the turn on. */
	(void)shm_storm_done(looper.shm, x->model_slot, x->storm_probe, 0);
	px_log_usage(x);
	shm_note_request(looper.shm, x->model_slot, c->status,
	    mono_ms() - c->started, x->sent > 1 ? x->sent - 1 : 0, x->waited);
	if (x->ebody != NULL) {
		explicit_bzero(x->ebody, PX_ERRBODY_MAX);
		free(x->ebody);
	}
	explicit_bzero(&x->pick.key_str, sizeof(x->pick.key_str));
}

/*
 * The journey: pick a key (or wait for one), send the request and read
 * the answer's head, then relay a good answer or weigh an error one, as
 * often as the verdicts say and max_attempts allows.
 */
void
proxy_handle(struct conn *c)
{
	struct px	 x;

	if (px_begin(&x, c) == -1)
		return;
	while (px_pick_or_wait(&x) == PX_AGAIN && px_attempt(&x) == PX_AGAIN)
		;
	px_end(&x);
}

