/*
 * GET /api/status_data: the dashboard's JSON, for a worker's status.c.
 *
 * Beyond the contract's fields: per model its four limits,
 * requests_today, errors_today, tokens_today {prompt, candidates, cached,
 * thoughts, total}, cache_hit_ratio (cached over prompt tokens) and its
 * keys counted by state; the same sums for the whole daemon; per key until
 * (when its state ends) and invalid_reason; per key x model reason (tpm,
 * rpm, tpd, rpd, 429, invalid), until (a cooling cell's cooldown_until, an
 * exhausted one's next reset), the four used counts against the four
 * limits, errors_today and cache_hit_ratio; history_by_model and
 * history_by_key (60 numbers each, oldest first, aligned with history[]);
 * the workers' scoreboard with workers_busy and workers_idle; version,
 * uptime_s, config_generation, last_reload {time, ok, message},
 * last_reset, next_quota_reset_utc and timezone.
 *
 * Output: the parts whose size follows the number of keys (keys[] and the
 * per-key histories) are written straight into a growing buffer: building
 * a cJSON tree of 10,000 keys x N models would allocate millions of nodes
 * and print every number through sprintf/sscanf.  The parts whose size
 * follows the models and workers are built with cJSON.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "looper.h"
#include "reset.h"
#include "sbuf.h"
#include "shm.h"
#include "status.h"
#include "view.h"

/* "2026-11-26T04:50:00Z" for ms since the epoch. */
void
status_iso8601(int64_t ms, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);

	if (len == 0)
		return;
	buf[0] = '\0';
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		buf[0] = '\0';
}


static cJSON *
js_limit(int64_t v)
{
	return v < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
}

static cJSON *
js_time(int64_t ms)
{
	char	 t[32];

	if (ms <= 0)
		return cJSON_CreateNull();
	status_iso8601(ms, t, sizeof(t));
	return cJSON_CreateString(t);
}

/*
 * The implicit-cache hit ratio: cached input tokens over input tokens,
 * 0 when there were none, rounded to 4 places for a stable document.
 */
static double
js_ratio(uint64_t cached, uint64_t prompt)
{
	double	 r;

	if (prompt == 0 || cached == 0)
		return 0;
	r = (double)cached / (double)prompt;
	return (double)(int64_t)(r * 10000 + 0.5) / 10000;
}

static cJSON *
js_tokens(const uint64_t n[SHM_TOK_N])
{
	cJSON	*o;
	int	 i;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	for (i = 0; i < SHM_TOK_N; i++)
		cJSON_AddNumberToObject(o, shm_tok_names[i], (double)n[i]);
	return o;
}

/* The daemon: version, clocks, reloads, resets. */
static void
js_daemon(cJSON *o, const struct view *s, const struct config *cfg)
{
	cJSON	*x;
	char	 t[64];

	status_iso8601(s->now, t, sizeof(t));
	cJSON_AddStringToObject(o, "now", t);
	if (s->snap.next_reset > 0 &&
	    reset_format(cfg->timezone, s->snap.next_reset, t, sizeof(t)) == 0)
		cJSON_AddStringToObject(o, "next_quota_reset", t);
	else if (cfg->next_reset[0] != '\0')
		cJSON_AddStringToObject(o, "next_quota_reset", cfg->next_reset);
	else
		cJSON_AddNullToObject(o, "next_quota_reset");
	cJSON_AddItemToObject(o, "next_quota_reset_utc",
	    js_time(s->snap.next_reset));
	cJSON_AddStringToObject(o, "timezone", cfg->timezone[0] != '\0' ?
	    cfg->timezone : "UTC");
	cJSON_AddStringToObject(o, "version", LOOPER_VERSION);
	cJSON_AddNumberToObject(o, "uptime_s", s->snap.started > 0 &&
	    s->now > s->snap.started ?
	    (double)((s->now - s->snap.started) / 1000) : 0);
	cJSON_AddNumberToObject(o, "config_generation",
	    (double)s->snap.generation);
	if ((x = cJSON_AddObjectToObject(o, "last_reload")) != NULL) {
		cJSON_AddItemToObject(x, "time", js_time(s->snap.last_reload));
		cJSON_AddBoolToObject(x, "ok", s->snap.last_reload == 0 ||
		    s->snap.last_reload_ok);
		cJSON_AddStringToObject(x, "message", s->snap.last_reload_msg);
	}
	cJSON_AddItemToObject(o, "last_reset", js_time(s->snap.last_reset));
	cJSON_AddNumberToObject(o, "lock_recoveries",
	    s->snap.lock_recoveries);
}

static void
js_model(cJSON *y, const struct view_model *sm)
{
	cJSON	*z;
	int	 i;

	cJSON_AddItemToObject(y, "tpm_limit", js_limit(sm->m->tpm_limit));
	cJSON_AddItemToObject(y, "tpd_limit", js_limit(sm->m->tpd_limit));
	cJSON_AddItemToObject(y, "rpm_limit", js_limit(sm->m->rpm_limit));
	cJSON_AddItemToObject(y, "rpd_limit", js_limit(sm->m->rpd_limit));
	cJSON_AddItemToObject(y, "sessions_limit", js_limit(
	    sm->m->sessions_limit >= 1 ? sm->m->sessions_limit : -1));
	cJSON_AddNumberToObject(y, "live_sessions", sm->live_sessions);
	cJSON_AddBoolToObject(y, "configured", sm->m->configured);
	cJSON_AddBoolToObject(y, "default", sm->is_default);
	cJSON_AddNumberToObject(y, "requests_today", (double)sm->t_requests);
	cJSON_AddNumberToObject(y, "errors_today", (double)sm->t_errors);
	cJSON_AddItemToObject(y, "tokens_today", js_tokens(sm->t_tokens));
	cJSON_AddNumberToObject(y, "cache_hit_ratio",
	    js_ratio(sm->t_tokens[SHM_TOK_CACHED],
	    sm->t_tokens[SHM_TOK_PROMPT]));
	if ((z = cJSON_AddObjectToObject(y, "keys")) != NULL)
		for (i = 0; i < VIEW_NSTATES; i++)
			cJSON_AddNumberToObject(z, view_state_name(i),
			    sm->nstate[i]);
}

/*
 * A 429 storm's pause (shm/storm.c): paused_until while the model is
 * paused (null once it is over, half-open included: storm.state says
 * that), and storm {state, storms, refused}.
 */
static void
js_storm(cJSON *y, const struct shm_model *m, int64_t now)
{
	static const char *const names[] = { "serving", "paused",
	    "half_open" };
	int	 st = shm_storm_state(m, now);
	cJSON	*z;

	cJSON_AddItemToObject(y, "paused_until", st == 1 ?
	    js_time(m->paused_until) : cJSON_CreateNull());
	if ((z = cJSON_AddObjectToObject(y, "storm")) == NULL)
		return;
	cJSON_AddStringToObject(z, "state", names[st]);
	cJSON_AddNumberToObject(z, "storms", (double)m->m_storms);
	cJSON_AddNumberToObject(z, "refused", (double)m->m_paused);
}

/* The models, their current keys, and the sums over all of them. */
static void
js_models(cJSON *o, const struct view *s)
{
	const struct view_model	*sm;
	cJSON			*x, *y;
	uint64_t		 all[SHM_TOK_N] = { 0 }, requests = 0;
	size_t			 j;
	int			 i;

	x = cJSON_AddObjectToObject(o, "current_keys");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		sm = &s->models[j];
		if (sm->cur_row >= 0)
			cJSON_AddStringToObject(x, sm->m->name,
			    s->keys[sm->cur_row].k->id);
		else
			cJSON_AddNullToObject(x, sm->m->name);
	}
	x = cJSON_AddObjectToObject(o, "models");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		sm = &s->models[j];
		if ((y = cJSON_AddObjectToObject(x, sm->m->name)) == NULL)
			break;
		js_model(y, sm);
		js_storm(y, sm->m, s->now);
		for (i = 0; i < SHM_TOK_N; i++)
			all[i] += sm->t_tokens[i];
		requests += sm->t_requests;
	}
	cJSON_AddItemToObject(o, "tokens_today", js_tokens(all));
	cJSON_AddNumberToObject(o, "requests_today", (double)requests);
	cJSON_AddNumberToObject(o, "cache_hit_ratio",
	    js_ratio(all[SHM_TOK_CACHED], all[SHM_TOK_PROMPT]));
}

/* The last hour, minute by minute, over all models and by model. */
static void
js_history(cJSON *o, const struct view *s)
{
	cJSON		*arr, *x, *y;
	char		 t[64];
	uint64_t	 sum;
	size_t		 i, j;

	arr = cJSON_AddArrayToObject(o, "history");
	for (i = 0; arr != NULL && i < SHM_HISTORY; i++) {
		if ((y = cJSON_CreateObject()) == NULL)
			break;
		cJSON_AddItemToArray(arr, y);
		status_iso8601(((int64_t)s->minute - (SHM_HISTORY - 1) +
		    (int64_t)i) * 60000, t, sizeof(t));
		cJSON_AddStringToObject(y, "minute", t);
		for (sum = 0, j = 0; j < s->nmodels; j++)
			sum += s->models[j].hist[i];
		cJSON_AddNumberToObject(y, "tokens", (double)sum);
	}
	x = cJSON_AddObjectToObject(o, "history_by_model");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		if ((y = cJSON_AddArrayToObject(x, s->models[j].m->name)) ==
		    NULL)
			break;
		for (i = 0; i < SHM_HISTORY; i++)
			cJSON_AddItemToArray(y,
			    cJSON_CreateNumber((double)s->models[j].hist[i]));
	}
}

static void
js_workers(cJSON *o, const struct view *s)
{
	const struct shm_slot	*w;
	cJSON			*arr, *y;
	size_t			 i;

	arr = cJSON_AddArrayToObject(o, "workers");
	for (i = 0; arr != NULL && i < s->nworkers; i++) {
		w = &s->workers[i];
		if ((y = cJSON_CreateObject()) == NULL)
			break;
		cJSON_AddItemToArray(arr, y);
		cJSON_AddNumberToObject(y, "pid", w->pid);
		cJSON_AddStringToObject(y, "state", board_state_name(w->state));
		cJSON_AddNumberToObject(y, "requests", (double)w->requests);
		cJSON_AddStringToObject(y, "request", w->req);
		cJSON_AddNumberToObject(y, "busy_ms", w->req_start > 0 &&
		    w->req_start <= s->now ? (double)(s->now - w->req_start) : 0);
	}
	cJSON_AddNumberToObject(o, "workers_busy", s->busy);
	cJSON_AddNumberToObject(o, "workers_idle", s->idle);
}

/* Everything whose size does not follow the number of keys. */
static cJSON *
js_head(const struct view *s, const struct config *cfg)
{
	cJSON	*o;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	js_daemon(o, s, cfg);
	js_models(o, s);
	js_history(o, s);
	js_workers(o, s);
	return o;
}

/* A time as a quoted ISO 8601 string, or null for none (0). */
static void
js_sbtime(struct sbuf *b, int64_t ms)
{
	char	 t[32];

	if (ms <= 0) {
		sb_lit(b, "null");
		return;
	}
	status_iso8601(ms, t, sizeof(t));
	sb_lit(b, "\"");
	sb_cstr(b, t);
	sb_lit(b, "\"");
}

static void
js_cell(struct sbuf *b, const struct view_model *sm,
    const struct view_cell *c)
{
	const uint64_t	*t = c->u->tokens;
	const char	*reason;
	int		 i;

	sb_lit(b, "{\"state\":\"");
	sb_cstr(b, view_state_name(c->state));
	sb_lit(b, "\",\"reason\":");
	if ((reason = view_reason_name(c->reason)) != NULL) {
		sb_lit(b, "\"");
		sb_cstr(b, reason);
		sb_lit(b, "\"");
	} else
		sb_lit(b, "null");
	sb_lit(b, ",\"tpm_used\":");
	sb_u64(b, c->tpm_used);
	sb_lit(b, ",\"rpm_used\":");
	sb_u64(b, c->rpm_used);
	sb_lit(b, ",\"tpd_used\":");
	sb_u64(b, c->u->tpd_used);
	sb_lit(b, ",\"rpd_used\":");
	sb_u64(b, c->u->rpd_used);
	sb_lit(b, ",\"tpm_limit\":");
	sb_limit(b, sm->m->tpm_limit);
	sb_lit(b, ",\"tpd_limit\":");
	sb_limit(b, sm->m->tpd_limit);
	sb_lit(b, ",\"rpm_limit\":");
	sb_limit(b, sm->m->rpm_limit);
	sb_lit(b, ",\"rpd_limit\":");
	sb_limit(b, sm->m->rpd_limit);
	sb_lit(b, ",\"requests_today\":");
	sb_u64(b, c->u->requests);
	sb_lit(b, ",\"errors_today\":");
	sb_u64(b, c->u->errors);
	sb_lit(b, ",\"batch_jobs\":");
	sb_u64(b, c->u->batches);
	sb_lit(b, ",\"tokens_today\":{");
	for (i = 0; i < SHM_TOK_N; i++) {
		sb_cstr(b, i > 0 ? ",\"" : "\"");
		sb_cstr(b, shm_tok_names[i]);
		sb_lit(b, "\":");
		sb_u64(b, t[i]);
	}
	sb_lit(b, "},\"cache_hit_ratio\":");
	if (t[SHM_TOK_PROMPT] > 0 && t[SHM_TOK_CACHED] > 0)
		sb_printf(b, "%.4f", js_ratio(t[SHM_TOK_CACHED],
		    t[SHM_TOK_PROMPT]));
	else
		sb_lit(b, "0");
	sb_lit(b, ",\"cooldown_until\":");
	js_sbtime(b, c->cooldown_until);
	sb_lit(b, ",\"until\":");
	js_sbtime(b, c->until);
	sb_lit(b, "}");
}

/* A JSON string, or null for NULL. */
static void
js_sbname(struct sbuf *b, const char *s)
{
	if (s == NULL)
		sb_lit(b, "null");
	else
		sb_jstr(b, s);
}

/*
 * projects: each named project by name, with its keys' ids (config
 * order), its state (the most restrictive of its cells, as for a key) and
 * its cells: the state and the counts its limits apply to.
 */
static void
js_projects(struct sbuf *b, const struct view *s, char **mname)
{
	const struct view_project	*vp;
	uint32_t			 st, v;
	size_t				 i, j, o, *rows, *at, *start;

	/* Each project's rows, config order, by a counting sort. */
	rows = calloc(s->nkeys + 1, sizeof(*rows));
	at = calloc((size_t)s->snap.nprojects + 1, sizeof(*at));
	start = calloc(s->nprojects + 2, sizeof(*start));
	if (rows == NULL || at == NULL || start == NULL) {
		b->oom = 1;
		goto done;
	}
	for (i = 0; i < s->nprojects; i++)
		at[s->projects[i].slot] = i + 1;
	for (o = 0; o < s->nkeys; o++) {
		v = s->keys[s->order[o]].k->project;
		if ((v & SHM_PROJECT_NAMED) &&
		    SHM_PROJECT_SLOT(v) < s->snap.nprojects &&
		    (i = at[SHM_PROJECT_SLOT(v)]) != 0)
			start[i + 1]++;
	}
	for (i = 1; i <= s->nprojects; i++)
		start[i + 1] += start[i];
	for (o = 0; o < s->nkeys; o++) {
		v = s->keys[s->order[o]].k->project;
		if ((v & SHM_PROJECT_NAMED) &&
		    SHM_PROJECT_SLOT(v) < s->snap.nprojects &&
		    (i = at[SHM_PROJECT_SLOT(v)]) != 0)
			rows[start[i]++] = s->order[o];
	}
	/* start[i] is now project i-1's end, and so project i's start. */
	sb_lit(b, ",\"projects\":{");
	for (i = 0; i < s->nprojects; i++) {
		vp = &s->projects[i];
		if (i > 0)
			sb_lit(b, ",");
		sb_jstr(b, vp->p->name);
		sb_lit(b, ":{\"keys\":[");
		for (o = start[i]; o < start[i + 1]; o++) {
			if (o > start[i])
				sb_lit(b, ",");
			sb_jstr(b, s->keys[rows[o]].k->id);
		}
		for (j = 0, st = SHM_AVAILABLE; j < s->nmodels; j++)
			if (vp->cells[j].state > st)
				st = vp->cells[j].state;
		sb_lit(b, "],\"state\":\"");
		sb_cstr(b, view_state_name(st));
		sb_lit(b, "\",\"models\":{");
		for (j = 0; j < s->nmodels; j++) {
			if (j > 0)
				sb_lit(b, ",");
			sb_cstr(b, mname[j]);
			sb_lit(b, ":");
			js_cell(b, &s->models[j], &vp->cells[j]);
		}
		sb_lit(b, "}}");
	}
	sb_lit(b, "}");
 done:
	free(rows);
	free(at);
	free(start);
}

/* Batch jobs created today with key row r, over its models. */
static uint64_t
js_key_batches(const struct view *s, size_t r)
{
	uint64_t	 n = 0;
	size_t		 j;

	for (j = 0; j < s->nmodels; j++)
		n += VIEW_CELL(s, r, j)->u->batches;
	return n;
}

/*
 * A key's probe: {"last": time, "next": time, "result": "ok" | the HTTP
 * status | the error's text}, null where there is none.
 */
static void
js_probe(struct sbuf *b, const struct shm_key *k)
{
	sb_lit(b, ",\"probe\":{\"last\":");
	js_sbtime(b, k->probe_last);
	sb_lit(b, ",\"next\":");
	js_sbtime(b, k->invalid ? k->probe_next : 0);
	sb_lit(b, ",\"result\":");
	if (k->probe_last <= 0)
		sb_lit(b, "null");
	else if (k->probe_status == 200)
		sb_lit(b, "\"ok\"");
	else if (k->probe_status > 0)
		sb_printf(b, "%d", (int)k->probe_status);
	else
		sb_jstr(b, k->probe_err[0] != '\0' ? k->probe_err : "error");
	sb_lit(b, "}");
}

/* keys[] and history_by_key, whose size follows the number of keys. */
static void
js_keys(struct sbuf *b, const struct view *s, char **mname)
{
	const struct view_key	*sk;
	size_t			 o, r, j, i;

	sb_lit(b, ",\"keys\":[");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		sk = &s->keys[r];
		if (o > 0)
			sb_lit(b, ",");
		sb_lit(b, "{\"id\":");
		sb_jstr(b, sk->k->id);
		sb_lit(b, ",\"masked\":");
		sb_jstr(b, sk->k->masked);
		sb_lit(b, ",\"tier\":\"");
		sb_cstr(b, sk->k->tier == CFG_TIER_PRIORITY ? "priority" :
		    "secondary");
		sb_lit(b, "\",\"project\":");
		js_sbname(b, view_project_name(s, sk->k));
		sb_lit(b, ",\"label\":");
		js_sbname(b, sk->k->label[0] != '\0' ? sk->k->label : NULL);
		sb_lit(b, ",\"state\":\"");
		sb_cstr(b, view_state_name(sk->state));
		sb_lit(b, "\",\"until\":");
		js_sbtime(b, sk->until);
		sb_lit(b, ",\"invalid_reason\":");
		if (sk->k->invalid)
			sb_jstr(b, sk->k->invalid_why[0] != '\0' ?
			    sk->k->invalid_why : "rejected by the upstream");
		else
			sb_lit(b, "null");
		sb_lit(b, ",\"batch_jobs\":");
		sb_u64(b, js_key_batches(s, r));
		js_probe(b, sk->k);
		sb_lit(b, ",\"models\":{");
		for (j = 0; j < s->nmodels; j++) {
			if (j > 0)
				sb_lit(b, ",");
			sb_cstr(b, mname[j]);
			sb_lit(b, ":");
			js_cell(b, &s->models[j], VIEW_CELL(s, r, j));
		}
		sb_lit(b, "}}");
	}
	sb_lit(b, "],\"history_by_key\":{");
	for (o = 0; o < s->nkeys; o++) {
		sk = &s->keys[s->order[o]];
		if (o > 0)
			sb_lit(b, ",");
		sb_jstr(b, sk->k->id);
		sb_lit(b, ":[");
		for (i = 0; i < SHM_HISTORY; i++) {
			if (i > 0)
				sb_lit(b, ",");
			sb_u64(b, sk->hist[i]);
		}
		sb_lit(b, "]");
	}
	sb_lit(b, "}");
}

/*
 * The whole of /api/status_data for segment h at time now (ms since the
 * epoch).  Returns a malloc'd NUL-terminated string and its length, or
 * NULL when memory ran out.
 */
char *
status_data_json(struct shm_header *h, const struct config *cfg, int64_t now,
    size_t *lenp)
{
	struct view	 s;
	struct sbuf	 b;
	cJSON		*head;
	char		*hs = NULL, **mname = NULL, *out = NULL;
	size_t		 j, hl;

	memset(&b, 0, sizeof(b));
	if (view_take(h, now, &s) == -1)
		return NULL;
	if ((head = js_head(&s, cfg)) == NULL)
		goto fail;
	hs = cJSON_PrintUnformatted(head);
	cJSON_Delete(head);
	if (hs == NULL || (hl = strlen(hs)) < 2 || hs[hl - 1] != '}')
		goto fail;

	/* Each model's name, quoted and escaped once for every key. */
	if ((mname = calloc(s.nmodels + 1, sizeof(*mname))) == NULL)
		goto fail;
	for (j = 0; j < s.nmodels; j++) {
		struct sbuf	 n;

		memset(&n, 0, sizeof(n));
		sb_jstr(&n, s.models[j].m->name);
		if (n.oom)
			goto fail;
		mname[j] = n.p;
	}

	/* The head without its closing brace, then the rest. */
	sb_add(&b, hs, hl - 1);
	js_keys(&b, &s, mname);
	js_projects(&b, &s, mname);
	sb_lit(&b, "}\n");
	if (!b.oom) {
		out = b.p;
		*lenp = b.len;
		b.p = NULL;
	}
 fail:
	if (mname != NULL)
		for (j = 0; j < s.nmodels; j++)
			free(mname[j]);
	free(mname);
	free(hs);
	free(b.p);
	view_free(&s);
	return out;
}
