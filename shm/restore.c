/*
 * Usage read back from the usage file, merged into the tables: at start,
 * into tables the config has just filled (a copy), or later, when a file
 * that could not be read at start finally can be, into what was counted
 * since (a sum).  persist.c parses the file and resolves its keys and
 * models to slots; this file owns the merge.  Master only.
 *
 * Locks: hdr->lock once for the cells, histories and sticky keys; the
 * affinity entries go through affinity.c, which takes it per entry.
 */
#include <string.h>

#include "shm.h"

/* Minute rings: the newer entry of a slot wins, equal ones add. */
static void
restore_minutes(struct shm_minute *dst, const struct shm_minute *src)
{
	int	 i;

	for (i = 0; i < SHM_HISTORY; i++) {
		if (src[i].minute == 0)
			continue;
		if (dst[i].minute == src[i].minute) {
			dst[i].requests += src[i].requests;
			dst[i].tokens += src[i].tokens;
		} else if (dst[i].minute < src[i].minute)
			dst[i] = src[i];
	}
}

/* The per-day part of a cell: counters and exhaustion. */
static void
restore_daily_locked(struct shm_usage *d, const struct shm_usage *s)
{
	int	 i;

	d->tpd_used += s->tpd_used;
	d->rpd_used += s->rpd_used;
	for (i = 0; i < SHM_TOK_N; i++)
		d->tokens[i] += s->tokens[i];
	d->requests += s->requests;
	d->errors += s->errors;
	d->batches += s->batches;
	if (s->state == SHM_EXHAUSTED && d->state != SHM_EXHAUSTED) {
		d->state = SHM_EXHAUSTED;
		d->reason = s->reason;
		d->cooldown_until = 0;
	}
}

/*
 * Add what the file says to a cell.  daily: the file's per-day data is of
 * the current day.  A cooldown still running and the window's buckets
 * are kept either way (the newer bucket of a slot wins, equal ones add).
 */
static void
restore_cell_locked(struct shm_usage *d, const struct shm_usage *s,
    int daily, int64_t now)
{
	int	 i;

	if (daily)
		restore_daily_locked(d, s);
	if (s->state == SHM_COOLING && s->cooldown_until > now &&
	    d->state != SHM_EXHAUSTED) {
		d->state = SHM_COOLING;
		d->reason = s->reason;
		if (s->cooldown_until > d->cooldown_until)
			d->cooldown_until = s->cooldown_until;
	}
	for (i = 0; i < SHM_WIN_BUCKETS; i++) {
		if (s->win[i].stamp == 0)
			continue;
		if (d->win[i].stamp == s->win[i].stamp) {
			d->win[i].requests += s->win[i].requests;
			d->win[i].tokens += s->win[i].tokens;
		} else if (d->win[i].stamp < s->win[i].stamp)
			d->win[i] = s->win[i];
	}
}

static int
restore_key_ok(const struct shm_header *h, int k)
{
	return k >= 0 && (uint32_t)k < h->nkeys && SHM_KEYS(h)[k].in_use;
}

static int
restore_model_ok(const struct shm_header *h, int m)
{
	return m >= 0 && (uint32_t)m < h->nmodels && SHM_MODELS(h)[m].in_use;
}

/*
 * Named projects' cells, by name: a project the config no longer names
 * takes nothing.  Linear in the projects per entry: a usage file is read
 * once at start (and a late one once more).
 */
static void
restore_projects_locked(struct shm_header *h, const struct shm_restore *r,
    int daily, int64_t now)
{
	const struct shm_project	*pr = SHM_PROJECTS(h);
	size_t				 i;
	uint32_t			 p = 0;

	for (i = 0; i < r->npcells; i++) {
		/* Entries of one project come together: try the last first. */
		if (p >= h->nprojects || !pr[p].in_use ||
		    strcmp(pr[p].name, r->pcells[i].name) != 0)
			for (p = 0; p < h->nprojects; p++)
				if (pr[p].in_use &&
				    strcmp(pr[p].name, r->pcells[i].name) == 0)
					break;
		if (p < h->nprojects && restore_model_ok(h, r->pcells[i].m))
			restore_cell_locked(SHM_PUSAGE(h, p, r->pcells[i].m),
			    &r->pcells[i].u, daily, now);
	}
}

/*
 * Merge r into the tables at now.  Slots that no longer hold a key or a
 * model (a reload since the file was resolved) are skipped.  An affinity
 * entry already known keeps the key it has.
 */
void
shm_restore(struct shm_header *h, const struct shm_restore *r, int daily,
    int64_t now)
{
	struct shm_model	*models = SHM_MODELS(h);
	const struct shm_restore_hist *rh;
	size_t			 i;
	int			 k, m;

	shm_lock(h);
	restore_projects_locked(h, r, daily, now);
	for (i = 0; i < r->ncells; i++) {
		k = r->cells[i].k;
		m = r->cells[i].m;
		if (restore_key_ok(h, k) && restore_model_ok(h, m))
			restore_cell_locked(SHM_USAGE(h, k, m),
			    &r->cells[i].u, daily, now);
	}
	for (i = 0; i < r->nkhist; i++)
		if (restore_key_ok(h, r->khist[i].slot))
			restore_minutes(SHM_KEYS(h)[r->khist[i].slot].history,
			    r->khist[i].hist);
	for (i = 0; i < r->nmhist; i++) {
		rh = &r->mhist[i];
		if (!restore_model_ok(h, rh->slot))
			continue;
		restore_minutes(models[rh->slot].history, rh->hist);
		if (models[rh->slot].current_key < 0 &&
		    restore_key_ok(h, rh->current))
			models[rh->slot].current_key = rh->current;
	}
	shm_unlock(h);

	for (i = 0; i < r->naff; i++) {
		struct shm_aff_note	 n;

		if (shm_affinity_get(h, r->aff[i].name, now) >= 0)
			continue;
		memset(&n, 0, sizeof(n));
		n.name = r->aff[i].name;
		n.kind = r->aff[i].kind;
		n.key = r->aff[i].k;
		n.created = r->aff[i].created;
		n.expires = r->aff[i].expires;
		n.done = r->aff[i].done;
		shm_affinity_put(h, &n, now);
	}
}
