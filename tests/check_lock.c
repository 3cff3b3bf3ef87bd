/*
 * Shared memory: robust-lock recovery, publishing a config, the scoreboard.
 */
#include <sys/wait.h>

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "shm.h"

static struct shm_header *
make(uint32_t keys, uint32_t models)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;

	shm_sizes_for(keys, models, 8, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_check(h), 0);
	return h;
}

static void
publish3(struct shm_header *h, const char *a, const char *b, const char *c)
{
	struct shm_key_spec	 ks[3] = {
		{ a, "aaaaaaaa", "a…", 0 },
		{ b, "bbbbbbbb", "b…", 0 },
		{ c, "cccccccc", "c…", 1 },
	};
	struct shm_model_spec	 ms[2] = {
		{ "gemini-2.5-pro", 100, -1, 5, -1 },
		{ "gemini-2.5-flash", 200, -1, 10, -1 },
	};

	ck_assert_int_eq(shm_publish(h, ks, c ? 3 : 2, ms, 2, 1), 0);
}

/* A child dies holding the lock mid-update; the next locker recovers. */
START_TEST(test_owner_dies)
{
	struct shm_header	*h = make(3, 2);
	struct shm_model	*m;
	pid_t			 pid;
	int			 st;

	publish3(h, "k1", "k2", "k3");
	m = SHM_MODELS(h);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		shm_lock(h);
		/* A half-done update: an index that points nowhere. */
		m[0].current_key = 999;
		SHM_USAGE(h, 0, 0)->state = 77;
		SHM_USAGE(h, 0, 0)->win[0].requests = 0xffffffffu;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	shm_lock(h);		/* must not block forever */
	ck_assert_int_eq(m[0].current_key, -1);
	ck_assert_uint_eq(SHM_USAGE(h, 0, 0)->state, SHM_AVAILABLE);
	ck_assert_uint_eq(SHM_USAGE(h, 0, 0)->win[0].requests, 0);
	ck_assert_uint_eq(h->lock_recoveries, 1);
	shm_unlock(h);
	/* And the lock works normally afterwards, in another process too. */
	pid = fork();
	if (pid == 0) {
		shm_lock(h);
		shm_unlock(h);
		_exit(h->lock_recoveries == 1 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	shm_destroy(h);
}
END_TEST

/* Killed by a signal while holding the lock: same recovery. */
START_TEST(test_owner_killed)
{
	struct shm_header	*h = make(3, 2);
	int			 p[2], st;
	pid_t			 pid;
	char			 c;

	publish3(h, "k1", "k2", "k3");
	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		shm_lock(h);
		(void)write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	shm_lock(h);
	ck_assert_uint_eq(h->lock_recoveries, 1);
	shm_unlock(h);
	shm_destroy(h);
}
END_TEST

/* Keys that stay keep their slot and usage across a publish. */
START_TEST(test_publish_keeps_usage)
{
	struct shm_header	*h = make(3, 2);
	struct shm_key		*k = SHM_KEYS(h);
	int			 s2;
	uint64_t		 gen;

	publish3(h, "k1", "k2", "k3");
	ck_assert_uint_eq(h->nkeys, 3);
	ck_assert_uint_eq(h->nmodels, 2);
	ck_assert_int_eq(h->default_model, 1);
	shm_lock(h);
	s2 = shm_find_key_locked(h, "k2");
	shm_unlock(h);
	ck_assert_int_ge(s2, 0);
	SHM_USAGE(h, s2, 0)->tokens[SHM_TOK_TOTAL] = 1234;
	k[s2].invalid = 1;
	gen = h->generation;
	/* k1 goes, k4 comes, k2 stays. */
	publish3(h, "k4", "k2", NULL);
	ck_assert_uint_eq(h->generation, gen + 1);
	shm_lock(h);
	ck_assert_int_eq(shm_find_key_locked(h, "k2"), s2);
	ck_assert_int_eq(shm_find_key_locked(h, "k1"), -1);
	ck_assert_int_eq(shm_find_key_locked(h, "k3"), -1);
	ck_assert_int_ge(shm_find_key_locked(h, "k4"), 0);
	ck_assert_uint_eq(SHM_USAGE(h, shm_find_key_locked(h, "k4"),
	    0)->tokens[SHM_TOK_TOTAL], 0);
	shm_unlock(h);
	ck_assert_uint_eq(SHM_USAGE(h, s2, 0)->tokens[SHM_TOK_TOTAL], 1234);
	ck_assert_uint_eq(k[s2].invalid, 0);	/* a reload clears invalid */
	shm_destroy(h);
}
END_TEST

/* A bigger segment gets the old one's usage, sticky keys and resources. */
START_TEST(test_carry)
{
	struct shm_header	*a = make(3, 2), *b = make(300, 2);
	struct shm_aff_note	 n;
	int			 s;

	publish3(a, "k1", "k2", "k3");
	SHM_USAGE(a, 2, 1)->tokens[SHM_TOK_PROMPT] = 42;
	SHM_MODELS(a)[1].current_key = 2;
	memset(&n, 0, sizeof(n));
	n.name = "files/abc";
	n.key = 2;
	n.created = 1000;
	shm_affinity_put(a, &n, 1000);
	n.name = "files/gone";
	n.key = 0;			/* k1: not in b */
	shm_affinity_put(a, &n, 1000);
	publish3(b, "k3", "k9", NULL);
	shm_carry(b, a);
	ck_assert_int_eq(shm_affinity_get(b, "files/abc", 2000), 0);
	ck_assert_int_eq(shm_affinity_get(b, "files/gone", 2000), -1);
	shm_lock(b);
	s = shm_find_key_locked(b, "k3");
	shm_unlock(b);
	ck_assert_int_eq(s, 0);
	ck_assert_uint_eq(SHM_USAGE(b, s, 1)->tokens[SHM_TOK_PROMPT], 42);
	ck_assert_int_eq(SHM_MODELS(b)[1].current_key, s);
	shm_destroy(a);
	shm_destroy(b);
}
END_TEST

/* 10,000 keys: the segment is sized from the config, and publish works. */
START_TEST(test_many_keys)
{
	struct shm_header	*h = make(10000, 2);
	struct shm_key_spec	*ks = calloc(10000, sizeof(*ks));
	struct shm_model_spec	 ms[1] = { { "m", -1, -1, -1, -1 } };
	char			(*names)[16] = calloc(10000, 16);
	int			 i;

	for (i = 0; i < 10000; i++) {
		snprintf(names[i], 16, "key%05d", i);
		ks[i].key = names[i];
		ks[i].id = "x";
		ks[i].masked = "x";
	}
	ck_assert_int_eq(shm_publish(h, ks, 10000, ms, 1, 0), 0);
	ck_assert_uint_eq(h->nkeys, 10000);
	/* Republishing the same keys keeps every slot. */
	ck_assert_int_eq(shm_publish(h, ks, 10000, ms, 1, 0), 0);
	ck_assert_uint_eq(h->nkeys, 10000);
	ck_assert_str_eq(SHM_KEYS(h)[9999].key, "key09999");
	/* Proportional: well under 100 MB for 10,000 keys x 1 model. */
	ck_assert_uint_lt(h->size, 100u * 1024 * 1024);
	free(ks);
	free(names);
	shm_destroy(h);
}
END_TEST

START_TEST(test_board)
{
	struct shm_header	*h = make(1, 1);
	int			 s, t, total, idle, busy;

	s = board_claim(h, 100);
	t = board_claim(h, 101);
	ck_assert_int_ge(s, 0);
	ck_assert_int_ne(s, t);
	board_set(h, s, SHM_W_IDLE, NULL);
	board_set(h, t, SHM_W_UPSTREAM, "POST /v1beta/models/x");
	board_count(h, &total, &idle, &busy);
	ck_assert_int_eq(total, 2);
	ck_assert_int_eq(idle, 1);
	ck_assert_int_eq(busy, 1);
	ck_assert_int_eq(board_find(h, 101), t);
	board_release(h, t);
	board_count(h, &total, &idle, &busy);
	ck_assert_int_eq(total, 1);
	ck_assert_str_eq(board_state_name(SHM_W_UPSTREAM), "upstream");
	shm_destroy(h);
}
END_TEST

Suite *
lock_suite(void)
{
	Suite	*s = suite_create("shm");
	TCase	*tc = tcase_create("core");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_owner_dies);
	tcase_add_test(tc, test_owner_killed);
	tcase_add_test(tc, test_publish_keeps_usage);
	tcase_add_test(tc, test_carry);
	tcase_add_test(tc, test_many_keys);
	tcase_add_test(tc, test_board);
	suite_add_tcase(s, tc);
	return s;
}
