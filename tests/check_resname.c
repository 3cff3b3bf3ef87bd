/*
 * resname.c (names of a project's resources, learnt from answers) and
 * shm/affinity.c (who owns them, until when).
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_suites.h"
#include "resname.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)
#define HOUR	(3600LL * 1000)

static size_t
refs_of(const char *text, struct res_ref *r)
{
	return res_refs(text, strlen(text), r, 0, RES_MAX_REFS);
}

static int
has(const struct res_ref *r, size_t n, const char *name, uint32_t kind)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(r[i].name, name) == 0)
			return r[i].kind == kind;
	return 0;
}

START_TEST(test_refs_in_bodies)
{
	struct res_ref	 r[RES_MAX_REFS];
	size_t		 n;

	/* A generate body: a file by URI, an explicit cache, a store. */
	n = refs_of("{\"contents\":[{\"parts\":[{\"fileData\":{\"fileUri\":"
	    "\"https://generativelanguage.googleapis.com/v1beta/files/"
	    "abc-1:download?alt=media\"}}]}],\"cachedContent\":"
	    "\"cachedContents/c9\",\"tools\":[{\"fileSearch\":{"
	    "\"fileSearchStoreNames\":[\"fileSearchStores/st-1\"]}}]}", r);
	ck_assert_uint_eq(n, 3);
	ck_assert(has(r, n, "files/abc-1", SHM_RES_FILE));
	ck_assert(has(r, n, "cachedContents/c9", SHM_RES_CACHE));
	ck_assert(has(r, n, "fileSearchStores/st-1", SHM_RES_STORE));
	/* A batch's input file; the model named is no resource. */
	n = refs_of("{\"batch\":{\"model\":\"models/gemini-2.5-flash\","
	    "\"inputConfig\":{\"fileName\":\"files/in1\"}}}", r);
	ck_assert_uint_eq(n, 1);
	ck_assert(has(r, n, "files/in1", SHM_RES_FILE));
	/* Inside a word, or empty: no name. */
	ck_assert_uint_eq(refs_of("xfiles/abc myfiles/ files/ batches/:x", r),
	    0);
	/* Twice named, once counted; sub-resources reduce to the root. */
	n = refs_of("batches/b1 batches/b1 corpora/k/documents/d "
	    "tunedModels/t1/operations/o", r);
	ck_assert_uint_eq(n, 3);
	ck_assert(has(r, n, "batches/b1", SHM_RES_BATCH));
	ck_assert(has(r, n, "corpora/k", SHM_RES_CORPUS));
	ck_assert(has(r, n, "tunedModels/t1", SHM_RES_TUNED));
}
END_TEST

START_TEST(test_paths)
{
	struct res_ref	 r;
	int		 exact;
	const char	*p;

	p = "/v1beta/models/veo-3.0-generate-preview/operations/op1";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), 0);
	ck_assert_str_eq(r.name, "models/veo-3.0-generate-preview/operations/op1");
	ck_assert_uint_eq(r.kind, SHM_RES_OPERATION);
	ck_assert_int_eq(exact, 1);
	p = "/v1beta/batches/b7:cancel";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), 0);
	ck_assert_str_eq(r.name, "batches/b7");
	ck_assert_int_eq(exact, 0);
	p = "/v1/files/f1?key=x";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), 0);
	ck_assert_int_eq(exact, 1);
	p = "/upload/v1beta/fileSearchStores/s1:uploadToFileSearchStore";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), 0);
	ck_assert_str_eq(r.name, "fileSearchStores/s1");
	p = "/v1beta/fileSearchStores/s1/documents/d1";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), 0);
	ck_assert_str_eq(r.name, "fileSearchStores/s1");
	ck_assert_int_eq(exact, 0);
	p = "/v1beta/models/gemini-2.5-flash:generateContent";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), -1);
	p = "/v1beta/files";
	ck_assert_int_eq(res_path(p, strlen(p), &r, &exact), -1);
}
END_TEST

START_TEST(test_rfc3339)
{
	ck_assert_int_eq(res_rfc3339("2025-06-01T00:00:00Z"),
	    1748736000000LL);
	ck_assert_int_eq(res_rfc3339("2025-06-01T00:00:00.250Z"),
	    1748736000250LL);
	ck_assert_int_eq(res_rfc3339("2025-06-01T02:00:00+02:00"),
	    1748736000000LL);
	ck_assert_int_eq(res_rfc3339("2025-06-01T00:00:00.123456789Z"),
	    1748736000123LL);
	ck_assert_int_eq(res_rfc3339("tomorrow"), -1);
	ck_assert_int_eq(res_rfc3339("2025-06-01T00:00:00"), -1);
}
END_TEST

static const struct res_fact *
fact(const struct res_fact *f, size_t n, const char *name)
{
	size_t	 i;

	for (i = 0; i < n; i++)
		if (strcmp(f[i].name, name) == 0)
			return &f[i];
	return NULL;
}

START_TEST(test_learn)
{
	struct res_fact		 f[RES_MAX_FACTS];
	const struct res_fact	*x;
	size_t			 n;
	const char		*a;

	/* A batch created: running, its input file named. */
	a = "{\"name\":\"batches/b1\",\"metadata\":{\"@type\":\"type.googleapis"
	    ".com/google.ai.generativelanguage.v1main.GenerateContentBatch\","
	    "\"name\":\"batches/b1\",\"state\":\"BATCH_STATE_PENDING\","
	    "\"inputConfig\":{\"fileName\":\"files/in1\"}}}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_nonnull(x = fact(f, n, "batches/b1"));
	ck_assert_int_eq(x->done, 0);
	ck_assert_int_eq(x->keep_expiry, 1);
	ck_assert_int_eq(x->expires, NOW + RES_RUNNING_TTL_MS);
	ck_assert_ptr_nonnull(fact(f, n, "files/in1"));
	/* Done: a margin from now; its responses file is the project's. */
	a = "{\"name\":\"batches/b1\",\"metadata\":{\"state\":"
	    "\"BATCH_STATE_SUCCEEDED\",\"output\":{\"responsesFile\":"
	    "\"files/batch-out\"}},\"done\":true}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_ptr_nonnull(x = fact(f, n, "batches/b1"));
	ck_assert_int_eq(x->done, 1);
	ck_assert_int_eq(x->keep_expiry, 0);
	ck_assert_int_eq(x->expires, NOW + RES_DONE_MARGIN_MS);
	ck_assert_ptr_nonnull(fact(f, n, "files/batch-out"));
	/* A finished Veo operation names its video, a file. */
	a = "{\"name\":\"models/veo-3/operations/o1\",\"done\":true,"
	    "\"response\":{\"generateVideoResponse\":{\"generatedSamples\":"
	    "[{\"video\":{\"uri\":\"https://h/v1beta/files/vid1:download?"
	    "alt=media\"}}]}}}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(fact(f, n, "models/veo-3/operations/o1")->done, 1);
	ck_assert_ptr_nonnull(fact(f, n, "files/vid1"));
	/* An upload finalised: the file, with its own expiry. */
	a = "{\"file\":{\"name\":\"files/u1\",\"expirationTime\":"
	    "\"2025-06-01T00:00:00Z\",\"uri\":\"https://h/v1beta/files/u1\"}}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(f[0].expires, 1748736000000LL);
	ck_assert_int_eq(f[0].keep_expiry, 0);
	/* A cache and its expireTime; a store lives until deleted. */
	a = "{\"cachedContents\":[{\"name\":\"cachedContents/c1\","
	    "\"expireTime\":\"2025-06-01T02:00:00+02:00\"}],\"x\":{\"name\":"
	    "\"fileSearchStores/s1\"}}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_int_eq(fact(f, n, "cachedContents/c1")->expires,
	    1748736000000LL);
	ck_assert_int_eq(fact(f, n, "fileSearchStores/s1")->expires, 0);
	ck_assert_int_eq(fact(f, n, "fileSearchStores/s1")->keep_expiry, 0);
	/* An operation on a store: the store, expiry left alone. */
	a = "{\"name\":\"fileSearchStores/s1/upload/operations/u9\"}";
	n = res_learn(a, strlen(a), NOW, f, RES_MAX_FACTS);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(f[0].name, "fileSearchStores/s1");
	ck_assert_int_eq(f[0].keep_expiry, 1);
	/* Not JSON, or cut: nothing. */
	ck_assert_uint_eq(res_learn("{\"name\":\"files/a", 16, NOW, f, 4), 0);
}
END_TEST

static struct shm_header *
segment(uint32_t naff)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	 ks[2] = {
		{ "k1", "11111111", "k1", 0 },
		{ "k2", "22222222", "k2", 0 },
	};
	struct shm_model_spec	 ms[1] = { { "m0", -1, -1, -1, -1 } };

	shm_sizes_for(2, 1, 2, 0, &sz);
	sz.affinity = naff;
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, 2, ms, 1, 0), 0);
	return h;
}

static void
put(struct shm_header *h, const char *name, int key, int64_t expires,
    int keep, int64_t now)
{
	struct shm_aff_note	 n = { name, SHM_RES_BATCH, key, now, expires,
				    keep, 0 };

	shm_affinity_put(h, &n, now);
}

START_TEST(test_expiry)
{
	struct shm_header	*h = segment(64);

	put(h, "batches/b1", 0, NOW + HOUR, 0, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "batches/b1", NOW), 0);
	ck_assert_int_eq(shm_affinity_get(h, "batches/b1", NOW + HOUR), -1);
	/* Seen again, still running: the expiry stays; done: moves. */
	put(h, "batches/b1", 0, NOW + 9 * HOUR, 1, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "batches/b1", NOW + HOUR), -1);
	put(h, "batches/b1", 0, NOW + 9 * HOUR, 0, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "batches/b1", NOW + HOUR), 0);
	/* Another project's key got it: it is that project's now. */
	put(h, "batches/b1", 1, NOW + 9 * HOUR, 1, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "batches/b1", NOW), 1);
	/* Until deleted. */
	put(h, "corpora/c", 1, 0, 0, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "corpora/c", NOW + 1000 * HOUR),
	    1);
	shm_affinity_forget(h, "corpora/c");
	ck_assert_int_eq(shm_affinity_get(h, "corpora/c", NOW), -1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_full_table)
{
	struct shm_header	*h = segment(4);

	/* Four slots: what expires first goes first, never-ending last. */
	put(h, "corpora/forever", 0, 0, 0, NOW);
	put(h, "batches/late", 0, NOW + 9 * HOUR, 0, NOW);
	put(h, "batches/soon", 0, NOW + HOUR, 0, NOW);
	put(h, "batches/mid", 0, NOW + 5 * HOUR, 0, NOW);
	put(h, "batches/new", 1, NOW + 7 * HOUR, 0, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "batches/soon", NOW), -1);
	ck_assert_int_eq(shm_affinity_get(h, "batches/new", NOW), 1);
	ck_assert_int_eq(shm_affinity_get(h, "corpora/forever", NOW), 0);
	ck_assert_int_eq(shm_affinity_get(h, "batches/late", NOW), 0);
	/* An expired entry is reused before any live one. */
	put(h, "batches/next", 1, NOW + 50 * HOUR, 0, NOW + 6 * HOUR);
	ck_assert_int_eq(shm_affinity_get(h, "batches/mid", NOW), -1);
	ck_assert_int_eq(shm_affinity_get(h, "batches/new", NOW), 1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_owner_key)
{
	struct shm_header	*h = segment(16);
	uint32_t		 project;
	char			 id[12];

	ck_assert_int_eq(shm_owner_key(h, 1, &project, id, sizeof(id)), 1);
	ck_assert_str_eq(id, "22222222");
	ck_assert_uint_eq(project, SHM_KEYS(h)[1].project);
	SHM_KEYS(h)[1].invalid = 1;
	/* Its own project: no other key of it is in the pool. */
	ck_assert_int_eq(shm_owner_key(h, 1, &project, id, sizeof(id)), -1);
	/* Two keys of one project: the valid one reads what both made. */
	SHM_KEYS(h)[0].project = SHM_KEYS(h)[1].project;
	ck_assert_int_eq(shm_owner_key(h, 1, &project, id, sizeof(id)), 0);
	shm_destroy(h);
}
END_TEST

Suite *
resname_suite(void)
{
	Suite	*s = suite_create("resname");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_refs_in_bodies);
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_rfc3339);
	tcase_add_test(tc, test_learn);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_full_table);
	tcase_add_test(tc, test_owner_key);
	suite_add_tcase(s, tc);
	return s;
}
