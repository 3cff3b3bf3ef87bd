/*
 * Request-time work on the key x model tables, shared by every worker:
 * choose a key for a request and reserve room on it, settle the
 * reservation with what the upstream reported, and mark keys cooling,
 * exhausted or invalid.  Each function takes hdr->lock for a few hundred
 * instructions and does no I/O under it.
 *
 * Why reserve: workers choose concurrently.  If each only looked at what
 * was already spent, N workers could all see room for one more request and
 * together overshoot tpm_limit.  A pick adds its estimate to the window at
 * once, under the lock; the settle later replaces the estimate with the
 * real promptTokenCount.
 *
 * The per-minute window is SHM_WIN_BUCKETS buckets of SHM_WIN_SPAN seconds
 * (one more than a minute needs): a bucket counts while any part of it lies
 * in the last 60 s, so the window errs towards "full", never "empty".
 */
#include <stdint.h>
#include <string.h>

#include "shm.h"

#define NEVER	INT64_MAX

/* The bucket of second s in a cell's window, recycled if stale. */
struct shm_bucket *
shm_bucket_locked(struct shm_usage *u, uint32_t s)
{
	uint32_t		 stamp = s - s % SHM_WIN_SPAN;
	struct shm_bucket	*b;

	b = &u->win[(stamp / SHM_WIN_SPAN) % SHM_WIN_BUCKETS];
	if (b->stamp != stamp) {
		b->stamp = stamp;
		b->requests = 0;
		b->tokens = 0;
	}
	return b;
}

static int
bucket_live(const struct shm_bucket *b, uint32_t s)
{
	return b->stamp != 0 && b->stamp <= s &&
	    b->stamp + SHM_WIN_SPAN + SHM_WIN_SECONDS > s;
}

/*
 * Input tokens and requests of the last minute at s (reservations
 * included), of a cell under the lock or of a copy.
 */
void
shm_window(const struct shm_usage *u, uint32_t s, uint64_t *tokens,
    uint32_t *requests)
{
	int	 i;

	*tokens = 0;
	*requests = 0;
	for (i = 0; i < SHM_WIN_BUCKETS; i++) {
		if (!bucket_live(&u->win[i], s))
			continue;
		*tokens += u->win[i].tokens;
		*requests += u->win[i].requests;
	}
}

/*
 * The buckets still in the window at s, oldest first (they leave it in
 * that order).  Returns how many.
 */
int
shm_window_live(const struct shm_usage *u, uint32_t s,
    const struct shm_bucket *live[SHM_WIN_BUCKETS])
{
	const struct shm_bucket	*t;
	int			 n = 0, i, j;

	for (i = 0; i < SHM_WIN_BUCKETS; i++)
		if (bucket_live(&u->win[i], s))
			live[n++] = &u->win[i];
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && live[j - 1]->stamp > live[j]->stamp; j--) {
			t = live[j];
			live[j] = live[j - 1];
			live[j - 1] = t;
		}
	return n;
}

/*
 * When will the window have room for need tokens and one request more?
 * Returns ms since the epoch (now_ms when there is room already).
 */
static int64_t
window_free_at(const struct shm_usage *u, uint32_t s, int64_t now,
    int64_t need, int64_t tlim, int64_t rlim)
{
	const struct shm_bucket	*live[SHM_WIN_BUCKETS];
	uint64_t		 tok;
	uint32_t		 req;
	int			 n, i;
	int64_t			 at = now;

	shm_window(u, s, &tok, &req);
	n = shm_window_live(u, s, live);
	for (i = 0;; i++) {
		if ((tlim < 0 || (int64_t)tok + need <= tlim) &&
		    (rlim < 0 || (int64_t)req + 1 <= rlim))
			return at;
		if (i >= n)
			return NEVER;	/* more than the limit on its own */
		tok -= live[i]->tokens;
		req -= live[i]->requests;
		at = ((int64_t)live[i]->stamp + SHM_WIN_SPAN +
		    SHM_WIN_SECONDS) * 1000;
	}
}

static int64_t
clamp_estimate(const struct shm_model *m, int64_t est)
{
	/* A request bigger than a whole limit would never fit: let it be
	 * judged against the limit itself (the upstream has the last word). */
	if (m->tpm_limit >= 0 && est > m->tpm_limit)
		est = m->tpm_limit;
	if (m->tpd_limit >= 0 && est > m->tpd_limit)
		est = m->tpd_limit;
	return est;
}

/*
 * The cell that holds key k's project's state and counters for model mi:
 * the one the limits apply to.
 */
struct shm_usage *
shm_project_cell_locked(struct shm_header *h, int k, int mi)
{
	uint32_t	 v = SHM_KEYS(h)[k].project;

	if (v & SHM_PROJECT_NAMED)
		return SHM_PUSAGE(h, SHM_PROJECT_SLOT(v), mi);
	return SHM_USAGE(h, k, mi);
}

/*
 * End key k's cooldown on model m if it has run out (the one state change
 * here), then say how long until the key can take this request.  0: now.
 * NEVER: not before something outside our view changes (invalid key, or
 * daily quota with no known reset time).  A request that costs no quota
 * (est < 0: a models list, a file, countTokens) can go to any valid key,
 * whatever its state for the model it is counted under.
 */
static int64_t
key_refresh_wait_locked(struct shm_header *h, int k, int mi, int64_t est,
    int64_t now)
{
	const struct shm_model	*m = SHM_MODELS(h) + mi;
	struct shm_usage	*u = shm_project_cell_locked(h, k, mi);
	int64_t			 at;
	uint32_t		 st;

	if (SHM_KEYS(h)[k].invalid)
		return NEVER;
	st = shm_cell_state(m, u, now, NULL);
	if (st != SHM_COOLING && u->state == SHM_COOLING) {
		u->state = SHM_AVAILABLE;
		u->reason = SHM_R_NONE;
		u->cooldown_until = 0;
	}
	if (est < 0)
		return 0;	/* not metered: quota does not matter */
	if (st == SHM_COOLING)
		return u->cooldown_until - now;
	if (st == SHM_EXHAUSTED)
		return h->next_reset > now ? h->next_reset - now : NEVER;
	/* Available, but does this request fit in what is left today? */
	if (m->tpd_limit >= 0 && (int64_t)u->tpd_used + est > m->tpd_limit)
		return h->next_reset > now ? h->next_reset - now : NEVER;
	at = window_free_at(u, (uint32_t)(now / 1000), now, est,
	    m->tpm_limit, m->rpm_limit);
	return at == NEVER ? NEVER : at - now;
}

static int
excluded(int k, const int *ex, size_t nex)
{
	size_t	 i;

	for (i = 0; i < nex; i++)
		if (ex[i] == k)
			return 1;
	return 0;
}

/* Does key a come before key b?  Priority tier first, then config order. */
static int
before(const struct shm_key *a, const struct shm_key *b)
{
	if (a->tier != b->tier)
		return a->tier < b->tier;
	return a->order < b->order;
}

/* A reservation's room on one cell; the bucket's stamp. */
static uint32_t
reserve_cell_locked(struct shm_usage *u, int64_t est, int64_t now)
{
	struct shm_bucket	*b = shm_bucket_locked(u, (uint32_t)(now / 1000));

	b->tokens += est;
	b->requests++;
	u->tpd_used += est;
	u->rpd_used++;
	return b->stamp;
}

/*
 * Reserve on key k's cell (its own counts) and, when it belongs to a named
 * project, on the project's cell too (what the limits apply to).
 */
static void
reserve_locked(struct shm_header *h, int k, int mi, int64_t est,
    int64_t now, struct shm_pick *p)
{
	struct shm_usage	*u = SHM_USAGE(h, k, mi);
	struct shm_key		*key = SHM_KEYS(h) + k;

	p->key = k;
	p->project = key->project;
	p->reserved = 0;
	p->stamp = 0;
	if (est >= 0) {
		p->stamp = reserve_cell_locked(u, est, now);
		if (key->project & SHM_PROJECT_NAMED)
			(void)reserve_cell_locked(shm_project_cell_locked(h,
			    k, mi), est, now);
		p->reserved = est;
	}
	memcpy(p->key_str, key->key, sizeof(p->key_str));
	memcpy(p->id, key->id, sizeof(p->id));
}

/*
 * Does key k, which could serve now, pass the caller's further test?  A
 * refusal is remembered, for the caller to tell why nothing was chosen.
 */
static int
gate_ok(struct shm_header *h, struct shm_gate *g, int k, int mi)
{
	if (g == NULL || g->ok(h, k, mi, g->arg))
		return 1;
	g->refused = 1;
	return 0;
}

/* shm_pick() for a request that only key k may serve. */
static int
pick_only_locked(struct shm_header *h, int mi, int64_t est, const int *ex,
    size_t nex, int k, int64_t now, struct shm_gate *g, struct shm_pick *p)
{
	int64_t	 w = key_refresh_wait_locked(h, k, mi, est, now);

	if (w == 0 && !excluded(k, ex, nex)) {
		if (gate_ok(h, g, k, mi)) {
			reserve_locked(h, k, mi, est, now, p);
			return 0;
		}
		w = NEVER;	/* not before something ends */
	}
	p->all_invalid = SHM_KEYS(h)[k].invalid;
	p->wait_ms = w == NEVER || excluded(k, ex, nex) ? -1 : w;
	p->free_ms = w == NEVER ? -1 : w;
	return -1;
}

/* What a walk over every key found (pick_scan_locked). */
struct pick_scan {
	int		 best;		/* the key to take, -1: none */
	int64_t		 best_wait;	/* 0 with best, else the least wait */
	int64_t		 free_wait;	/* the least over every key */
	int		 any_valid;
};

/*
 * The first key in priority order that can take the request now, or the
 * least wait.  A key the gate refuses is skipped, and not counted as free
 * either: it waits on something no clock tells.  The gate is asked only of
 * a key that would beat the best so far, so that a pool of many keys is
 * not walked once per key.
 */
static void
pick_scan_locked(struct shm_header *h, int mi, int64_t est, const int *ex,
    size_t nex, int64_t now, struct shm_gate *g, struct pick_scan *sc)
{
	struct shm_key	*keys = SHM_KEYS(h);
	int64_t		 w;
	int		 k;

	sc->best = -1;
	sc->best_wait = sc->free_wait = NEVER;
	sc->any_valid = 0;
	for (k = 0; k < (int)h->nkeys; k++) {
		if (!keys[k].in_use)
			continue;
		if (!keys[k].invalid)
			sc->any_valid = 1;
		w = key_refresh_wait_locked(h, k, mi, est, now);
		if (excluded(k, ex, nex)) {
			if (w < sc->free_wait)
				sc->free_wait = w;
			continue;
		}
		if (w == 0) {
			if (sc->best != -1 && sc->best_wait == 0 &&
			    !before(&keys[k], &keys[sc->best])) {
				sc->free_wait = 0;
				continue;
			}
			if (!gate_ok(h, g, k, mi))
				continue;
			sc->free_wait = 0;
			sc->best = k;
			sc->best_wait = 0;
		} else {
			if (w < sc->free_wait)
				sc->free_wait = w;
			if (sc->best_wait != 0 && w < sc->best_wait)
				sc->best_wait = w;
		}
	}
}

/*
 * shm_pick() with the lock held, and a further test a key must pass (g,
 * NULL for none; live.c's session limit).  A sticky key the gate refuses
 * stays sticky, as one excluded does: it could serve, only not this.
 */
int
shm_pick_locked(struct shm_header *h, int mi, int64_t est, const int *ex,
    size_t nex, int prefer, int64_t now, struct shm_gate *g,
    struct shm_pick *p)
{
	struct shm_model	*m;
	struct shm_key		*keys = SHM_KEYS(h);
	struct pick_scan	 sc;
	int			 cur, cur_ok = 0;

	memset(p, 0, sizeof(*p));
	p->key = -1;
	p->model = mi;
	p->wait_ms = -1;
	p->free_ms = -1;
	p->generation = h->generation;
	if (mi < 0 || (uint32_t)mi >= h->nmodels)
		return -1;
	m = SHM_MODELS(h) + mi;
	if (est >= 0)
		est = clamp_estimate(m, est);
	if (prefer >= 0 && (uint32_t)prefer < h->nkeys && keys[prefer].in_use)
		return pick_only_locked(h, mi, est, ex, nex, prefer, now, g, p);

	cur = m->current_key;
	if (cur >= 0 && (uint32_t)cur < h->nkeys && keys[cur].in_use &&
	    key_refresh_wait_locked(h, cur, mi, est, now) == 0) {
		if (!excluded(cur, ex, nex) && gate_ok(h, g, cur, mi)) {
			reserve_locked(h, cur, mi, est, now, p);
			return 0;
		}
		cur_ok = 1;
	}
	pick_scan_locked(h, mi, est, ex, nex, now, g, &sc);
	if (sc.best >= 0 && sc.best_wait == 0) {
		reserve_locked(h, sc.best, mi, est, now, p);
		/* A retry elsewhere after a fault that was not the key's (a
		 * 5xx, a dead connection) leaves the sticky key where it is:
		 * it can still serve, and its cache still hits. */
		if (!cur_ok)
			m->current_key = sc.best;
		return 0;
	}
	if (!sc.any_valid)
		m->current_key = -1;
	p->all_invalid = !sc.any_valid;
	p->wait_ms = sc.best_wait == NEVER ? -1 : sc.best_wait;
	p->free_ms = sc.free_wait == NEVER ? -1 : sc.free_wait;
	return -1;
}

/*
 * Choose a key for a request on model slot mi and reserve est input tokens
 * and one request on it (est < 0: the request is not metered, e.g. a models
 * list).  Keys in ex[] are skipped (already tried for this request).
 * prefer >= 0 names the only key that may serve (a file or cached content
 * belongs to its project).  Otherwise: the model's sticky key while it can
 * serve, else the first key that can, priority keys first; the choice
 * becomes sticky, unless the sticky key could serve and was only skipped.
 * Returns 0 with p->key set, or -1 with p->wait_ms (ms until the earliest
 * key this request may still use frees, -1 when none will), p->free_ms
 * (the same over every key, the excluded ones too: what Retry-After says)
 * and p->all_invalid.
 */
int
shm_pick(struct shm_header *h, int mi, int64_t est, const int *ex,
    size_t nex, int prefer, int64_t now, struct shm_pick *p)
{
	int	 rv;

	shm_lock(h);
	rv = shm_pick_locked(h, mi, est, ex, nex, prefer, now, NULL, p);
	shm_unlock(h);
	return rv;
}

/*
 * When could any key take a request of est input tokens on model slot mi,
 * without choosing one: ms from now, -1 when none will (and *all_invalid
 * when every key is invalid).  For a request that gave up before its keys
 * did (max_attempts), to say when to come back.
 */
int64_t
shm_free_ms(struct shm_header *h, int mi, int64_t est, int64_t now,
    int *all_invalid)
{
	struct shm_key	*keys = SHM_KEYS(h);
	int64_t		 w, best = NEVER;
	int		 k, any_valid = 0;

	shm_lock(h);
	if (mi < 0 || (uint32_t)mi >= h->nmodels) {
		shm_unlock(h);
		*all_invalid = 0;
		return -1;
	}
	if (est >= 0)
		est = clamp_estimate(SHM_MODELS(h) + mi, est);
	for (k = 0; k < (int)h->nkeys; k++) {
		if (!keys[k].in_use)
			continue;
		if (!keys[k].invalid)
			any_valid = 1;
		if ((w = key_refresh_wait_locked(h, k, mi, est, now)) < best)
			best = w;
	}
	shm_unlock(h);
	*all_invalid = !any_valid;
	return best == NEVER ? -1 : best;
}

/* Is the pick's slot still the key it was made for (reloads move keys)? */
int
shm_pick_valid_locked(struct shm_header *h, const struct shm_pick *p)
{
	return p->key >= 0 && (uint32_t)p->key < h->nkeys &&
	    (uint32_t)p->model < h->nmodels && SHM_KEYS(h)[p->key].in_use &&
	    strcmp(SHM_KEYS(h)[p->key].key, p->key_str) == 0;
}

/*
 * The project cell a pick also counts on, or NULL: its key is its own
 * project, or was moved to another by a reload since the pick.
 */
struct shm_usage *
shm_pick_pcell_locked(struct shm_header *h, const struct shm_pick *p)
{
	if (!(p->project & SHM_PROJECT_NAMED) ||
	    SHM_KEYS(h)[p->key].project != p->project)
		return NULL;
	return shm_project_cell_locked(h, p->key, p->model);
}

static void
unreserve_cell_locked(struct shm_usage *u, const struct shm_pick *p,
    int64_t tokens, int requests)
{
	struct shm_bucket	*b;

	if (p->stamp != 0) {
		b = &u->win[(p->stamp / SHM_WIN_SPAN) % SHM_WIN_BUCKETS];
		/* A bucket already recycled has left the window. */
		if (b->stamp == p->stamp) {
			b->tokens = (int64_t)b->tokens > tokens ?
			    b->tokens - tokens : 0;
			if (requests && b->requests > 0)
				b->requests--;
		}
	}
	u->tpd_used = (int64_t)u->tpd_used > tokens ? u->tpd_used - tokens : 0;
	if (requests && u->rpd_used > 0)
		u->rpd_used--;
}

static void
unreserve_locked(struct shm_header *h, struct shm_pick *p, int64_t tokens,
    int requests)
{
	struct shm_usage	*pu = shm_pick_pcell_locked(h, p);

	unreserve_cell_locked(SHM_USAGE(h, p->key, p->model), p, tokens,
	    requests);
	if (pu != NULL)
		unreserve_cell_locked(pu, p, tokens, requests);
}

static void
minute_add(struct shm_minute *hist, uint32_t minute, uint64_t tokens)
{
	struct shm_minute	*e = &hist[minute % SHM_HISTORY];

	if (e->minute != minute) {
		e->minute = minute;
		e->tokens = 0;
		e->requests = 0;
	}
	e->tokens += tokens;
	e->requests++;
}

/* Tokens of one minute of a history (0 if that minute is not kept). */
uint64_t
shm_minute_get(const struct shm_minute *hist, uint32_t minute,
    uint32_t *requests)
{
	const struct shm_minute	*e = &hist[minute % SHM_HISTORY];

	if (e->minute != minute) {
		if (requests != NULL)
			*requests = 0;
		return 0;
	}
	if (requests != NULL)
		*requests = e->requests;
	return e->tokens;
}

/*
 * One cell's share of a settle: the estimate replaced by the real input
 * tokens (t != NULL), the upstream's counts added, one request counted.
 * For /metrics, only the key's own cell counts m_tokens.
 */
static void
settle_cell_locked(struct shm_usage *u, const struct shm_pick *p,
    const struct shm_tokens *t, int metrics)
{
	struct shm_bucket	*b;
	int			 i;

	if (t != NULL && p->stamp != 0) {
		unreserve_cell_locked(u, p, p->reserved, 0);
		if (t->prompt > 0) {
			b = &u->win[(p->stamp / SHM_WIN_SPAN) %
			    SHM_WIN_BUCKETS];
			if (b->stamp == p->stamp)
				b->tokens += t->prompt;
			u->tpd_used += t->prompt;
		}
	}
	if (t != NULL) {
		const int64_t	 v[SHM_TOK_N] = {
			[SHM_TOK_PROMPT] = t->prompt,
			[SHM_TOK_CANDIDATES] = t->candidates,
			[SHM_TOK_CACHED] = t->cached,
			[SHM_TOK_THOUGHTS] = t->thoughts,
			[SHM_TOK_TOTAL] = t->total
		};

		for (i = 0; i < SHM_TOK_N; i++)
			if (v[i] > 0) {
				u->tokens[i] += (uint64_t)v[i];
				if (metrics)
					u->m_tokens[i] += (uint64_t)v[i];
			}
	}
	u->requests++;
}

/*
 * A successful answer: replace the estimate with the real input tokens
 * and count what the upstream reported, on the key and on its named
 * project.  t == NULL: no usage was reported (a models list, a file): the
 * request is counted, the estimate stays.
 */
void
shm_settle(struct shm_header *h, struct shm_pick *p,
    const struct shm_tokens *t, int64_t now)
{
	struct shm_usage	*pu;
	uint32_t		 minute = (uint32_t)(now / 60000);

	if (p->key < 0)
		return;
	shm_lock(h);
	if (!shm_pick_valid_locked(h, p))
		goto out;
	pu = shm_pick_pcell_locked(h, p);
	settle_cell_locked(SHM_USAGE(h, p->key, p->model), p, t, 1);
	if (pu != NULL)
		settle_cell_locked(pu, p, t, 0);
	minute_add(SHM_KEYS(h)[p->key].history, minute,
	    t != NULL && t->total > 0 ? t->total : 0);
	minute_add(SHM_MODELS(h)[p->model].history, minute,
	    t != NULL && t->total > 0 ? t->total : 0);
out:
	shm_unlock(h);
	p->key = -1;
}

/*
 * A batch job was created (batchGenerateContent, asyncBatchEmbedContent):
 * counted as what it is, a batch job on the key x model, not as a request
 * against the model's interactive limits (it reserved nothing).
 */
void
shm_settle_batch(struct shm_header *h, struct shm_pick *p)
{
	struct shm_usage	*u;

	if (p->key < 0)
		return;
	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		u = SHM_USAGE(h, p->key, p->model);
		u->batches++;
		u->m_batches++;
		if ((u = shm_pick_pcell_locked(h, p)) != NULL)
			u->batches++;
	}
	shm_unlock(h);
	p->key = -1;
}

/* The request did not happen as far as quotas go: give the room back. */
void
shm_release(struct shm_header *h, struct shm_pick *p)
{
	if (p->key < 0)
		return;
	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		struct shm_usage *pu = shm_pick_pcell_locked(h, p);

		if (p->stamp != 0)
			unreserve_locked(h, p, p->reserved, 1);
		SHM_USAGE(h, p->key, p->model)->errors++;
		if (pu != NULL)
			pu->errors++;
	}
	shm_unlock(h);
	p->key = -1;
}

/*
 * The request never went out (its client left first): the room goes
 * back, and nothing counts against the key.
 */
void
shm_cancel(struct shm_header *h, struct shm_pick *p)
{
	if (p->key < 0)
		return;
	shm_lock(h);
	if (shm_pick_valid_locked(h, p) && p->stamp != 0)
		unreserve_locked(h, p, p->reserved, 1);
	shm_unlock(h);
	p->key = -1;
}

/*
 * Rate-limited: the key's project (every key of it) rests for this model
 * until `until` (ms).  The project as it is now: a reload that moved the
 * key since the pick moved the blame with it.
 */
void
shm_cool(struct shm_header *h, const struct shm_pick *p, int64_t until,
    uint32_t reason)
{
	struct shm_usage	*u;

	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		u = shm_project_cell_locked(h, p->key, p->model);
		if (u->state != SHM_EXHAUSTED) {
			u->state = SHM_COOLING;
			if (until > u->cooldown_until)
				u->cooldown_until = until;
			u->reason = reason;
		}
	}
	shm_unlock(h);
}

/* Daily quota spent: the key's project is out for this model until the
 * reset. */
void
shm_exhaust(struct shm_header *h, const struct shm_pick *p, uint32_t reason)
{
	struct shm_usage	*u;

	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		u = shm_project_cell_locked(h, p->key, p->model);
		u->state = SHM_EXHAUSTED;
		u->reason = reason;
		u->cooldown_until = 0;
	}
	shm_unlock(h);
}

/*
 * The upstream rejected the key itself, at now: out for every model until
 * a reload or a probe (probe.c) that finds it working.  The probe
 * schedule starts from the first marking.
 */
void
shm_invalidate(struct shm_header *h, const struct shm_pick *p,
    const char *why, int64_t now)
{
	struct shm_key	*k;
	size_t		 n;

	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		k = SHM_KEYS(h) + p->key;
		if (!k->invalid) {
			k->invalid_at = now;
			k->probe_next = k->probe_iv = 0;
			k->probe_n = 0;
		}
		k->invalid = 1;
		n = strlen(why);
		if (n >= sizeof(k->invalid_why))
			n = sizeof(k->invalid_why) - 1;
		memcpy(k->invalid_why, why, n);
		k->invalid_why[n] = '\0';
	}
	shm_unlock(h);
}

static int
model_slot(struct shm_header *h, const char *name, int exact)
{
	struct shm_model	*m = SHM_MODELS(h), *d;
	int			 i;
	size_t			 n;

	shm_lock(h);
	if ((i = shm_find_model_locked(h, name)) >= 0)
		goto out;
	if (h->nmodels >= h->max_models || h->default_model < 0) {
		i = exact ? -1 : h->default_model;
		goto out;
	}
	/* Slots past nmodels were never used: already zero. */
	i = (int)h->nmodels++;
	d = m + h->default_model;
	n = strlen(name);
	if (n >= sizeof(m[i].name))
		n = sizeof(m[i].name) - 1;
	memcpy(m[i].name, name, n);
	m[i].name[n] = '\0';
	m[i].current_key = -1;
	m[i].tpm_limit = d->tpm_limit;
	m[i].tpd_limit = d->tpd_limit;
	m[i].rpm_limit = d->rpm_limit;
	m[i].rpd_limit = d->rpd_limit;
	m[i].sessions_limit = d->sessions_limit;
	m[i].in_use = 1;
out:
	shm_unlock(h);
	return i;
}

/*
 * The slot of a model by name, adding a model that is not configured (it
 * is metered under its own name with the default model's limits).  When
 * the table is full, the default model's slot.
 */
int
shm_model_slot(struct shm_header *h, const char *name)
{
	return model_slot(h, name, 0);
}

/* The same, but -1 when the table is full or the name too long. */
int
shm_model_named(struct shm_header *h, const char *name)
{
	if (strlen(name) >= SHM_NAME_MAX)
		return -1;
	return model_slot(h, name, 1);
}
