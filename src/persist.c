/*
 * The usage file: what a restart must not forget.  Master only.
 *
 * Saving (every persist_interval_s from the master's tick, after a daily
 * reset, after a reload, and at SIGTERM once the workers are gone): the
 * shared tables are copied under hdr->lock into private memory -- a copy
 * and nothing else, a few hundred key rows per lock hold, so a worker
 * waits microseconds -- then turned into JSON and written with no lock
 * held, the way redis' rdbSave does it: a temp file in the same directory
 * (mode 0600), write, fsync, rename over the old file, fsync the directory.
 * A crash at any point leaves either the old file or the new one, whole.
 * A write that fails (full disk, read-only directory) leaves the old file
 * as it was; the error is logged once, and once more when writes work
 * again; serving goes on.  An interval save whose text equals the last one
 * written (and the file is still the one written) is skipped: an idle
 * daemon does not fsync every few seconds.
 *
 * Loading (master_main, before the first worker forks): the file is read,
 * parsed and merged into the tables, which the config has just filled.
 * Keys no longer configured are dropped.  A file that is not JSON, or not
 * a version this program knows, is renamed to <name>.corrupt-<UTC time>
 * and the daemon starts from zero.  A file that cannot be read (EACCES,
 * EIO, a directory in its place, its directory missing) is a different
 * thing: it may hold good data, so nothing is written to that path until
 * a later attempt -- every interval -- reads it (its counts are then added
 * to what was counted meanwhile) or finds it gone.
 *
 * Keys appear in the file only as fingerprints: "id" is the 8 hex digits
 * shown everywhere else (first 32 bits of the key's SHA-256); "fp" is 16
 * hex digits of a second, domain-separated SHA-256 of the key.  Among
 * thousands of keys two ids collide now and then (1% at 10,000 keys); the
 * fp tells them apart, so one key never inherits another's usage.  An
 * entry without fp (written by hand) is matched by id only when exactly
 * one configured key and one entry have that id; ambiguous ones are
 * skipped and logged.  Neither fingerprint can be turned back into a key.
 *
 * What is kept, per key x model: today's counters, the state with its
 * until-time (cooling until T; exhausted until the next reset), and the
 * per-minute window buckets (so TPM limits hold across a quick restart);
 * per key and per model: the last hour's per-minute history; per model:
 * the sticky key; the files/cachedContents -> key map; last and next
 * reset, and the schedule (reset_after, timezone) they were computed for.
 * A key marked invalid is written (for the operator) but not restored: a
 * restart reads the config anew, and like a reload it gives every key
 * another chance; a bad key costs one upstream request, retried on the
 * next key before the client sees anything.  Counters include the room
 * reserved by requests in flight at the time: after a crash they err
 * towards "more used", never less.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "log.h"
#include "persist.h"
#include "shm.h"
#include "util.h"

#define PERSIST_VERSION		1
#define PERSIST_FILE_MAX	(1024LL * 1024 * 1024)
#define PERSIST_CHUNK		256	/* key rows per lock hold */
#define PERSIST_NUM_MAX		9007199254740992LL	/* 2^53 */
#define FP_DOMAIN		"gemini-looper usage-file fingerprint\n"
#define FP_LEN			16
#define AFF_MAX_AGE_MS		(48LL * 3600 * 1000) /* files expire */

static const char *const reason_names[] = {
	"none", "tpm", "rpm", "tpd", "rpd", "429", "invalid"
};

/* The module's memory between calls (one master, one usage file). */
static struct {
	char		 path[PATH_MAX];	/* what the gate is for */
	int		 gate;		/* 1: writing loses nothing */
	int		 save_failing;	/* logged; again on recovery */
	int		 load_failing;	/* logged */
	int		 gate_logged;	/* "not writing" logged */
	int64_t		 last_tick;	/* mono ms, last interval save */
	char		*last_text;	/* what was written last */
	size_t		 last_len;
	struct stat	 last_st;	/* the file as written */
} ps;

/* The second fingerprint: 16 hex digits, see the top of the file. */
void
persist_fp(const char *key, char fp[FP_LEN + 1])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0, i;
	EVP_MD_CTX		*ctx;

	fp[0] = '\0';
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return;
	if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, FP_DOMAIN, strlen(FP_DOMAIN)) == 1 &&
	    EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen >= FP_LEN / 2) {
		for (i = 0; i < FP_LEN / 2; i++) {
			fp[2 * i] = hex[md[i] >> 4];
			fp[2 * i + 1] = hex[md[i] & 15];
		}
		fp[FP_LEN] = '\0';
	}
	EVP_MD_CTX_free(ctx);
}

/* ---- Snapshot: shm -> private memory, under the lock. ---- */

struct snap {
	int64_t			 last_reset;
	int64_t			 next_reset;
	uint32_t		 nkeys;
	uint32_t		 nmodels;
	struct shm_key		*keys;		/* keys wiped */
	char			(*fps)[FP_LEN + 1];
	struct shm_model	*models;
	struct shm_usage	*usage;		/* nkeys x nmodels */
	struct shm_affinity	*aff;		/* in use only */
	size_t			 naff;
};

static void
snap_free(struct snap *s)
{
	free(s->keys);
	free(s->fps);
	free(s->models);
	free(s->usage);
	free(s->aff);
	memset(s, 0, sizeof(*s));
}

/*
 * Copy the tables.  Only the master changes which key a slot holds, and
 * the master is the caller, so rows copied in separate lock holds all
 * still mean the keys they meant; counters of different keys need not be
 * from the same instant.  Models added meanwhile by workers are left for
 * the next save.
 */
static int
snap_take(struct shm_header *h, struct snap *s)
{
	struct shm_affinity	*a = SHM_AFF(h);
	uint32_t		 k0, k, n, i;

	memset(s, 0, sizeof(*s));
	shm_lock(h);
	s->last_reset = h->last_reset;
	s->next_reset = h->next_reset;
	s->nkeys = h->nkeys;
	s->nmodels = h->nmodels;
	shm_unlock(h);

	s->keys = calloc(s->nkeys + 1, sizeof(*s->keys));
	s->fps = calloc(s->nkeys + 1, sizeof(*s->fps));
	s->models = calloc(s->nmodels + 1, sizeof(*s->models));
	s->usage = calloc((size_t)s->nkeys * s->nmodels + 1,
	    sizeof(*s->usage));
	s->aff = calloc(h->max_affinity + 1, sizeof(*s->aff));
	if (s->keys == NULL || s->fps == NULL || s->models == NULL ||
	    s->usage == NULL || s->aff == NULL) {
		snap_free(s);
		return -1;
	}

	shm_lock(h);
	memcpy(s->models, SHM_MODELS(h), sizeof(*s->models) * s->nmodels);
	for (i = 0; i < h->max_affinity; i++)
		if (a[i].in_use)
			s->aff[s->naff++] = a[i];
	shm_unlock(h);

	for (k0 = 0; k0 < s->nkeys; k0 += PERSIST_CHUNK) {
		n = s->nkeys - k0 < PERSIST_CHUNK ? s->nkeys - k0 :
		    PERSIST_CHUNK;
		shm_lock(h);
		memcpy(s->keys + k0, SHM_KEYS(h) + k0, sizeof(*s->keys) * n);
		for (k = k0; k < k0 + n; k++)
			memcpy(s->usage + (size_t)k * s->nmodels,
			    SHM_USAGE(h, k, 0), sizeof(*s->usage) * s->nmodels);
		shm_unlock(h);
	}
	/* The keys themselves are secrets: only fingerprints go on. */
	for (k = 0; k < s->nkeys; k++) {
		if (s->keys[k].in_use)
			persist_fp(s->keys[k].key, s->fps[k]);
		explicit_bzero(s->keys[k].key, sizeof(s->keys[k].key));
	}
	return 0;
}

/* ---- Snapshot -> JSON. ---- */

static int	 json_bad;	/* an allocation failed while building */

static cJSON *
jnum(int64_t v)
{
	cJSON	*n = cJSON_CreateNumber((double)v);

	if (n == NULL)
		json_bad = 1;
	return n;
}

static void
jadd(cJSON *o, const char *name, cJSON *v)
{
	if (v == NULL || o == NULL ||
	    !cJSON_AddItemToObject(o, name, v)) {
		cJSON_Delete(v);
		json_bad = 1;
	}
}

static void
jpush(cJSON *arr, cJSON *v)
{
	if (v == NULL || arr == NULL || !cJSON_AddItemToArray(arr, v)) {
		cJSON_Delete(v);
		json_bad = 1;
	}
}

static cJSON *
jtriple(int64_t a, int64_t b, int64_t c)
{
	cJSON	*t = cJSON_CreateArray();

	if (t == NULL) {
		json_bad = 1;
		return NULL;
	}
	jpush(t, jnum(a));
	jpush(t, jnum(b));
	jpush(t, jnum(c));
	return t;
}

/* The last hour of a history, oldest first, minutes with something. */
static cJSON *
history_json(const struct shm_minute *hist, uint32_t now_min)
{
	const struct shm_minute	*e;
	cJSON			*arr = NULL;
	uint32_t		 m;

	for (m = now_min - (SHM_HISTORY - 1); m != now_min + 1; m++) {
		e = &hist[m % SHM_HISTORY];
		if (e->minute != m || (e->tokens == 0 && e->requests == 0))
			continue;
		if (arr == NULL && (arr = cJSON_CreateArray()) == NULL) {
			json_bad = 1;
			return NULL;
		}
		jpush(arr, jtriple(m, e->requests, (int64_t)e->tokens));
	}
	return arr;
}

/* The window buckets still in the last minute, oldest first. */
static cJSON *
window_json(const struct shm_usage *u, uint32_t now_s)
{
	const struct shm_bucket	*live[SHM_WIN_BUCKETS], *t;
	cJSON			*arr;
	int			 n = 0, i, j;

	for (i = 0; i < SHM_WIN_BUCKETS; i++) {
		const struct shm_bucket *b = &u->win[i];

		if (b->stamp != 0 && b->stamp <= now_s &&
		    b->stamp + SHM_WIN_SPAN + SHM_WIN_SECONDS > now_s &&
		    (b->tokens != 0 || b->requests != 0))
			live[n++] = b;
	}
	if (n == 0)
		return NULL;
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && live[j - 1]->stamp > live[j]->stamp; j--) {
			t = live[j];
			live[j] = live[j - 1];
			live[j - 1] = t;
		}
	if ((arr = cJSON_CreateArray()) == NULL) {
		json_bad = 1;
		return NULL;
	}
	for (i = 0; i < n; i++)
		jpush(arr, jtriple(live[i]->stamp, live[i]->requests,
		    (int64_t)live[i]->tokens));
	return arr;
}

static int64_t
clamp53(uint64_t v)
{
	return v > (uint64_t)PERSIST_NUM_MAX ? PERSIST_NUM_MAX : (int64_t)v;
}

/* One key x model cell, or NULL when it holds nothing worth keeping. */
static cJSON *
cell_json(const struct shm_usage *u, int64_t now)
{
	static const char *const names[] = { "tpd_used", "rpd_used", "prompt",
	    "candidates", "cached", "thoughts", "total", "requests", "errors" };
	uint64_t	 v[9];
	cJSON		*o, *win;
	uint32_t	 st = u->state;
	int		 i, any = 0;

	if (st == SHM_COOLING && u->cooldown_until <= now)
		st = SHM_AVAILABLE;
	v[0] = u->tpd_used;
	v[1] = u->rpd_used;
	v[2] = u->prompt;
	v[3] = u->candidates;
	v[4] = u->cached;
	v[5] = u->thoughts;
	v[6] = u->total;
	v[7] = u->requests;
	v[8] = u->errors;
	for (i = 0; i < 9; i++)
		any |= v[i] != 0;
	win = window_json(u, (uint32_t)(now / 1000));
	if (!any && st == SHM_AVAILABLE && win == NULL)
		return NULL;
	if ((o = cJSON_CreateObject()) == NULL) {
		json_bad = 1;
		cJSON_Delete(win);
		return NULL;
	}
	if (st != SHM_AVAILABLE) {
		jadd(o, "state", cJSON_CreateString(st == SHM_COOLING ?
		    "cooling" : "exhausted"));
		jadd(o, "reason", cJSON_CreateString(u->reason <
		    sizeof(reason_names) / sizeof(reason_names[0]) ?
		    reason_names[u->reason] : "none"));
		if (st == SHM_COOLING)
			jadd(o, "until", jnum(u->cooldown_until));
	}
	for (i = 0; i < 9; i++)
		if (v[i] != 0)
			jadd(o, names[i], jnum(clamp53(v[i])));
	if (win != NULL)
		jadd(o, "window", win);
	return o;
}

static cJSON *
snap_json(const struct snap *s, const struct config *cfg, int64_t now)
{
	cJSON		*root, *keys, *models, *aff, *o, *cells, *c, *hist;
	uint32_t	 k, m, now_min = (uint32_t)(now / 60000);
	size_t		 i;

	json_bad = 0;
	if ((root = cJSON_CreateObject()) == NULL)
		return NULL;
	jadd(root, "version", jnum(PERSIST_VERSION));
	jadd(root, "reset_after", cJSON_CreateString(cfg->reset_after));
	jadd(root, "timezone", cJSON_CreateString(cfg->timezone));
	jadd(root, "last_reset", jnum(s->last_reset));
	jadd(root, "next_reset", jnum(s->next_reset));

	keys = cJSON_CreateArray();
	jadd(root, "keys", keys);
	for (k = 0; k < s->nkeys && keys != NULL; k++) {
		const struct shm_key *key = &s->keys[k];

		if (!key->in_use || s->fps[k][0] == '\0')
			continue;
		cells = NULL;
		for (m = 0; m < s->nmodels; m++) {
			if (!s->models[m].in_use)
				continue;
			c = cell_json(&s->usage[(size_t)k * s->nmodels + m],
			    now);
			if (c == NULL)
				continue;
			if (cells == NULL && (cells = cJSON_CreateObject()) ==
			    NULL) {
				cJSON_Delete(c);
				json_bad = 1;
				break;
			}
			jadd(cells, s->models[m].name, c);
		}
		hist = history_json(key->history, now_min);
		if (cells == NULL && hist == NULL && !key->invalid)
			continue;
		if ((o = cJSON_CreateObject()) == NULL) {
			cJSON_Delete(cells);
			cJSON_Delete(hist);
			json_bad = 1;
			break;
		}
		jadd(o, "id", cJSON_CreateString(key->id));
		jadd(o, "fp", cJSON_CreateString(s->fps[k]));
		if (key->invalid) {
			jadd(o, "invalid", cJSON_CreateTrue());
			jadd(o, "invalid_why",
			    cJSON_CreateString(key->invalid_why));
		}
		if (hist != NULL)
			jadd(o, "history", hist);
		if (cells != NULL)
			jadd(o, "models", cells);
		jpush(keys, o);
	}

	models = cJSON_CreateObject();
	jadd(root, "models", models);
	for (m = 0; m < s->nmodels && models != NULL; m++) {
		const struct shm_model	*md = &s->models[m];
		int			 cur = md->current_key;

		if (!md->in_use)
			continue;
		if (cur >= 0 && ((uint32_t)cur >= s->nkeys ||
		    !s->keys[cur].in_use))
			cur = -1;
		hist = history_json(md->history, now_min);
		if (cur < 0 && hist == NULL)
			continue;
		if ((o = cJSON_CreateObject()) == NULL) {
			cJSON_Delete(hist);
			json_bad = 1;
			break;
		}
		if (cur >= 0) {
			jadd(o, "current_key",
			    cJSON_CreateString(s->keys[cur].id));
			jadd(o, "current_fp", cJSON_CreateString(s->fps[cur]));
		}
		if (hist != NULL)
			jadd(o, "history", hist);
		jadd(models, md->name, o);
	}

	aff = cJSON_CreateArray();
	jadd(root, "affinity", aff);
	for (i = 0; i < s->naff && aff != NULL; i++) {
		const struct shm_affinity *e = &s->aff[i];

		if (e->key < 0 || (uint32_t)e->key >= s->nkeys ||
		    !s->keys[e->key].in_use)
			continue;
		if ((o = cJSON_CreateObject()) == NULL) {
			json_bad = 1;
			break;
		}
		jadd(o, "name", cJSON_CreateString(e->name));
		jadd(o, "key", cJSON_CreateString(s->keys[e->key].id));
		jadd(o, "fp", cJSON_CreateString(s->fps[e->key]));
		jadd(o, "created", jnum(e->created));
		jpush(aff, o);
	}
	if (json_bad) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* ---- Saving. ---- */

static int
same_file(const char *path)
{
	struct stat	 st;

	return stat(path, &st) == 0 && st.st_ino == ps.last_st.st_ino &&
	    st.st_dev == ps.last_st.st_dev &&
	    st.st_size == ps.last_st.st_size &&
	    st.st_mtim.tv_sec == ps.last_st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == ps.last_st.st_mtim.tv_nsec;
}

static void	 retry_load(struct shm_header *, const struct config *);

/*
 * Write the usage file now.  force: write even when nothing changed (a
 * reset, a reload, the last save before exit).  Returns 0 when the file
 * holds the current state, -1 when it could not be written (logged once
 * until a write succeeds again).
 */
int
persist_save(struct shm_header *h, const struct config *cfg, int force)
{
	struct snap	 s;
	cJSON		*root;
	char		*text, err[PATH_MAX + 256];
	size_t		 len;
	int64_t		 now = now_ms();

	if (strcmp(ps.path, cfg->usage_file) != 0) {
		/* A reload named another file.  What we hold is complete
		 * (unless the old one was never read): write it there. */
		if (ps.path[0] != '\0')
			log_info("usage file is now %s", cfg->usage_file);
		(void)strlcpy(ps.path, cfg->usage_file, sizeof(ps.path));
		free(ps.last_text);
		ps.last_text = NULL;
		ps.save_failing = ps.load_failing = ps.gate_logged = 0;
	}
	if (!ps.gate)
		retry_load(h, cfg);
	if (!ps.gate) {
		if (!ps.gate_logged)
			log_errx("usage file %s: not written: it could not be "
			    "read, and writing it would lose what it holds; "
			    "trying to read it every %d s",
			    cfg->usage_file, cfg->persist_interval_s);
		ps.gate_logged = 1;
		return -1;
	}
	if (snap_take(h, &s) == -1) {
		log_errx("usage file %s: out of memory", cfg->usage_file);
		return -1;
	}
	root = snap_json(&s, cfg, now);
	snap_free(&s);
	text = root != NULL ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (text == NULL) {
		log_errx("usage file %s: out of memory", cfg->usage_file);
		return -1;
	}
	len = strlen(text);
	if (!force && ps.last_text != NULL && ps.last_len == len &&
	    memcmp(ps.last_text, text, len) == 0 && same_file(ps.path)) {
		cJSON_free(text);
		return 0;
	}
	if (fileio_write(ps.path, text, len, 0600, NULL, err,
	    sizeof(err)) == -1) {
		if (!ps.save_failing)
			log_errx("usage file %s: not written: %s; the "
			    "previous file is kept, serving goes on, retrying "
			    "every %d s (logged once until it works)", ps.path,
			    err, cfg->persist_interval_s);
		ps.save_failing = 1;
		cJSON_free(text);
		return -1;
	}
	if (ps.save_failing)
		log_info("usage file %s: written again", ps.path);
	ps.save_failing = 0;
	free(ps.last_text);
	ps.last_text = malloc(len);
	if (ps.last_text != NULL)
		memcpy(ps.last_text, text, len);
	ps.last_len = len;
	if (stat(ps.path, &ps.last_st) == -1) {
		free(ps.last_text);
		ps.last_text = NULL;
	}
	cJSON_free(text);
	log_debug("usage file %s: written, %zu bytes", ps.path, len);
	return 0;
}

/*
 * The master's tick, once a second: save every persist_interval_s.  A tick
 * runs a few ms early or late; half a tick of slack keeps a late one from
 * pushing the next save a whole tick further (1 s would often be 2 s, and
 * a kill -9 would lose more than persist_interval_s).
 */
void
persist_tick(struct shm_header *h, const struct config *cfg, int64_t mono)
{
	if (mono - ps.last_tick <
	    (int64_t)cfg->persist_interval_s * 1000 - 500)
		return;
	ps.last_tick = mono;
	(void)persist_save(h, cfg, 0);
}

/* ---- Loading. ---- */

/* A configured key: its slot and fingerprints. */
struct ckey {
	int		 slot;
	char		 id[12];
	char		 fp[FP_LEN + 1];
};

/* The configured keys, sorted by fp and by id, built once per load. */
struct kindex {
	struct ckey	*byfp;
	struct ckey	*byid;
	size_t		 n;
	int		*taken;		/* per slot: entries matched */
	uint32_t	 nslots;
};

/* What the file says, resolved to slots, applied in one lock hold. */
struct rcell {
	int			 k, m;
	struct shm_usage	 u;
};

struct rhist {
	int			 slot;
	int			 current;	/* sticky key, or -1 */
	struct shm_minute	 hist[SHM_HISTORY];
};

struct raff {
	char			 name[SHM_AFF_NAME];
	int			 k;
	int64_t			 created;
};

struct restore {
	struct rcell	*cells;
	size_t		 ncells, capcells;
	struct rhist	*khist;
	size_t		 nkhist, capkhist;
	struct rhist	*mhist;
	size_t		 nmhist, capmhist;
	struct raff	*aff;
	size_t		 naff, capaff;
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
	free(r->cells);
	free(r->khist);
	free(r->mhist);
	free(r->aff);
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

	for (i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++)
		if (strcmp(s, reason_names[i]) == 0)
			return (int)i;
	return SHM_R_NONE;
}

/* One cell of the file into u.  -1 when it is unusable. */
static int
parse_cell(const cJSON *o, struct shm_usage *u, size_t *ignored)
{
	static const char *const names[] = { "tpd_used", "rpd_used", "prompt",
	    "candidates", "cached", "thoughts", "total", "requests", "errors" };
	uint64_t	*dst[9];
	const cJSON	*st, *rs, *win, *t;
	int64_t		 v, w[3];
	int		 i;

	if (!cJSON_IsObject(o))
		return -1;
	memset(u, 0, sizeof(*u));
	dst[0] = &u->tpd_used;
	dst[1] = &u->rpd_used;
	dst[2] = &u->prompt;
	dst[3] = &u->candidates;
	dst[4] = &u->cached;
	dst[5] = &u->thoughts;
	dst[6] = &u->total;
	dst[7] = &u->requests;
	dst[8] = &u->errors;
	for (i = 0; i < 9; i++) {
		if (get_int(o, names[i], PERSIST_NUM_MAX, &v) == -1)
			return -1;
		*dst[i] = (uint64_t)v;
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

/* Index the configured keys by fp and by id.  -1 when out of memory. */
static int
kindex_build(struct shm_header *h, struct kindex *x)
{
	struct shm_key	*k = SHM_KEYS(h);
	char		(*keys)[SHM_KEY_MAX];
	uint32_t	 nk, i;

	memset(x, 0, sizeof(*x));
	/* Master only: the key strings are ours to read (keys.c). */
	nk = h->nkeys;
	x->nslots = nk;
	x->byfp = calloc(nk + 1, sizeof(*x->byfp));
	x->byid = calloc(nk + 1, sizeof(*x->byid));
	x->taken = calloc(nk + 1, sizeof(*x->taken));
	keys = calloc(nk + 1, sizeof(*keys));
	if (x->byfp == NULL || x->byid == NULL || x->taken == NULL ||
	    keys == NULL) {
		kindex_free(x);
		free(keys);
		return -1;
	}
	shm_lock(h);
	for (i = 0; i < nk; i++) {
		if (!k[i].in_use)
			continue;
		x->byfp[x->n].slot = (int)i;
		memcpy(x->byfp[x->n].id, k[i].id, sizeof(x->byfp[x->n].id));
		x->byfp[x->n].id[sizeof(x->byfp[x->n].id) - 1] = '\0';
		memcpy(keys[x->n], k[i].key, sizeof(keys[x->n]));
		x->n++;
	}
	shm_unlock(h);
	for (i = 0; i < x->n; i++) {
		keys[i][SHM_KEY_MAX - 1] = '\0';
		persist_fp(keys[i], x->byfp[i].fp);
	}
	explicit_bzero(keys, sizeof(*keys) * (nk + 1));
	free(keys);
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

/* The model slot for a name, adding a model not in the config. */
static int
model_for(struct shm_header *h, const char *name)
{
	int	 m;

	if (strlen(name) >= SHM_NAME_MAX)
		return -1;
	shm_lock(h);
	m = shm_find_model_locked(h, name);
	shm_unlock(h);
	if (m >= 0)
		return m;
	/* Full table: shm_model_slot hands out the default; not ours. */
	m = shm_model_slot(h, name);
	if (m >= 0) {
		shm_lock(h);
		if (strcmp(SHM_MODELS(h)[m].name, name) != 0)
			m = -1;
		shm_unlock(h);
	}
	return m;
}

/* Read the "keys" array into r. */
static int
parse_keys(struct shm_header *h, const struct kindex *x, const cJSON *arr,
    struct restore *r)
{
	const cJSON	*e, *id, *fp, *cells, *c, *inv;
	size_t		 nent, i;
	int		*slots, k, m;
	struct rhist	*kh;

	if (arr == NULL)
		return 0;
	if (!cJSON_IsArray(arr)) {
		r->ignored++;
		return 0;
	}
	nent = (size_t)cJSON_GetArraySize(arr);
	if ((slots = calloc(nent + 1, sizeof(*slots))) == NULL)
		return -1;
	/* First the matches, so a key named twice is seen as such. */
	i = 0;
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
	i = 0;
	cJSON_ArrayForEach(e, arr) {
		k = slots[i++];
		if (k == -3) {
			r->ignored++;
			continue;
		}
		id = cJSON_GetObjectItemCaseSensitive(e, "id");
		if (k == -1) {
			r->dropped++;
			continue;
		}
		if (k == -2 || x->taken[k] > 1) {
			log_warnx("usage file: key %s: its id is shared by "
			    "several keys and the entry has no fp to tell "
			    "them apart: its usage is not restored",
			    id->valuestring);
			r->ambiguous++;
			continue;
		}
		r->restored++;
		inv = cJSON_GetObjectItemCaseSensitive(e, "invalid");
		if (cJSON_IsTrue(inv))
			r->invalid++;
		if (grow((void **)&r->khist, &r->capkhist, r->nkhist,
		    sizeof(*r->khist)) == -1)
			goto oom;
		kh = &r->khist[r->nkhist];
		memset(kh, 0, sizeof(*kh));
		kh->slot = k;
		if (parse_history(cJSON_GetObjectItemCaseSensitive(e,
		    "history"), kh->hist, &r->ignored))
			r->nkhist++;
		cells = cJSON_GetObjectItemCaseSensitive(e, "models");
		if (cells != NULL && !cJSON_IsObject(cells)) {
			r->ignored++;
			continue;
		}
		cJSON_ArrayForEach(c, cells) {
			if ((m = model_for(h, c->string)) < 0) {
				r->ignored++;
				continue;
			}
			if (grow((void **)&r->cells, &r->capcells, r->ncells,
			    sizeof(*r->cells)) == -1)
				goto oom;
			if (parse_cell(c, &r->cells[r->ncells].u,
			    &r->ignored) == -1) {
				r->ignored++;
				continue;
			}
			r->cells[r->ncells].k = k;
			r->cells[r->ncells].m = m;
			r->ncells++;
		}
	}
	free(slots);
	return 0;
oom:
	free(slots);
	return -1;
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
	struct rhist	*mh;
	int		 m, any;

	if (obj == NULL)
		return 0;
	if (!cJSON_IsObject(obj)) {
		r->ignored++;
		return 0;
	}
	cJSON_ArrayForEach(o, obj) {
		if (!cJSON_IsObject(o) || (m = model_for(h, o->string)) < 0) {
			r->ignored++;
			continue;
		}
		if (grow((void **)&r->mhist, &r->capmhist, r->nmhist,
		    sizeof(*r->mhist)) == -1)
			return -1;
		mh = &r->mhist[r->nmhist];
		memset(mh, 0, sizeof(*mh));
		mh->slot = m;
		any = parse_history(cJSON_GetObjectItemCaseSensitive(o,
		    "history"), mh->hist, &r->ignored);
		mh->current = ref_key(x, o, "current_key", "current_fp");
		if (any || mh->current >= 0)
			r->nmhist++;
	}
	return 0;
}

static int
parse_affinity(const struct kindex *x, const cJSON *arr, int64_t now,
    struct restore *r)
{
	const cJSON	*o, *name;
	int64_t		 created;
	int		 k;

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
		    get_int(o, "created", PERSIST_NUM_MAX, &created) == -1) {
			r->ignored++;
			continue;
		}
		if (created + AFF_MAX_AGE_MS < now)
			continue;	/* gone upstream by now */
		if ((k = ref_key(x, o, "key", "fp")) < 0)
			continue;	/* its key left the config */
		if (grow((void **)&r->aff, &r->capaff, r->naff,
		    sizeof(*r->aff)) == -1)
			return -1;
		(void)strlcpy(r->aff[r->naff].name, name->valuestring,
		    sizeof(r->aff[r->naff].name));
		r->aff[r->naff].k = k;
		r->aff[r->naff].created = created;
		r->naff++;
	}
	return 0;
}

/* Minute or bucket rings: the newer entry of a slot wins, equal ones add. */
static void
merge_minutes(struct shm_minute *dst, const struct shm_minute *src)
{
	int	 i;

	for (i = 0; i < SHM_HISTORY; i++) {
		if (src[i].minute == 0)
			continue;
		if (dst[i].minute == src[i].minute) {
			dst[i].requests += src[i].requests;
			dst[i].tokens += src[i].tokens;
		} else if (dst[i].minute < src[i].minute)
			dst[i] = src[i];
	}
}

/*
 * Add what the file says to a cell.  At start the cell is empty, so this
 * is a copy; after a late load it adds what was counted before the
 * restart to what was counted since.  daily: the file's per-day data
 * (counters, exhaustion) is of the current day.
 */
static void
merge_cell_locked(struct shm_usage *d, const struct shm_usage *s, int daily,
    int64_t now)
{
	int	 i;

	if (daily) {
		d->tpd_used += s->tpd_used;
		d->rpd_used += s->rpd_used;
		d->prompt += s->prompt;
		d->candidates += s->candidates;
		d->cached += s->cached;
		d->thoughts += s->thoughts;
		d->total += s->total;
		d->requests += s->requests;
		d->errors += s->errors;
		if (s->state == SHM_EXHAUSTED && d->state != SHM_EXHAUSTED) {
			d->state = SHM_EXHAUSTED;
			d->reason = s->reason;
			d->cooldown_until = 0;
		}
	}
	if (s->state == SHM_COOLING && s->cooldown_until > now &&
	    d->state != SHM_EXHAUSTED) {
		d->state = SHM_COOLING;
		d->reason = s->reason;
		if (s->cooldown_until > d->cooldown_until)
			d->cooldown_until = s->cooldown_until;
	}
	for (i = 0; i < SHM_WIN_BUCKETS; i++) {
		if (s->win[i].stamp == 0)
			continue;
		if (d->win[i].stamp == s->win[i].stamp) {
			d->win[i].requests += s->win[i].requests;
			d->win[i].tokens += s->win[i].tokens;
		} else if (d->win[i].stamp < s->win[i].stamp)
			d->win[i] = s->win[i];
	}
}

static int
raff_cmp(const void *a, const void *b)
{
	return strcmp(((const struct raff *)a)->name,
	    ((const struct raff *)b)->name);
}

static void
restore_apply(struct shm_header *h, struct restore *r, int daily,
    int64_t now)
{
	struct shm_key		*keys = SHM_KEYS(h);
	struct shm_model	*models = SHM_MODELS(h);
	struct shm_affinity	*a;
	struct raff		 want, *f;
	size_t			 i;
	int			 k, m;

	shm_lock(h);
	for (i = 0; i < r->ncells; i++) {
		k = r->cells[i].k;
		m = r->cells[i].m;
		if ((uint32_t)k < h->nkeys && keys[k].in_use &&
		    (uint32_t)m < h->nmodels && models[m].in_use)
			merge_cell_locked(SHM_USAGE(h, k, m), &r->cells[i].u,
			    daily, now);
	}
	for (i = 0; i < r->nkhist; i++) {
		k = r->khist[i].slot;
		if ((uint32_t)k < h->nkeys && keys[k].in_use)
			merge_minutes(keys[k].history, r->khist[i].hist);
	}
	for (i = 0; i < r->nmhist; i++) {
		m = r->mhist[i].slot;
		if ((uint32_t)m >= h->nmodels || !models[m].in_use)
			continue;
		merge_minutes(models[m].history, r->mhist[i].hist);
		k = r->mhist[i].current;
		if (models[m].current_key < 0 && k >= 0 &&
		    (uint32_t)k < h->nkeys && keys[k].in_use)
			models[m].current_key = k;
	}
	shm_unlock(h);

	/* The affinity table's layout is affinity.c's: go through it, then
	 * put the creation times back (they decide what is evicted). */
	for (i = 0; i < r->naff; i++)
		if (shm_affinity_get(h, r->aff[i].name) < 0)
			shm_affinity_put(h, r->aff[i].name, r->aff[i].k);
	if (r->naff == 0)
		return;
	qsort(r->aff, r->naff, sizeof(*r->aff), raff_cmp);
	shm_lock(h);
	a = SHM_AFF(h);
	for (i = 0; i < h->max_affinity; i++) {
		if (!a[i].in_use)
			continue;
		memcpy(want.name, a[i].name, sizeof(want.name));
		want.name[sizeof(want.name) - 1] = '\0';
		f = bsearch(&want, r->aff, r->naff, sizeof(*r->aff), raff_cmp);
		if (f != NULL && f->k == a[i].key && f->created < a[i].created)
			a[i].created = f->created;
	}
	shm_unlock(h);
}

/*
 * Parse text (text[len] is NUL) and merge it into the tables.  Returns
 * 0; -1 with err when the text is not a usage file of ours (the caller
 * moves it aside); -2 when out of memory.  pi (start only) receives the
 * reset times and schedule; the header's last_reset is then set from
 * the file.
 */
static int
load_text(struct shm_header *h, const char *path, const char *text,
    size_t len, int64_t now, struct persist_info *pi, char *err,
    size_t errlen)
{
	struct restore	 r;
	struct kindex	 x;
	cJSON		*root;
	const cJSON	*v;
	const char	*end = NULL;
	int64_t		 last = 0, next = 0, cur_last;
	size_t		 line = 1, i;
	int		 daily;

	root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
	if (root == NULL) {
		if (end == NULL)
			end = cJSON_GetErrorPtr();
		for (i = 0; end != NULL && i < len && text + i < end; i++)
			if (text[i] == '\n')
				line++;
		snprintf(err, errlen, "not valid JSON (line %zu)", line);
		return -1;
	}
	v = cJSON_GetObjectItemCaseSensitive(root, "version");
	if (!cJSON_IsObject(root) || !cJSON_IsNumber(v)) {
		snprintf(err, errlen, "not a usage file (no \"version\")");
		cJSON_Delete(root);
		return -1;
	}
	if (v->valuedouble != PERSIST_VERSION) {
		snprintf(err, errlen, "version %g is not one this program "
		    "reads (%d)", v->valuedouble, PERSIST_VERSION);
		cJSON_Delete(root);
		return -1;
	}
	memset(&r, 0, sizeof(r));
	if (get_int(root, "last_reset", PERSIST_NUM_MAX, &last) == -1 ||
	    get_int(root, "next_reset", PERSIST_NUM_MAX, &next) == -1)
		r.ignored++;
	if (kindex_build(h, &x) == -1 ||
	    parse_keys(h, &x, cJSON_GetObjectItemCaseSensitive(root, "keys"),
	    &r) == -1 ||
	    parse_models(h, &x, cJSON_GetObjectItemCaseSensitive(root,
	    "models"), &r) == -1 ||
	    parse_affinity(&x, cJSON_GetObjectItemCaseSensitive(root,
	    "affinity"), now, &r) == -1) {
		snprintf(err, errlen, "out of memory");
		kindex_free(&x);
		restore_free(&r);
		cJSON_Delete(root);
		errno = ENOMEM;
		return -2;
	}
	kindex_free(&x);
	shm_lock(h);
	cur_last = h->last_reset;
	shm_unlock(h);
	/* The file's day is over if a reset came after it was written. */
	daily = (next == 0 || next > now) && last >= cur_last;
	restore_apply(h, &r, daily, now);
	if (pi != NULL) {
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
		shm_lock(h);
		if (last > h->last_reset)
			h->last_reset = last;
		shm_unlock(h);
	}
	log_info("usage file %s: loaded: %zu keys restored, %zu no longer "
	    "configured (dropped)%s", path, r.restored, r.dropped,
	    daily ? "" : "; a daily reset came after it was written, so its "
	    "daily counts are not restored");
	if (r.ambiguous > 0)
		log_warnx("usage file %s: %zu entries with ambiguous ids "
		    "skipped", path, r.ambiguous);
	if (r.ignored > 0)
		log_warnx("usage file %s: %zu malformed entries ignored", path,
		    r.ignored);
	if (r.invalid > 0)
		log_info("usage file %s: %zu keys were marked invalid before "
		    "the restart; like a reload, a restart tries them again",
		    path, r.invalid);
	restore_free(&r);
	cJSON_Delete(root);
	return 0;
}

/* Rename a bad file to <path>.corrupt-<UTC time>[-N]. */
static int
move_aside(const char *path, char *to, size_t tolen)
{
	struct stat	 st;
	struct tm	 tm;
	time_t		 t = time(NULL);
	char		 ts[32];
	int		 i, n;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%S", &tm) == 0)
		return -1;
	for (i = 0; i < 100; i++) {
		n = i == 0 ? snprintf(to, tolen, "%s.corrupt-%s", path, ts) :
		    snprintf(to, tolen, "%s.corrupt-%s-%d", path, ts, i);
		if (n < 0 || (size_t)n >= tolen) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (lstat(to, &st) == -1 && errno == ENOENT)
			return rename(path, to);
	}
	errno = EEXIST;
	return -1;
}

/* Does the directory of path exist?  (A missing file is "absent" only
 * then: a directory that is not there yet -- an unmounted volume -- may
 * hold the file later.) */
static int
dir_exists(const char *path)
{
	struct stat	 st;
	char		 dir[PATH_MAX];
	const char	*base;

	return fileio_split(path, dir, sizeof(dir), &base) == 0 &&
	    stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Load the usage file into the tables (start: pi not NULL; a later retry:
 * pi NULL, merged into what was counted since).  Returns PERSIST_LOADED,
 * PERSIST_ABSENT, PERSIST_CORRUPT (moved aside) -- after any of these the
 * file may be written -- or PERSIST_ERROR (not read, not to be written).
 */
static int
load(struct shm_header *h, const struct config *cfg, int64_t now,
    struct persist_info *pi)
{
	const char	*path = cfg->usage_file;
	char		*text, err[256], to[PATH_MAX + 64];
	size_t		 len;
	int		 rv;

	if ((text = fileio_read(path, PERSIST_FILE_MAX, FILEIO_REGULAR, &len,
	    NULL)) == NULL) {
		if (errno == ENOENT && dir_exists(path)) {
			log_info("usage file %s: not there yet; starting from "
			    "zero", path);
			return PERSIST_ABSENT;
		}
		if (!ps.load_failing)
			log_err("usage file %s: cannot read it; it is not "
			    "written until it can be read", path);
		ps.load_failing = 1;
		return PERSIST_ERROR;
	}
	rv = load_text(h, path, text, len, now, pi, err, sizeof(err));
	free(text);
	if (rv == -2) {
		if (!ps.load_failing)
			log_errx("usage file %s: %s; it is not written until "
			    "it can be read", path, err);
		ps.load_failing = 1;
		return PERSIST_ERROR;
	}
	if (rv == 0) {
		if (ps.load_failing)
			log_info("usage file %s: read it at last", path);
		ps.load_failing = 0;
		return PERSIST_LOADED;
	}
	if (move_aside(path, to, sizeof(to)) == -1) {
		if (!ps.load_failing)
			log_err("usage file %s: %s, and it cannot be moved "
			    "aside; it is not written until it can be", path,
			    err);
		ps.load_failing = 1;
		return PERSIST_ERROR;
	}
	log_warnx("usage file %s: %s: moved aside to %s; starting from zero",
	    path, err, to);
	ps.load_failing = 0;
	return PERSIST_CORRUPT;
}

/*
 * At start, after the config is published into shm and before the
 * workers fork.  pi receives what reset.c needs (the file's last and next
 * reset).  Returns PERSIST_*.
 */
int
persist_load(struct shm_header *h, const struct config *cfg, int64_t now,
    struct persist_info *pi)
{
	int	 rv;

	memset(pi, 0, sizeof(*pi));
	(void)strlcpy(ps.path, cfg->usage_file, sizeof(ps.path));
	free(ps.last_text);
	ps.last_text = NULL;
	ps.save_failing = ps.load_failing = ps.gate_logged = 0;
	rv = load(h, cfg, now, pi);
	ps.gate = rv != PERSIST_ERROR;
	ps.last_tick = mono_ms();
	return rv;
}

/* While the gate is closed: try to read the file again. */
static void
retry_load(struct shm_header *h, const struct config *cfg)
{
	if (load(h, cfg, now_ms(), NULL) != PERSIST_ERROR) {
		ps.gate = 1;
		ps.gate_logged = 0;
	}
}
