/*
 * Which key made a resource.  Files, cached contents, upload sessions,
 * batches, long-running operations, file search stores, tuned models and
 * corpora belong to the Google project of the key that created them; a
 * later request naming them must go to a key of that project.  A small
 * open-addressing table in shared memory maps the name ("files/abc",
 * "batches/x", "models/veo-3/operations/y") to the key slot, the kind of
 * resource and when it expires upstream.
 *
 * Expired entries read as absent and are the first to be reused.  When
 * the probe window of a new name is full, the entry that expires first
 * goes (one that lives until deleted counts as expiring last; the oldest
 * among equals): a file due in an hour is lost before a store.
 *
 * Callers: src/owner.c (requests and answers), shm/restore.c (the usage
 * file).  Each function takes hdr->lock for one short step.
 */
#include <stdint.h>
#include <string.h>

#include "shm.h"

#define PROBE	32

const char *const shm_res_names[SHM_RES_N] = {
	[SHM_RES_FILE] = "file",
	[SHM_RES_CACHE] = "cachedContent",
	[SHM_RES_UPLOAD] = "upload",
	[SHM_RES_BATCH] = "batch",
	[SHM_RES_OPERATION] = "operation",
	[SHM_RES_STORE] = "fileSearchStore",
	[SHM_RES_TUNED] = "tunedModel",
	[SHM_RES_CORPUS] = "corpus"
};

static uint32_t
fnv1a(const char *s)
{
	uint32_t	 h = 2166136261u;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 16777619u;
	}
	return h;
}

static int
aff_live(const struct shm_affinity *e, int64_t now)
{
	return e->in_use && (e->expires == 0 || e->expires > now);
}

/* The entry for name in the table, live or not, or NULL. */
static struct shm_affinity *
aff_find_locked(struct shm_header *h, const char *name)
{
	struct shm_affinity	*a = SHM_AFF(h), *e;
	uint32_t		 i, start;

	start = fnv1a(name) % h->max_affinity;
	for (i = 0; i < PROBE && i < h->max_affinity; i++) {
		e = &a[(start + i) % h->max_affinity];
		if (e->in_use && strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

/* Does a expire before b?  0 (until deleted) is last; oldest first. */
static int
aff_sooner(const struct shm_affinity *a, const struct shm_affinity *b)
{
	if (a->expires != b->expires) {
		if (a->expires == 0 || b->expires == 0)
			return b->expires == 0;
		return a->expires < b->expires;
	}
	return a->created < b->created;
}

/* The slot a new name goes to: free or expired first, else the soonest. */
static struct shm_affinity *
aff_victim_locked(struct shm_header *h, const char *name, int64_t now)
{
	struct shm_affinity	*a = SHM_AFF(h), *e, *victim = NULL;
	uint32_t		 i, start;

	start = fnv1a(name) % h->max_affinity;
	for (i = 0; i < PROBE && i < h->max_affinity; i++) {
		e = &a[(start + i) % h->max_affinity];
		if (!aff_live(e, now))
			return e;
		if (victim == NULL || aff_sooner(e, victim))
			victim = e;
	}
	return victim;
}

/* The key slot that owns name at now (ms), or -1. */
int
shm_affinity_get(struct shm_header *h, const char *name, int64_t now)
{
	struct shm_affinity	*e;
	int			 key = -1;

	if (h->max_affinity == 0 || strlen(name) >= SHM_AFF_NAME)
		return -1;
	shm_lock(h);
	if ((e = aff_find_locked(h, name)) != NULL && aff_live(e, now) &&
	    e->key >= 0 && (uint32_t)e->key < h->nkeys &&
	    SHM_KEYS(h)[e->key].in_use)
		key = e->key;
	shm_unlock(h);
	return key;
}

/*
 * An answer from key n->key named n->name.  A name known already keeps
 * its key while that key is of the same project as n->key (any key of it
 * may read it), and its expiry when n->keep_expiry says so.
 */
void
shm_affinity_put(struct shm_header *h, const struct shm_aff_note *n,
    int64_t now)
{
	struct shm_affinity	*e;
	struct shm_key		*keys = SHM_KEYS(h);
	size_t			 len = strlen(n->name);

	if (h->max_affinity == 0 || len >= SHM_AFF_NAME || n->key < 0 ||
	    n->kind >= SHM_RES_N)
		return;
	shm_lock(h);
	if ((uint32_t)n->key >= h->nkeys)
		goto out;
	if ((e = aff_find_locked(h, n->name)) != NULL && aff_live(e, now)) {
		if (e->key < 0 || (uint32_t)e->key >= h->nkeys ||
		    keys[e->key].project != keys[n->key].project)
			e->key = n->key;
		if (!n->keep_expiry)
			e->expires = n->expires;
		if (n->done)
			e->done = 1;
		goto out;
	}
	if (e == NULL && (e = aff_victim_locked(h, n->name, now)) == NULL)
		goto out;
	memset(e, 0, sizeof(*e));
	memcpy(e->name, n->name, len + 1);
	e->key = n->key;
	e->kind = n->kind;
	e->created = n->created;
	e->expires = n->expires;
	e->done = n->done != 0;
	e->in_use = 1;
out:
	shm_unlock(h);
}

/* The resource is gone upstream (deleted): forget it. */
void
shm_affinity_forget(struct shm_header *h, const char *name)
{
	struct shm_affinity	*e;

	if (h->max_affinity == 0 || strlen(name) >= SHM_AFF_NAME)
		return;
	shm_lock(h);
	if ((e = aff_find_locked(h, name)) != NULL)
		memset(e, 0, sizeof(*e));
	shm_unlock(h);
}

/*
 * A key that may read what key k made: k while it is valid, else another
 * valid key of its project; -1 when every key of the project is invalid.
 * *project gets k's project slot, id (idlen bytes) k's fingerprint.
 */
int
shm_owner_key(struct shm_header *h, int k, uint32_t *project, char *id,
    size_t idlen)
{
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	 i;
	int		 rv = -1;

	shm_lock(h);
	if (k < 0 || (uint32_t)k >= h->nkeys || !keys[k].in_use) {
		shm_unlock(h);
		return -1;
	}
	*project = keys[k].project;
	if (idlen > 0) {
		strncpy(id, keys[k].id, idlen - 1);
		id[idlen - 1] = '\0';
	}
	if (!keys[k].invalid)
		rv = k;
	for (i = 0; rv < 0 && i < h->nkeys; i++)
		if (keys[i].in_use && !keys[i].invalid &&
		    keys[i].project == keys[k].project)
			rv = (int)i;
	shm_unlock(h);
	return rv;
}
