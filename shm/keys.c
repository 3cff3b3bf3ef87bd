/*
 * The key x model tables: publishing a config into them, and carrying
 * their state, the scoreboard and the generation over to a bigger segment
 * when a reload outgrows the old one.
 *
 * Every function here takes hdr->lock itself or ends in _locked.  Slots are
 * stable: a key that stays in the config across a reload keeps its slot and
 * with it its usage; a worker of the old generation still in flight settles
 * against a slot that still means the same key.  Matching is by the key
 * itself (keys) and by name (models).
 */
#include <bsd/string.h>
#include <stdlib.h>
#include <string.h>

#include "shm.h"

int
shm_find_key_locked(struct shm_header *h, const char *key)
{
	struct shm_key	*k = SHM_KEYS(h);
	uint32_t	 i;

	for (i = 0; i < h->nkeys; i++)
		if (k[i].in_use && strcmp(k[i].key, key) == 0)
			return (int)i;
	return -1;
}

int
shm_find_model_locked(struct shm_header *h, const char *name)
{
	struct shm_model	*m = SHM_MODELS(h);
	uint32_t		 i;

	for (i = 0; i < h->nmodels; i++)
		if (m[i].in_use && strcmp(m[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* A slot changes hands: nothing of the old key may stick to the new. */
static void
keys_clear_locked(struct shm_header *h, uint32_t k)
{
	struct shm_affinity	*a = SHM_AFF(h);
	uint32_t		 i;

	memset(SHM_USAGE(h, k, 0), 0, sizeof(struct shm_usage) * h->max_models);
	for (i = 0; i < h->max_affinity; i++)
		if (a[i].in_use && a[i].key == (int32_t)k)
			memset(&a[i], 0, sizeof(a[i]));
}

/* qsort/bsearch over slot numbers, by the key each slot holds. */
static struct shm_key *keys_sorted;

static int
keys_slot_cmp(const void *a, const void *b)
{
	return strcmp(keys_sorted[*(const uint32_t *)a].key,
	    keys_sorted[*(const uint32_t *)b].key);
}

static int
keys_spec_cmp(const void *key, const void *b)
{
	return strcmp((const char *)key, keys_sorted[*(const uint32_t *)b].key);
}

/*
 * Which configured key already has a slot: found[i] is the slot of spec i
 * (UINT32_MAX: none yet), keep[slot] is set for slots that stay.  Master
 * only: it alone writes key strings and slot ownership, so it may read
 * them without the lock (no allocation happens under it).
 */
static int
keys_match(struct shm_header *h, const struct shm_key_spec *ks, size_t nk,
    uint32_t *found, unsigned char *keep)
{
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	*idx, *p, n, i, j;

	if ((idx = calloc(h->max_keys + 1, sizeof(*idx))) == NULL)
		return -1;
	for (n = 0, j = 0; j < h->nkeys; j++)
		if (keys[j].in_use)
			idx[n++] = j;
	keys_sorted = keys;
	qsort(idx, n, sizeof(*idx), keys_slot_cmp);
	for (i = 0; i < nk; i++) {
		p = bsearch(ks[i].key, idx, n, sizeof(*idx), keys_spec_cmp);
		found[i] = p != NULL ? *p : UINT32_MAX;
		if (p != NULL)
			keep[*p] = 1;
	}
	free(idx);
	return 0;
}

/* A slot for a key new to the tables, or -1 when they are full. */
static int
keys_take_slot_locked(struct shm_header *h, uint32_t *free_slot,
    const char *key)
{
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	 slot;

	while (*free_slot < h->nkeys && keys[*free_slot].in_use)
		(*free_slot)++;
	if (*free_slot >= h->max_keys)
		return -1;
	slot = *free_slot;
	/*
	 * A slot past nkeys was never used, or was cleared when its key
	 * left: it is zero already, and not writing it keeps its pages
	 * unallocated.
	 */
	if (slot == h->nkeys)
		h->nkeys++;
	else {
		memset(&keys[slot], 0, sizeof(keys[slot]));
		keys_clear_locked(h, slot);
	}
	(void)strlcpy(keys[slot].key, key, sizeof(keys[slot].key));
	keys[slot].in_use = 1;
	return (int)slot;
}

static int
keys_publish_locked(struct shm_header *h, const struct shm_key_spec *ks,
    size_t nk, uint32_t *found, const unsigned char *keep)
{
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	 i, j, free_slot = 0;
	int		 slot;

	for (j = 0; j < h->nkeys; j++) {
		if (keys[j].in_use && !keep[j]) {
			/* Gone from the config: wipe it, the key with it. */
			keys_clear_locked(h, j);
			memset(&keys[j], 0, sizeof(keys[j]));
		}
	}
	for (i = 0; i < nk; i++) {
		slot = found[i] != UINT32_MAX ? (int)found[i] :
		    keys_take_slot_locked(h, &free_slot, ks[i].key);
		if (slot < 0)
			return -1;
		found[i] = (uint32_t)slot;
		(void)strlcpy(keys[slot].id, ks[i].id, sizeof(keys[slot].id));
		(void)strlcpy(keys[slot].label, ks[i].label != NULL ?
		    ks[i].label : "", sizeof(keys[slot].label));
		(void)strlcpy(keys[slot].masked, ks[i].masked,
		    sizeof(keys[slot].masked));
		keys[slot].tier = ks[i].tier;
		keys[slot].order = i;
		keys[slot].invalid = 0;
		keys[slot].invalid_why[0] = '\0';
		/* Valid again: no probe due; the last one's answer stays. */
		keys[slot].invalid_at = keys[slot].probe_next = 0;
		keys[slot].probe_iv = 0;
		keys[slot].probe_n = 0;
	}
	/* Trailing free slots need not be scanned. */
	while (h->nkeys > 0 && !keys[h->nkeys - 1].in_use)
		h->nkeys--;
	return 0;
}

static void
keys_limits(struct shm_model *m, const struct shm_model_spec *spec)
{
	m->tpm_limit = spec->tpm_limit;
	m->tpd_limit = spec->tpd_limit;
	m->rpm_limit = spec->rpm_limit;
	m->rpd_limit = spec->rpd_limit;
	m->sessions_limit = spec->sessions_limit;
}

static int
keys_models_locked(struct shm_header *h, const struct shm_model_spec *ms,
    size_t nm, size_t def)
{
	struct shm_model	*models = SHM_MODELS(h);
	uint32_t		 i, j;
	int			 slot;

	for (j = 0; j < h->nmodels; j++)
		models[j].configured = 0;
	for (i = 0; i < nm; i++) {
		if ((slot = shm_find_model_locked(h, ms[i].name)) < 0) {
			for (j = 0; j < h->nmodels && models[j].in_use; j++)
				;
			if (j >= h->max_models)
				return -1;
			slot = (int)j;
			/* Models are never freed: a slot past nmodels is
			 * zero, and stays unallocated until used. */
			h->nmodels++;
			(void)strlcpy(models[slot].name, ms[i].name,
			    sizeof(models[slot].name));
			models[slot].in_use = 1;
			models[slot].current_key = -1;
		}
		models[slot].configured = 1;
		keys_limits(&models[slot], &ms[i]);
		if (i == def)
			h->default_model = slot;
	}
	/* Models seen in requests but not configured: the default's limits. */
	for (j = 0; j < h->nmodels; j++)
		if (models[j].in_use && !models[j].configured)
			keys_limits(&models[j], &ms[def]);
	return 0;
}

/* FNV-1a, for the project index. */
static uint32_t
proj_hash(const char *s)
{
	uint32_t	 x = 2166136261u;

	for (; *s != '\0'; s++)
		x = (x ^ (unsigned char)*s) * 16777619u;
	return x;
}

/*
 * The bucket of an open-addressing index (slot + 1 per bucket, 0 empty;
 * cap a power of two) that holds the project of this name, or the empty
 * bucket where it would go.
 */
static uint32_t *
proj_bucket(const struct shm_header *h, uint32_t *idx, size_t cap,
    const char *name)
{
	const struct shm_project	*pr = SHM_PROJECTS(h);
	size_t				 b = proj_hash(name) & (cap - 1);

	while (idx[b] != 0 && strcmp(pr[idx[b] - 1].name, name) != 0)
		b = (b + 1) & (cap - 1);
	return &idx[b];
}

/* A free project slot, its cells zero, or -1 when the table is full. */
static int
proj_take_locked(struct shm_header *h, uint32_t *cursor, const char *name)
{
	struct shm_project	*pr = SHM_PROJECTS(h);
	uint32_t		 j;

	while (*cursor < h->nprojects && pr[*cursor].in_use)
		(*cursor)++;
	if ((j = *cursor) >= h->max_projects)
		return -1;
	if (j == h->nprojects)
		h->nprojects++;	/* never used: zero already */
	else
		memset(SHM_PUSAGE(h, j, 0), 0,
		    sizeof(struct shm_usage) * h->max_models);
	memset(&pr[j], 0, sizeof(pr[j]));
	(void)strlcpy(pr[j].name, name, sizeof(pr[j].name));
	pr[j].in_use = 1;
	return (int)j;
}

/*
 * A key that leaves a named project for a project of its own takes
 * nothing of the old one's quota with it: its cells' limit counters,
 * window and state start afresh (its totals of the day stay, for show).
 */
static void
keys_forget_limits_locked(struct shm_header *h, uint32_t k)
{
	struct shm_usage	*u;
	uint32_t		 m;

	for (m = 0; m < h->max_models; m++) {
		u = SHM_USAGE(h, k, m);
		u->state = SHM_AVAILABLE;
		u->reason = SHM_R_NONE;
		u->cooldown_until = 0;
		u->tpd_used = u->rpd_used = 0;
		memset(u->win, 0, sizeof(u->win));
	}
}

/* The index of the named projects in use, from empty buckets. */
static void
proj_index_locked(struct shm_header *h, uint32_t *idx, size_t cap)
{
	struct shm_project	*pr = SHM_PROJECTS(h);
	uint32_t		 j;

	memset(idx, 0, cap * sizeof(*idx));
	for (j = 0; j < h->nprojects; j++)
		if (pr[j].in_use)
			*proj_bucket(h, idx, cap, pr[j].name) = j + 1;
}

/*
 * Free the named projects no configured key names any more, first, so
 * that their slots can go to new ones: a reload that renames every
 * project needs no more room than the config's count.
 */
static void
proj_free_unnamed_locked(struct shm_header *h, const struct shm_key_spec *ks,
    size_t nk, uint32_t *idx, size_t cap)
{
	struct shm_project	*pr = SHM_PROJECTS(h);
	uint32_t		*b, j;
	size_t			 i;

	proj_index_locked(h, idx, cap);
	for (j = 0; j < h->nprojects; j++)
		pr[j].nkeys = 0;
	for (i = 0; i < nk; i++)
		if (ks[i].project != NULL && ks[i].project[0] != '\0' &&
		    *(b = proj_bucket(h, idx, cap, ks[i].project)) != 0)
			pr[*b - 1].nkeys++;
	for (j = 0; j < h->nprojects; j++)
		if (pr[j].in_use && pr[j].nkeys == 0) {
			memset(&pr[j], 0, sizeof(pr[j]));
			memset(SHM_PUSAGE(h, j, 0), 0,
			    sizeof(struct shm_usage) * h->max_models);
		}
	while (h->nprojects > 0 && !pr[h->nprojects - 1].in_use)
		h->nprojects--;
	proj_index_locked(h, idx, cap);
}

/*
 * Each key's project as the config says (found[i]: spec i's slot).  Named
 * projects keep their slot, and with it their cells, while any key names
 * them; one no key names any more is freed.  idx: cap buckets.
 */
static int
keys_projects_locked(struct shm_header *h, const struct shm_key_spec *ks,
    size_t nk, const uint32_t *found, uint32_t *idx, size_t cap)
{
	struct shm_project	*pr = SHM_PROJECTS(h);
	struct shm_key		*keys = SHM_KEYS(h);
	uint32_t		*b, j, v, cursor = 0;
	size_t			 i;
	int			 slot;

	proj_free_unnamed_locked(h, ks, nk, idx, cap);
	for (j = 0; j < h->nprojects; j++)
		pr[j].nkeys = 0;
	for (i = 0; i < nk; i++) {
		if (ks[i].project == NULL || ks[i].project[0] == '\0')
			v = found[i];
		else {
			b = proj_bucket(h, idx, cap, ks[i].project);
			if (*b == 0) {
				if ((slot = proj_take_locked(h, &cursor,
				    ks[i].project)) < 0)
					return -1;
				*b = (uint32_t)slot + 1;
			}
			v = SHM_PROJECT_NAMED | (*b - 1);
			pr[*b - 1].nkeys++;
		}
		if ((keys[found[i]].project & SHM_PROJECT_NAMED) &&
		    !(v & SHM_PROJECT_NAMED))
			keys_forget_limits_locked(h, found[i]);
		keys[found[i]].project = v;
	}
	return 0;
}

/*
 * Make the tables say what the config says.  Keys are matched by value and
 * keep their slot and usage; removed keys free their slot; new keys take a
 * free slot.  Every key becomes valid again (invalid lasts until a reload).
 * Models no longer configured stay, metered with the default's limits, so
 * their counts are not lost.  Master only.  Returns -1 when the tables are
 * too small (the caller builds a bigger segment) or memory ran out.
 */
int
shm_publish(struct shm_header *h, const struct shm_key_spec *ks, size_t nk,
    const struct shm_model_spec *ms, size_t nm, size_t def)
{
	struct shm_key		*keys = SHM_KEYS(h);
	struct shm_model	*models = SHM_MODELS(h);
	uint32_t		*found, *idx, j;
	unsigned char		*keep;
	size_t			 cap = 2;
	int			 rv = -1;

	if (nk > h->max_keys || nm > h->max_models || def >= nm)
		return -1;
	while (cap < 2 * (size_t)h->max_projects + 2)
		cap *= 2;
	found = calloc(nk + 1, sizeof(*found));
	keep = calloc(h->max_keys + 1, 1);
	idx = calloc(cap, sizeof(*idx));
	if (found == NULL || keep == NULL || idx == NULL ||
	    keys_match(h, ks, nk, found, keep) == -1)
		goto done;
	shm_lock(h);
	if (keys_publish_locked(h, ks, nk, found, keep) == 0 &&
	    keys_projects_locked(h, ks, nk, found, idx, cap) == 0 &&
	    keys_models_locked(h, ms, nm, def) == 0) {
		shm_live_reproject_locked(h, keep);
		/*
		 * A sticky key that left the config is no longer anyone's;
		 * a storm's recent 429s name key and project slots, which
		 * may now hold others: forgotten (a pause goes on).
		 */
		for (j = 0; j < h->nmodels; j++) {
			if (models[j].current_key >= 0 &&
			    !keys[models[j].current_key].in_use)
				models[j].current_key = -1;
			memset(models[j].storm_hit, 0,
			    sizeof(models[j].storm_hit));
		}
		h->generation++;
		rv = 0;
	}
	shm_unlock(h);
done:
	free(found);
	free(keep);
	free(idx);
	return rv;
}

/* A model's counters since the segment was made, for /metrics. */
static void
carry_model_counters(struct shm_model *d, const struct shm_model *s)
{
	memcpy(d->m_answers, s->m_answers, sizeof(d->m_answers));
	d->m_retries = s->m_retries;
	d->m_waits = s->m_waits;
	memcpy(d->m_dur, s->m_dur, sizeof(d->m_dur));
	d->m_dur_count = s->m_dur_count;
	d->m_dur_sum_ms = s->m_dur_sum_ms;
	memcpy(d->m_broken, s->m_broken, sizeof(d->m_broken));
	d->m_storms = s->m_storms;
	d->m_paused = s->m_paused;
}

/* Named projects' cells, matched by name (models by mmap_). */
static void
carry_projects_locked(struct shm_header *dst, struct shm_header *src,
    const int *mmap_)
{
	struct shm_project	*dp = SHM_PROJECTS(dst), *sp = SHM_PROJECTS(src);
	uint32_t		 i, j, m;

	for (i = 0; i < dst->nprojects; i++) {
		if (!dp[i].in_use)
			continue;
		for (j = 0; j < src->nprojects; j++)
			if (sp[j].in_use && strcmp(sp[j].name, dp[i].name) == 0)
				break;
		for (m = 0; j < src->nprojects && m < dst->nmodels; m++)
			if (mmap_[m] >= 0)
				*SHM_PUSAGE(dst, i, m) =
				    *SHM_PUSAGE(src, j, mmap_[m]);
	}
}

/*
 * Keys, matched by the key: kmap[dst slot] is the src slot (-1: new),
 * rmap[src slot] the dst slot (-1: gone).  Histories and the last probe's
 * answer come along.
 */
static void
carry_keys_locked(struct shm_header *dst, struct shm_header *src, int *kmap,
    int *rmap)
{
	struct shm_key	*dk = SHM_KEYS(dst), *sk = SHM_KEYS(src);
	uint32_t	 i;

	for (i = 0; i < dst->nkeys; i++) {
		kmap[i] = dk[i].in_use ? shm_find_key_locked(src, dk[i].key) :
		    -1;
		if (kmap[i] < 0)
			continue;
		rmap[kmap[i]] = (int)i;
		memcpy(dk[i].history, sk[kmap[i]].history,
		    sizeof(dk[i].history));
		/* The last probe's answer, for the dashboard. */
		dk[i].probe_last = sk[kmap[i]].probe_last;
		dk[i].probe_status = sk[kmap[i]].probe_status;
		memcpy(dk[i].probe_err, sk[kmap[i]].probe_err,
		    sizeof(dk[i].probe_err));
	}
}

/* Models, matched by name (mmap_[dst slot]: the src slot, -1). */
static void
carry_models_locked(struct shm_header *dst, struct shm_header *src,
    const int *rmap, int *mmap_)
{
	struct shm_model	*dm = SHM_MODELS(dst), *sm = SHM_MODELS(src);
	uint32_t		 j;
	int			 s;

	for (j = 0; j < dst->nmodels; j++) {
		mmap_[j] = dm[j].in_use ?
		    shm_find_model_locked(src, dm[j].name) : -1;
		if (mmap_[j] < 0)
			continue;
		memcpy(dm[j].history, sm[mmap_[j]].history,
		    sizeof(dm[j].history));
		/* A storm's pause goes on; its half-open turn and its 429s
		 * (by the old segment's project slots) start afresh.  The
		 * counters for /metrics go on counting. */
		dm[j].paused_until = sm[mmap_[j]].paused_until;
		carry_model_counters(&dm[j], &sm[mmap_[j]]);
		s = sm[mmap_[j]].current_key;
		dm[j].current_key = s >= 0 && (uint32_t)s < src->nkeys ?
		    rmap[s] : -1;
	}
}

/*
 * The key x model cells; a key that left a named project to be its own
 * takes nothing of its quota along (as shm_publish does).
 */
static void
carry_cells_locked(struct shm_header *dst, struct shm_header *src,
    const int *kmap, const int *mmap_)
{
	struct shm_key	*dk = SHM_KEYS(dst), *sk = SHM_KEYS(src);
	uint32_t	 i, j;

	for (i = 0; i < dst->nkeys; i++) {
		if (kmap[i] < 0)
			continue;
		for (j = 0; j < dst->nmodels; j++)
			if (mmap_[j] >= 0)
				*SHM_USAGE(dst, i, j) =
				    *SHM_USAGE(src, kmap[i], mmap_[j]);
		if ((sk[kmap[i]].project & SHM_PROJECT_NAMED) &&
		    !(dk[i].project & SHM_PROJECT_NAMED))
			keys_forget_limits_locked(dst, i);
	}
}

/* Resources whose key stays, in the same table positions. */
static void
carry_affinity_locked(struct shm_header *dst, struct shm_header *src,
    const int *rmap)
{
	struct shm_affinity	*a;
	uint32_t		 i;

	for (i = 0; i < src->max_affinity && i < dst->max_affinity; i++) {
		a = SHM_AFF(src) + i;
		if (!a->in_use || a->key < 0 || a->key >= (int32_t)src->nkeys ||
		    rmap[a->key] < 0)
			continue;
		SHM_AFF(dst)[i] = *a;
		SHM_AFF(dst)[i].key = (int32_t)rmap[a->key];
	}
}

/*
 * After a reload outgrew the old segment: copy what the old one knew about
 * the keys and models the new one holds (matched by key and by name), so
 * that usage, cooldowns and histories survive, and its scoreboard (with the
 * Live sessions its slots hold, moved to the new slots); the new
 * segment's generation is the old one's plus one.  The caller has published the
 * config into dst already; src is no longer used by anyone it forks.
 */
void
shm_carry(struct shm_header *dst, struct shm_header *src)
{
	int		*kmap, *rmap, *mmap_;
	uint32_t	 i;

	/* The master's children move over with their scoreboard slots. */
	memcpy(SHM_SLOTS(dst), SHM_SLOTS(src), sizeof(struct shm_slot) *
	    (src->max_workers < dst->max_workers ? src->max_workers :
	    dst->max_workers));
	dst->generation = src->generation + 1;
	kmap = calloc(dst->nkeys + 1, sizeof(*kmap));
	rmap = calloc(src->nkeys + 1, sizeof(*rmap));
	mmap_ = calloc(dst->nmodels + 1, sizeof(*mmap_));
	if (kmap == NULL || rmap == NULL || mmap_ == NULL) {
		/* Their slots would name src's keys and models. */
		for (i = 0; i < dst->max_workers; i++)
			shm_live_clear(SHM_SLOTS(dst) + i);
		goto done;
	}
	for (i = 0; i < src->nkeys; i++)
		rmap[i] = -1;
	shm_lock(src);
	shm_lock(dst);
	carry_keys_locked(dst, src, kmap, rmap);
	carry_models_locked(dst, src, rmap, mmap_);
	carry_cells_locked(dst, src, kmap, mmap_);
	carry_projects_locked(dst, src, mmap_);
	carry_affinity_locked(dst, src, rmap);
	shm_live_carry_locked(dst, src, rmap, mmap_);
	dst->started = src->started;
	dst->last_reset = src->last_reset;
	dst->next_reset = src->next_reset;
	dst->lock_recoveries = src->lock_recoveries;
	memcpy(dst->m_probes, src->m_probes, sizeof(dst->m_probes));
	shm_unlock(dst);
	shm_unlock(src);
done:
	free(kmap);
	free(rmap);
	free(mmap_);
}
