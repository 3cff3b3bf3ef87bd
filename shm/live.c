/*
 * Live API sessions (the worker's live.c relays them) as the pool sees
 * them: a session is one request against the model's limits, picked like
 * any other (shm_pick's rules), metered turn by turn as the upstream's
 * usageMetadata arrives, and held in its worker's scoreboard slot for its
 * life.  A model's sessions_limit caps the sessions open at once per
 * project: they are counted from the scoreboard, so a worker killed
 * mid-session (the master reaps it and releases its slot) no longer counts.
 *
 * Locks: the slots' live_* fields are written under hdr->lock (the pick
 * that checks the limit writes the session in the same locked section, so
 * two workers cannot both take the last place), and by the master when it
 * claims or releases a slot, whose worker is then unborn or dead.  Readers
 * that only show a count read them without the lock.
 */
#include <stdint.h>
#include <string.h>

#include "shm.h"

/* The slot holds no session. */
void
shm_live_clear(struct shm_slot *s)
{
	/* live_model first: a reader without the lock tests it alone. */
	__atomic_store_n(&s->live_model, -1, __ATOMIC_RELEASE);
	s->live_key = -1;
	s->live_project = 0;
}

/* Sessions open on model mi by keys of project v (under the lock). */
static uint32_t
live_count_locked(const struct shm_header *h, int mi, uint32_t v)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t		 i, n = 0;

	for (i = 0; i < h->max_workers; i++)
		if (__atomic_load_n(&s[i].state, __ATOMIC_ACQUIRE) !=
		    SHM_W_FREE && s[i].live_model == mi &&
		    s[i].live_project == v)
			n++;
	return n;
}

/* shm_gate: has key k's project a place left for a session on mi? */
static int
live_gate(struct shm_header *h, int k, int mi, void *arg)
{
	const struct shm_model	*m = SHM_MODELS(h) + mi;

	(void)arg;
	return m->sessions_limit < 1 || live_count_locked(h, mi,
	    SHM_KEYS(h)[k].project) < (uint64_t)m->sessions_limit;
}

/*
 * Choose a key for a Live session on model slot mi for the worker of
 * scoreboard slot `slot`: shm_pick()'s rules, one request reserved and no
 * tokens (the session's size is unknown), and a key whose project has
 * sessions_limit sessions open on mi already is passed over.  The session
 * is written into the slot under the same lock as the pick.  Returns 0, or
 * -1 as shm_pick() does, with p->sessions_full when some key could have
 * served but for the sessions of its project.
 */
int
shm_live_pick(struct shm_header *h, int slot, int mi, const int *ex,
    size_t nex, int64_t now, struct shm_pick *p)
{
	struct shm_gate	 g = { live_gate, NULL, 0 };
	struct shm_slot	*s;
	int		 rv;

	shm_lock(h);
	rv = shm_pick_locked(h, mi, 0, ex, nex, -1, now, &g, p);
	if (rv == 0 && slot >= 0 && (uint32_t)slot < h->max_workers) {
		s = SHM_SLOTS(h) + slot;
		s->live_key = p->key;
		s->live_project = p->project;
		__atomic_store_n(&s->live_model, mi, __ATOMIC_RELEASE);
	}
	shm_unlock(h);
	p->sessions_full = rv == -1 && g.refused;
	return rv;
}

/*
 * The upstream accepted the session (setupComplete): its request counts as
 * served, as shm_settle(h, p, NULL, now) counts it.  shm_settle is handed a
 * copy, so p keeps its key for the session's usage and its end.
 */
void
shm_live_open(struct shm_header *h, struct shm_pick *p, int64_t now)
{
	struct shm_pick	 c = *p;

	shm_settle(h, &c, NULL, now);
}

/* One message's counts into one cell (m_tokens: the key's own only). */
static void
live_cell_locked(struct shm_usage *u, const int64_t v[SHM_TOK_N],
    uint32_t sec, int metrics)
{
	int	 i;

	for (i = 0; i < SHM_TOK_N; i++) {
		if (v[i] <= 0)
			continue;
		u->tokens[i] += (uint64_t)v[i];
		if (metrics)
			u->m_tokens[i] += (uint64_t)v[i];
	}
	if (v[SHM_TOK_PROMPT] > 0) {
		u->tpd_used += (uint64_t)v[SHM_TOK_PROMPT];
		shm_bucket_locked(u, sec)->tokens +=
		    (uint64_t)v[SHM_TOK_PROMPT];
	}
}

/* A minute's tokens, without counting a request. */
static void
live_minute(struct shm_minute *hist, uint32_t minute, uint64_t tokens)
{
	struct shm_minute	*e = &hist[minute % SHM_HISTORY];

	if (e->minute != minute) {
		e->minute = minute;
		e->tokens = 0;
		e->requests = 0;
	}
	e->tokens += tokens;
}

/*
 * One usageMetadata of the session, at now: each message's counts are its
 * turn's, so they are added, to the key's cell and its named project's:
 * the day's input tokens and the window's bucket of now (the limits see
 * the session's input as it goes), the counts by kind, and the minute
 * histories' tokens.  A pick a reload made stale counts nowhere.
 */
void
shm_live_usage(struct shm_header *h, const struct shm_pick *p,
    const struct shm_tokens *t, int64_t now)
{
	const int64_t		 v[SHM_TOK_N] = {
		[SHM_TOK_PROMPT] = t->prompt,
		[SHM_TOK_CANDIDATES] = t->candidates,
		[SHM_TOK_CACHED] = t->cached,
		[SHM_TOK_THOUGHTS] = t->thoughts,
		[SHM_TOK_TOTAL] = t->total
	};
	struct shm_usage	*pu;
	uint32_t		 sec = (uint32_t)(now / 1000);
	uint32_t		 minute = (uint32_t)(now / 60000);
	uint64_t		 total = t->total > 0 ? (uint64_t)t->total : 0;

	if (p->key < 0)
		return;
	shm_lock(h);
	if (shm_pick_valid_locked(h, p)) {
		live_cell_locked(SHM_USAGE(h, p->key, p->model), v, sec, 1);
		if ((pu = shm_pick_pcell_locked(h, p)) != NULL)
			live_cell_locked(pu, v, sec, 0);
		live_minute(SHM_KEYS(h)[p->key].history, minute, total);
		live_minute(SHM_MODELS(h)[p->model].history, minute, total);
	}
	shm_unlock(h);
}

/*
 * The session is over: slot `slot` holds it no more.  opened == 0: it
 * ended before setupComplete, and its reservation goes back as
 * shm_release() gives it (the request does not count).  p is spent
 * afterwards (p->key is -1).
 */
void
shm_live_end(struct shm_header *h, int slot, struct shm_pick *p, int opened)
{
	shm_lock(h);
	if (slot >= 0 && (uint32_t)slot < h->max_workers)
		shm_live_clear(SHM_SLOTS(h) + slot);
	shm_unlock(h);
	if (!opened)
		shm_release(h, p);
	p->key = -1;
}

/* Sessions open on model mi now, for showing (no lock). */
uint32_t
shm_live_sessions(const struct shm_header *h, int mi)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t		 i, n = 0;

	if (mi < 0)
		return 0;
	for (i = 0; i < h->max_workers; i++)
		if (__atomic_load_n(&s[i].state, __ATOMIC_ACQUIRE) !=
		    SHM_W_FREE && __atomic_load_n(&s[i].live_model,
		    __ATOMIC_ACQUIRE) == mi)
			n++;
	return n;
}

/*
 * A reload moved keys between projects (shm_publish): a session counts
 * against its key's project as it is now, while the key stays (keep[] by
 * key slot); one whose key left counts where it was picked until it ends.
 */
void
shm_live_reproject_locked(struct shm_header *h, const unsigned char *keep)
{
	struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t	 i;
	int32_t		 k;

	for (i = 0; i < h->max_workers; i++) {
		k = s[i].live_key;
		if (s[i].live_model < 0 || k < 0 || (uint32_t)k >= h->max_keys ||
		    !keep[k])
			continue;
		s[i].live_project = SHM_KEYS(h)[k].project;
	}
}

/* A project value of src in dst's slots (rmap: src key -> dst key). */
static int
live_carry_project(const struct shm_header *dst, const struct shm_header *src,
    uint32_t v, int32_t key, const int *rmap, uint32_t *out)
{
	const struct shm_project	*sp = SHM_PROJECTS(src);
	const struct shm_project	*dp = SHM_PROJECTS(dst);
	uint32_t			 j, sj = SHM_PROJECT_SLOT(v);

	if (!(v & SHM_PROJECT_NAMED)) {
		if (key < 0 || (uint32_t)key >= src->nkeys || rmap[key] < 0)
			return -1;
		*out = (uint32_t)rmap[key];
		return 0;
	}
	if (sj >= src->nprojects || !sp[sj].in_use)
		return -1;
	for (j = 0; j < dst->nprojects; j++)
		if (dp[j].in_use && strcmp(dp[j].name, sp[sj].name) == 0) {
			*out = SHM_PROJECT_NAMED | j;
			return 0;
		}
	return -1;
}

/*
 * shm_carry moved the scoreboard to a new segment: its sessions' slots of
 * src become dst's (rmap: src key -> dst key; mmap_: dst model -> src
 * model).  A session whose model or project dst lacks counts no more.
 * The workers of src end their sessions in src; dst's copies go when the
 * master releases their slots.
 */
void
shm_live_carry_locked(struct shm_header *dst, const struct shm_header *src,
    const int *rmap, const int *mmap_)
{
	struct shm_slot	*s = SHM_SLOTS(dst);
	uint32_t	 i, j, v;
	int32_t		 m;

	for (i = 0; i < dst->max_workers; i++) {
		if ((m = s[i].live_model) < 0)
			continue;
		for (j = 0; j < dst->nmodels && mmap_[j] != m; j++)
			;
		if (i >= src->max_workers || j >= dst->nmodels ||
		    live_carry_project(dst, src, s[i].live_project,
		    s[i].live_key, rmap, &v) == -1) {
			shm_live_clear(&s[i]);
			continue;
		}
		s[i].live_key = s[i].live_key >= 0 &&
		    (uint32_t)s[i].live_key < src->nkeys ?
		    rmap[s[i].live_key] : -1;
		s[i].live_project = v;
		s[i].live_model = (int32_t)j;
	}
}
