/*
 * Which key made a file or a cached content.  Files, cached contents and
 * upload sessions belong to the Google project of the key that created
 * them; a later request naming them must go to that key.  A small open-
 * addressing table in shared memory maps the name ("files/abc") to the key
 * slot.  When the probe window is full the oldest entry goes: files expire
 * upstream after 48 hours anyway.
 */
#include <string.h>

#include "shm.h"

#define PROBE	32

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

/* The key slot that owns name, or -1. */
int
shm_affinity_get(struct shm_header *h, const char *name)
{
	struct shm_affinity	*a = SHM_AFF(h);
	uint32_t		 i, start;
	int			 key = -1;

	if (h->max_affinity == 0 || strlen(name) >= SHM_AFF_NAME)
		return -1;
	start = fnv1a(name) % h->max_affinity;
	shm_lock(h);
	for (i = 0; i < PROBE && i < h->max_affinity; i++) {
		struct shm_affinity *e = &a[(start + i) % h->max_affinity];

		if (e->in_use && strcmp(e->name, name) == 0) {
			if (e->key >= 0 && (uint32_t)e->key < h->nkeys &&
			    SHM_KEYS(h)[e->key].in_use)
				key = e->key;
			break;
		}
	}
	shm_unlock(h);
	return key;
}

/* name was made by key at created (ms since the epoch). */
void
shm_affinity_put(struct shm_header *h, const char *name, int key,
    int64_t created)
{
	struct shm_affinity	*a = SHM_AFF(h), *e, *victim = NULL;
	uint32_t		 i, start;
	size_t			 n = strlen(name);

	if (h->max_affinity == 0 || n >= SHM_AFF_NAME || key < 0)
		return;
	start = fnv1a(name) % h->max_affinity;
	shm_lock(h);
	for (i = 0; i < PROBE && i < h->max_affinity; i++) {
		e = &a[(start + i) % h->max_affinity];
		if (e->in_use && strcmp(e->name, name) == 0) {
			victim = e;
			break;
		}
		if (!e->in_use) {
			if (victim == NULL || victim->in_use)
				victim = e;
		} else if (victim == NULL || (victim->in_use &&
		    e->created < victim->created))
			victim = e;
	}
	if (victim != NULL) {
		memcpy(victim->name, name, n + 1);
		victim->key = key;
		victim->created = created;
		victim->in_use = 1;
	}
	shm_unlock(h);
}
