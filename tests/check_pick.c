/*
 * Choosing keys: priority, stickiness, reservations under concurrency,
 * cooling, exhaustion, invalid keys, waiting times, settling.
 */
#include <sys/wait.h>

#include <check.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_suites.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */

/* Keys p1, p2 (priority), s1 (secondary); models m0 (limits), m1 (none). */
static struct shm_header *
setup(int64_t tpm, int64_t rpm, int64_t tpd, int64_t rpd)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	 ks[3] = {
		{ "p1", "11111111", "p1", 0 },
		{ "p2", "22222222", "p2", 0 },
		{ "s1", "33333333", "s1", 1 },
	};
	struct shm_model_spec	 ms[2] = {
		{ "m0", tpm, tpd, rpm, rpd },
		{ "m1", -1, -1, -1, -1 },
	};

	shm_sizes_for(3, 2, 4, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, 3, ms, 2, 0), 0);
	return h;
}

/*
 * Pin the calling process to the i-th CPU it may run on: a test that wants
 * processes to race puts them on every CPU, not all on the least busy one.
 */
static void
pin_to_cpu(int i)
{
	cpu_set_t	 all, one;
	int		 c, n;

	if (sched_getaffinity(0, sizeof(all), &all) != 0 ||
	    (n = CPU_COUNT(&all)) < 2)
		return;
	i %= n;
	for (c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all) && i-- == 0) {
			CPU_ZERO(&one);
			CPU_SET(c, &one);
			(void)sched_setaffinity(0, sizeof(one), &one);
			return;
		}
}

static int
slot_of(struct shm_header *h, const char *key)
{
	int	 s;

	shm_lock(h);
	s = shm_find_key_locked(h, key);
	shm_unlock(h);
	return s;
}

/* name was made by key at t: a file, 48 h to live. */
static void
aff_file(struct shm_header *h, const char *name, int key, int64_t t)
{
	struct shm_aff_note	 n = { name, SHM_RES_FILE, key, t,
				    t + 48LL * 3600 * 1000, 0, 0 };

	shm_affinity_put(h, &n, t);
}

START_TEST(test_priority_and_sticky)
{
	struct shm_header	*h = setup(-1, -1, -1, -1);
	struct shm_pick		 p;
	int			 ex[1];

	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p1");
	shm_settle(h, &p, NULL, NOW);
	/* Sticky: p1 again. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p1");
	shm_cool(h, &p, NOW + 30000, SHM_R_RPM);
	shm_release(h, &p);
	/* p1 cools: p2 takes over and stays even after p1 recovers. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p2");
	shm_settle(h, &p, NULL, NOW);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW + 31000, &p), 0);
	ck_assert_str_eq(p.key_str, "p2");
	shm_settle(h, &p, NULL, NOW);
	/* Other models are not affected by m0's cooling. */
	ck_assert_int_eq(shm_pick(h, 1, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p1");
	shm_settle(h, &p, NULL, NOW);
	/* Excluded keys are skipped: p2 tried, p1 cooling at NOW -> s1. */
	ex[0] = slot_of(h, "p2");
	ck_assert_int_eq(shm_pick(h, 0, 10, ex, 1, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "s1");
	shm_settle(h, &p, NULL, NOW);
	/* A retry elsewhere (p2 had a 5xx) leaves p2 sticky: it can serve. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p2");
	shm_destroy(h);
}
END_TEST

START_TEST(test_rpm_limit_and_wait)
{
	struct shm_header	*h = setup(-1, 2, -1, -1);
	struct shm_pick		 p;
	int			 i;

	/* 2 per minute per key, 3 keys: 6 fit, the 7th must wait. */
	for (i = 0; i < 6; i++) {
		ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), 0);
		shm_settle(h, &p, NULL, NOW);
	}
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), -1);
	ck_assert_int_eq(p.all_invalid, 0);
	/* The bucket of NOW leaves the window 60..65 s later. */
	ck_assert_int_gt(p.wait_ms, 55000);
	ck_assert_int_le(p.wait_ms, 65000);
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW + p.wait_ms, &p),
	    0);
	/* Unmetered requests (models list) are never held back. */
	ck_assert_int_eq(shm_pick(h, 0, -1, NULL, 0, -1, NOW, &p), 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_tpm_reservation_and_settle)
{
	struct shm_header	*h = setup(1000, -1, -1, -1);
	struct shm_pick		 p, q;
	struct shm_tokens	 t = { 100, 5, 0, 0, 105 };
	uint64_t		 tok;
	uint32_t		 req;
	int			 s;

	/* Reserve 600 on p1; another 600 cannot fit on p1 -> p2. */
	ck_assert_int_eq(shm_pick(h, 0, 600, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p1");
	ck_assert_int_eq(shm_pick(h, 0, 600, NULL, 0, -1, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "p2");
	/* Settle p with the real 100: room again on p1. */
	shm_settle(h, &p, &t, NOW);
	s = slot_of(h, "p1");
	shm_lock(h);
	shm_window(SHM_USAGE(h, s, 0), NOW / 1000, &tok, &req);
	shm_unlock(h);
	ck_assert_uint_eq(tok, 100);
	ck_assert_uint_eq(req, 1);
	ck_assert_uint_eq(SHM_USAGE(h, s, 0)->tpd_used, 100);
	ck_assert_uint_eq(SHM_USAGE(h, s, 0)->tokens[SHM_TOK_PROMPT], 100);
	ck_assert_uint_eq(SHM_USAGE(h, s, 0)->tokens[SHM_TOK_TOTAL], 105);
	ck_assert_uint_eq(SHM_USAGE(h, s, 0)->requests, 1);
	/* Release q: its reservation disappears entirely. */
	shm_release(h, &q);
	s = slot_of(h, "p2");
	shm_lock(h);
	shm_window(SHM_USAGE(h, s, 0), NOW / 1000, &tok, &req);
	shm_unlock(h);
	ck_assert_uint_eq(tok, 0);
	ck_assert_uint_eq(req, 0);
	/* A request bigger than the whole limit is judged against it. */
	ck_assert_int_eq(shm_pick(h, 0, 5000, NULL, 0, -1, NOW, &p), 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_exhaust_invalid)
{
	struct shm_header	*h = setup(-1, -1, -1, -1);
	struct shm_pick		 p;
	int			 i;

	h->next_reset = NOW + 3600000;
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), 0);
		shm_exhaust(h, &p, SHM_R_RPD);
		shm_release(h, &p);
	}
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), -1);
	ck_assert_int_eq(p.wait_ms, 3600000);
	/* Another model is still served. */
	ck_assert_int_eq(shm_pick(h, 1, 1, NULL, 0, -1, NOW, &p), 0);
	/* The daily reset brings them back. */
	shm_daily_reset(h, NOW, NOW + 86400000);
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), 0);
	/* Invalid keys: out for every model; all invalid -> all_invalid. */
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(shm_pick(h, 1, 1, NULL, 0, -1, NOW, &p), 0);
		shm_invalidate(h, &p, "API_KEY_INVALID", 1000);
		shm_release(h, &p);
	}
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, -1, NOW, &p), -1);
	ck_assert_int_eq(p.all_invalid, 1);
	ck_assert_int_eq(p.wait_ms, -1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_prefer)
{
	struct shm_header	*h = setup(-1, -1, -1, -1);
	struct shm_pick		 p;
	int			 s = slot_of(h, "s1");

	aff_file(h, "files/abc", s, NOW);
	ck_assert_int_eq(shm_affinity_get(h, "files/abc", NOW), s);
	ck_assert_int_eq(shm_affinity_get(h, "files/zzz", NOW), -1);
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, s, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "s1");
	shm_cool(h, &p, NOW + 5000, SHM_R_429);
	shm_release(h, &p);
	/* The owner cools: wait for it, do not go to another project. */
	ck_assert_int_eq(shm_pick(h, 0, 1, NULL, 0, s, NOW, &p), -1);
	ck_assert_int_eq(p.wait_ms, 5000);
	shm_destroy(h);
}
END_TEST

START_TEST(test_unknown_model)
{
	struct shm_header	*h = setup(123, -1, -1, -1);
	int			 m;

	m = shm_model_slot(h, "gemini-9-ultra");
	ck_assert_int_eq(m, 2);
	ck_assert_str_eq(SHM_MODELS(h)[m].name, "gemini-9-ultra");
	ck_assert_int_eq(SHM_MODELS(h)[m].tpm_limit, 123);
	ck_assert_int_eq(SHM_MODELS(h)[m].configured, 0);
	ck_assert_int_eq(shm_model_slot(h, "gemini-9-ultra"), 2);
	ck_assert_int_eq(shm_model_slot(h, "m1"), 1);
	shm_destroy(h);
}
END_TEST

/*
 * Many processes pick at once against rpm CONC_RPM x 3 keys: reservations
 * under the lock mean exactly 3 x CONC_RPM succeed, never more, and the
 * window counts each of them once.  The children, spread over every CPU,
 * wait on a pipe until all exist, then race through CONC_PICKS picks each
 * (a third more than there is room for): without the lock, two of them
 * see the same last room, or one's count overwrites another's, and more
 * than 3 x CONC_RPM succeed.
 */
#define CONC_CHILDREN	40
#define CONC_PICKS	2000
#define CONC_RPM	20000

START_TEST(test_concurrent_reservations)
{
	struct shm_header	*h = setup(-1, CONC_RPM, -1, -1);
	int			 go[2], res[2], i, n, ok = 0, st;
	uint32_t		 req;
	uint64_t		 tok;
	pid_t			 pid;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	for (i = 0; i < CONC_CHILDREN; i++) {
		pid = fork();
		ck_assert_int_ne(pid, -1);
		if (pid == 0) {
			struct shm_pick	 pk;
			char		 c;
			int		 j;

			close(go[1]);
			close(res[0]);
			pin_to_cpu(i);
			/* EOF once the parent closes its end: all start. */
			if (read(go[0], &c, 1) != 0)
				_exit(1);
			for (j = n = 0; j < CONC_PICKS; j++)
				n += shm_pick(h, 0, 1, NULL, 0, -1, NOW,
				    &pk) == 0;
			_exit(write(res[1], &n, sizeof(n)) == sizeof(n) ?
			    0 : 1);
		}
	}
	close(go[0]);
	close(res[1]);
	close(go[1]);		/* the start */
	for (i = 0; i < CONC_CHILDREN; i++) {
		ck_assert_int_eq(read(res[0], &n, sizeof(n)), sizeof(n));
		ok += n;
	}
	while (wait(&st) > 0)
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(ok, 3 * CONC_RPM);
	shm_lock(h);
	for (i = 0; i < 3; i++) {
		shm_window(SHM_USAGE(h, i, 0),
		    (uint32_t)(NOW / 1000), &tok, &req);
		ck_assert_uint_eq(req, CONC_RPM);
		ck_assert_uint_eq(SHM_USAGE(h, i, 0)->rpd_used, CONC_RPM);
	}
	shm_unlock(h);
	shm_destroy(h);
}
END_TEST

/* Requests that cost no quota: any valid key, whatever its state. */
START_TEST(test_quota_free_ignores_state)
{
	struct shm_header	*h = setup(-1, -1, -1, -1);
	struct shm_pick		 p;
	int			 all, k1, k2;

	/* p1 sticky, then cooling; p2 exhausted; s1 invalid. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	shm_cool(h, &p, NOW + 30000, SHM_R_RPM);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p2");
	shm_exhaust(h, &p, SHM_R_RPD);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "s1");
	shm_invalidate(h, &p, "test", 1000);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), -1);
	ck_assert_int_eq(p.all_invalid, 0);
	/* A models list still goes out, to the first key in order. */
	ck_assert_int_eq(shm_pick(h, 0, -1, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p1");
	ck_assert_int_eq(p.reserved, 0);
	shm_settle(h, &p, NULL, NOW);
	ck_assert_int_eq(shm_free_ms(h, 0, -1, NOW, &all), 0);
	/* But never to an invalid key. */
	k1 = slot_of(h, "p1");
	k2 = slot_of(h, "p2");
	shm_lock(h);
	SHM_KEYS(h)[k1].invalid = 1;
	SHM_KEYS(h)[k2].invalid = 1;
	shm_unlock(h);
	ck_assert_int_eq(shm_pick(h, 0, -1, NULL, 0, -1, NOW, &p), -1);
	ck_assert_int_eq(p.all_invalid, 1);
	ck_assert_int_eq(shm_free_ms(h, 0, -1, NOW, &all), -1);
	ck_assert_int_eq(all, 1);
	shm_destroy(h);
}
END_TEST

/* When the earliest key frees, the keys this request tried included. */
START_TEST(test_free_counts_tried_keys)
{
	struct shm_header	*h = setup(-1, -1, -1, -1);
	struct shm_pick		 p;
	int			 ex[3], all;
	uint64_t		 errors;

	/* p1 cooling 30 s, p2 (tried now) 20 s, s1 (tried) 25 s. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	shm_cool(h, &p, NOW + 30000, SHM_R_RPM);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "p2");
	shm_cool(h, &p, NOW + 20000, SHM_R_RPM);
	ex[0] = p.key;
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, ex, 1, -1, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "s1");
	shm_cool(h, &p, NOW + 25000, SHM_R_RPM);
	ex[1] = p.key;
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, ex, 2, -1, NOW, &p), -1);
	ck_assert_int_eq(p.wait_ms, 30000);	/* p1: the one left to use */
	ck_assert_int_eq(p.free_ms, 20000);	/* p2: the earliest of all */
	ck_assert_int_eq(shm_free_ms(h, 0, 10, NOW, &all), 20000);
	ck_assert_int_eq(all, 0);
	/* Excluding every key: none to wait for, one frees in 20 s. */
	ex[2] = slot_of(h, "p1");
	ck_assert_int_eq(shm_pick(h, 0, 10, ex, 3, -1, NOW, &p), -1);
	ck_assert_int_eq(p.wait_ms, -1);
	ck_assert_int_eq(p.free_ms, 20000);

	/* A request whose client left before it went out: its room comes
	 * back and no error is counted. */
	ck_assert_int_eq(shm_pick(h, 1, 10, NULL, 0, -1, NOW, &p), 0);
	shm_lock(h);
	errors = SHM_USAGE(h, p.key, 1)->errors;
	shm_unlock(h);
	ex[0] = p.key;
	shm_cancel(h, &p);
	ck_assert_int_eq(p.key, -1);
	shm_lock(h);
	ck_assert_uint_eq(SHM_USAGE(h, ex[0], 1)->errors, errors);
	ck_assert_uint_eq(SHM_USAGE(h, ex[0], 1)->rpd_used, 0);
	ck_assert_uint_eq(SHM_USAGE(h, ex[0], 1)->tpd_used, 0);
	shm_unlock(h);
	shm_destroy(h);
}
END_TEST

/*
 * One rule for a cell's state: a key whose daily counter reached its
 * limit is exhausted for the picker exactly when the dashboard says so,
 * even for a request that would add nothing to it; one below the limit is
 * available to a request that fits and passed over for one that does not.
 */
START_TEST(test_one_state_rule)
{
	struct shm_header	*h = setup(-1, -1, 100, -1);
	struct shm_pick		 p;
	struct shm_usage	*u;
	uint32_t		 why;
	int			 p1 = slot_of(h, "p1");

	u = SHM_USAGE(h, p1, 0);
	u->tpd_used = 90;
	ck_assert_uint_eq(shm_cell_state(SHM_MODELS(h), u, NOW, &why),
	    SHM_AVAILABLE);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_int_eq(p.key, p1);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 11, NULL, 0, -1, NOW, &p), 0);
	ck_assert_int_ne(p.key, p1);	/* does not fit: another key */
	shm_release(h, &p);
	ck_assert_uint_eq(shm_cell_state(SHM_MODELS(h), u, NOW, &why),
	    SHM_AVAILABLE);

	u->tpd_used = 100;
	ck_assert_uint_eq(shm_cell_state(SHM_MODELS(h), u, NOW, &why),
	    SHM_EXHAUSTED);
	ck_assert_uint_eq(why, SHM_R_TPD);
	ck_assert_int_eq(shm_pick(h, 0, 0, NULL, 0, p1, NOW, &p), -1);

	/* A cooldown that ran out is over, for both. */
	u->tpd_used = 0;
	u->state = SHM_COOLING;
	u->reason = SHM_R_429;
	u->cooldown_until = NOW;
	ck_assert_uint_eq(shm_cell_state(SHM_MODELS(h), u, NOW, &why),
	    SHM_AVAILABLE);
	ck_assert_uint_eq(why, SHM_R_NONE);
	ck_assert_int_eq(shm_pick(h, 0, 0, NULL, 0, p1, NOW, &p), 0);
	shm_release(h, &p);

	/* A stray state (a torn write) counts as the worst, never more. */
	u->state = 7;
	u->reason = 99;
	ck_assert_uint_eq(shm_cell_state(SHM_MODELS(h), u, NOW, &why),
	    SHM_EXHAUSTED);
	ck_assert_uint_eq(why, SHM_R_NONE);
	shm_destroy(h);
}
END_TEST

Suite *
pick_suite(void)
{
	Suite	*s = suite_create("pick");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_priority_and_sticky);
	tcase_add_test(tc, test_rpm_limit_and_wait);
	tcase_add_test(tc, test_tpm_reservation_and_settle);
	tcase_add_test(tc, test_exhaust_invalid);
	tcase_add_test(tc, test_prefer);
	tcase_add_test(tc, test_unknown_model);
	tcase_add_test(tc, test_quota_free_ignores_state);
	tcase_add_test(tc, test_free_counts_tried_keys);
	tcase_add_test(tc, test_one_state_rule);
	suite_add_tcase(s, tc);
	/* 40 processes x 2000 picks under ASan on a busy machine. */
	tc = tcase_create("concurrency");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_concurrent_reservations);
	suite_add_tcase(s, tc);
	return s;
}
