/*
 * 429 storms (shm/storm.c): which 429s count (unexplained) and which do
 * not (the project's own usage explains them), distinct projects within
 * the window, the pause and its length, the half-open probe: one at a
 * time, its success resumes, its 429 pauses again, and a lost probe never
 * wedges the model.
 */
#include <check.h>
#include <string.h>

#include "check_suites.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */
#define KEYS	3			/* storm.keys */
#define WIN	10			/* storm.window_s */

/* Keys k0..k4, each its own project; model m0 without limits. */
static struct shm_header *
setup(void)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	 ks[5] = {
		{ "k0", "00000000", "k0", 0 },
		{ "k1", "11111111", "k1", 0 },
		{ "k2", "22222222", "k2", 0 },
		{ "k3", "33333333", "k3", 0 },
		{ "k4", "44444444", "k4", 1 },
	};
	struct shm_model_spec	 ms[1] = { { "m0", -1, -1, -1, -1 } };

	shm_sizes_for(5, 1, 4, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, 5, ms, 1, 0), 0);
	return h;
}

/* A pick of key k (its project's counters get one request, est tokens). */
static void
pick_key(struct shm_header *h, int k, int64_t est, int64_t now,
    struct shm_pick *p)
{
	ck_assert_int_eq(shm_pick(h, 0, est, NULL, 0, k, now, p), 0);
	ck_assert_int_eq(p->key, k);
}

/* Key k's 429 at now; the pick is released afterwards, as proxy.c does. */
static enum shm_storm_verdict
hit(struct shm_header *h, int k, const struct shm_429 *q, int keys,
    uint32_t probe, int64_t now)
{
	struct shm_pick		 p;
	enum shm_storm_verdict	 v;

	pick_key(h, k, 10, now, &p);
	v = shm_storm_note(h, &p, q, keys, WIN, probe, now);
	shm_release(h, &p);
	return v;
}

static const struct shm_429 bare = { 5000, 0, { 0 }, { 0 } };

static int
gate(struct shm_header *h, uint32_t *probe, int64_t now, int64_t *retry)
{
	*retry = -1;
	return shm_storm_gate(h, 0, probe, now, retry);
}

START_TEST(test_explained)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	struct shm_429		 q;
	int			 i;

	/* k0 really sent 5 requests and 5000 tokens this minute. */
	for (i = 0; i < 5; i++) {
		pick_key(h, 0, 1000, NOW, &p);
		shm_settle(h, &p, NULL, NOW);
	}
	memset(&q, 0, sizeof(q));
	q.delay_ms = 5000;
	q.nnamed = 1;
	q.kind[0] = SHM_R_RPM;
	q.value[0] = 12;	/* 6 (this one too) of 12: half, explained */
	ck_assert_int_eq(hit(h, 0, &q, 1, 0, NOW), SHM_STORM_EXPLAINED);
	q.value[0] = 14;	/* 6 of 14: under half */
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_COUNTED);
	q.kind[0] = SHM_R_TPM;
	q.value[0] = 12000;	/* 5000 + 10 of 12000: under half */
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_COUNTED);
	q.value[0] = 10000;
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_EXPLAINED);
	/* One explained quota of two is enough. */
	q.nnamed = 2;
	q.kind[1] = SHM_R_RPM;
	q.value[1] = 1000;
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_EXPLAINED);
	/* Per day: the day's counters. */
	q.nnamed = 1;
	q.kind[0] = SHM_R_RPD;
	q.value[0] = 10;
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_EXPLAINED);
	q.value[0] = 250;
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_COUNTED);
	/* A quota without its value, or no quota at all: unexplained. */
	q.value[0] = -1;
	ck_assert_int_eq(hit(h, 0, &q, 0, 0, NOW), SHM_STORM_COUNTED);
	ck_assert_int_eq(hit(h, 0, &bare, 0, 0, NOW), SHM_STORM_COUNTED);
	/* "limit: 0": the tier has no quota; the project's business. */
	q.value[0] = 0;
	ck_assert_int_eq(hit(h, 1, &q, 0, 0, NOW), SHM_STORM_EXPLAINED);
	shm_destroy(h);
}
END_TEST

/* Explained 429s from every project never pause the model. */
START_TEST(test_busy_pool_is_not_a_storm)
{
	struct shm_header	*h = setup();
	struct shm_429		 q = { 5000, 1, { SHM_R_RPM }, { 2 } };
	uint32_t		 probe = 0;
	int64_t			 retry;
	int			 k;

	for (k = 0; k < 5; k++)
		ck_assert_int_eq(hit(h, k, &q, KEYS, 0, NOW),
		    SHM_STORM_EXPLAINED);
	ck_assert_int_eq(gate(h, &probe, NOW, &retry), 0);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until, 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_distinct_projects_in_window)
{
	struct shm_header	*h = setup();
	uint32_t		 probe = 0;
	int64_t			 retry;

	/* The same project twice is one project. */
	ck_assert_int_eq(hit(h, 0, &bare, KEYS, 0, NOW), SHM_STORM_COUNTED);
	ck_assert_int_eq(hit(h, 0, &bare, KEYS, 0, NOW + 100),
	    SHM_STORM_COUNTED);
	ck_assert_int_eq(hit(h, 1, &bare, KEYS, 0, NOW + 5000),
	    SHM_STORM_COUNTED);
	/* k0's last 429 has left the 10 s window. */
	ck_assert_int_eq(hit(h, 2, &bare, KEYS, 0, NOW + 10200),
	    SHM_STORM_COUNTED);
	ck_assert_int_eq(gate(h, &probe, NOW + 10200, &retry), 0);
	/* A third project within 10 s of the other two. */
	ck_assert_int_eq(hit(h, 3, &bare, KEYS, 0, NOW + 10300),
	    SHM_STORM_PAUSED);
	ck_assert_int_eq(gate(h, &probe, NOW + 10300, &retry), -1);
	ck_assert_int_eq(retry, 5000);
	ck_assert_uint_eq(probe, 0);
	ck_assert_uint_eq(SHM_MODELS(h)[0].m_storms, 1);
	ck_assert_uint_eq(SHM_MODELS(h)[0].m_paused, 1);
	ck_assert_int_eq(shm_storm_state(SHM_MODELS(h), NOW + 10300), 1);
	shm_destroy(h);
}
END_TEST

/* The longest delay asked for, at most 60 s; storms off with keys 0. */
START_TEST(test_pause_length)
{
	struct shm_header	*h = setup();
	struct shm_429		 q = bare;
	uint32_t		 probe = 0;
	int64_t			 retry;

	q.delay_ms = 20000;
	ck_assert_int_eq(hit(h, 0, &q, KEYS, 0, NOW), SHM_STORM_COUNTED);
	q.delay_ms = 3000;
	ck_assert_int_eq(hit(h, 1, &q, KEYS, 0, NOW + 1000),
	    SHM_STORM_COUNTED);
	ck_assert_int_eq(hit(h, 2, &q, KEYS, 0, NOW + 2000),
	    SHM_STORM_PAUSED);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until, NOW + 20000);
	ck_assert_int_eq(gate(h, &probe, NOW + 2000, &retry), -1);
	ck_assert_int_eq(retry, 18000);
	/* A 429 that was in flight asks for 10 min: 60 s at most. */
	q.delay_ms = 600000;
	ck_assert_int_eq(hit(h, 3, &q, KEYS, 0, NOW + 3000),
	    SHM_STORM_COUNTED);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until,
	    NOW + 3000 + SHM_STORM_PAUSE_MS);
	ck_assert_uint_eq(SHM_MODELS(h)[0].m_storms, 1);
	/* No delay given at all: 60 s too. */
	shm_destroy(h);

	h = setup();
	q.delay_ms = -1;
	hit(h, 0, &q, KEYS, 0, NOW);
	hit(h, 1, &q, KEYS, 0, NOW);
	ck_assert_int_eq(hit(h, 2, &q, KEYS, 0, NOW), SHM_STORM_PAUSED);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until,
	    NOW + SHM_STORM_PAUSE_MS);
	shm_destroy(h);

	/* keys 0: storms are off. */
	h = setup();
	hit(h, 0, &bare, 0, 0, NOW);
	hit(h, 1, &bare, 0, 0, NOW);
	ck_assert_int_eq(hit(h, 2, &bare, 0, 0, NOW), SHM_STORM_COUNTED);
	ck_assert_int_eq(gate(h, &probe, NOW, &retry), 0);
	shm_destroy(h);
}
END_TEST

/* Paused at NOW until NOW + 5 s. */
static struct shm_header *
paused(void)
{
	struct shm_header	*h = setup();

	hit(h, 0, &bare, KEYS, 0, NOW);
	hit(h, 1, &bare, KEYS, 0, NOW);
	ck_assert_int_eq(hit(h, 2, &bare, KEYS, 0, NOW), SHM_STORM_PAUSED);
	return h;
}

START_TEST(test_half_open_single_flight)
{
	struct shm_header	*h = paused();
	uint32_t		 a = 0, b = 0, c = 0;
	int64_t			 t = NOW + 5000, retry;

	ck_assert_int_eq(gate(h, &a, t - 1, &retry), -1);
	ck_assert_int_eq(retry, 1);
	/* The pause is over: one request goes, the others wait for it. */
	ck_assert_int_eq(gate(h, &a, t, &retry), 0);
	ck_assert_uint_ne(a, 0);
	ck_assert_int_eq(shm_storm_state(SHM_MODELS(h), t), 2);
	ck_assert_int_eq(gate(h, &b, t, &retry), -1);
	ck_assert_int_eq(retry, 1000);
	ck_assert_uint_eq(b, 0);
	ck_assert_int_eq(gate(h, &c, t + 100, &retry), -1);
	/* The probe itself, on its next key, goes on. */
	ck_assert_int_eq(gate(h, &a, t + 200, &retry), 0);
	/* Only the probe's success resumes. */
	ck_assert_int_eq(shm_storm_done(h, 0, b, 1), 0);
	ck_assert_int_eq(gate(h, &b, t + 300, &retry), -1);
	ck_assert_int_eq(shm_storm_done(h, 0, a, 1), 1);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until, 0);
	ck_assert_int_eq(gate(h, &b, t + 300, &retry), 0);
	ck_assert_int_eq(gate(h, &c, t + 300, &retry), 0);
	/* The 429s that led to the pause are forgotten: one more project
	 * alone does not pause it again. */
	ck_assert_int_eq(hit(h, 3, &bare, KEYS, 0, t + 400),
	    SHM_STORM_COUNTED);
	ck_assert_int_eq(shm_storm_done(h, 0, a, 0), 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_probe_429_pauses_again)
{
	struct shm_header	*h = paused();
	struct shm_429		 q = { 8000, 1, { SHM_R_RPM }, { 1000 } };
	uint32_t		 a = 0, b = 0;
	int64_t			 t = NOW + 5000, retry;

	ck_assert_int_eq(gate(h, &a, t, &retry), 0);
	/* An unexplained 429 to the probe: paused again, one project. */
	ck_assert_int_eq(hit(h, 3, &q, KEYS, a, t + 100), SHM_STORM_PAUSED);
	ck_assert_int_eq(SHM_MODELS(h)[0].paused_until, t + 8100);
	ck_assert_uint_eq(SHM_MODELS(h)[0].m_storms, 2);
	ck_assert_int_eq(gate(h, &a, t + 200, &retry), -1);
	ck_assert_int_eq(retry, 7900);
	ck_assert_int_eq(shm_storm_done(h, 0, a, 1), 0);	/* too late */
	ck_assert_int_eq(gate(h, &b, t + 8100, &retry), 0);
	ck_assert_uint_ne(b, 0);
	ck_assert_uint_ne(b, a);
	shm_destroy(h);
}
END_TEST

/* A probe that ends unanswered, or never ends, hands the turn on. */
START_TEST(test_lost_probe)
{
	struct shm_header	*h = paused();
	uint32_t		 a = 0, b = 0, c = 0;
	int64_t			 t = NOW + 5000, retry;

	ck_assert_int_eq(gate(h, &a, t, &retry), 0);
	ck_assert_int_eq(shm_storm_done(h, 0, a, 0), 0);	/* client left */
	ck_assert_int_eq(gate(h, &b, t + 10, &retry), 0);
	ck_assert_uint_ne(b, 0);
	/* b's worker dies with it: the next request waits out its deadline. */
	ck_assert_int_eq(gate(h, &c, t + 10 + SHM_STORM_PROBE_MS - 1, &retry),
	    -1);
	ck_assert_int_eq(gate(h, &c, t + 10 + SHM_STORM_PROBE_MS, &retry), 0);
	ck_assert_uint_ne(c, 0);
	ck_assert_uint_ne(c, b);
	/* b, come back late, is no longer the probe. */
	ck_assert_int_eq(gate(h, &b, t + 20 + SHM_STORM_PROBE_MS, &retry), -1);
	ck_assert_int_eq(shm_storm_done(h, 0, c, 1), 1);
	shm_destroy(h);
}
END_TEST

Suite *
storm_suite(void)
{
	Suite	*s = suite_create("storm");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_explained);
	tcase_add_test(tc, test_busy_pool_is_not_a_storm);
	tcase_add_test(tc, test_distinct_projects_in_window);
	tcase_add_test(tc, test_pause_length);
	tcase_add_test(tc, test_half_open_single_flight);
	tcase_add_test(tc, test_probe_429_pauses_again);
	tcase_add_test(tc, test_lost_probe);
	suite_add_tcase(s, tc);
	return s;
}
