/*
 * Robust process-shared mutexes, the way LMDB's mdb_mutex_failed does it.
 *
 * A worker killed while holding hdr->lock must not wedge the others: the
 * next locker gets EOWNERDEAD, repairs what the lock protects (the dead
 * process may have left a half-done update), then marks the mutex
 * consistent.  Robustness is set unconditionally: PTHREAD_MUTEX_ROBUST is an
 * enum on glibc, so an #ifdef would silently compile it out.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "shm.h"

int
shm_lock_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t	 a;
	int			 rv;

	if ((rv = pthread_mutexattr_init(&a)) != 0)
		return rv;
	if ((rv = pthread_mutexattr_setpshared(&a,
	    PTHREAD_PROCESS_SHARED)) != 0 ||
	    (rv = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) != 0 ||
	    (rv = pthread_mutexattr_settype(&a,
	    PTHREAD_MUTEX_ERRORCHECK)) != 0) {
		pthread_mutexattr_destroy(&a);
		return rv;
	}
	rv = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return rv;
}

void
shm_lock(struct shm_header *h)
{
	int	 rv;

	rv = pthread_mutex_lock(&h->lock);
	if (rv == 0)
		return;
	if (rv == EOWNERDEAD) {
		/* Repair first, then say so: the order LMDB uses. */
		shm_repair_locked(h);
		h->lock_recoveries++;
		pthread_mutex_consistent(&h->lock);
		/* No I/O under the lock: the master logs the count later. */
		return;
	}
	/*
	 * ENOTRECOVERABLE cannot happen (we always make it consistent);
	 * anything else is memory corruption.  Nothing sane is left to do.
	 */
	abort();
}

void
shm_unlock(struct shm_header *h)
{
	pthread_mutex_unlock(&h->lock);
}

static void
repair_bucket(struct shm_bucket *b)
{
	/* A bucket torn between stamp and counts: drop it, never invent. */
	if (b->requests > (1u << 30) || b->tokens > (1ull << 50))
		memset(b, 0, sizeof(*b));
}

/*
 * The dead holder may have been anywhere in a critical section: check
 * every invariant the lock protects and put it right.
 */
static void
repair_cell(struct shm_usage *u)
{
	int	 i;

	if (u->state > SHM_EXHAUSTED)
		u->state = SHM_AVAILABLE;
	if (u->state == SHM_AVAILABLE)
		u->cooldown_until = 0;
	for (i = 0; i < SHM_WIN_BUCKETS; i++)
		repair_bucket(&u->win[i]);
}

void
shm_repair_locked(struct shm_header *h)
{
	struct shm_key		*keys = SHM_KEYS(h);
	struct shm_model	*models = SHM_MODELS(h);
	struct shm_affinity	*aff = SHM_AFF(h);
	uint32_t		 k, m, i;

	if (h->nkeys > h->max_keys)
		h->nkeys = h->max_keys;
	if (h->nmodels > h->max_models)
		h->nmodels = h->max_models;
	if (h->default_model >= (int32_t)h->nmodels)
		h->default_model = h->nmodels > 0 ? 0 : -1;
	for (k = 0; k < h->nkeys; k++) {
		keys[k].in_use = keys[k].in_use != 0;
		keys[k].key[SHM_KEY_MAX - 1] = '\0';
		keys[k].id[sizeof(keys[k].id) - 1] = '\0';
		keys[k].masked[sizeof(keys[k].masked) - 1] = '\0';
		keys[k].invalid_why[sizeof(keys[k].invalid_why) - 1] = '\0';
		keys[k].label[sizeof(keys[k].label) - 1] = '\0';
		if ((keys[k].project & SHM_PROJECT_NAMED) ?
		    SHM_PROJECT_SLOT(keys[k].project) >= h->nprojects :
		    keys[k].project != k)
			keys[k].project = k;	/* its own, rather than wild */
		keys[k].probe_err[sizeof(keys[k].probe_err) - 1] = '\0';
	}
	if (h->nprojects > h->max_projects)
		h->nprojects = h->max_projects;
	for (i = 0; i < h->nprojects; i++)
		SHM_PROJECTS(h)[i].name[SHM_PROJECT_MAX - 1] = '\0';
	for (m = 0; m < h->nmodels; m++) {
		models[m].name[SHM_NAME_MAX - 1] = '\0';
		if (models[m].current_key < -1 ||
		    models[m].current_key >= (int32_t)h->nkeys ||
		    (models[m].current_key >= 0 &&
		    !keys[models[m].current_key].in_use))
			models[m].current_key = -1;
		for (k = 0; k < h->nkeys; k++)
			repair_cell(SHM_USAGE(h, k, m));
		for (k = 0; k < h->nprojects; k++)
			repair_cell(SHM_PUSAGE(h, k, m));
	}
	for (i = 0; i < h->max_affinity; i++) {
		aff[i].name[SHM_AFF_NAME - 1] = '\0';
		if (aff[i].in_use && (aff[i].key < 0 ||
		    aff[i].key >= (int32_t)h->nkeys))
			memset(&aff[i], 0, sizeof(aff[i]));
	}
}
