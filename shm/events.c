/*
 * What the master records in the segment's header, and the daily reset
 * of the tables: how the last reload went, when the quotas were reset
 * last and will be next.  Master only (the tests aside); each call takes
 * hdr->lock briefly.  Times are ms since the
 * epoch, read by the caller: one clock per tick.
 */
#include <bsd/string.h>
#include <string.h>

#include "shm.h"

void
shm_note_reload(struct shm_header *h, int64_t now, int ok, const char *msg)
{
	shm_lock(h);
	h->last_reload = now;
	h->last_reload_ok = ok;
	(void)strlcpy(h->last_reload_msg, msg, sizeof(h->last_reload_msg));
	shm_unlock(h);
}

/* The last and next reset (either pointer may be NULL). */
void
shm_resets(struct shm_header *h, int64_t *last, int64_t *next)
{
	shm_lock(h);
	if (last != NULL)
		*last = h->last_reset;
	if (next != NULL)
		*next = h->next_reset;
	shm_unlock(h);
}

void
shm_set_next_reset(struct shm_header *h, int64_t next)
{
	shm_lock(h);
	h->next_reset = next;
	shm_unlock(h);
}

/* A reset older than the one recorded changes nothing (usage file). */
void
shm_restore_last_reset(struct shm_header *h, int64_t last)
{
	shm_lock(h);
	if (last > h->last_reset)
		h->last_reset = last;
	shm_unlock(h);
}

static void
reset_cell(struct shm_usage *u)
{
	u->tpd_used = u->rpd_used = 0;
	memset(u->tokens, 0, sizeof(u->tokens));
	u->requests = u->errors = u->batches = 0;
	if (u->state == SHM_EXHAUSTED) {
		u->state = SHM_AVAILABLE;
		u->reason = SHM_R_NONE;
	}
}

/*
 * The daily reset at now: per-day counters and exhaustion cleared for
 * every key, project and model at once, as every worker sees it; next is
 * when the one after is due.
 */
void
shm_daily_reset(struct shm_header *h, int64_t now, int64_t next)
{
	uint32_t		 k, m;

	shm_lock(h);
	for (k = 0; k < h->nkeys; k++)
		for (m = 0; m < h->nmodels; m++)
			reset_cell(SHM_USAGE(h, k, m));
	for (k = 0; k < h->nprojects; k++)
		for (m = 0; m < h->nmodels; m++)
			reset_cell(SHM_PUSAGE(h, k, m));
	h->last_reset = now;
	h->next_reset = next;
	shm_unlock(h);
}
