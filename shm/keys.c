/*
 * The key x model tables: publishing a config into them, carrying state to
 * a bigger segment, and (for the proxy) choosing, reserving and settling.
 *
 * Every function here takes hdr->lock itself or ends in _locked.  Slots are
 * stable: a key that stays in the config across a reload keeps its slot and
 * with it its usage; a worker of the old generation still in flight settles
 * against a slot that still means the same key.  Matching is by the key
 * itself (keys) and by name (models).
 */
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

static void
copy_str(char *dst, size_t len, const char *src)
{
	size_t	 n = strlen(src);

	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* A slot changes hands: nothing of the old key may stick to the new. */
static void
clear_key_cells_locked(struct shm_header *h, uint32_t k)
{
	struct shm_affinity	*a = SHM_AFF(h);
	uint32_t		 i;

	memset(SHM_USAGE(h, k, 0), 0, sizeof(struct shm_usage) * h->max_models);
	for (i = 0; i < h->max_affinity; i++)
		if (a[i].in_use && a[i].key == (int32_t)k)
			memset(&a[i], 0, sizeof(a[i]));
}

/* qsort/bsearch over slot numbers, by the key each slot holds. */
static struct shm_key *sort_keys;

static int
slot_cmp(const void *a, const void *b)
{
	return strcmp(sort_keys[*(const uint32_t *)a].key,
	    sort_keys[*(const uint32_t *)b].key);
}

static int
spec_cmp(const void *key, const void *b)
{
	return strcmp((const char *)key, sort_keys[*(const uint32_t *)b].key);
}

/*
 * Make the tables say what the config says.  Keys are matched by value and
 * keep their slot and usage; removed keys free their slot; new keys take a
 * free slot.  Every key becomes valid again (invalid lasts until a reload).
 * Models no longer configured stay, metered with the default's limits, so
 * their counts are not lost.  Master only: it alone writes key strings and
 * slot ownership, so it may read them without the lock to build its index
 * (no allocation happens under the lock).  Returns -1 when the tables are
 * too small (the caller builds a bigger segment) or memory ran out.
 */
int
shm_publish(struct shm_header *h, const struct shm_key_spec *ks, size_t nk,
    const struct shm_model_spec *ms, size_t nm, size_t def)
{
	struct shm_key		*keys = SHM_KEYS(h);
	struct shm_model	*models = SHM_MODELS(h);
	uint32_t		*idx, *found, n, i, j, free_slot;
	unsigned char		*keep;
	int			 slot, rv = -1;

	if (nk > h->max_keys || nm > h->max_models || def >= nm)
		return -1;
	idx = calloc(h->max_keys + 1, sizeof(*idx));
	found = calloc(nk + 1, sizeof(*found));
	keep = calloc(h->max_keys + 1, 1);
	if (idx == NULL || found == NULL || keep == NULL)
		goto done;
	for (n = 0, j = 0; j < h->nkeys; j++)
		if (keys[j].in_use)
			idx[n++] = j;
	sort_keys = keys;
	qsort(idx, n, sizeof(*idx), slot_cmp);
	for (i = 0; i < nk; i++) {
		uint32_t *p = bsearch(ks[i].key, idx, n, sizeof(*idx), spec_cmp);

		found[i] = p != NULL ? *p : UINT32_MAX;
		if (p != NULL)
			keep[*p] = 1;
	}

	shm_lock(h);
	for (j = 0; j < h->nkeys; j++) {
		if (keys[j].in_use && !keep[j]) {
			/* Gone from the config: wipe it, the key with it. */
			clear_key_cells_locked(h, j);
			memset(&keys[j], 0, sizeof(keys[j]));
		}
	}
	free_slot = 0;
	for (i = 0; i < nk; i++) {
		if (found[i] != UINT32_MAX)
			slot = (int)found[i];
		else {
			while (free_slot < h->nkeys && keys[free_slot].in_use)
				free_slot++;
			if (free_slot >= h->max_keys)
				goto unlock;
			slot = (int)free_slot;
			/*
			 * A slot past nkeys was never used, or was cleared
			 * when its key left: it is zero already, and not
			 * writing it keeps its pages unallocated.
			 */
			if (free_slot == h->nkeys)
				h->nkeys++;
			else {
				memset(&keys[slot], 0, sizeof(keys[slot]));
				clear_key_cells_locked(h, slot);
			}
			copy_str(keys[slot].key, sizeof(keys[slot].key),
			    ks[i].key);
			keys[slot].in_use = 1;
		}
		copy_str(keys[slot].id, sizeof(keys[slot].id), ks[i].id);
		copy_str(keys[slot].masked, sizeof(keys[slot].masked),
		    ks[i].masked);
		keys[slot].tier = ks[i].tier;
		keys[slot].order = i;
		keys[slot].invalid = 0;
		keys[slot].invalid_why[0] = '\0';
	}
	/* Trailing free slots need not be scanned. */
	while (h->nkeys > 0 && !keys[h->nkeys - 1].in_use)
		h->nkeys--;

	for (j = 0; j < h->nmodels; j++)
		models[j].configured = 0;
	for (i = 0; i < nm; i++) {
		slot = shm_find_model_locked(h, ms[i].name);
		if (slot < 0) {
			for (j = 0; j < h->nmodels && models[j].in_use; j++)
				;
			if (j >= h->max_models)
				goto unlock;
			slot = (int)j;
			/* Models are never freed: a slot past nmodels is
			 * zero, and stays unallocated until used. */
			h->nmodels++;
			copy_str(models[slot].name, sizeof(models[slot].name),
			    ms[i].name);
			models[slot].in_use = 1;
			models[slot].current_key = -1;
		}
		models[slot].configured = 1;
		models[slot].tpm_limit = ms[i].tpm_limit;
		models[slot].tpd_limit = ms[i].tpd_limit;
		models[slot].rpm_limit = ms[i].rpm_limit;
		models[slot].rpd_limit = ms[i].rpd_limit;
		if (i == def)
			h->default_model = slot;
	}
	/* Models seen in requests but not configured: the default's limits. */
	for (j = 0; j < h->nmodels; j++) {
		if (!models[j].in_use || models[j].configured)
			continue;
		models[j].tpm_limit = ms[def].tpm_limit;
		models[j].tpd_limit = ms[def].tpd_limit;
		models[j].rpm_limit = ms[def].rpm_limit;
		models[j].rpd_limit = ms[def].rpd_limit;
	}
	/* A sticky key that left the config is no longer anyone's. */
	for (j = 0; j < h->nmodels; j++)
		if (models[j].current_key >= 0 &&
		    !keys[models[j].current_key].in_use)
			models[j].current_key = -1;
	h->generation++;
	rv = 0;
unlock:
	shm_unlock(h);
done:
	free(idx);
	free(found);
	free(keep);
	return rv;
}

/*
 * After a reload outgrew the old segment: copy what the old one knew about
 * the keys and models the new one holds (matched by key and by name), so
 * that usage, cooldowns and histories survive.  The caller has published the
 * config into dst already; src is no longer used by anyone it forks.
 */
void
shm_carry(struct shm_header *dst, struct shm_header *src)
{
	struct shm_key		*dk = SHM_KEYS(dst), *sk = SHM_KEYS(src);
	struct shm_model	*dm = SHM_MODELS(dst), *sm = SHM_MODELS(src);
	int			*kmap, *mmap_;
	uint32_t		 i, j;
	int			 s;

	kmap = calloc(dst->nkeys + 1, sizeof(*kmap));
	mmap_ = calloc(dst->nmodels + 1, sizeof(*mmap_));
	if (kmap == NULL || mmap_ == NULL)
		goto done;
	shm_lock(src);
	shm_lock(dst);
	for (i = 0; i < dst->nkeys; i++) {
		kmap[i] = dk[i].in_use ? shm_find_key_locked(src, dk[i].key) :
		    -1;
		if (kmap[i] >= 0)
			memcpy(dk[i].history, sk[kmap[i]].history,
			    sizeof(dk[i].history));
	}
	for (j = 0; j < dst->nmodels; j++) {
		mmap_[j] = dm[j].in_use ?
		    shm_find_model_locked(src, dm[j].name) : -1;
		if (mmap_[j] < 0)
			continue;
		memcpy(dm[j].history, sm[mmap_[j]].history,
		    sizeof(dm[j].history));
		s = sm[mmap_[j]].current_key;
		dm[j].current_key = -1;
		for (i = 0; s >= 0 && i < dst->nkeys; i++)
			if (kmap[i] == s)
				dm[j].current_key = (int32_t)i;
	}
	for (i = 0; i < dst->nkeys; i++)
		for (j = 0; kmap[i] >= 0 && j < dst->nmodels; j++)
			if (mmap_[j] >= 0)
				*SHM_USAGE(dst, i, j) =
				    *SHM_USAGE(src, kmap[i], mmap_[j]);
	for (i = 0; i < src->max_affinity && i < dst->max_affinity; i++) {
		struct shm_affinity	*a = SHM_AFF(src) + i;

		if (!a->in_use || a->key < 0 || a->key >= (int32_t)src->nkeys)
			continue;
		for (j = 0; j < dst->nkeys; j++)
			if (kmap[j] == a->key) {
				SHM_AFF(dst)[i] = *a;
				SHM_AFF(dst)[i].key = (int32_t)j;
			}
	}
	dst->started = src->started;
	dst->last_reset = src->last_reset;
	dst->next_reset = src->next_reset;
	dst->lock_recoveries = src->lock_recoveries;
	shm_unlock(dst);
	shm_unlock(src);
done:
	free(kmap);
	free(mmap_);
}
