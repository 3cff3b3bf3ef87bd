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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "log.h"
#include "persist.h"
#include "persist_int.h"
#include "shm.h"
#include "util.h"

#define PERSIST_FILE_MAX	(1024LL * 1024 * 1024)
#define FP_DOMAIN		"gemini-looper usage-file fingerprint\n"

#define COUNT(field, name)	{ name, offsetof(struct shm_usage, field) }

const struct persist_count persist_counts[PERSIST_NCOUNTS] = {
	COUNT(tpd_used, "tpd_used"),
	COUNT(rpd_used, "rpd_used"),
	COUNT(tokens[SHM_TOK_PROMPT], "prompt"),
	COUNT(tokens[SHM_TOK_CANDIDATES], "candidates"),
	COUNT(tokens[SHM_TOK_CACHED], "cached"),
	COUNT(tokens[SHM_TOK_THOUGHTS], "thoughts"),
	COUNT(tokens[SHM_TOK_TOTAL], "total"),
	COUNT(requests, "requests"),
	COUNT(errors, "errors"),
	COUNT(batches, "batches")
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
persist_fp(const char *key, char fp[PERSIST_FP_LEN + 1])
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
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
	    mdlen >= PERSIST_FP_LEN / 2) {
		for (i = 0; i < PERSIST_FP_LEN / 2; i++) {
			fp[2 * i] = hex[md[i] >> 4];
			fp[2 * i + 1] = hex[md[i] & 15];
		}
		fp[PERSIST_FP_LEN] = '\0';
	}
	EVP_MD_CTX_free(ctx);
}

/*
 * The master's snapshot of the tables, with each key's fingerprint made
 * as its row is copied (outside the lock); the snapshot keeps no key.
 * Only the master changes which key a slot holds, and the master is the
 * caller, so rows copied in separate lock holds all still mean the keys
 * they meant.  0, or -1 when memory ran out.
 */
static void
fp_seen(void *arg, uint32_t k, const char *key)
{
	struct persist_fps	*f = arg;
	void			*p;
	size_t			 n;

	if (f->oom)
		return;
	if (k >= f->n) {
		n = f->n < 64 ? 64 : f->n * 2;
		if (n <= k)
			n = (size_t)k + 1;
		if ((p = reallocarray(f->fp, n, sizeof(*f->fp))) == NULL) {
			f->oom = 1;
			return;
		}
		f->fp = p;
		memset(f->fp + f->n, 0, (n - f->n) * sizeof(*f->fp));
		f->n = n;
	}
	persist_fp(key, f->fp[k]);
}

void
persist_fps_free(struct persist_fps *f)
{
	free(f->fp);
	memset(f, 0, sizeof(*f));
}

int
persist_snap(struct shm_header *h, unsigned what, int64_t now,
    struct shm_snap *s, struct persist_fps *f)
{
	memset(f, 0, sizeof(*f));
	if (shm_snap_take(h, what, now, fp_seen, f, s) == -1) {
		persist_fps_free(f);
		return -1;
	}
	if (f->oom) {
		shm_snap_free(s);
		persist_fps_free(f);
		return -1;
	}
	return 0;
}

/* ---- Saving. ---- */

static void	 retry_load(struct shm_header *, const struct config *,
		    int64_t);

/*
 * Write the usage file now.  force: write even when nothing changed (a
 * reset, a reload, the last save before exit).  Returns 0 when the file
 * holds the current state, -1 when it could not be written (logged once
 * until a write succeeds again).
 */
int
persist_save(struct shm_header *h, const struct config *cfg, int force,
    int64_t now)
{
	struct shm_snap	 s;
	struct persist_fps f;
	cJSON		*root;
	char		*text, err[PATH_MAX + 256];
	size_t		 len;

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
		retry_load(h, cfg, now);
	if (!ps.gate) {
		if (!ps.gate_logged)
			log_errx("usage file %s: not written: it could not be "
			    "read, and writing it would lose what it holds; "
			    "trying to read it every %d s",
			    cfg->usage_file, cfg->persist_interval_s);
		ps.gate_logged = 1;
		return -1;
	}
	if (persist_snap(h, SHM_SNAP_AFFINITY, now, &s, &f) == -1) {
		log_errx("usage file %s: out of memory", cfg->usage_file);
		return -1;
	}
	root = persist_json(&s, &f, cfg, now);
	shm_snap_free(&s);
	persist_fps_free(&f);
	text = root != NULL ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (text == NULL) {
		log_errx("usage file %s: out of memory", cfg->usage_file);
		return -1;
	}
	len = strlen(text);
	if (!force && ps.last_text != NULL && ps.last_len == len &&
	    memcmp(ps.last_text, text, len) == 0 && fileio_unchanged(ps.path, &ps.last_st)) {
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
persist_tick(struct shm_header *h, const struct config *cfg, int64_t now,
    int64_t mono)
{
	if (mono - ps.last_tick <
	    (int64_t)cfg->persist_interval_s * 1000 - 500)
		return;
	ps.last_tick = mono;
	(void)persist_save(h, cfg, 0, now);
}

/* ---- Loading. ---- */

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
	rv = persist_parse(h, path, text, len, now, pi, err, sizeof(err));
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
retry_load(struct shm_header *h, const struct config *cfg, int64_t now)
{
	if (load(h, cfg, now, NULL) != PERSIST_ERROR) {
		ps.gate = 1;
		ps.gate_logged = 0;
	}
}
