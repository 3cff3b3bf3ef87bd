/*
 * The shared tables as the operator sees them, for /api/status_data and
 * /metrics: one snapshot (shm/snapshot.c, which takes the lock), then,
 * without the lock, each cell's state by the rule the picker uses
 * (shm_cell_state), each key's worst state, the keys in config order, the
 * models' sums over their keys and the current key per model.  The
 * scoreboard is read without the lock, as board.c allows, and its request
 * lines are scrubbed of key= and token= before they are shown.
 *
 * Secrets: the snapshot holds each key's id and masked form, never a key.
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "looper.h"
#include "route.h"
#include "scrub.h"
#include "shm.h"
#include "view.h"

static const char *const view_state_names[VIEW_NSTATES] = {
	[SHM_AVAILABLE] = "available",
	[SHM_COOLING] = "cooling",
	[SHM_EXHAUSTED] = "exhausted",
	[VIEW_INVALID] = "invalid"
};

const char *
view_state_name(uint32_t st)
{
	return st < VIEW_NSTATES ? view_state_names[st] : "exhausted";
}

/* Why a cell is not available; NULL when it is. */
const char *
view_reason_name(uint32_t r)
{
	return r != SHM_R_NONE && r < SHM_R_N ? shm_reason_names[r] : NULL;
}

void
view_free(struct view *v)
{
	shm_snap_free(&v->snap);
	free(v->keys);
	free(v->order);
	free(v->models);
	free(v->cells);
	free(v->slot_row);
	free(v->workers);
	free(v->projects);
	free(v->pcells);
	memset(v, 0, sizeof(*v));
}

/* The last SHM_HISTORY minutes of a ring, oldest first. */
static void
view_history(const struct shm_minute *ring, uint32_t minute, uint64_t *out)
{
	uint32_t	 i;

	for (i = 0; i < SHM_HISTORY; i++)
		out[i] = shm_minute_get(ring, minute - (SHM_HISTORY - 1) + i,
		    NULL);
}

/* Rows for the snapshot's key slots in use, cells for its models. */
static void
view_rows(struct view *v)
{
	const struct shm_snap	*s = &v->snap;
	struct view_cell	*c;
	struct view_key		*vk;
	uint32_t		 k, j, sec = (uint32_t)(v->now / 1000);

	for (j = 0; j < s->nmodels; j++) {
		v->models[j].m = &s->models[j];
		v->models[j].is_default = s->default_model == (int32_t)j;
		v->models[j].cur_row = -1;
		view_history(s->models[j].history, v->minute,
		    v->models[j].hist);
	}
	v->nmodels = s->nmodels;
	for (k = 0; k < s->nkeys; k++) {
		v->slot_row[k] = -1;
		if (!s->keys[k].in_use)
			continue;
		v->slot_row[k] = (int)v->nkeys;
		vk = &v->keys[v->nkeys++];
		vk->k = &s->keys[k];
		view_history(s->keys[k].history, v->minute, vk->hist);
		for (j = 0; j < s->nmodels; j++) {
			c = VIEW_CELL(v, vk - v->keys, j);
			c->u = SHM_SNAP_CELL(s, k, j);
			c->pu = shm_snap_project_cell(s, k, j);
			c->state = shm_cell_state(&s->models[j], c->pu, v->now,
			    &c->reason);
			shm_window(c->u, sec, &c->tpm_used,
			    &c->rpm_used);
		}
	}
}

/* Config order: priority keys first, then by position in the config. */
static int
view_row_cmp(const void *a, const void *b, void *arg)
{
	const struct view_key	*keys = arg;
	const struct shm_key	*x = keys[*(const size_t *)a].k;
	const struct shm_key	*y = keys[*(const size_t *)b].k;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/*
 * A cell's reason is shown only while it is not available (or the key
 * is invalid); its until is its cooldown's end when cooling, the next
 * reset when exhausted.  A key's state is invalid or the most restrictive
 * of its cells, until the latest until among the cells in that state
 * (when the key is whole again).  The models' sums and counts of keys per
 * state are made on the way.
 */
static void
view_states(struct view *v)
{
	struct view_model	*vm;
	struct view_key		*vk;
	struct view_cell	*c;
	size_t			 r, j, i;

	for (r = 0; r < v->nkeys; r++) {
		vk = &v->keys[r];
		vk->state = SHM_AVAILABLE;
		for (j = 0; j < v->nmodels; j++) {
			vm = &v->models[j];
			c = VIEW_CELL(v, r, j);
			if (c->state == SHM_COOLING)
				c->cooldown_until = c->pu->cooldown_until;
			if (vk->k->invalid && c->reason == SHM_R_NONE)
				c->reason = SHM_R_INVALID;
			if (c->state == SHM_COOLING)
				c->until = c->cooldown_until;
			else if (c->state == SHM_EXHAUSTED)
				c->until = v->snap.next_reset > 0 ?
				    v->snap.next_reset : 0;
			if (c->state > vk->state) {
				vk->state = c->state;
				vk->until = c->until;
			} else if (c->state == vk->state &&
			    c->until > vk->until)
				vk->until = c->until;
			for (i = 0; i < SHM_TOK_N; i++)
				vm->t_tokens[i] += c->u->tokens[i];
			vm->t_requests += c->u->requests;
			vm->t_errors += c->u->errors;
			vm->nstate[vk->k->invalid ? VIEW_INVALID :
			    c->state]++;
		}
		if (vk->k->invalid)
			vk->state = VIEW_INVALID;
		if (vk->state == SHM_AVAILABLE || vk->k->invalid)
			vk->until = 0;
	}
}

/*
 * A model's current key is its sticky key while that can serve, else the
 * first key in config order that can (the one its next request would go
 * to), else none.
 */
static int
view_current(struct view *v)
{
	struct view_model	*vm;
	size_t			 r, j, o;
	int			*best, cur;

	if ((best = malloc((v->nmodels + 1) * sizeof(*best))) == NULL)
		return -1;
	for (j = 0; j < v->nmodels; j++)
		best[j] = -1;
	for (o = 0; o < v->nkeys; o++) {
		r = v->order[o];
		if (v->keys[r].k->invalid)
			continue;
		for (j = 0; j < v->nmodels; j++)
			if (best[j] == -1 &&
			    VIEW_CELL(v, r, j)->state == SHM_AVAILABLE)
				best[j] = (int)r;
	}
	for (j = 0; j < v->nmodels; j++) {
		vm = &v->models[j];
		cur = vm->m->current_key;
		if (cur < 0 || (uint32_t)cur >= v->snap.nkeys)
			continue;	/* never served, or every key invalid */
		cur = v->slot_row[cur];
		if (cur >= 0 && !v->keys[cur].k->invalid &&
		    VIEW_CELL(v, cur, j)->state == SHM_AVAILABLE)
			vm->cur_row = cur;
		else
			vm->cur_row = best[j];
	}
	free(best);
	return 0;
}

/*
 * A scoreboard line as it may be shown: secrets in the query (key=,
 * token=) replaced by "-" and anything shaped like an API key masked.
 */
static void
view_clean_req(char *req, size_t len)
{
	char	 path[64], *sp;
	size_t	 n;

	if ((sp = strchr(req, ' ')) == NULL)
		return;
	route_log_path(sp + 1, path, sizeof(path));
	n = sp + 1 - req;
	if (n < len)
		(void)strlcpy(req + n, path, len - n);
	scrub_str(looper.cfg != NULL ? looper.cfg->scrub : NULL, req);
}

/*
 * The scoreboard, as board.c copies it, with its request lines scrubbed;
 * the Live sessions its slots hold, by model.
 */
static int
view_workers(struct shm_header *h, struct view *v)
{
	struct shm_slot	*w;
	size_t		 i;

	if ((v->workers = calloc(h->max_workers + 1,
	    sizeof(*v->workers))) == NULL)
		return -1;
	v->nworkers = board_copy(h, v->workers);
	for (i = 0; i < v->nworkers; i++) {
		w = &v->workers[i];
		view_clean_req(w->req, sizeof(w->req));
		if (w->state == SHM_W_IDLE || w->state == SHM_W_STARTING)
			v->idle++;
		else if (w->state != SHM_W_CLOSING)
			v->busy++;
		if (w->live_model >= 0 && (size_t)w->live_model < v->nmodels)
			v->models[w->live_model].live_sessions++;
	}
	return 0;
}

static int
view_project_cmp(const void *a, const void *b)
{
	return strcmp(((const struct view_project *)a)->p->name,
	    ((const struct view_project *)b)->p->name);
}

/* The named projects in use, by name, with their cells' states. */
static int
view_projects(struct view *v)
{
	const struct shm_snap	*s = &v->snap;
	struct view_cell	*c;
	size_t			 i, j;
	uint32_t		 p, sec = (uint32_t)(v->now / 1000);

	v->projects = calloc((size_t)s->nprojects + 1, sizeof(*v->projects));
	v->pcells = calloc(((size_t)s->nprojects + 1) * (v->nmodels + 1),
	    sizeof(*v->pcells));
	if (v->projects == NULL || v->pcells == NULL)
		return -1;
	for (p = 0; p < s->nprojects; p++) {
		if (!s->projects[p].in_use)
			continue;
		v->projects[v->nprojects].p = &s->projects[p];
		v->projects[v->nprojects++].slot = p;
	}
	qsort(v->projects, v->nprojects, sizeof(*v->projects),
	    view_project_cmp);
	for (i = 0; i < v->nprojects; i++) {
		v->projects[i].cells = &v->pcells[i * v->nmodels];
		for (j = 0; j < v->nmodels; j++) {
			c = &v->projects[i].cells[j];
			c->u = c->pu = SHM_SNAP_PCELL(s, v->projects[i].slot, j);
			c->state = shm_cell_state(&s->models[j], c->u, v->now,
			    &c->reason);
			shm_window(c->u, sec, &c->tpm_used, &c->rpm_used);
			if (c->state == SHM_COOLING)
				c->cooldown_until = c->until =
				    c->u->cooldown_until;
			else if (c->state == SHM_EXHAUSTED)
				c->until = s->next_reset > 0 ?
				    s->next_reset : 0;
		}
	}
	return 0;
}

/* A key's project as named in the config, or NULL: its own. */
const char *
view_project_name(const struct view *v, const struct shm_key *k)
{
	uint32_t	 p = SHM_PROJECT_SLOT(k->project);

	if (!(k->project & SHM_PROJECT_NAMED) || p >= v->snap.nprojects ||
	    !v->snap.projects[p].in_use)
		return NULL;
	return v->snap.projects[p].name;
}

/* Take the whole view of segment h at now.  0, or -1 when memory ran out. */
int
view_take(struct shm_header *h, int64_t now, struct view *v)
{
	size_t		 nk, nm, r;

	memset(v, 0, sizeof(*v));
	v->now = now;
	v->minute = (uint32_t)(now / 60000);
	if (shm_snap_take(h, 0, now, NULL, NULL, &v->snap) == -1)
		return -1;
	nk = v->snap.nkeys;
	nm = v->snap.nmodels;
	v->keys = calloc(nk + 1, sizeof(*v->keys));
	v->order = calloc(nk + 1, sizeof(*v->order));
	v->slot_row = calloc(nk + 1, sizeof(*v->slot_row));
	v->models = calloc(nm + 1, sizeof(*v->models));
	v->cells = calloc((nk + 1) * (nm + 1), sizeof(*v->cells));
	if (v->keys == NULL || v->order == NULL || v->slot_row == NULL ||
	    v->models == NULL || v->cells == NULL)
		goto fail;
	view_rows(v);
	view_states(v);
	for (r = 0; r < v->nkeys; r++)
		v->order[r] = r;
	qsort_r(v->order, v->nkeys, sizeof(*v->order), view_row_cmp, v->keys);
	if (view_current(v) == -1 || view_workers(h, v) == -1 ||
	    view_projects(v) == -1)
		goto fail;
	return 0;
 fail:
	view_free(v);
	return -1;
}
