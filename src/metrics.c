/*
 * GET /metrics: the Prometheus text exposition format 0.0.4, for a
 * worker's status.c.  Families (gemini_looper_ prefix): up,
 * build_info{version}, start_time_seconds, uptime_seconds,
 * config_generation, last_reload_success, last_reload_timestamp_seconds,
 * next_reset_timestamp_seconds, lock_recoveries_total, workers{state},
 * keys{state}; per model requests_total{class} (answers to clients),
 * retries_total, waits_total, request_duration_seconds (histogram); per
 * key x model upstream_requests_total{class}, upstream_429_total{quota=
 * minute|day|other}, tokens_total{kind}, batch_jobs_total, tpm_used,
 * tpm_limit and key_state{state} (one-hot over available, cooling,
 * exhausted, invalid); per model model_paused, storms_total and
 * storm_refused_total (429 storms, shm/storm.c); live_sessions (Live
 * API sessions open now, shm/live.c).
 * Counters count since the shared segment was made (the daemon's start).
 *
 * Every family's samples are written together, as the format wants, so
 * the cells are walked once per family.
 *
 * Size: with 10,000 keys and a few models the per key x model families
 * are most of the text, so a cell's counters (upstream answers, 429s,
 * tokens) are written only once it has had traffic, and of the classes
 * only those seen, as a client library's labelled counters would; the
 * gauges (TPM used and limit, state) are written for every cell.  The
 * label sets are escaped once per key and per model, not per sample.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "looper.h"
#include "sbuf.h"
#include "shm.h"
#include "status.h"
#include "view.h"

static const char *const prom_quota[SHM_Q_N] = {
	[SHM_Q_MINUTE] = "minute",
	[SHM_Q_DAY] = "day",
	[SHM_Q_OTHER] = "other"
};

static void
prom_family(struct sbuf *b, const char *name, const char *type,
    const char *help)
{
	sb_lit(b, "# HELP ");
	sb_cstr(b, name);
	sb_lit(b, " ");
	sb_cstr(b, help);
	sb_lit(b, "\n# TYPE ");
	sb_cstr(b, name);
	sb_lit(b, " ");
	sb_cstr(b, type);
	sb_lit(b, "\n");
}

/* A label value escaped once: where it lies in the labels' buffer. */
struct plab {
	size_t	 off;
	size_t	 len;
};

/* name{key="…",model="…" — the caller adds more labels and the "} ". */
static void
prom_cell(struct sbuf *b, const char *name, const char *labs,
    const struct plab *k, const struct plab *m)
{
	sb_cstr(b, name);
	sb_lit(b, "{key=\"");
	sb_add(b, labs + k->off, k->len);
	sb_lit(b, "\",model=\"");
	sb_add(b, labs + m->off, m->len);
	sb_lit(b, "\"");
}

static void
prom_model(struct sbuf *b, const char *name, const char *labs,
    const struct plab *m)
{
	sb_cstr(b, name);
	sb_lit(b, "{model=\"");
	sb_add(b, labs + m->off, m->len);
	sb_lit(b, "\"");
}

/* ,label="value"} N\n */
static void
prom_end(struct sbuf *b, const char *label, const char *value, uint64_t v)
{
	if (label != NULL) {
		sb_lit(b, ",");
		sb_cstr(b, label);
		sb_lit(b, "=\"");
		sb_cstr(b, value);
		sb_lit(b, "\"");
	}
	sb_lit(b, "} ");
	sb_u64(b, v);
	sb_lit(b, "\n");
}

static int
prom_active(const struct view_cell *c)
{
	size_t	 i;

	for (i = 0; i < SHM_CLASS_N; i++)
		if (c->u->m_status[i] != 0)
			return 1;
	for (i = 0; i < SHM_TOK_N; i++)
		if (c->u->m_tokens[i] != 0)
			return 1;
	return 0;
}

static void
prom_head(struct sbuf *b, const struct view *s)
{
	uint32_t	 nk[VIEW_NSTATES] = { 0 };
	size_t		 r, i;

	prom_family(b, "gemini_looper_up", "gauge",
	    "Whether the proxy is up.");
	sb_lit(b, "gemini_looper_up 1\n");
	prom_family(b, "gemini_looper_build_info", "gauge",
	    "The running version, as a label.");
	sb_lit(b, "gemini_looper_build_info{version=\"");
	sb_label(b, LOOPER_VERSION);
	sb_lit(b, "\"} 1\n");
	if (s->snap.started > 0) {
		prom_family(b, "gemini_looper_start_time_seconds", "gauge",
		    "When the master started, in seconds since the epoch.");
		sb_printf(b, "gemini_looper_start_time_seconds %.3f\n",
		    s->snap.started / 1000.0);
	}
	prom_family(b, "gemini_looper_uptime_seconds", "gauge",
	    "Seconds since the master started.");
	sb_printf(b, "gemini_looper_uptime_seconds %.3f\n",
	    s->snap.started > 0 && s->now > s->snap.started ?
	    (s->now - s->snap.started) / 1000.0 : 0.0);
	prom_family(b, "gemini_looper_config_generation", "gauge",
	    "The config generation in force: 1 at start, one more per "
	    "successful reload.");
	sb_lit(b, "gemini_looper_config_generation ");
	sb_u64(b, s->snap.generation);
	sb_lit(b, "\n");
	prom_family(b, "gemini_looper_last_reload_success", "gauge",
	    "0 when the last reload failed (the old config stayed), else 1.");
	sb_printf(b, "gemini_looper_last_reload_success %d\n",
	    s->snap.last_reload == 0 || s->snap.last_reload_ok ? 1 : 0);
	if (s->snap.last_reload > 0) {
		prom_family(b, "gemini_looper_last_reload_timestamp_seconds",
		    "gauge", "When the config was last reloaded, in seconds "
		    "since the epoch.");
		sb_printf(b, "gemini_looper_last_reload_timestamp_seconds "
		    "%.3f\n", s->snap.last_reload / 1000.0);
	}
	if (s->snap.next_reset > 0) {
		prom_family(b, "gemini_looper_next_reset_timestamp_seconds",
		    "gauge", "When the daily quotas reset next, in seconds "
		    "since the epoch.");
		sb_printf(b, "gemini_looper_next_reset_timestamp_seconds "
		    "%.3f\n", s->snap.next_reset / 1000.0);
	}
	prom_family(b, "gemini_looper_lock_recoveries_total", "counter",
	    "Times the shared-memory lock was recovered from a dead holder.");
	sb_lit(b, "gemini_looper_lock_recoveries_total ");
	sb_u64(b, s->snap.lock_recoveries);
	sb_lit(b, "\n");
	prom_family(b, "gemini_looper_key_probes_total", "counter",
	    "Probes of invalid keys, by what the upstream said.");
	for (r = 0; r < SHM_PROBE_N; r++) {
		sb_printf(b, "gemini_looper_key_probes_total{result=\"%s\"} ",
		    shm_probe_names[r]);
		sb_u64(b, s->snap.m_probes[r]);
		sb_lit(b, "\n");
	}
	prom_family(b, "gemini_looper_workers", "gauge",
	    "Worker processes, busy serving or idle.");
	sb_printf(b, "gemini_looper_workers{state=\"busy\"} %d\n"
	    "gemini_looper_workers{state=\"idle\"} %d\n", s->busy, s->idle);

	for (r = 0; r < s->nkeys; r++)
		nk[s->keys[r].state]++;
	prom_family(b, "gemini_looper_keys", "gauge",
	    "Keys by state: invalid, or the most restrictive of their "
	    "models' states.");
	for (i = 0; i < VIEW_NSTATES; i++)
		sb_printf(b, "gemini_looper_keys{state=\"%s\"} %u\n",
		    view_state_name(i), nk[i]);
}

/* 429 storms (shm/storm.c), per model: paused now, pauses, refusals. */
static void
prom_storms(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *ml)
{
	size_t	 j;

	prom_family(b, "gemini_looper_model_paused", "gauge",
	    "1 while a 429 storm pauses the model, else 0 (half-open, "
	    "when one request may try, included).");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_model_paused", labs, &ml[j]);
		prom_end(b, NULL, NULL,
		    shm_storm_state(s->models[j].m, s->now) == 1);
	}
	prom_family(b, "gemini_looper_storms_total", "counter",
	    "Pauses begun by a 429 storm (a failed half-open probe too).");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_storms_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m->m_storms);
	}
	prom_family(b, "gemini_looper_storm_refused_total", "counter",
	    "Requests answered 429 at once because a storm paused the model.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_storm_refused_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m->m_paused);
	}
}

/* Live API sessions (shm/live.c), per model: open now. */
static void
prom_live(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *ml)
{
	size_t	 j;

	prom_family(b, "gemini_looper_live_sessions", "gauge",
	    "Live API (WebSocket) sessions open now.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_live_sessions", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].live_sessions);
	}
}

/* The families per model: answers, retries, waits, cuts, durations. */
static void
prom_models(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *ml)
{
	const struct view_model	*sm;
	uint64_t		 cum;
	size_t			 j, i;

	prom_family(b, "gemini_looper_requests_total", "counter",
	    "Requests answered to clients, by model and status class "
	    "(none: no answer could be sent).");
	for (j = 0; j < s->nmodels; j++)
		for (i = 0; i < SHM_CLASS_N; i++) {
			prom_model(b, "gemini_looper_requests_total", labs, &ml[j]);
			prom_end(b, "class", shm_class_names[i],
			    s->models[j].m->m_answers[i]);
		}
	prom_family(b, "gemini_looper_retries_total", "counter",
	    "Requests sent again on another key after a 429 or an error.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_retries_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m->m_retries);
	}
	prom_family(b, "gemini_looper_waits_total", "counter",
	    "Requests that waited for a key to free up.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_waits_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m->m_waits);
	}
	prom_family(b, "gemini_looper_streams_broken_total", "counter",
	    "Answers the upstream broke off after their head went to the "
	    "client, which saw them end abnormally, by model and why.");
	for (j = 0; j < s->nmodels; j++)
		for (i = 0; i < SHM_B_N; i++) {
			prom_model(b, "gemini_looper_streams_broken_total",
			    labs, &ml[j]);
			prom_end(b, "why", shm_broken_names[i],
			    s->models[j].m->m_broken[i]);
		}
	prom_storms(b, s, labs, ml);
	prom_live(b, s, labs, ml);
	prom_family(b, "gemini_looper_request_duration_seconds", "histogram",
	    "Time from a client's request to the end of its answer.");
	for (j = 0; j < s->nmodels; j++) {
		sm = &s->models[j];
		for (cum = 0, i = 0; i < SHM_DUR_BUCKETS; i++) {
			cum += sm->m->m_dur[i];
			prom_model(b,
			    "gemini_looper_request_duration_seconds_bucket",
			    labs, &ml[j]);
			if (i == SHM_DUR_BUCKETS - 1)
				sb_lit(b, ",le=\"+Inf\"} ");
			else
				sb_printf(b, ",le=\"%g\"} ", shm_dur_le[i]);
			/* The count, should a bucket have been torn. */
			sb_u64(b, i == SHM_DUR_BUCKETS - 1 ?
			    sm->m->m_dur_count : cum);
			sb_lit(b, "\n");
		}
		prom_model(b, "gemini_looper_request_duration_seconds_sum",
		    labs, &ml[j]);
		sb_printf(b, "} %.3f\n", sm->m->m_dur_sum_ms / 1000.0);
		prom_model(b, "gemini_looper_request_duration_seconds_count",
		    labs, &ml[j]);
		prom_end(b, NULL, NULL, sm->m->m_dur_count);
	}
}

/* The counters per key x model, for the cells that had traffic. */
static void
prom_cell_counters(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *kl, const struct plab *ml)
{
	const struct view_cell	*c;
	size_t			 o, r, j, i;

	prom_family(b, "gemini_looper_upstream_requests_total", "counter",
	    "Answers from the upstream, by key fingerprint, model and status "
	    "class (none: no answer).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = VIEW_CELL(s, r, j);
			for (i = 0; i < SHM_CLASS_N; i++) {
				if (c->u->m_status[i] == 0)
					continue;
				prom_cell(b,
				    "gemini_looper_upstream_requests_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "class", shm_class_names[i],
				    c->u->m_status[i]);
			}
		}
	}
	prom_family(b, "gemini_looper_upstream_429_total", "counter",
	    "429 answers from the upstream, by the quota they name: "
	    "per minute, per day, or other.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = VIEW_CELL(s, r, j);
			for (i = 0; i < SHM_Q_N; i++) {
				if (c->u->m_429[i] == 0)
					continue;
				prom_cell(b, "gemini_looper_upstream_429_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "quota", prom_quota[i],
				    c->u->m_429[i]);
			}
		}
	}
	prom_family(b, "gemini_looper_tokens_total", "counter",
	    "Tokens the upstream reported (usageMetadata), by kind.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = VIEW_CELL(s, r, j);
			if (!prom_active(c))
				continue;
			for (i = 0; i < SHM_TOK_N; i++) {
				prom_cell(b, "gemini_looper_tokens_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "kind", shm_tok_names[i],
				    c->u->m_tokens[i]);
			}
		}
	}
}

/* Batch jobs created per key x model, for the cells that made some. */
static void
prom_batches(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *kl, const struct plab *ml)
{
	const struct view_cell	*c;
	size_t			 o, r, j;

	prom_family(b, "gemini_looper_batch_jobs_total", "counter",
	    "Batch jobs created (batchGenerateContent, "
	    "asyncBatchEmbedContent), by key fingerprint and model.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = VIEW_CELL(s, r, j);
			if (c->u->m_batches == 0)
				continue;
			prom_cell(b, "gemini_looper_batch_jobs_total", labs,
			    &kl[r], &ml[j]);
			prom_end(b, NULL, NULL, c->u->m_batches);
		}
	}
}

/* The gauges per key x model, for every cell. */
static void
prom_cell_gauges(struct sbuf *b, const struct view *s, const char *labs,
    const struct plab *kl, const struct plab *ml)
{
	size_t			 o, r, j, i;
	uint32_t		 st;

	prom_family(b, "gemini_looper_tpm_used", "gauge",
	    "Input tokens counted against the per-minute limit (last 60 s).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			prom_cell(b, "gemini_looper_tpm_used", labs, &kl[r], &ml[j]);
			prom_end(b, NULL, NULL, VIEW_CELL(s, r, j)->tpm_used);
		}
	}
	prom_family(b, "gemini_looper_tpm_limit", "gauge",
	    "The per-minute input token limit (absent: no limit).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			if (s->models[j].m->tpm_limit < 0)
				continue;
			prom_cell(b, "gemini_looper_tpm_limit", labs, &kl[r], &ml[j]);
			prom_end(b, NULL, NULL,
			    (uint64_t)s->models[j].m->tpm_limit);
		}
	}
	prom_family(b, "gemini_looper_key_state", "gauge",
	    "1 for the state a key is in for a model, 0 for the others.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			st = s->keys[r].k->invalid ? VIEW_INVALID :
			    VIEW_CELL(s, r, j)->state;
			for (i = 0; i < VIEW_NSTATES; i++) {
				prom_cell(b, "gemini_looper_key_state",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "state", view_state_name(i), i == st);
			}
		}
	}
}

/*
 * The whole of /metrics for segment h at time now (ms since the epoch).
 * Returns a malloc'd NUL-terminated string and its length, or NULL when
 * memory ran out.
 */
char *
metrics_text(struct shm_header *h, int64_t now, size_t *lenp)
{
	struct view	 s;
	struct sbuf	 b, labs;
	struct plab	*kl = NULL, *ml = NULL;
	size_t		 r, j;

	memset(&b, 0, sizeof(b));
	memset(&labs, 0, sizeof(labs));
	if (view_take(h, now, &s) == -1)
		return NULL;
	kl = calloc(s.nkeys + 1, sizeof(*kl));
	ml = calloc(s.nmodels + 1, sizeof(*ml));
	if (kl == NULL || ml == NULL)
		goto fail;
	(void)sb_grow(&labs, 64 + s.nkeys * 16);
	for (r = 0; r < s.nkeys; r++) {
		kl[r].off = labs.len;
		sb_label(&labs, s.keys[r].k->id);
		kl[r].len = labs.len - kl[r].off;
	}
	for (j = 0; j < s.nmodels; j++) {
		ml[j].off = labs.len;
		sb_label(&labs, s.models[j].m->name);
		ml[j].len = labs.len - ml[j].off;
	}
	if (labs.oom || labs.p == NULL)
		goto fail;
	/* Some 60 bytes a sample, 6 samples a cell at the least. */
	(void)sb_grow(&b, 8192 + s.nkeys * s.nmodels * 6 * 60);

	prom_head(&b, &s);
	prom_models(&b, &s, labs.p, ml);
	prom_cell_counters(&b, &s, labs.p, kl, ml);
	prom_batches(&b, &s, labs.p, kl, ml);
	prom_cell_gauges(&b, &s, labs.p, kl, ml);
	if (b.oom)
		goto fail;
	free(labs.p);
	free(kl);
	free(ml);
	view_free(&s);
	*lenp = b.len;
	return b.p;
 fail:
	free(labs.p);
	free(kl);
	free(ml);
	free(b.p);
	view_free(&s);
	return NULL;
}

