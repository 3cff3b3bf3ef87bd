/*
 * 429 storms: when Google throttles a whole IP or region, every key
 * answers 429, and without this each request would walk through
 * max_attempts keys, one upstream call each, every time.  So when 429s
 * that the projects' own usage does not explain come from storm.keys
 * distinct projects for one model within storm.window_s, the model pauses
 * pool-wide: requests for it are refused at once (429 + Retry-After) until
 * the longest delay those 429s asked for (at most SHM_STORM_PAUSE_MS).
 * Then it is half-open: exactly one request (the probe) goes upstream while
 * the others keep being refused; its success ends the pause, its
 * unexplained 429 pauses the model again, and a probe that ends any other
 * way (its client left, an upstream fault) or outlives its deadline
 * (SHM_STORM_PROBE_MS: a worker that died with it) hands the turn to the
 * next request, so a lost probe never wedges the model.
 *
 * Explained: the 429 names a quota (QuotaFailure's quotaValue) and the
 * project's own counters have reached half of it: the last minute's window
 * for a per-minute quota, the day's counters for a per-day one.  That
 * project really spent its quota; a busy pool is not a throttled one.
 *
 * Called by proxy.c: shm_storm_gate() before each pick, shm_storm_note()
 * on each 429 to a metered request, shm_storm_done() when a probe ends.
 * Each takes hdr->lock for a few dozen instructions; no I/O under it.
 * The state lives in struct shm_model (storm_hit[], paused_until,
 * probe_id, probe_until).
 */
#include <stdint.h>
#include <string.h>

#include "shm.h"

/*
 * Where model slot mi stands at now: 0 serving, 1 paused, 2 half-open
 * (the pause is over; a probe is out, or the next request will be one).
 * Of a model under the lock or of a snapshot's copy.
 */
int
shm_storm_state(const struct shm_model *m, int64_t now)
{
	if (m->paused_until == 0)
		return 0;
	return m->paused_until > now ? 1 : 2;
}

/*
 * May a metered request for model slot mi go on to pick a key?  *probe is
 * the probe this request holds (0: none), and is set when it becomes the
 * half-open probe.  Returns 0, or -1 with *retry_ms: when to come back.
 */
int
shm_storm_gate(struct shm_header *h, int mi, uint32_t *probe, int64_t now,
    int64_t *retry_ms)
{
	struct shm_model	*m;
	int			 rv = 0;

	shm_lock(h);
	if (mi < 0 || (uint32_t)mi >= h->nmodels)
		goto out;
	m = SHM_MODELS(h) + mi;
	if (m->paused_until == 0)
		goto out;
	if (*probe != 0 && *probe == m->probe_id && m->probe_until > now)
		goto out;		/* the probe, on its next key */
	if (m->paused_until > now) {
		*retry_ms = m->paused_until - now;
		rv = -1;
	} else if (m->probe_id != 0 && m->probe_until > now) {
		*retry_ms = 1000;	/* the probe's answer decides */
		rv = -1;
	} else {
		if (++m->probe_seq == 0)
			m->probe_seq = 1;
		m->probe_id = m->probe_seq;
		m->probe_until = now + SHM_STORM_PROBE_MS;
		*probe = m->probe_id;
	}
	if (rv == -1)
		m->m_paused++;
out:
	shm_unlock(h);
	return rv;
}

/*
 * Does the project's own usage explain this 429?  One quota it names that
 * the project has spent half of is enough; a 429 that names none, or only
 * quotas whose value it does not give, is unexplained.
 */
static int
storm_explained_locked(struct shm_header *h, int k, int mi,
    const struct shm_429 *q, int64_t now)
{
	const struct shm_usage	*u = shm_project_cell_locked(h, k, mi);
	uint64_t		 tok, used;
	uint32_t		 req, i;

	shm_window(u, (uint32_t)(now / 1000), &tok, &req);
	for (i = 0; i < q->nnamed && i < SHM_NAMED_MAX; i++) {
		if (q->value[i] < 0)
			continue;
		switch (q->kind[i]) {
		case SHM_R_TPM:
			used = tok;
			break;
		case SHM_R_RPM:
			used = req;
			break;
		case SHM_R_TPD:
			used = u->tpd_used;
			break;
		case SHM_R_RPD:
			used = u->rpd_used;
			break;
		default:
			continue;
		}
		if (used * 2 >= (uint64_t)q->value[i])
			return 1;
	}
	return 0;
}

static int64_t
storm_delay(const struct shm_429 *q)
{
	if (q->delay_ms < 0 || q->delay_ms > SHM_STORM_PAUSE_MS)
		return SHM_STORM_PAUSE_MS;
	return q->delay_ms;
}

/*
 * Project p's unexplained 429 at now, kept in m->storm_hit[] (one entry a
 * project, the oldest given up when full).  Returns how many projects had
 * one within window_ms, and in *until when the longest delay they asked
 * for ends.
 */
static int
storm_hit_locked(struct shm_model *m, int32_t p, int64_t delay, int64_t now,
    int64_t window_ms, int64_t *until)
{
	struct shm_storm_hit	*e = NULL, *x;
	int			 i, n = 0;

	for (i = 0; i < SHM_STORM_MAX; i++) {
		x = &m->storm_hit[i];
		if (x->at != 0 && x->project == p) {
			e = x;
			break;
		}
		if (e == NULL || x->at < e->at)
			e = x;
	}
	e->project = p;
	e->at = now;
	e->delay = delay;
	*until = 0;
	for (i = 0; i < SHM_STORM_MAX; i++) {
		x = &m->storm_hit[i];
		if (x->at == 0 || now - x->at > window_ms)
			continue;
		n++;
		if (x->at + x->delay > *until)
			*until = x->at + x->delay;
	}
	return n;
}

/*
 * A 429 from the upstream to the metered request picked in p (before the
 * pick is released).  keys and window_s are the config's storm; probe is
 * the probe the request holds.  An unexplained 429 counts towards a storm
 * (keys 0: storms are off) and pauses the model once keys projects had
 * one within window_s; the probe's unexplained 429 pauses it again.
 */
enum shm_storm_verdict
shm_storm_note(struct shm_header *h, const struct shm_pick *p,
    const struct shm_429 *q, int keys, int window_s, uint32_t probe,
    int64_t now)
{
	enum shm_storm_verdict	 v = SHM_STORM_EXPLAINED;
	struct shm_model	*m;
	int64_t			 until;
	int			 n;

	shm_lock(h);
	if (p->key < 0 || (uint32_t)p->key >= h->nkeys ||
	    p->model < 0 || (uint32_t)p->model >= h->nmodels ||
	    !SHM_KEYS(h)[p->key].in_use ||
	    storm_explained_locked(h, p->key, p->model, q, now))
		goto out;
	m = SHM_MODELS(h) + p->model;
	v = SHM_STORM_COUNTED;
	if (probe != 0 && probe == m->probe_id) {
		m->paused_until = now + storm_delay(q);
		m->probe_id = 0;
		m->probe_until = 0;
		m->m_storms++;
		v = SHM_STORM_PAUSED;
		goto out;
	}
	if (keys <= 0)
		goto out;
	n = storm_hit_locked(m, (int32_t)SHM_KEYS(h)[p->key].project,
	    storm_delay(q), now, (int64_t)window_s * 1000, &until);
	if (n < keys || until <= m->paused_until)
		goto out;
	if (shm_storm_state(m, now) != 1) {
		/* A new pause (or a 429 that was in flight when the last one
		 * ended): whoever probes now, a probe's turn is over. */
		m->probe_id = 0;
		m->probe_until = 0;
		m->m_storms++;
		v = SHM_STORM_PAUSED;
	}
	m->paused_until = until;
out:
	shm_unlock(h);
	return v;
}

/*
 * The request that held probe for model slot mi is over: ok when the
 * upstream answered it well, which ends the pause (and forgets the 429s
 * that led to it).  Otherwise the next request probes.  Returns 1 when
 * this ended a pause.
 */
int
shm_storm_done(struct shm_header *h, int mi, uint32_t probe, int ok)
{
	struct shm_model	*m;
	int			 rv = 0;

	if (probe == 0)
		return 0;
	shm_lock(h);
	if (mi >= 0 && (uint32_t)mi < h->nmodels &&
	    SHM_MODELS(h)[mi].probe_id == probe) {
		m = SHM_MODELS(h) + mi;
		m->probe_id = 0;
		m->probe_until = 0;
		if (ok) {
			m->paused_until = 0;
			memset(m->storm_hit, 0, sizeof(m->storm_hit));
			rv = 1;
		}
	}
	shm_unlock(h);
	return rv;
}
