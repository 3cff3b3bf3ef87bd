/*
 * The usage file's text: a snapshot of the tables (persist.c takes it)
 * as JSON.  Keys appear only as their id and second fingerprint; a cell
 * that holds nothing worth keeping is left out, and so is a key with no
 * such cell, no history and no mark.  Numbers are capped at 2^53, what a
 * JSON reader keeps exactly.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "persist_int.h"
#include "shm.h"

static int	 out_bad;	/* an allocation failed while building */

static cJSON *
out_num(int64_t v)
{
	cJSON	*n = cJSON_CreateNumber((double)v);

	if (n == NULL)
		out_bad = 1;
	return n;
}

static void
out_add(cJSON *o, const char *name, cJSON *v)
{
	if (v == NULL || o == NULL ||
	    !cJSON_AddItemToObject(o, name, v)) {
		cJSON_Delete(v);
		out_bad = 1;
	}
}

static void
out_push(cJSON *arr, cJSON *v)
{
	if (v == NULL || arr == NULL || !cJSON_AddItemToArray(arr, v)) {
		cJSON_Delete(v);
		out_bad = 1;
	}
}

static cJSON *
out_new(int array)
{
	cJSON	*o = array ? cJSON_CreateArray() : cJSON_CreateObject();

	if (o == NULL)
		out_bad = 1;
	return o;
}

static cJSON *
out_triple(int64_t a, int64_t b, int64_t c)
{
	cJSON	*t;

	if ((t = out_new(1)) == NULL)
		return NULL;
	out_push(t, out_num(a));
	out_push(t, out_num(b));
	out_push(t, out_num(c));
	return t;
}

static int64_t
out_clamp53(uint64_t v)
{
	return v > (uint64_t)PERSIST_NUM_MAX ? PERSIST_NUM_MAX : (int64_t)v;
}

/* The last hour of a history, oldest first, minutes with something. */
static cJSON *
out_history(const struct shm_minute *hist, uint32_t now_min)
{
	const struct shm_minute	*e;
	cJSON			*arr = NULL;
	uint32_t		 m;

	for (m = now_min - (SHM_HISTORY - 1); m != now_min + 1; m++) {
		e = &hist[m % SHM_HISTORY];
		if (e->minute != m || (e->tokens == 0 && e->requests == 0))
			continue;
		if (arr == NULL && (arr = out_new(1)) == NULL)
			return NULL;
		out_push(arr, out_triple(m, e->requests, (int64_t)e->tokens));
	}
	return arr;
}

/* The window buckets still in the last minute, oldest first. */
static cJSON *
out_window(const struct shm_usage *u, uint32_t now_s)
{
	const struct shm_bucket	*live[SHM_WIN_BUCKETS];
	cJSON			*arr = NULL;
	int			 n, i;

	n = shm_window_live(u, now_s, live);
	for (i = 0; i < n; i++) {
		if (live[i]->tokens == 0 && live[i]->requests == 0)
			continue;
		if (arr == NULL && (arr = out_new(1)) == NULL)
			return NULL;
		out_push(arr, out_triple(live[i]->stamp, live[i]->requests,
		    (int64_t)live[i]->tokens));
	}
	return arr;
}

/* One key x model cell, or NULL when it holds nothing worth keeping. */
static cJSON *
out_cell(const struct shm_usage *u, int64_t now)
{
	cJSON		*o, *win;
	uint32_t	 st = u->state;
	int		 i, any = 0;

	if (st == SHM_COOLING && u->cooldown_until <= now)
		st = SHM_AVAILABLE;
	for (i = 0; i < PERSIST_NCOUNTS; i++)
		any |= PERSIST_COUNT_C(u, i) != 0;
	win = out_window(u, (uint32_t)(now / 1000));
	if (!any && st == SHM_AVAILABLE && win == NULL)
		return NULL;
	if ((o = out_new(0)) == NULL) {
		cJSON_Delete(win);
		return NULL;
	}
	if (st != SHM_AVAILABLE) {
		out_add(o, "state", cJSON_CreateString(st == SHM_COOLING ?
		    "cooling" : "exhausted"));
		out_add(o, "reason", cJSON_CreateString(u->reason < SHM_R_N ?
		    shm_reason_names[u->reason] : "none"));
		if (st == SHM_COOLING)
			out_add(o, "until", out_num(u->cooldown_until));
	}
	for (i = 0; i < PERSIST_NCOUNTS; i++)
		if (PERSIST_COUNT_C(u, i) != 0)
			out_add(o, persist_counts[i].name,
			    out_num(out_clamp53(PERSIST_COUNT_C(u, i))));
	if (win != NULL)
		out_add(o, "window", win);
	return o;
}

/* A key's cells by model name, or NULL when none is worth keeping. */
static cJSON *
out_cells(const struct shm_snap *s, uint32_t k, int64_t now)
{
	cJSON		*cells = NULL, *c;
	uint32_t	 m;

	for (m = 0; m < s->nmodels; m++) {
		if (!s->models[m].in_use ||
		    (c = out_cell(SHM_SNAP_CELL(s, k, m), now)) == NULL)
			continue;
		if (cells == NULL && (cells = out_new(0)) == NULL) {
			cJSON_Delete(c);
			return NULL;
		}
		out_add(cells, s->models[m].name, c);
	}
	return cells;
}

static void
out_keys(cJSON *keys, const struct shm_snap *s,
    const struct persist_fps *f, int64_t now)
{
	const struct shm_key	*key;
	cJSON			*o, *cells, *hist;
	uint32_t		 k;

	for (k = 0; k < s->nkeys && keys != NULL && !out_bad; k++) {
		key = &s->keys[k];
		if (!key->in_use || k >= f->n || f->fp[k][0] == '\0')
			continue;
		cells = out_cells(s, k, now);
		hist = out_history(key->history, (uint32_t)(now / 60000));
		if (cells == NULL && hist == NULL && !key->invalid)
			continue;
		if ((o = out_new(0)) == NULL) {
			cJSON_Delete(cells);
			cJSON_Delete(hist);
			return;
		}
		out_add(o, "id", cJSON_CreateString(key->id));
		out_add(o, "fp", cJSON_CreateString(f->fp[k]));
		if (key->invalid) {
			out_add(o, "invalid", cJSON_CreateTrue());
			out_add(o, "invalid_why",
			    cJSON_CreateString(key->invalid_why));
		}
		if (hist != NULL)
			out_add(o, "history", hist);
		if (cells != NULL)
			out_add(o, "models", cells);
		out_push(keys, o);
	}
}

/* A key slot the snapshot holds a key and a fingerprint for, or -1. */
static int
out_key_ok(const struct shm_snap *s, const struct persist_fps *f, int k)
{
	return k >= 0 && (uint32_t)k < s->nkeys && s->keys[k].in_use &&
	    (size_t)k < f->n ? k : -1;
}

static void
out_models(cJSON *models, const struct shm_snap *s,
    const struct persist_fps *f, int64_t now)
{
	const struct shm_model	*md;
	cJSON			*o, *hist;
	uint32_t		 m;
	int			 cur;

	for (m = 0; m < s->nmodels && models != NULL && !out_bad; m++) {
		md = &s->models[m];
		if (!md->in_use)
			continue;
		cur = out_key_ok(s, f, md->current_key);
		hist = out_history(md->history, (uint32_t)(now / 60000));
		if (cur < 0 && hist == NULL)
			continue;
		if ((o = out_new(0)) == NULL) {
			cJSON_Delete(hist);
			return;
		}
		if (cur >= 0) {
			out_add(o, "current_key",
			    cJSON_CreateString(s->keys[cur].id));
			out_add(o, "current_fp", cJSON_CreateString(f->fp[cur]));
		}
		if (hist != NULL)
			out_add(o, "history", hist);
		out_add(models, md->name, o);
	}
}

static void
out_affinity(cJSON *aff, const struct shm_snap *s,
    const struct persist_fps *f)
{
	const struct shm_affinity	*e;
	cJSON				*o;
	size_t				 i;

	for (i = 0; i < s->naff && aff != NULL && !out_bad; i++) {
		e = &s->aff[i];
		if (out_key_ok(s, f, e->key) < 0 ||
		    (e->expires != 0 && e->expires <= s->now))
			continue;
		if ((o = out_new(0)) == NULL)
			return;
		out_add(o, "name", cJSON_CreateString(e->name));
		out_add(o, "key", cJSON_CreateString(s->keys[e->key].id));
		out_add(o, "fp", cJSON_CreateString(f->fp[e->key]));
		out_add(o, "created", out_num(e->created));
		if (e->kind < SHM_RES_N)
			out_add(o, "kind",
			    cJSON_CreateString(shm_res_names[e->kind]));
		out_add(o, "expires", out_num(e->expires));
		if (e->done)
			out_add(o, "done", cJSON_CreateTrue());
		out_push(aff, o);
	}
}

/* The named projects' cells by model, like a key's. */
static void
out_projects(cJSON *projects, const struct shm_snap *s, int64_t now)
{
	cJSON		*o, *cells, *c;
	uint32_t	 p, m;

	for (p = 0; p < s->nprojects && projects != NULL && !out_bad; p++) {
		if (!s->projects[p].in_use)
			continue;
		cells = NULL;
		for (m = 0; m < s->nmodels && !out_bad; m++) {
			if (!s->models[m].in_use ||
			    (c = out_cell(SHM_SNAP_PCELL(s, p, m), now)) == NULL)
				continue;
			if (cells == NULL && (cells = out_new(0)) == NULL) {
				cJSON_Delete(c);
				return;
			}
			out_add(cells, s->models[m].name, c);
		}
		if (cells == NULL)
			continue;
		if ((o = out_new(0)) == NULL) {
			cJSON_Delete(cells);
			return;
		}
		out_add(o, "models", cells);
		out_add(projects, s->projects[p].name, o);
	}
}

/* The whole file for snapshot s at now, or NULL when memory ran out. */
cJSON *
persist_json(const struct shm_snap *s, const struct persist_fps *f,
    const struct config *cfg, int64_t now)
{
	cJSON	*root, *x;

	out_bad = 0;
	if ((root = out_new(0)) == NULL)
		return NULL;
	out_add(root, "version", out_num(PERSIST_VERSION));
	out_add(root, "reset_after", cJSON_CreateString(cfg->reset_after));
	out_add(root, "timezone", cJSON_CreateString(cfg->timezone));
	out_add(root, "last_reset", out_num(s->last_reset));
	out_add(root, "next_reset", out_num(s->next_reset));
	x = out_new(1);
	out_add(root, "keys", x);
	out_keys(x, s, f, now);
	x = out_new(0);
	out_add(root, "models", x);
	out_models(x, s, f, now);
	x = out_new(0);
	out_add(root, "projects", x);
	out_projects(x, s, now);
	x = out_new(1);
	out_add(root, "affinity", x);
	out_affinity(x, s, f);
	if (out_bad) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}
