/*
 * One copy of the shared tables for the readers that show or save them:
 * the dashboard's JSON and /metrics (in a worker), the usage file (in the
 * master).  They take the copy and then format, sort and write without
 * the lock.
 *
 * Locks: hdr->lock once for the header, the models and (when asked) the
 * affinity table, then once per batch of SHM_SNAP_BATCH key slots: with
 * 10,000 keys a single copy would hold it for milliseconds, and every
 * request's pick waits on it.  Each key's row of cells is copied whole in
 * one hold; rows of different batches may be microseconds apart.  Nothing
 * is allocated under the lock: the blocks are sized in between and their
 * pages faulted in first.  A reload that grows the key table meanwhile is
 * seen by the next snapshot.
 *
 * Secrets: the copy holds no key.  Each key's text is wiped as its row is
 * copied; a caller that needs to tell keys apart (the usage file's
 * fingerprints) passes a function that sees the key while the row is
 * copied, outside the lock.
 */
#include <bsd/string.h>
#include <stdlib.h>
#include <string.h>

#include "shm.h"

#define SHM_SNAP_BATCH	256	/* key or project slots per lock hold */

static int	 snap_projects(struct shm_header *, struct shm_snap *);

void
shm_snap_free(struct shm_snap *s)
{
	free(s->keys);
	free(s->models);
	free(s->usage);
	free(s->aff);
	free(s->projects);
	free(s->pusage);
	memset(s, 0, sizeof(*s));
}

static void
snap_head_locked(struct shm_header *h, struct shm_snap *s)
{
	s->generation = h->generation;
	s->nkeys = h->nkeys;
	s->nmodels = h->nmodels;
	s->default_model = h->default_model;
	s->nprojects = h->nprojects;
	s->started = h->started;
	s->last_reset = h->last_reset;
	s->next_reset = h->next_reset;
	s->last_reload = h->last_reload;
	s->last_reload_ok = h->last_reload_ok;
	s->lock_recoveries = h->lock_recoveries;
	memcpy(s->m_probes, h->m_probes, sizeof(s->m_probes));
	memcpy(s->last_reload_msg, h->last_reload_msg,
	    sizeof(s->last_reload_msg));
	s->last_reload_msg[sizeof(s->last_reload_msg) - 1] = '\0';
}

static void
snap_affinity_locked(struct shm_header *h, struct shm_snap *s)
{
	const struct shm_affinity	*a = SHM_AFF(h);
	uint32_t			 i;

	for (i = 0; i < h->max_affinity; i++)
		if (a[i].in_use)
			s->aff[s->naff++] = a[i];
}

/*
 * Copy the tables: 0, or -1 when memory ran out (nothing is kept then).
 * what is a mask of SHM_SNAP_*.  key_seen, when not NULL, is called with
 * each key slot in use and its key text before the text is wiped.
 */
int
shm_snap_take(struct shm_header *h, unsigned what, int64_t now,
    void (*key_seen)(void *, uint32_t, const char *), void *arg,
    struct shm_snap *s)
{
	uint32_t	 k0, k, n, nm;
	size_t		 cells;

	memset(s, 0, sizeof(*s));
	s->now = now;
	/* max_models and max_affinity are fixed when the segment is made. */
	s->models = calloc((size_t)h->max_models + 1, sizeof(*s->models));
	if ((what & SHM_SNAP_AFFINITY) != 0)
		s->aff = calloc((size_t)h->max_affinity + 1, sizeof(*s->aff));
	if (s->models == NULL ||
	    ((what & SHM_SNAP_AFFINITY) != 0 && s->aff == NULL))
		goto fail;

	shm_lock(h);
	snap_head_locked(h, s);
	memcpy(s->models, SHM_MODELS(h), sizeof(*s->models) * s->nmodels);
	if (s->aff != NULL)
		snap_affinity_locked(h, s);
	shm_unlock(h);

	nm = s->nmodels;
	cells = (what & SHM_SNAP_NO_USAGE) != 0 ? 0 : (size_t)s->nkeys * nm;
	s->keys = malloc(((size_t)s->nkeys + 1) * sizeof(*s->keys));
	s->usage = malloc((cells + 1) * sizeof(*s->usage));
	if (s->keys == NULL || s->usage == NULL)
		goto fail;
	/*
	 * Big blocks come from mmap untouched: fault their pages in here,
	 * not one by one under the lock.  explicit_bzero, because a plain
	 * memset may be optimised away or folded into malloc.
	 */
	explicit_bzero(s->keys, ((size_t)s->nkeys + 1) * sizeof(*s->keys));
	explicit_bzero(s->usage, (cells + 1) * sizeof(*s->usage));

	for (k0 = 0; k0 < s->nkeys; k0 += SHM_SNAP_BATCH) {
		n = s->nkeys - k0 < SHM_SNAP_BATCH ? s->nkeys - k0 :
		    SHM_SNAP_BATCH;
		shm_lock(h);
		/* A reload may have shrunk the table since the head. */
		for (k = k0; k < k0 + n && k < h->nkeys; k++) {
			s->keys[k] = SHM_KEYS(h)[k];
			if (cells != 0)
				memcpy(SHM_SNAP_CELL(s, k, 0),
				    SHM_USAGE(h, k, 0), sizeof(*s->usage) * nm);
		}
		shm_unlock(h);
		for (k = k0; k < k0 + n; k++) {
			if (key_seen != NULL && s->keys[k].in_use)
				key_seen(arg, k, s->keys[k].key);
			explicit_bzero(s->keys[k].key, sizeof(s->keys[k].key));
		}
	}
	if (cells != 0 && snap_projects(h, s) == -1)
		goto fail;
	return 0;
 fail:
	shm_snap_free(s);
	return -1;
}

/*
 * The named projects and their cells, in batches like the keys.  A
 * reload that shrank the table since the head leaves the rest zero.
 */
static int
snap_projects(struct shm_header *h, struct shm_snap *s)
{
	size_t		 np = s->nprojects, nm = s->nmodels;
	uint32_t	 p0, p, n;

	s->projects = malloc((np + 1) * sizeof(*s->projects));
	s->pusage = malloc((np * nm + 1) * sizeof(*s->pusage));
	if (s->projects == NULL || s->pusage == NULL)
		return -1;
	explicit_bzero(s->projects, (np + 1) * sizeof(*s->projects));
	explicit_bzero(s->pusage, (np * nm + 1) * sizeof(*s->pusage));
	for (p0 = 0; p0 < np; p0 += SHM_SNAP_BATCH) {
		n = np - p0 < SHM_SNAP_BATCH ? np - p0 : SHM_SNAP_BATCH;
		shm_lock(h);
		for (p = p0; p < p0 + n && p < h->nprojects; p++) {
			s->projects[p] = SHM_PROJECTS(h)[p];
			memcpy(SHM_SNAP_PCELL(s, p, 0), SHM_PUSAGE(h, p, 0),
			    sizeof(*s->pusage) * nm);
		}
		shm_unlock(h);
	}
	return 0;
}

/*
 * In a snapshot with cells: the cell key slot k's project holds for
 * model m (the key's own when it is its own project).
 */
const struct shm_usage *
shm_snap_project_cell(const struct shm_snap *s, uint32_t k, uint32_t m)
{
	uint32_t	 v = s->keys[k].project;

	if ((v & SHM_PROJECT_NAMED) && SHM_PROJECT_SLOT(v) < s->nprojects)
		return SHM_SNAP_PCELL(s, SHM_PROJECT_SLOT(v), m);
	return SHM_SNAP_CELL(s, k, m);
}

/*
 * A cell's state, the one rule the picker, the dashboard and /metrics
 * share: cooling until its cooldown runs out; exhausted when marked so,
 * or once a daily counter has reached its limit (the proxy marks a cell
 * only when the upstream says so); else available.  *reason, when not
 * NULL, gets why (SHM_R_NONE when available).  Whether one more request
 * of a given size fits is the picker's question, not a state: a cell
 * with 10 tokens left today is available to a request of 5.
 */
uint32_t
shm_cell_state(const struct shm_model *m, const struct shm_usage *u,
    int64_t now, uint32_t *reason)
{
	uint32_t	 st = u->state, why = u->reason;

	if (st == SHM_COOLING && u->cooldown_until <= now) {
		st = SHM_AVAILABLE;
		why = SHM_R_NONE;
	}
	if (st == SHM_AVAILABLE) {
		why = SHM_R_NONE;
		if (m->tpd_limit >= 0 && u->tpd_used >= (uint64_t)m->tpd_limit) {
			st = SHM_EXHAUSTED;
			why = SHM_R_TPD;
		} else if (m->rpd_limit >= 0 &&
		    u->rpd_used >= (uint64_t)m->rpd_limit) {
			st = SHM_EXHAUSTED;
			why = SHM_R_RPD;
		}
	}
	if (st > SHM_EXHAUSTED)
		st = SHM_EXHAUSTED;	/* a stray value counts as the worst */
	if (reason != NULL)
		*reason = why < SHM_R_N ? why : SHM_R_NONE;
	return st;
}
