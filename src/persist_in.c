/*
 * The usage file's text read back into the tables (persist.c reads the
 * file).  Keys are matched to the configured ones by the second
 * fingerprint, or by id when an entry has none and the id is unique on
 * both sides; keys no longer configured are dropped, malformed entries
 * skipped and counted; models not in the config are added as a request
 * naming them would add them.  What is left is merged by shm/restore.c.
 */
#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "persist.h"
#include "persist_int.h"
#include "resname.h"
#include "shm.h"

/* A configured key: its slot and fingerprints. */
struct ckey {
	int		 slot;
	char		 id[12];
	char		 fp[PERSIST_FP_LEN + 1];
};

/* The configured keys, sorted by fp and by id, built once per load. */
struct kindex {
	struct ckey	*byfp;
	struct ckey	*byid;
	size_t		 n;
	int		*taken;		/* per slot: entries matched */
	uint32_t	 nslots;
};

/* What the file says, resolved to slots, and what became of it. */
struct restore {
	struct shm_restore r;
	size_t		 capcells, capkhist, capmhist, capaff, cappcells;
	size_t		 restored, dropped, ambiguous, ignored, invalid;
};

static int
grow(void **p, size_t *cap, size_t n, size_t size)
{
	void	*q;
	size_t	 ncap;

	if (n < *cap)
		return 0;
	ncap = *cap == 0 ? 16 : *cap * 2;
	if ((q = reallocarray(*p, ncap, size)) == NULL)
		return -1;
	*p = q;
	*cap = ncap;
	return 0;
}

static void
restore_free(struct restore *r)
{
	free(r->r.cells);
	free(r->r.khist);
	free(r->r.mhist);
	free(r->r.aff);
	free(r->r.pcells);
}

/* A non-negative integer member (absent: 0).  -1 when malformed. */
static int
get_int(const cJSON *o, const char *name, int64_t max, int64_t *v)
{
	const cJSON	*x = cJSON_GetObjectItemCaseSensitive(o, name);

	*v = 0;
	if (x == NULL)
		return 0;
	if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) ||
	    x->valuedouble > (double)max ||
	    x->valuedouble != (double)(int64_t)x->valuedouble)
		return -1;
	*v = (int64_t)x->valuedouble;
	return 0;
}

static int
triple(const cJSON *t, int64_t amax, int64_t out[3])
{
	const cJSON	*x;
	int		 i = 0;

	if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != 3)
		return -1;
	cJSON_ArrayForEach(x, t) {
		if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) ||
		    x->valuedouble > (double)(i == 0 ? amax :
		    PERSIST_NUM_MAX) ||
		    x->valuedouble != (double)(int64_t)x->valuedouble)
			return -1;
		out[i++] = (int64_t)x->valuedouble;
	}
	return 0;
}

/* [[minute, requests, tokens], ...] into a history ring. */
static int
parse_history(const cJSON *arr, struct shm_minute *hist, size_t *ignored)
{
	const cJSON	*t;
	int64_t		 v[3];
	int		 any = 0;

	if (arr == NULL)
		return 0;
	if (!cJSON_IsArray(arr)) {
		(*ignored)++;
		return 0;
	}
	cJSON_ArrayForEach(t, arr) {
		if (triple(t, UINT32_MAX, v) == -1 || v[0] == 0 ||
		    v[1] > UINT32_MAX) {
			(*ignored)++;
			continue;
		}
		hist[v[0] % SHM_HISTORY].minute = (uint32_t)v[0];
		hist[v[0] % SHM_HISTORY].requests = (uint32_t)v[1];
		hist[v[0] % SHM_HISTORY].tokens = (uint64_t)v[2];
		any = 1;
	}
	return any;
}

static int
reason_of(const char *s)
{
	size_t	 i;

	for (i = 0; i < SHM_R_N; i++)
		if (strcmp(s, shm_reason_names[i]) == 0)
			return (int)i;
	return SHM_R_NONE;
}

/* One cell of the file into u.  -1 when it is unusable. */
static int
parse_cell(const cJSON *o, struct shm_usage *u, size_t *ignored)
{
	const cJSON	*st, *rs, *win, *t;
	int64_t		 v, w[3];
	int		 i;

	if (!cJSON_IsObject(o))
		return -1;
	memset(u, 0, sizeof(*u));
	for (i = 0; i < PERSIST_NCOUNTS; i++) {
		if (get_int(o, persist_counts[i].name, PERSIST_NUM_MAX,
		    &v) == -1)
			return -1;
		PERSIST_COUNT(u, i) = (uint64_t)v;
	}
	st = cJSON_GetObjectItemCaseSensitive(o, "state");
	rs = cJSON_GetObjectItemCaseSensitive(o, "reason");
	if (cJSON_IsString(st) && strcmp(st->valuestring, "cooling") == 0) {
		if (get_int(o, "until", PERSIST_NUM_MAX, &v) == -1)
			return -1;
		u->state = SHM_COOLING;
		u->cooldown_until = v;
	} else if (cJSON_IsString(st) &&
	    strcmp(st->valuestring, "exhausted") == 0)
		u->state = SHM_EXHAUSTED;
	else if (st != NULL && !(cJSON_IsString(st) &&
	    strcmp(st->valuestring, "available") == 0))
		return -1;
	if (u->state != SHM_AVAILABLE)
		u->reason = cJSON_IsString(rs) ? reason_of(rs->valuestring) :
		    SHM_R_NONE;
	if ((win = cJSON_GetObjectItemCaseSensitive(o, "window")) != NULL) {
		if (!cJSON_IsArray(win))
			return -1;
		cJSON_ArrayForEach(t, win) {
			if (triple(t, UINT32_MAX, w) == -1 || w[0] == 0 ||
			    w[0] % SHM_WIN_SPAN != 0 || w[1] > UINT32_MAX) {
				(*ignored)++;
				continue;
			}
			i = (int)((w[0] / SHM_WIN_SPAN) % SHM_WIN_BUCKETS);
			u->win[i].stamp = (uint32_t)w[0];
			u->win[i].requests = (uint32_t)w[1];
			u->win[i].tokens = (uint64_t)w[2];
		}
	}
	return 0;
}

static int
ckey_fp_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ckey *)a)->fp,
	    ((const struct ckey *)b)->fp);
}

static int
ckey_id_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ckey *)a)->id,
	    ((const struct ckey *)b)->id);
}

static void
kindex_free(struct kindex *x)
{
	free(x->byfp);
	free(x->byid);
	free(x->taken);
	memset(x, 0, sizeof(*x));
}

/*
 * Index the configured keys by fp and by id.  -1 when out of memory.
 * Master only: the key strings are ours to read (keys.c), and only to
 * fingerprint them.
 */
static int
kindex_build(struct shm_header *h, int64_t now, struct kindex *x)
{
	struct shm_snap		 s;
	struct persist_fps	 f;
	uint32_t		 k;

	memset(x, 0, sizeof(*x));
	if (persist_snap(h, SHM_SNAP_NO_USAGE, now, &s, &f) == -1)
		return -1;
	x->nslots = s.nkeys;
	x->byfp = calloc(s.nkeys + 1, sizeof(*x->byfp));
	x->byid = calloc(s.nkeys + 1, sizeof(*x->byid));
	x->taken = calloc(s.nkeys + 1, sizeof(*x->taken));
	if (x->byfp == NULL || x->byid == NULL || x->taken == NULL) {
		kindex_free(x);
		shm_snap_free(&s);
		persist_fps_free(&f);
		return -1;
	}
	for (k = 0; k < s.nkeys; k++) {
		if (!s.keys[k].in_use || k >= f.n)
			continue;
		x->byfp[x->n].slot = (int)k;
		(void)strlcpy(x->byfp[x->n].id, s.keys[k].id,
		    sizeof(x->byfp[x->n].id));
		(void)strlcpy(x->byfp[x->n].fp, f.fp[k],
		    sizeof(x->byfp[x->n].fp));
		x->n++;
	}
	shm_snap_free(&s);
	persist_fps_free(&f);
	memcpy(x->byid, x->byfp, sizeof(*x->byfp) * x->n);
	qsort(x->byfp, x->n, sizeof(*x->byfp), ckey_fp_cmp);
	qsort(x->byid, x->n, sizeof(*x->byid), ckey_id_cmp);
	return 0;
}

/*
 * The configured key a file entry names: by fp when it has one, else by
 * id when exactly one configured key has it.  Returns the slot, -1 when
 * no configured key matches, -2 when the id is ambiguous.
 */
static int
match_key(const struct kindex *x, const char *id, const char *fp)
{
	const struct ckey	*c;
	struct ckey		 want;

	memset(&want, 0, sizeof(want));
	if (fp != NULL) {
		if (strlcpy(want.fp, fp, sizeof(want.fp)) >= sizeof(want.fp))
			return -1;
		c = bsearch(&want, x->byfp, x->n, sizeof(*c), ckey_fp_cmp);
		return c != NULL ? c->slot : -1;
	}
	if (strlcpy(want.id, id, sizeof(want.id)) >= sizeof(want.id))
		return -1;
	c = bsearch(&want, x->byid, x->n, sizeof(*c), ckey_id_cmp);
	if (c == NULL)
		return -1;
	if ((c > x->byid && strcmp(c[-1].id, id) == 0) ||
	    (c + 1 < x->byid + x->n && strcmp(c[1].id, id) == 0))
		return -2;
	return c->slot;
}

/*
 * Each entry's slot: >= 0 a configured key, -1 none (dropped), -2 an
 * ambiguous id, -3 a malformed entry.  All matches first, so a key named
 * twice is seen as such (x->taken).
 */
static void
in_match_keys(const struct kindex *x, const cJSON *arr, int *slots)
{
	const cJSON	*e, *id, *fp;
	size_t		 i = 0;

	cJSON_ArrayForEach(e, arr) {
		id = cJSON_GetObjectItemCaseSensitive(e, "id");
		fp = cJSON_GetObjectItemCaseSensitive(e, "fp");
		if (!cJSON_IsObject(e) || !cJSON_IsString(id) ||
		    (fp != NULL && !cJSON_IsString(fp)))
			slots[i] = -3;
		else
			slots[i] = match_key(x, id->valuestring,
			    fp != NULL ? fp->valuestring : NULL);
		if (slots[i] >= 0 && (uint32_t)slots[i] < x->nslots)
			x->taken[slots[i]]++;
		i++;
	}
}

/* One matched key's history and cells into r.  -1 when out of memory. */
static int
in_key(struct shm_header *h, const cJSON *e, int k, struct restore *r)
{
	struct shm_restore_hist	*kh;
	const cJSON		*cells, *c;
	int			 m;

	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "invalid")))
		r->invalid++;
	if (grow((void **)&r->r.khist, &r->capkhist, r->r.nkhist,
	    sizeof(*r->r.khist)) == -1)
		return -1;
	kh = &r->r.khist[r->r.nkhist];
	memset(kh, 0, sizeof(*kh));
	kh->slot = k;
	if (parse_history(cJSON_GetObjectItemCaseSensitive(e, "history"),
	    kh->hist, &r->ignored))
		r->r.nkhist++;
	cells = cJSON_GetObjectItemCaseSensitive(e, "models");
	if (cells != NULL && !cJSON_IsObject(cells)) {
		r->ignored++;
		return 0;
	}
	cJSON_ArrayForEach(c, cells) {
		if ((m = shm_model_named(h, c->string)) < 0) {
			r->ignored++;
			continue;
		}
		if (grow((void **)&r->r.cells, &r->capcells, r->r.ncells,
		    sizeof(*r->r.cells)) == -1)
			return -1;
		if (parse_cell(c, &r->r.cells[r->r.ncells].u,
		    &r->ignored) == -1) {
			r->ignored++;
			continue;
		}
		r->r.cells[r->r.ncells].k = k;
		r->r.cells[r->r.ncells].m = m;
		r->r.ncells++;
	}
	return 0;
}

/* Read the "keys" array into r.  -1 when out of memory. */
static int
parse_keys(struct shm_header *h, const struct kindex *x, const cJSON *arr,
    struct restore *r)
{
	const cJSON	*e;
	size_t		 i = 0;
	int		*slots, k, rv = 0;

	if (arr == NULL)
		return 0;
	if (!cJSON_IsArray(arr)) {
		r->ignored++;
		return 0;
	}
	slots = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*slots));
	if (slots == NULL)
		return -1;
	in_match_keys(x, arr, slots);
	cJSON_ArrayForEach(e, arr) {
		k = slots[i++];
		if (k == -3)
			r->ignored++;
		else if (k == -1)
			r->dropped++;
		else if (k == -2 || x->taken[k] > 1) {
			log_warnx("usage file: key %s: its id is shared by "
			    "several keys and the entry has no fp to tell "
			    "them apart: its usage is not restored",
			    cJSON_GetObjectItemCaseSensitive(e,
			    "id")->valuestring);
			r->ambiguous++;
		} else {
			r->restored++;
			if ((rv = in_key(h, e, k, r)) == -1)
				break;
		}
	}
	free(slots);
	return rv;
}

/* The slot of a key named by id/fp in "models" and "affinity". */
static int
ref_key(const struct kindex *x, const cJSON *o, const char *idname,
    const char *fpname)
{
	const cJSON	*id = cJSON_GetObjectItemCaseSensitive(o, idname);
	const cJSON	*fp = cJSON_GetObjectItemCaseSensitive(o, fpname);
	int		 k;

	if (!cJSON_IsString(id))
		return -1;
	k = match_key(x, id->valuestring,
	    cJSON_IsString(fp) ? fp->valuestring : NULL);
	return k < 0 ? -1 : k;
}

static int
parse_models(struct shm_header *h, const struct kindex *x, const cJSON *obj,
    struct restore *r)
{
	const cJSON	*o;
	struct shm_restore_hist	*mh;
	int		 m, any;

	if (obj == NULL)
		return 0;
	if (!cJSON_IsObject(obj)) {
		r->ignored++;
		return 0;
	}
	cJSON_ArrayForEach(o, obj) {
		if (!cJSON_IsObject(o) || (m = shm_model_named(h, o->string)) < 0) {
			r->ignored++;
			continue;
		}
		if (grow((void **)&r->r.mhist, &r->capmhist, r->r.nmhist,
		    sizeof(*r->r.mhist)) == -1)
			return -1;
		mh = &r->r.mhist[r->r.nmhist];
		memset(mh, 0, sizeof(*mh));
		mh->slot = m;
		any = parse_history(cJSON_GetObjectItemCaseSensitive(o,
		    "history"), mh->hist, &r->ignored);
		mh->current = ref_key(x, o, "current_key", "current_fp");
		if (any || mh->current >= 0)
			r->r.nmhist++;
	}
	return 0;
}

/*
 * "projects": {"team-a": {"models": {"m": cell, ...}}, ...}: the named
 * projects' cells, merged by name (shm/restore.c).  -1: out of memory.
 */
static int
parse_projects(struct shm_header *h, const cJSON *obj, struct restore *r)
{
	const cJSON			*o, *cells, *c;
	struct shm_restore_pcell	*pc;
	int				 m;

	if (obj == NULL)
		return 0;
	if (!cJSON_IsObject(obj)) {
		r->ignored++;
		return 0;
	}
	cJSON_ArrayForEach(o, obj) {
		cells = cJSON_GetObjectItemCaseSensitive(o, "models");
		if (strlen(o->string) >= SHM_PROJECT_MAX ||
		    !cJSON_IsObject(cells)) {
			r->ignored++;
			continue;
		}
		cJSON_ArrayForEach(c, cells) {
			if ((m = shm_model_named(h, c->string)) < 0) {
				r->ignored++;
				continue;
			}
			if (grow((void **)&r->r.pcells, &r->cappcells,
			    r->r.npcells, sizeof(*r->r.pcells)) == -1)
				return -1;
			pc = &r->r.pcells[r->r.npcells];
			memset(pc, 0, sizeof(*pc));
			if (parse_cell(c, &pc->u, &r->ignored) == -1) {
				r->ignored++;
				continue;
			}
			(void)strlcpy(pc->name, o->string, sizeof(pc->name));
			pc->m = m;
			r->r.npcells++;
		}
	}
	return 0;
}

/*
 * An entry's kind: its "kind", else what its name says (files written
 * before kinds were kept hold files, caches and uploads).  -1: unknown.
 */
static int
aff_kind(const cJSON *o, const char *name)
{
	const cJSON	*kind = cJSON_GetObjectItemCaseSensitive(o, "kind");
	struct res_ref	 ref;
	size_t		 len;
	int		 i;

	if (cJSON_IsString(kind)) {
		for (i = 0; i < SHM_RES_N; i++)
			if (strcmp(kind->valuestring, shm_res_names[i]) == 0)
				return i;
		return -1;
	}
	if (strncmp(name, "upload:", 7) == 0)
		return SHM_RES_UPLOAD;
	if (res_root(name, name + strlen(name), &ref, &len) == -1 ||
	    name[len] != '\0')
		return -1;
	return (int)ref.kind;
}

/*
 * When an entry expires: its "expires" (0: until deleted), else, in a
 * file written before expiries were kept, 48 hours after it was made.
 */
static int
aff_expires(const cJSON *o, int64_t created, int64_t *expires)
{
	if (cJSON_GetObjectItemCaseSensitive(o, "expires") == NULL) {
		*expires = created + PERSIST_AFF_MAX_AGE_MS;
		return 0;
	}
	return get_int(o, "expires", PERSIST_NUM_MAX, expires);
}

static int
parse_affinity(const struct kindex *x, const cJSON *arr, int64_t now,
    struct restore *r)
{
	const cJSON	*o, *name;
	int64_t		 created, expires;
	int		 k, kind;

	if (arr == NULL)
		return 0;
	if (!cJSON_IsArray(arr)) {
		r->ignored++;
		return 0;
	}
	cJSON_ArrayForEach(o, arr) {
		name = cJSON_GetObjectItemCaseSensitive(o, "name");
		if (!cJSON_IsString(name) ||
		    strlen(name->valuestring) >= SHM_AFF_NAME ||
		    get_int(o, "created", PERSIST_NUM_MAX, &created) == -1 ||
		    (kind = aff_kind(o, name->valuestring)) < 0 ||
		    aff_expires(o, created, &expires) == -1) {
			r->ignored++;
			continue;
		}
		if (expires != 0 && expires <= now)
			continue;	/* gone upstream by now */
		if ((k = ref_key(x, o, "key", "fp")) < 0)
			continue;	/* its key left the config */
		if (grow((void **)&r->r.aff, &r->capaff, r->r.naff,
		    sizeof(*r->r.aff)) == -1)
			return -1;
		(void)strlcpy(r->r.aff[r->r.naff].name, name->valuestring,
		    sizeof(r->r.aff[r->r.naff].name));
		r->r.aff[r->r.naff].k = k;
		r->r.aff[r->r.naff].created = created;
		r->r.aff[r->r.naff].expires = expires;
		r->r.aff[r->r.naff].kind = (uint32_t)kind;
		r->r.aff[r->r.naff].done = cJSON_IsTrue(
		    cJSON_GetObjectItemCaseSensitive(o, "done"));
		r->r.naff++;
	}
	return 0;
}

/*
 * The text as JSON, a usage file of a version this program reads: the
 * root, or NULL with err.
 */
static cJSON *
in_root(const char *text, size_t len, char *err, size_t errlen)
{
	cJSON		*root;
	const cJSON	*v;
	const char	*end = NULL;
	size_t		 line = 1, i;

	root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
	if (root == NULL) {
		if (end == NULL)
			end = cJSON_GetErrorPtr();
		for (i = 0; end != NULL && i < len && text + i < end; i++)
			if (text[i] == '\n')
				line++;
		snprintf(err, errlen, "not valid JSON (line %zu)", line);
		return NULL;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "version");
	if (!cJSON_IsObject(root) || !cJSON_IsNumber(v)) {
		snprintf(err, errlen, "not a usage file (no \"version\")");
		cJSON_Delete(root);
		return NULL;
	}
	if (v->valuedouble != PERSIST_VERSION) {
		snprintf(err, errlen, "version %g is not one this program "
		    "reads (%d)", v->valuedouble, PERSIST_VERSION);
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* What the file says of the reset schedule, for reset.c. */
static void
in_info(const cJSON *root, int64_t last, int64_t next,
    struct persist_info *pi)
{
	const cJSON	*v;

	memset(pi, 0, sizeof(*pi));
	pi->loaded = 1;
	pi->last_reset = last;
	pi->next_reset = next;
	v = cJSON_GetObjectItemCaseSensitive(root, "reset_after");
	if (cJSON_IsString(v))
		(void)strlcpy(pi->reset_after, v->valuestring,
		    sizeof(pi->reset_after));
	v = cJSON_GetObjectItemCaseSensitive(root, "timezone");
	if (cJSON_IsString(v))
		(void)strlcpy(pi->timezone, v->valuestring,
		    sizeof(pi->timezone));
}

static void
in_log(const char *path, const struct restore *r, int daily)
{
	log_info("usage file %s: loaded: %zu keys restored, %zu no longer "
	    "configured (dropped)%s", path, r->restored, r->dropped,
	    daily ? "" : "; a daily reset came after it was written, so its "
	    "daily counts are not restored");
	if (r->ambiguous > 0)
		log_warnx("usage file %s: %zu entries with ambiguous ids "
		    "skipped", path, r->ambiguous);
	if (r->ignored > 0)
		log_warnx("usage file %s: %zu malformed entries ignored", path,
		    r->ignored);
	if (r->invalid > 0)
		log_info("usage file %s: %zu keys were marked invalid before "
		    "the restart; like a reload, a restart tries them again",
		    path, r->invalid);
}

/*
 * Parse text (text[len] is NUL) and merge it into the tables.  Returns
 * 0; -1 with err when the text is not a usage file of ours (the caller
 * moves it aside); -2 when out of memory.  pi (start only) receives the
 * reset times and schedule; the header's last_reset is then set from
 * the file.
 */
int
persist_parse(struct shm_header *h, const char *path, const char *text,
    size_t len, int64_t now, struct persist_info *pi, char *err,
    size_t errlen)
{
	struct restore	 r;
	struct kindex	 x;
	cJSON		*root;
	int64_t		 last = 0, next = 0, cur_last;
	int		 daily, rv = -2;

	if ((root = in_root(text, len, err, errlen)) == NULL)
		return -1;
	memset(&r, 0, sizeof(r));
	if (get_int(root, "last_reset", PERSIST_NUM_MAX, &last) == -1 ||
	    get_int(root, "next_reset", PERSIST_NUM_MAX, &next) == -1)
		r.ignored++;
	if (kindex_build(h, now, &x) == -1 ||
	    parse_keys(h, &x, cJSON_GetObjectItemCaseSensitive(root, "keys"),
	    &r) == -1 ||
	    parse_models(h, &x, cJSON_GetObjectItemCaseSensitive(root,
	    "models"), &r) == -1 ||
	    parse_projects(h, cJSON_GetObjectItemCaseSensitive(root,
	    "projects"), &r) == -1 ||
	    parse_affinity(&x, cJSON_GetObjectItemCaseSensitive(root,
	    "affinity"), now, &r) == -1) {
		snprintf(err, errlen, "out of memory");
		errno = ENOMEM;
		goto done;
	}
	shm_resets(h, &cur_last, NULL);
	/* The file's day is over if a reset came after it was written. */
	daily = (next == 0 || next > now) && last >= cur_last;
	shm_restore(h, &r.r, daily, now);
	if (pi != NULL) {
		in_info(root, last, next, pi);
		shm_restore_last_reset(h, last);
	}
	in_log(path, &r, daily);
	rv = 0;
 done:
	kindex_free(&x);
	restore_free(&r);
	cJSON_Delete(root);
	return rv;
}
