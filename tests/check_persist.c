/*
 * The usage file: a round trip through a file into a fresh segment, keys
 * whose ids collide, a failed write that leaves the good file alone (and
 * is logged once), a corrupt file moved aside, an unreadable file never
 * overwritten, stale days and cooldowns.  Each test runs in its own
 * process (CK_FORK), so persist.c's memory starts fresh every time.
 */
#include <sys/stat.h>

#include <bsd/string.h>
#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "check_suites.h"
#include "config.h"
#include "log.h"
#include "persist.h"
#include "shm.h"
#include "util.h"

struct fixture {
	char		 dir[64];
	char		 path[PATH_MAX];
	char		 tmp[PATH_MAX];
	struct config	 cfg;
};

static void
fixture(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	strlcpy(f->dir, "/tmp/check_persist.XXXXXX", sizeof(f->dir));
	ck_assert_ptr_nonnull(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/key_usage.json", f->dir);
	snprintf(f->tmp, sizeof(f->tmp), "%s/.key_usage.json.tmp", f->dir);
	strlcpy(f->cfg.usage_file, f->path, sizeof(f->cfg.usage_file));
	strlcpy(f->cfg.reset_after, "00:00", sizeof(f->cfg.reset_after));
	strlcpy(f->cfg.timezone, "UTC", sizeof(f->cfg.timezone));
	f->cfg.persist_interval_s = 1;
}

/* A segment holding keys (value, id) and models m0 (limits), m1. */
static struct shm_header *
segment(const char *const *keys, const char *const *ids, size_t nk,
    const char *const *models, size_t nm)
{
	struct shm_key_spec	 ks[8] = { { 0 } };
	struct shm_model_spec	 ms[8];
	struct shm_sizes	 sz;
	struct shm_header	*h;
	size_t			 i;

	for (i = 0; i < nk; i++) {
		ks[i].key = keys[i];
		ks[i].id = ids[i];
		ks[i].masked = "x…y";
		ks[i].tier = 0;
	}
	for (i = 0; i < nm; i++) {
		ms[i].name = models[i];
		ms[i].tpm_limit = strcmp(models[i], "m0") == 0 ? 1000 : -1;
		ms[i].tpd_limit = -1;
		ms[i].rpm_limit = -1;
		ms[i].rpd_limit = -1;
	}
	shm_sizes_for(nk, nm, 4, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, nk, ms, nm, 0), 0);
	return h;
}

static int
slot(struct shm_header *h, const char *key)
{
	int	 s;

	shm_lock(h);
	s = shm_find_key_locked(h, key);
	shm_unlock(h);
	return s;
}

static int
mslot(struct shm_header *h, const char *name)
{
	int	 s;

	shm_lock(h);
	s = shm_find_model_locked(h, name);
	shm_unlock(h);
	return s;
}

static struct shm_usage *
cell(struct shm_header *h, const char *key, const char *model)
{
	int	 k = slot(h, key), m = mslot(h, model);

	ck_assert_int_ge(k, 0);
	ck_assert_int_ge(m, 0);
	return SHM_USAGE(h, k, m);
}

/* A request on key (forced by prefer) and model, settled with tokens. */
static void
serve(struct shm_header *h, const char *key, const char *model,
    int64_t prompt, int64_t total)
{
	struct shm_pick		 p;
	struct shm_tokens	 t = { prompt, total - prompt, 0, 0, total };

	ck_assert_int_eq(shm_pick(h, mslot(h, model), 10, NULL, 0,
	    slot(h, key), now_ms(), &p), 0);
	shm_settle(h, &p, &t, now_ms());
}

static struct shm_pick
pick_of(struct shm_header *h, const char *key, const char *model)
{
	struct shm_pick	 p;

	memset(&p, 0, sizeof(p));
	p.key = slot(h, key);
	p.model = mslot(h, model);
	strlcpy(p.key_str, key, sizeof(p.key_str));
	return p;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE	*f = fopen(path, "r");
	char	*buf;
	long	 n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, n + 1);
	ck_assert_int_eq(fread(buf, 1, n, f), n);
	fclose(f);
	if (len != NULL)
		*len = n;
	return buf;
}

static void
spit(const char *path, const char *text)
{
	FILE	*f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static int
count(const char *hay, const char *needle)
{
	int	 n = 0;

	while (hay != NULL && (hay = strstr(hay, needle)) != NULL) {
		n++;
		hay++;
	}
	return n;
}

static void
cleanup(struct fixture *f)
{
	char		 p[PATH_MAX * 2];
	DIR		*d = opendir(f->dir);
	struct dirent	*e;

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
		if (unlink(p) == -1)
			rmdir(p);
	}
	if (d != NULL)
		closedir(d);
	rmdir(f->dir);
}

/* name was made by key at t: a file, 48 h to live. */
static void
aff_file(struct shm_header *h, const char *name, int key, int64_t t)
{
	struct shm_aff_note	 n = { name, SHM_RES_FILE, key, t,
				    t + 48LL * 3600 * 1000, 0, 0 };

	shm_affinity_put(h, &n, t);
}

START_TEST(test_round_trip)
{
	static const char *const keys[] = { "key-one", "key-two", "key-three" };
	static const char *const ids[] = { "11111111", "22222222", "33333333" };
	static const char *const models[] = { "m0", "m1" };
	static const char *const keys2[] = { "key-three", "key-new",
	    "key-one" };
	static const char *const ids2[] = { "33333333", "44444444",
	    "11111111" };
	static const char *const models2[] = { "m1", "m0" };
	struct fixture		 f;
	struct shm_header	*h, *g;
	struct shm_pick		 p;
	struct persist_info	 pi;
	struct shm_usage	*a, *b;
	int64_t			 now = now_ms();
	int			 i, k;
	char			*text;

	fixture(&f);
	h = segment(keys, ids, 3, models, 2);
	h->last_reset = now - 3600 * 1000;
	h->next_reset = now + 7200 * 1000;
	serve(h, "key-one", "m0", 100, 150);
	serve(h, "key-one", "m0", 7, 9);
	serve(h, "key-one", "m1", 40, 50);
	serve(h, "key-three", "m1", 1, 2);
	/* A model no config names, seen in a request. */
	ck_assert_int_ge(shm_model_slot(h, "gemini-unlisted"), 0);
	serve(h, "key-two", "gemini-unlisted", 5, 5);
	p = pick_of(h, "key-one", "m1");
	shm_cool(h, &p, now + 600 * 1000, SHM_R_RPM);
	p = pick_of(h, "key-three", "m0");
	shm_exhaust(h, &p, SHM_R_RPD);
	p = pick_of(h, "key-two", "m0");
	shm_invalidate(h, &p, "API_KEY_INVALID", 1000);
	/* An expired cooldown is not worth keeping. */
	p = pick_of(h, "key-three", "m1");
	shm_cool(h, &p, now - 1000, SHM_R_429);
	aff_file(h, "files/abc", slot(h, "key-three"), now);
	aff_file(h, "files/two", slot(h, "key-two"), now);
	SHM_MODELS(h)[mslot(h, "m0")].current_key = slot(h, "key-one");

	ck_assert_int_eq(persist_save(h, &f.cfg, 1, now_ms()), 0);
	text = slurp(f.path, NULL);
	ck_assert_ptr_nonnull(text);
	/* Fingerprints only, never a key. */
	ck_assert_ptr_null(strstr(text, "key-one"));
	ck_assert_ptr_null(strstr(text, "key-three"));
	ck_assert_ptr_nonnull(strstr(text, "\"version\":1"));
	ck_assert_ptr_nonnull(strstr(text, "\"11111111\""));
	free(text);
	{
		struct stat	 st;

		ck_assert_int_eq(stat(f.path, &st), 0);
		ck_assert_int_eq(st.st_mode & 0777, 0600);
		ck_assert_int_eq(access(f.tmp, F_OK), -1);
	}

	/* A fresh segment: other order, key-two gone, key-new added. */
	g = segment(keys2, ids2, 3, models2, 2);
	ck_assert_int_eq(persist_load(g, &f.cfg, now_ms(), &pi),
	    PERSIST_LOADED);
	ck_assert_int_eq(pi.loaded, 1);
	ck_assert_int_eq(pi.last_reset, h->last_reset);
	ck_assert_int_eq(pi.next_reset, h->next_reset);
	ck_assert_str_eq(pi.reset_after, "00:00");
	ck_assert_str_eq(pi.timezone, "UTC");
	ck_assert_int_eq(g->last_reset, h->last_reset);

	a = cell(h, "key-one", "m0");
	b = cell(g, "key-one", "m0");
	ck_assert_uint_eq(b->tokens[SHM_TOK_PROMPT], 107);
	ck_assert_uint_eq(b->tokens[SHM_TOK_TOTAL], 159);
	ck_assert_uint_eq(b->requests, 2);
	ck_assert_uint_eq(b->tpd_used, a->tpd_used);
	ck_assert_uint_eq(b->rpd_used, a->rpd_used);
	ck_assert_uint_eq(b->tokens[SHM_TOK_CANDIDATES], a->tokens[SHM_TOK_CANDIDATES]);
	/* The per-minute window survived: TPM still counts them. */
	ck_assert_mem_eq(b->win, a->win, sizeof(a->win));
	b = cell(g, "key-one", "m1");
	ck_assert_uint_eq(b->state, SHM_COOLING);
	ck_assert_uint_eq(b->reason, SHM_R_RPM);
	ck_assert_int_eq(b->cooldown_until, now + 600 * 1000);
	ck_assert_uint_eq(b->tokens[SHM_TOK_TOTAL], 50);
	b = cell(g, "key-three", "m0");
	ck_assert_uint_eq(b->state, SHM_EXHAUSTED);
	ck_assert_uint_eq(b->reason, SHM_R_RPD);
	b = cell(g, "key-three", "m1");
	ck_assert_uint_eq(b->state, SHM_AVAILABLE);
	ck_assert_uint_eq(b->tokens[SHM_TOK_TOTAL], 2);
	/* The new key starts from zero; nobody got key-two's usage. */
	for (i = 0; i < 2; i++) {
		b = cell(g, "key-new", models[i]);
		ck_assert_uint_eq(b->tokens[SHM_TOK_TOTAL] + b->requests + b->tpd_used, 0);
		ck_assert_uint_eq(b->state, SHM_AVAILABLE);
	}
	/* The unlisted model came back, metered under its own name. */
	ck_assert_int_ge(mslot(g, "gemini-unlisted"), 0);
	/* Histories: per key and per model, minute by minute. */
	for (i = 0; i < SHM_HISTORY; i++) {
		ck_assert_mem_eq(&SHM_KEYS(g)[slot(g, "key-one")].history[i],
		    &SHM_KEYS(h)[slot(h, "key-one")].history[i],
		    sizeof(struct shm_minute));
		ck_assert_mem_eq(&SHM_MODELS(g)[mslot(g, "m1")].history[i],
		    &SHM_MODELS(h)[mslot(h, "m1")].history[i],
		    sizeof(struct shm_minute));
	}
	/* Sticky key and affinity, to the same key in its new slot. */
	ck_assert_int_eq(SHM_MODELS(g)[mslot(g, "m0")].current_key,
	    slot(g, "key-one"));
	k = shm_affinity_get(g, "files/abc", now_ms());
	ck_assert_int_eq(k, slot(g, "key-three"));
	ck_assert_int_eq(shm_affinity_get(g, "files/two", now_ms()), -1);
	/* Invalid is not carried over a restart (like a reload). */
	for (i = 0; i < (int)g->nkeys; i++)
		ck_assert_uint_eq(SHM_KEYS(g)[i].invalid, 0);

	shm_destroy(h);
	shm_destroy(g);
	cleanup(&f);
}
END_TEST

START_TEST(test_colliding_ids)
{
	/* Two keys, one 8-hex id: the fp keeps them apart. */
	static const char *const keys[] = { "key-A", "key-B" };
	static const char *const ids[] = { "deadbeef", "deadbeef" };
	static const char *const keys2[] = { "key-B", "key-A" };
	static const char *const models[] = { "m0" };
	struct fixture		 f;
	struct shm_header	*h, *g;
	struct persist_info	 pi;
	char			 fa[17], fb[17], text[1024];

	fixture(&f);
	h = segment(keys, ids, 2, models, 1);
	serve(h, "key-A", "m0", 100, 100);
	ck_assert_int_eq(persist_save(h, &f.cfg, 1, now_ms()), 0);
	g = segment(keys2, ids, 2, models, 1);
	ck_assert_int_eq(persist_load(g, &f.cfg, now_ms(), &pi),
	    PERSIST_LOADED);
	ck_assert_uint_eq(cell(g, "key-A", "m0")->tokens[SHM_TOK_TOTAL], 100);
	ck_assert_uint_eq(cell(g, "key-B", "m0")->tokens[SHM_TOK_TOTAL], 0);
	shm_destroy(g);

	/* Written by hand, without fp: ambiguous ids are skipped. */
	persist_fp("key-A", fa);
	persist_fp("key-B", fb);
	ck_assert_str_ne(fa, fb);
	ck_assert_uint_eq(strlen(fa), 16);
	snprintf(text, sizeof(text), "{\"version\": 1, \"keys\": ["
	    "{\"id\": \"deadbeef\", \"models\": {\"m0\": {\"total\": 5}}},"
	    "{\"id\": \"0badf00d\", \"models\": {\"m0\": {\"total\": 6}}},"
	    "{\"id\": \"cafecafe\", \"fp\": \"%s\", \"models\": {\"m0\": "
	    "{\"total\": 7}}}]}", fb);
	spit(f.path, text);
	{
		static const char *const keys3[] = { "key-A", "key-B",
		    "key-C" };
		static const char *const ids3[] = { "deadbeef", "deadbeef",
		    "0badf00d" };

		g = segment(keys3, ids3, 3, models, 1);
	}
	ck_assert_int_eq(persist_load(g, &f.cfg, now_ms(), &pi),
	    PERSIST_LOADED);
	ck_assert_uint_eq(cell(g, "key-A", "m0")->tokens[SHM_TOK_TOTAL], 0);
	/* fp wins over a wrong id; a unique id matches alone. */
	ck_assert_uint_eq(cell(g, "key-B", "m0")->tokens[SHM_TOK_TOTAL], 7);
	ck_assert_uint_eq(cell(g, "key-C", "m0")->tokens[SHM_TOK_TOTAL], 6);
	shm_destroy(h);
	shm_destroy(g);
	cleanup(&f);
}
END_TEST

START_TEST(test_failed_write_keeps_file)
{
	static const char *const keys[] = { "key-one" };
	static const char *const ids[] = { "11111111" };
	static const char *const models[] = { "m0" };
	struct fixture		 f;
	struct shm_header	*h;
	struct persist_info	 pi;
	char			 logpath[PATH_MAX], *before, *after, *log;
	struct stat		 st1, st2;

	fixture(&f);
	snprintf(logpath, sizeof(logpath), "%s/log", f.dir);
	log_init(0, logpath, LOG_DEBUG);
	h = segment(keys, ids, 1, models, 1);
	ck_assert_int_eq(persist_load(h, &f.cfg, now_ms(), &pi),
	    PERSIST_ABSENT);
	serve(h, "key-one", "m0", 10, 10);
	ck_assert_int_eq(persist_save(h, &f.cfg, 0, now_ms()), 0);
	before = slurp(f.path, NULL);
	ck_assert_int_eq(stat(f.path, &st1), 0);

	/* Nothing changed: an interval save does not rewrite the file. */
	ck_assert_int_eq(persist_save(h, &f.cfg, 0, now_ms()), 0);
	ck_assert_int_eq(stat(f.path, &st2), 0);
	ck_assert_uint_eq(st1.st_ino, st2.st_ino);

	/* The temp file cannot be created (root ignores modes, but not
	 * a directory in its place): the write fails, twice. */
	ck_assert_int_eq(mkdir(f.tmp, 0700), 0);
	serve(h, "key-one", "m0", 10, 10);
	ck_assert_int_eq(persist_save(h, &f.cfg, 0, now_ms()), -1);
	ck_assert_int_eq(persist_save(h, &f.cfg, 1, now_ms()), -1);
	after = slurp(f.path, NULL);
	ck_assert_str_eq(before, after);
	free(after);
	log = slurp(logpath, NULL);
	ck_assert_int_eq(count(log, "not written"), 1);
	ck_assert_ptr_nonnull(strstr(log, f.path));
	ck_assert_int_eq(count(log, "written again"), 0);
	free(log);

	/* It works again: logged once more, the file has both requests. */
	ck_assert_int_eq(rmdir(f.tmp), 0);
	ck_assert_int_eq(persist_save(h, &f.cfg, 0, now_ms()), 0);
	log = slurp(logpath, NULL);
	ck_assert_int_eq(count(log, "not written"), 1);
	ck_assert_int_eq(count(log, "written again"), 1);
	free(log);
	after = slurp(f.path, NULL);
	ck_assert_str_ne(before, after);
	ck_assert_ptr_nonnull(strstr(after, "\"requests\":2"));
	free(before);
	free(after);
	shm_destroy(h);
	cleanup(&f);
}
END_TEST

START_TEST(test_corrupt_moved_aside)
{
	static const char *const keys[] = { "key-one" };
	static const char *const ids[] = { "11111111" };
	static const char *const models[] = { "m0" };
	static const char *const bad[] = {
		"{\"version\": 1, \"keys\": [",
		"",
		"[1, 2, 3]",
		"{\"version\": 99}",
		"{\"keys\": []}",
		"{\"version\": 1} trailing",
	};
	struct fixture		 f;
	struct shm_header	*h;
	struct persist_info	 pi;
	DIR			*d;
	struct dirent		*e;
	char			 p[PATH_MAX * 2], *text;
	size_t			 i;
	int			 found;

	fixture(&f);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = segment(keys, ids, 1, models, 1);
		spit(f.path, bad[i]);
		ck_assert_int_eq(persist_load(h, &f.cfg, now_ms(), &pi),
		    PERSIST_CORRUPT);
		ck_assert_int_eq(pi.loaded, 0);
		ck_assert_int_eq(access(f.path, F_OK), -1);
		/* Kept for a human as <name>.corrupt-<time>, unchanged. */
		found = 0;
		d = opendir(f.dir);
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, "key_usage.json.corrupt-",
			    23) != 0)
				continue;
			snprintf(p, sizeof(p), "%s/%s", f.dir, e->d_name);
			text = slurp(p, NULL);
			if (strcmp(text, bad[i]) == 0)
				found++;
			free(text);
		}
		closedir(d);
		ck_assert_int_eq(found, 1);
		/* A fresh file can be written now. */
		serve(h, "key-one", "m0", 1, 1);
		ck_assert_int_eq(persist_save(h, &f.cfg, 0, now_ms()), 0);
		ck_assert_int_eq(access(f.path, F_OK), 0);
		unlink(f.path);
		shm_destroy(h);
	}
	cleanup(&f);
}
END_TEST

START_TEST(test_unreadable_not_overwritten)
{
	static const char *const keys[] = { "key-one" };
	static const char *const ids[] = { "11111111" };
	static const char *const models[] = { "m0" };
	struct fixture		 f;
	struct shm_header	*h, *g;
	struct persist_info	 pi;
	char			 keep[PATH_MAX];

	fixture(&f);
	snprintf(keep, sizeof(keep), "%s/good.json", f.dir);
	/* A good file from an earlier run. */
	h = segment(keys, ids, 1, models, 1);
	serve(h, "key-one", "m0", 30, 30);
	ck_assert_int_eq(persist_save(h, &f.cfg, 1, now_ms()), 0);
	ck_assert_int_eq(rename(f.path, keep), 0);

	/* At start it cannot be read (a directory in its place stands in
	 * for EACCES/EIO, which root cannot be made to see). */
	ck_assert_int_eq(mkdir(f.path, 0700), 0);
	g = segment(keys, ids, 1, models, 1);
	ck_assert_int_eq(persist_load(g, &f.cfg, now_ms(), &pi),
	    PERSIST_ERROR);
	ck_assert_int_eq(pi.loaded, 0);
	/* Counting goes on, but nothing is written there: not even a
	 * temp file is made. */
	serve(g, "key-one", "m0", 5, 5);
	ck_assert_int_eq(persist_save(g, &f.cfg, 1, now_ms()), -1);
	ck_assert_int_eq(access(f.tmp, F_OK), -1);

	/* The file is readable again: the next save reads it first and
	 * adds its counts to those of meanwhile. */
	ck_assert_int_eq(rmdir(f.path), 0);
	ck_assert_int_eq(rename(keep, f.path), 0);
	ck_assert_int_eq(persist_save(g, &f.cfg, 0, now_ms()), 0);
	ck_assert_uint_eq(cell(g, "key-one", "m0")->tokens[SHM_TOK_TOTAL], 35);
	ck_assert_uint_eq(cell(g, "key-one", "m0")->requests, 2);
	shm_destroy(h);
	shm_destroy(g);

	/* A missing directory is not "absent" either: it may be a volume
	 * that is not mounted yet. */
	snprintf(f.cfg.usage_file, sizeof(f.cfg.usage_file),
	    "%s/nodir/key_usage.json", f.dir);
	g = segment(keys, ids, 1, models, 1);
	ck_assert_int_eq(persist_load(g, &f.cfg, now_ms(), &pi),
	    PERSIST_ERROR);
	shm_destroy(g);
	cleanup(&f);
}
END_TEST

START_TEST(test_stale_day)
{
	static const char *const keys[] = { "key-one" };
	static const char *const ids[] = { "11111111" };
	static const char *const models[] = { "m0", "m1" };
	struct fixture		 f;
	struct shm_header	*g;
	struct persist_info	 pi;
	struct shm_usage	*u;
	char			 fp[17], text[1024];
	int64_t			 now = now_ms();
	uint32_t		 s = (uint32_t)(now / 1000);

	fixture(&f);
	persist_fp("key-one", fp);
	/* The file's day ended (next_reset passed) while we were down. */
	snprintf(text, sizeof(text), "{\"version\": 1, \"last_reset\": %lld, "
	    "\"next_reset\": %lld, \"keys\": [{\"id\": \"11111111\", "
	    "\"fp\": \"%s\", \"models\": {\"m0\": {\"state\": \"exhausted\", "
	    "\"reason\": \"rpd\", \"total\": 9, \"requests\": 3, "
	    "\"window\": [[%u, 1, 40]]}, \"m1\": {\"state\": \"cooling\", "
	    "\"until\": %lld, \"total\": 1}}}]}",
	    (long long)(now - 90000000), (long long)(now - 1000), fp,
	    s - s % SHM_WIN_SPAN, (long long)(now + 60000));
	spit(f.path, text);
	g = segment(keys, ids, 1, models, 2);
	ck_assert_int_eq(persist_load(g, &f.cfg, now, &pi), PERSIST_LOADED);
	ck_assert_int_eq(pi.next_reset, now - 1000);
	u = cell(g, "key-one", "m0");
	ck_assert_uint_eq(u->state, SHM_AVAILABLE);
	ck_assert_uint_eq(u->tokens[SHM_TOK_TOTAL], 0);
	/* The last minute is the last minute, whatever the day. */
	{
		uint64_t	 tok;
		uint32_t	 req;

		shm_window(u, s, &tok, &req);
		ck_assert_uint_eq(tok, 40);
		ck_assert_uint_eq(req, 1);
	}
	u = cell(g, "key-one", "m1");
	ck_assert_uint_eq(u->state, SHM_COOLING);
	ck_assert_int_eq(u->cooldown_until, now + 60000);
	ck_assert_uint_eq(u->tokens[SHM_TOK_TOTAL], 0);
	shm_destroy(g);

	/* Malformed parts are skipped, the rest is read. */
	snprintf(text, sizeof(text), "{\"version\": 1, \"keys\": ["
	    "{\"id\": 5}, \"x\", {\"id\": \"11111111\", \"fp\": \"%s\", "
	    "\"history\": [[1, 2]], \"models\": {\"m0\": {\"total\": -1}, "
	    "\"m1\": {\"total\": 4}}}], \"models\": 7, \"affinity\": "
	    "[{\"name\": \"files/x\"}]}", fp);
	spit(f.path, text);
	g = segment(keys, ids, 1, models, 2);
	ck_assert_int_eq(persist_load(g, &f.cfg, now, &pi), PERSIST_LOADED);
	ck_assert_uint_eq(cell(g, "key-one", "m0")->tokens[SHM_TOK_TOTAL], 0);
	ck_assert_uint_eq(cell(g, "key-one", "m1")->tokens[SHM_TOK_TOTAL], 4);
	shm_destroy(g);
	cleanup(&f);
}
END_TEST

Suite *
persist_suite(void)
{
	Suite	*s = suite_create("persist");
	TCase	*tc = tcase_create("file");

	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_colliding_ids);
	tcase_add_test(tc, test_failed_write_keeps_file);
	tcase_add_test(tc, test_corrupt_moved_aside);
	tcase_add_test(tc, test_unreadable_not_overwritten);
	tcase_add_test(tc, test_stale_day);
	suite_add_tcase(s, tc);
	return s;
}
