/*
 * Counters for /metrics: what the upstream answered per key x model, what
 * the clients got per model, and how long their requests took.  They count
 * from the segment's creation and never go back (Prometheus counters); the
 * daily counters of the dashboard live beside them in shm_usage.  Called by
 * the worker's proxy code; each call takes hdr->lock briefly.
 */
#include <string.h>

#include "shm.h"

/* Upper bounds of the duration buckets, in seconds (the last is +Inf). */
const double shm_dur_le[SHM_DUR_BUCKETS] = {
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 1e308
};

/* The names the usage file, the JSON and /metrics give the counts. */
const char *const shm_tok_names[SHM_TOK_N] = {
	[SHM_TOK_PROMPT] = "prompt",
	[SHM_TOK_CANDIDATES] = "candidates",
	[SHM_TOK_CACHED] = "cached",
	[SHM_TOK_THOUGHTS] = "thoughts",
	[SHM_TOK_TOTAL] = "total"
};

const char *const shm_class_names[SHM_CLASS_N] = {
	"none", "1xx", "2xx", "3xx", "4xx", "5xx"
};

const char *const shm_reason_names[SHM_R_N] = {
	[SHM_R_NONE] = "none",
	[SHM_R_TPM] = "tpm",
	[SHM_R_RPM] = "rpm",
	[SHM_R_TPD] = "tpd",
	[SHM_R_RPD] = "rpd",
	[SHM_R_429] = "429",
	[SHM_R_INVALID] = "invalid"
};

const char *const shm_broken_names[SHM_B_N] = {
	[SHM_B_RESET] = "reset",
	[SHM_B_TIMEOUT] = "timeout",
	[SHM_B_CLOSED] = "closed",
	[SHM_B_MALFORMED] = "malformed"
};

static int
status_class(int status)
{
	return status >= 100 && status < 600 ? status / 100 : 0;
}

/*
 * The upstream answered status for a request sent with pick p; quota is
 * SHM_Q_* for a 429 (else ignored).
 */
void
shm_note_upstream(struct shm_header *h, const struct shm_pick *p, int status,
    int quota)
{
	struct shm_usage	*u;

	if (p->key < 0 || (uint32_t)p->key >= h->max_keys ||
	    p->model < 0 || (uint32_t)p->model >= h->max_models)
		return;
	shm_lock(h);
	if (SHM_KEYS(h)[p->key].in_use &&
	    strcmp(SHM_KEYS(h)[p->key].key, p->key_str) == 0) {
		u = SHM_USAGE(h, p->key, p->model);
		u->m_status[status_class(status)]++;
		if (status == 429 && quota >= 0 && quota < SHM_Q_N)
			u->m_429[quota]++;
	}
	shm_unlock(h);
}

/*
 * A request on model slot m is answered: status to the client, after
 * dur_ms, with retries re-sends to other keys; waited if it was throttled.
 */
void
shm_note_request(struct shm_header *h, int m, int status, int64_t dur_ms,
    int retries, int waited)
{
	struct shm_model	*mm;
	double			 s = dur_ms / 1000.0;
	int			 i;

	if (m < 0 || (uint32_t)m >= h->max_models)
		return;
	shm_lock(h);
	mm = SHM_MODELS(h) + m;
	mm->m_answers[status_class(status)]++;
	mm->m_retries += retries > 0 ? retries : 0;
	mm->m_waits += waited != 0;
	for (i = 0; i < SHM_DUR_BUCKETS - 1 && s > shm_dur_le[i]; i++)
		;
	mm->m_dur[i]++;
	mm->m_dur_count++;
	mm->m_dur_sum_ms += dur_ms > 0 ? dur_ms : 0;
	shm_unlock(h);
}

/*
 * An answer to model m broke off after its head had gone to the client
 * (why: enum shm_broken): counted for /metrics.
 */
void
shm_note_broken(struct shm_header *h, int m, int why)
{
	if (m < 0 || (uint32_t)m >= h->max_models || why < 0 ||
	    why >= SHM_B_N)
		return;
	shm_lock(h);
	SHM_MODELS(h)[m].m_broken[why]++;
	shm_unlock(h);
}
