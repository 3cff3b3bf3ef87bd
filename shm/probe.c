/*
 * The probe schedule of invalid keys, for the prober (src/prober.c) and
 * an operator's POST /api/keys/{id}/probe (src/admin.c): which keys are
 * due, the key text for one probe, and its answer written back.
 *
 * A key marked invalid (pick.c's shm_invalidate) is probed first_ms after
 * the marking, then at doubling intervals up to max_ms; a key the upstream
 * calls deleted (400 API_KEY_INVALID) goes straight to max_ms.  Every
 * interval is spread by +-10 % from the key's id and the probe's number,
 * so a thousand keys marked in the same second do not come due in the
 * same second.  A key whose project has spent every configured model is
 * not probed: it could not serve before the daily reset anyway, so its
 * next probe moves to first_ms after that reset.
 *
 * Locks: every function takes hdr->lock itself; shm_probe_due holds it
 * for batches of SHM_PROBE_BATCH slots, as snapshot.c does.  The math
 * (shm_probe_jitter, shm_probe_interval) is pure.
 */
#include <bsd/string.h>
#include <stdint.h>
#include <string.h>

#include "shm.h"

#define SHM_PROBE_BATCH		1024	/* key slots per lock hold */
#define SHM_PROBE_SPREAD	1000	/* jitter: +-SPREAD/10000 = 10 % */

const char *const shm_probe_names[SHM_PROBE_N] = {
	[SHM_PROBE_OK] = "ok",
	[SHM_PROBE_DELETED] = "invalid",
	[SHM_PROBE_REFUSED] = "refused",
	[SHM_PROBE_FAILED] = "error"
};

/*
 * iv (ms) spread by up to +-10 %, the same for the same key id and probe
 * number n: FNV-1a of both, mixed, to a value in [-1000, 1000] per 10,000.
 */
int64_t
shm_probe_jitter(const char *id, uint32_t n, int64_t iv)
{
	uint64_t	 x = 1469598103934665603ULL;
	int64_t		 off;
	int		 i;

	for (; *id != '\0'; id++)
		x = (x ^ (unsigned char)*id) * 1099511628211ULL;
	for (i = 0; i < 4; i++)
		x = (x ^ ((n >> (8 * i)) & 0xff)) * 1099511628211ULL;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	off = (int64_t)(x % (2 * SHM_PROBE_SPREAD + 1)) - SHM_PROBE_SPREAD;
	return iv + iv / 10000 * off + iv % 10000 * off / 10000;
}

/*
 * The interval after a probe that did not bring the key back, from the
 * one before (prev, 0 for none): a deleted key waits max_ms, others twice
 * as long as before, from first_ms up to max_ms.
 */
int64_t
shm_probe_interval(const struct shm_probe_conf *pc, int64_t prev,
    uint32_t kind)
{
	int64_t	 iv;

	if (kind == SHM_PROBE_DELETED)
		return pc->max_ms;
	iv = prev < pc->first_ms ? pc->first_ms : prev;
	iv = iv > pc->max_ms / 2 ? pc->max_ms : iv * 2;
	return iv < pc->first_ms ? pc->first_ms : iv;
}

/* Has key k's project spent its day on every configured model? */
static int
probe_spent_locked(struct shm_header *h, int k, int64_t now)
{
	struct shm_model	*m = SHM_MODELS(h);
	uint32_t		 j, n = 0;

	for (j = 0; j < h->nmodels; j++) {
		if (!m[j].in_use || !m[j].configured)
			continue;
		if (shm_cell_state(&m[j], shm_project_cell_locked(h, k, (int)j),
		    now, NULL) != SHM_EXHAUSTED)
			return 0;
		n++;
	}
	return n > 0;
}

/* Insert slot k, due at t, into the cap earliest of due[0..*n). */
static void
probe_keep(int *due, int64_t *at, size_t *n, size_t cap, int k, int64_t t)
{
	size_t	 i;

	if (*n == cap && t >= at[cap - 1])
		return;
	i = *n < cap ? (*n)++ : cap - 1;
	for (; i > 0 && at[i - 1] > t; i--) {
		due[i] = due[i - 1];
		at[i] = at[i - 1];
	}
	due[i] = k;
	at[i] = t;
}

/* Key k's next probe, scheduled when it has none; the time, or 0. */
static int64_t
probe_when_locked(struct shm_header *h, int k, int64_t now,
    const struct shm_probe_conf *pc)
{
	struct shm_key	*key = SHM_KEYS(h) + k;

	if (key->probe_next == 0) {
		key->probe_iv = pc->first_ms;
		key->probe_next = key->invalid_at +
		    shm_probe_jitter(key->id, 0, pc->first_ms);
	}
	if (key->probe_next <= now && probe_spent_locked(h, k, now)) {
		key->probe_next = (h->next_reset > now ? h->next_reset : now) +
		    shm_probe_jitter(key->id, key->probe_n, pc->first_ms);
		key->probe_iv = pc->first_ms;
	}
	return key->probe_next;
}

/*
 * The invalid keys due for a probe at now (ms), earliest first, at most
 * cap of them, into due[] (key slots); *next gets the earliest time a
 * probe not returned is due (INT64_MAX: none).  Returns how many.
 */
size_t
shm_probe_due(struct shm_header *h, int64_t now,
    const struct shm_probe_conf *pc, int *due, size_t cap, int64_t *next)
{
	int64_t		 at[SHM_PROBE_BATCH], t;
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	 k, end;
	size_t		 n = 0;

	*next = INT64_MAX;
	if (pc->first_ms <= 0 || cap == 0)
		return 0;
	if (cap > SHM_PROBE_BATCH)
		cap = SHM_PROBE_BATCH;
	for (k = 0;; k = end) {
		shm_lock(h);
		if (k >= h->nkeys) {
			shm_unlock(h);
			break;
		}
		end = k + SHM_PROBE_BATCH < h->nkeys ? k + SHM_PROBE_BATCH :
		    h->nkeys;
		for (; k < end; k++) {
			if (!keys[k].in_use || !keys[k].invalid)
				continue;
			t = probe_when_locked(h, (int)k, now, pc);
			if (t <= now)
				probe_keep(due, at, &n, cap, (int)k, t);
			else if (t < *next)
				*next = t;
		}
		shm_unlock(h);
	}
	return n;
}

/*
 * The key to probe: slot k when it is in use and invalid, or, with id,
 * the first key in use with that id (an operator's probe, of any key).
 * Copies the key into key (keylen bytes) and when it was marked invalid
 * into *stamp.  Returns the slot, or -1.
 */
int
shm_probe_take(struct shm_header *h, int k, const char *id, char *key,
    size_t keylen, int64_t *stamp)
{
	struct shm_key	*keys = SHM_KEYS(h);
	uint32_t	 i;
	int		 slot = -1;

	shm_lock(h);
	if (id != NULL) {
		for (i = 0; i < h->nkeys && slot < 0; i++)
			if (keys[i].in_use && strcmp(keys[i].id, id) == 0)
				slot = (int)i;
	} else if (k >= 0 && (uint32_t)k < h->nkeys && keys[k].in_use &&
	    keys[k].invalid)
		slot = k;
	if (slot >= 0 && strlcpy(key, keys[slot].key, keylen) >= keylen)
		slot = -1;
	if (slot >= 0)
		*stamp = keys[slot].invalid ? keys[slot].invalid_at : 0;
	shm_unlock(h);
	return slot;
}

static void
probe_why(char *dst, size_t len, const char *why)
{
	if (why[0] != '\0')
		(void)strlcpy(dst, why, len);
}

/*
 * A probe of key (slot k, taken with stamp) answered at now: r.  Written
 * only if the slot still holds that key.  A 200 brings an invalid key
 * back.  Otherwise the next probe is scheduled (pc) if the key is still
 * invalid since the same marking; a key fault found in a valid key (an
 * operator's probe) marks it invalid.  Returns 1 when the key came back,
 * 0 when not, -1 when the slot changed hands.
 */
int
shm_probe_done(struct shm_header *h, int k, const char *key, int64_t stamp,
    int64_t now, const struct shm_probe_conf *pc,
    const struct shm_probe_res *r)
{
	struct shm_key	*kp = SHM_KEYS(h) + k;
	int		 rv = 0;

	shm_lock(h);
	if ((uint32_t)k >= h->nkeys || !kp->in_use ||
	    strcmp(kp->key, key) != 0) {
		shm_unlock(h);
		return -1;
	}
	if (r->kind < SHM_PROBE_N)
		h->m_probes[r->kind]++;
	kp->probe_last = now;
	kp->probe_status = r->status;
	kp->probe_err[0] = '\0';
	if (r->status == 0)
		probe_why(kp->probe_err, sizeof(kp->probe_err), r->why);
	if (r->kind == SHM_PROBE_OK) {
		rv = kp->invalid != 0;
		kp->invalid = 0;
		kp->invalid_why[0] = '\0';
		kp->invalid_at = kp->probe_next = kp->probe_iv = 0;
		kp->probe_n = 0;
	} else if (!kp->invalid && (r->kind == SHM_PROBE_DELETED ||
	    r->kind == SHM_PROBE_REFUSED)) {
		kp->invalid = 1;
		kp->invalid_at = stamp = now;
		kp->probe_iv = pc->first_ms;
		kp->probe_n = 0;
	}
	if (kp->invalid && kp->invalid_at == stamp && r->kind != SHM_PROBE_OK) {
		if (r->kind != SHM_PROBE_FAILED)
			probe_why(kp->invalid_why, sizeof(kp->invalid_why),
			    r->why);
		kp->probe_n++;
		if (pc->first_ms > 0) {
			/* Just marked: the first probe first_s from now. */
			kp->probe_iv = kp->invalid_at == now &&
			    kp->probe_n == 1 && r->kind != SHM_PROBE_DELETED ?
			    pc->first_ms : shm_probe_interval(pc,
			    kp->probe_iv, r->kind);
			kp->probe_next = now + shm_probe_jitter(kp->id,
			    kp->probe_n, kp->probe_iv);
		}
	}
	shm_unlock(h);
	return rv;
}
