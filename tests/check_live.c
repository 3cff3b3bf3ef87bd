/*
 * Live API sessions in the pool (shm/live.c): sessions_limit per project
 * and model, counted from the scoreboard; a session's request and its
 * usage; its end, by the worker or by the worker's death; a reload that
 * moves the scoreboard; picks racing for the last place.
 */
#include <sys/wait.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_suites.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */
#define WORKERS	8

/* a1, a2 in "team-a" (priority); b1 in "team-b"; s1 its own. */
static const struct shm_key_spec base[4] = {
	{ "a1", "aaaaaaa1", "a1", 0, "team-a", NULL },
	{ "a2", "aaaaaaa2", "a2", 0, "team-a", NULL },
	{ "b1", "bbbbbbb1", "b1", 1, "team-b", NULL },
	{ "s1", "sssssss1", "s1", 1, NULL, NULL },
};

/* m0: one session per project; m1: two; m2: none, but rpm 1. */
static const struct shm_model_spec models[3] = {
	{ "m0", -1, -1, -1, -1, 1 },
	{ "m1", -1, -1, -1, -1, 2 },
	{ "m2", -1, -1, 1, -1, -1 },
};

/* The tables, and every scoreboard slot claimed as a worker's. */
static struct shm_header *
setup(void)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	int			 i;

	shm_sizes_for(4, 3, WORKERS, 2, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, base, 4, models, 3, 0), 0);
	for (i = 0; i < WORKERS; i++)
		ck_assert_int_eq(board_claim(h, 1000 + i), i);
	return h;
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

/* ex[]: every key but those of team-a. */
static size_t
not_team_a(struct shm_header *h, int ex[2])
{
	ex[0] = slot_of(h, "b1");
	ex[1] = slot_of(h, "s1");
	return 2;
}

START_TEST(test_limit_per_project)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p, q;
	struct shm_slot		*s = SHM_SLOTS(h);
	int			 ex[2];
	size_t			 nex = not_team_a(h, ex);

	ck_assert_int_eq(shm_live_sessions(h, 0), 0);
	ck_assert_int_eq(shm_live_pick(h, 0, 0, NULL, 0, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "a1");
	ck_assert_int_eq(p.sessions_full, 0);
	ck_assert_int_eq(s[0].live_model, 0);
	ck_assert_int_eq(s[0].live_key, slot_of(h, "a1"));
	ck_assert_uint_eq(s[0].live_project, SHM_KEYS(h)[p.key].project);
	ck_assert_int_eq(shm_live_sessions(h, 0), 1);
	/* team-a holds its one session: a2 may not open another. */
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), -1);
	ck_assert_int_eq(q.key, -1);
	ck_assert_int_eq(q.sessions_full, 1);
	ck_assert_int_eq(q.all_invalid, 0);
	ck_assert_int_eq(s[1].live_model, -1);
	/* A key of another project serves. */
	ck_assert_int_eq(shm_live_pick(h, 1, 0, NULL, 0, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "b1");
	ck_assert_int_eq(shm_live_sessions(h, 0), 2);
	/* And a key of its own project: then no place is left. */
	ck_assert_int_eq(shm_live_pick(h, 2, 0, NULL, 0, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "s1");
	ck_assert_int_eq(shm_live_pick(h, 3, 0, NULL, 0, NOW, &q), -1);
	ck_assert_int_eq(q.sessions_full, 1);
	ck_assert_int_eq(shm_live_sessions(h, 0), 3);
	/* Ordinary requests do not care about sessions. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "a1");
	shm_destroy(h);
}
END_TEST

START_TEST(test_limit_per_model)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	int			 ex[2], i;
	size_t			 nex = not_team_a(h, ex);

	ck_assert_int_eq(shm_live_pick(h, 0, 0, ex, nex, NOW, &p), 0);
	/* m1 allows team-a two, whatever m0 holds. */
	ck_assert_int_eq(shm_live_pick(h, 1, 1, ex, nex, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "a1");
	ck_assert_int_eq(shm_live_pick(h, 2, 1, ex, nex, NOW, &p), 0);
	ck_assert_int_eq(shm_live_pick(h, 3, 1, ex, nex, NOW, &p), -1);
	ck_assert_int_eq(p.sessions_full, 1);
	ck_assert_int_eq(shm_live_sessions(h, 0), 1);
	ck_assert_int_eq(shm_live_sessions(h, 1), 2);
	/* m2 has no sessions_limit: only its rpm of 1 per project. */
	ck_assert_int_eq(shm_live_pick(h, 3, 2, NULL, 0, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "a1");
	ck_assert_int_eq(shm_live_pick(h, 4, 2, NULL, 0, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "b1");
	ck_assert_int_eq(shm_live_pick(h, 5, 2, NULL, 0, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "s1");
	ck_assert_int_eq(shm_live_pick(h, 6, 2, NULL, 0, NOW, &p), -1);
	ck_assert_int_eq(p.sessions_full, 0);
	ck_assert_int_gt(p.wait_ms, 0);
	ck_assert_int_eq(shm_live_sessions(h, 2), 3);
	/* A model met in a request gets the default's (m0's) limit. */
	i = shm_model_slot(h, "m-new");
	ck_assert_int_eq(i, 3);
	ck_assert_int_eq(SHM_MODELS(h)[i].sessions_limit, 1);
	ck_assert_int_eq(shm_live_pick(h, 6, i, ex, nex, NOW, &p), 0);
	ck_assert_int_eq(shm_live_pick(h, 7, i, ex, nex, NOW, &p), -1);
	ck_assert_int_eq(p.sessions_full, 1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_end_frees)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p, q;
	int			 ex[2];
	size_t			 nex = not_team_a(h, ex);

	ck_assert_int_eq(shm_live_pick(h, 0, 0, ex, nex, NOW, &p), 0);
	shm_live_open(h, &p, NOW);
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), -1);
	shm_live_end(h, 0, &p, 1);
	ck_assert_int_eq(p.key, -1);
	ck_assert_int_eq(SHM_SLOTS(h)[0].live_model, -1);
	ck_assert_int_eq(shm_live_sessions(h, 0), 0);
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "a1");
	shm_destroy(h);
}
END_TEST

/* kill -9 mid-session: the master reaps the worker, its slot frees. */
START_TEST(test_killed_worker)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p, q;
	int			 ex[2];
	size_t			 nex = not_team_a(h, ex);

	ck_assert_int_eq(shm_live_pick(h, 2, 0, ex, nex, NOW, &p), 0);
	shm_live_open(h, &p, NOW);
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), -1);
	board_release(h, 2);
	ck_assert_int_eq(shm_live_sessions(h, 0), 0);
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), 0);
	/* The slot, claimed again, holds nothing. */
	ck_assert_int_eq(board_claim(h, 2000), 2);
	ck_assert_int_eq(SHM_SLOTS(h)[2].live_model, -1);
	ck_assert_int_eq(shm_live_sessions(h, 0), 1);
	shm_destroy(h);
}
END_TEST

/* A fresh segment's slots, free ones too, hold no session. */
START_TEST(test_fresh_slots)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	uint32_t		 i;

	shm_sizes_for(4, 3, WORKERS, 2, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, base, 4, models, 3, 0), 0);
	for (i = 0; i < h->max_workers; i++)
		ck_assert_int_eq(SHM_SLOTS(h)[i].live_model, -1);
	ck_assert_int_eq(shm_live_sessions(h, 0), 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_open_counts_one_request)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	struct shm_usage	*u, *pu;
	uint64_t		 tok;
	uint32_t		 req, minute = (uint32_t)(NOW / 60000);

	ck_assert_int_eq(shm_live_pick(h, 0, 1, NULL, 0, NOW, &p), 0);
	u = SHM_USAGE(h, p.key, 1);
	shm_lock(h);
	pu = shm_project_cell_locked(h, p.key, 1);
	shm_unlock(h);
	ck_assert_ptr_ne(u, pu);
	/* One request reserved, no tokens. */
	ck_assert_int_eq(p.reserved, 0);
	ck_assert_uint_eq(u->rpd_used, 1);
	ck_assert_uint_eq(pu->rpd_used, 1);
	ck_assert_uint_eq(u->tpd_used, 0);
	shm_window(pu, (uint32_t)(NOW / 1000), &tok, &req);
	ck_assert_uint_eq(req, 1);
	ck_assert_uint_eq(tok, 0);
	ck_assert_uint_eq(u->requests, 0);
	shm_live_open(h, &p, NOW);
	/* Counted as served; p still names the key. */
	ck_assert_int_ge(p.key, 0);
	ck_assert_str_eq(p.key_str, "a1");
	ck_assert_uint_eq(u->requests, 1);
	ck_assert_uint_eq(pu->requests, 1);
	ck_assert_uint_eq(u->rpd_used, 1);
	ck_assert_uint_eq(shm_minute_get(SHM_KEYS(h)[p.key].history, minute,
	    &req), 0);
	ck_assert_uint_eq(req, 1);
	(void)shm_minute_get(SHM_MODELS(h)[1].history, minute, &req);
	ck_assert_uint_eq(req, 1);
	/* Its end takes nothing back. */
	shm_live_end(h, 0, &p, 1);
	ck_assert_uint_eq(u->rpd_used, 1);
	ck_assert_uint_eq(u->requests, 1);
	ck_assert_uint_eq(u->errors, 0);
	shm_window(u, (uint32_t)(NOW / 1000), &tok, &req);
	ck_assert_uint_eq(req, 1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_end_without_open_releases)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	struct shm_usage	*u, *pu;
	uint64_t		 tok;
	uint32_t		 req;

	ck_assert_int_eq(shm_live_pick(h, 0, 1, NULL, 0, NOW, &p), 0);
	u = SHM_USAGE(h, p.key, 1);
	shm_lock(h);
	pu = shm_project_cell_locked(h, p.key, 1);
	shm_unlock(h);
	shm_live_end(h, 0, &p, 0);
	ck_assert_int_eq(p.key, -1);
	ck_assert_int_eq(SHM_SLOTS(h)[0].live_model, -1);
	ck_assert_uint_eq(u->rpd_used, 0);
	ck_assert_uint_eq(pu->rpd_used, 0);
	ck_assert_uint_eq(u->requests, 0);
	ck_assert_uint_eq(u->errors, 1);
	shm_window(u, (uint32_t)(NOW / 1000), &tok, &req);
	ck_assert_uint_eq(req, 0);
	shm_window(pu, (uint32_t)(NOW / 1000), &tok, &req);
	ck_assert_uint_eq(req, 0);
	shm_destroy(h);
}
END_TEST

START_TEST(test_usage)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	struct shm_usage	*u, *pu;
	const struct shm_tokens	 t1 = { 100, 20, 5, 3, 128 };
	const struct shm_tokens	 t2 = { 50, 10, 0, 0, 60 };
	uint64_t		 tok;
	uint32_t		 req, later = (uint32_t)(NOW / 1000) + 7;
	uint32_t		 minute = (uint32_t)(NOW / 60000);

	ck_assert_int_eq(shm_live_pick(h, 0, 1, NULL, 0, NOW, &p), 0);
	shm_live_open(h, &p, NOW);
	u = SHM_USAGE(h, p.key, 1);
	shm_lock(h);
	pu = shm_project_cell_locked(h, p.key, 1);
	shm_unlock(h);
	/* Two turns, seconds apart: added, into the bucket of their time. */
	shm_live_usage(h, &p, &t1, (int64_t)later * 1000);
	shm_live_usage(h, &p, &t2, (int64_t)later * 1000 + 500);
	ck_assert_uint_eq(u->tokens[SHM_TOK_PROMPT], 150);
	ck_assert_uint_eq(u->tokens[SHM_TOK_CANDIDATES], 30);
	ck_assert_uint_eq(u->tokens[SHM_TOK_CACHED], 5);
	ck_assert_uint_eq(u->tokens[SHM_TOK_THOUGHTS], 3);
	ck_assert_uint_eq(u->tokens[SHM_TOK_TOTAL], 188);
	ck_assert_uint_eq(u->m_tokens[SHM_TOK_PROMPT], 150);
	ck_assert_uint_eq(u->m_tokens[SHM_TOK_TOTAL], 188);
	ck_assert_uint_eq(pu->tokens[SHM_TOK_PROMPT], 150);
	ck_assert_uint_eq(pu->tokens[SHM_TOK_TOTAL], 188);
	ck_assert_uint_eq(pu->m_tokens[SHM_TOK_PROMPT], 0);
	ck_assert_uint_eq(u->tpd_used, 150);
	ck_assert_uint_eq(pu->tpd_used, 150);
	ck_assert_uint_eq(u->requests, 1);
	ck_assert_uint_eq(pu->requests, 1);
	ck_assert_uint_eq(shm_bucket_locked(pu, later)->tokens, 150);
	shm_window(pu, later, &tok, &req);
	ck_assert_uint_eq(tok, 150);
	ck_assert_uint_eq(req, 1);
	shm_window(u, later, &tok, &req);
	ck_assert_uint_eq(tok, 150);
	ck_assert_uint_eq(shm_minute_get(SHM_KEYS(h)[p.key].history, minute,
	    &req), 188);
	ck_assert_uint_eq(req, 1);
	ck_assert_uint_eq(shm_minute_get(SHM_MODELS(h)[1].history, minute,
	    &req), 188);
	ck_assert_uint_eq(req, 1);
	/* No usage after the end: p is spent. */
	shm_live_end(h, 0, &p, 1);
	shm_live_usage(h, &p, &t1, (int64_t)later * 1000);
	ck_assert_uint_eq(u->tokens[SHM_TOK_PROMPT], 150);
	shm_destroy(h);
}
END_TEST

/* A reload that dropped the key: its session's usage counts nowhere. */
START_TEST(test_usage_after_reload)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	const struct shm_tokens	 t = { 100, 20, 0, 0, 120 };
	int			 k;

	ck_assert_int_eq(shm_live_pick(h, 0, 1, NULL, 0, NOW, &p), 0);
	k = p.key;
	ck_assert_int_eq(shm_publish(h, base + 1, 3, models, 3, 0), 0);
	shm_live_usage(h, &p, &t, NOW);
	ck_assert_uint_eq(SHM_USAGE(h, k, 1)->tokens[SHM_TOK_PROMPT], 0);
	shm_live_end(h, 0, &p, 1);
	ck_assert_int_eq(shm_live_sessions(h, 1), 0);
	shm_destroy(h);
}
END_TEST

/* A key moved to another project: its session counts against the new. */
START_TEST(test_reload_moves_project)
{
	struct shm_header	*h = setup();
	struct shm_key_spec	 ks[4];
	struct shm_pick		 p, q;
	int			 ex[2];
	size_t			 nex = not_team_a(h, ex);

	ck_assert_int_eq(shm_live_pick(h, 0, 0, ex, nex, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "a1");
	memcpy(ks, base, sizeof(ks));
	ks[0].project = "team-b";
	ck_assert_int_eq(shm_publish(h, ks, 4, models, 3, 0), 0);
	ck_assert_uint_eq(SHM_SLOTS(h)[0].live_project,
	    SHM_KEYS(h)[slot_of(h, "b1")].project);
	/* team-a is free again; team-b is full. */
	ck_assert_int_eq(shm_live_pick(h, 1, 0, ex, nex, NOW, &q), 0);
	ck_assert_str_eq(q.key_str, "a2");
	ex[0] = slot_of(h, "a2");
	ck_assert_int_eq(shm_live_pick(h, 2, 0, ex, nex, NOW, &q), -1);
	ck_assert_int_eq(q.sessions_full, 1);
	shm_destroy(h);
}
END_TEST

/* A reload that outgrew the segment: the sessions move with the board. */
START_TEST(test_carry)
{
	struct shm_header	*h = setup(), *n;
	struct shm_sizes	 sz;
	struct shm_key_spec	 ks[5];
	struct shm_model_spec	 ms[4];
	struct shm_pick		 p;
	int			 ex[3], i;

	ck_assert_int_eq(shm_live_pick(h, 3, 1, NULL, 0, NOW, &p), 0);
	ck_assert_int_eq(shm_live_pick(h, 4, 1, NULL, 0, NOW, &p), 0);
	ck_assert_str_eq(p.key_str, "a1");
	ck_assert_int_eq(shm_live_pick(h, 5, 2, NULL, 0, NOW, &p), 0);
	/* New key and model first: every slot number changes. */
	ks[0] = (struct shm_key_spec){ "n1", "nnnnnnn1", "n1", 0, "team-n",
	    NULL };
	memcpy(ks + 1, base, sizeof(base));
	ms[0] = (struct shm_model_spec){ "mx", -1, -1, -1, -1, -1 };
	memcpy(ms + 1, models, sizeof(models));
	shm_sizes_for(5, 4, WORKERS * 2, 3, &sz);
	n = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(n);
	ck_assert_int_eq(shm_publish(n, ks, 5, ms, 4, 1), 0);
	shm_carry(n, h);
	ck_assert_int_eq(shm_live_sessions(n, 0), 0);
	ck_assert_int_eq(shm_live_sessions(n, 2), 2);
	ck_assert_int_eq(shm_live_sessions(n, 3), 1);
	ck_assert_int_eq(SHM_SLOTS(n)[3].live_key, 1);
	for (i = WORKERS; i < WORKERS * 2; i++)
		ck_assert_int_eq(SHM_SLOTS(n)[i].live_model, -1);
	/* team-a's two places on m1 are taken in the new segment too. */
	ex[0] = 0;	/* n1 */
	ex[1] = 3;	/* b1 */
	ex[2] = 4;	/* s1 */
	ck_assert_str_eq(SHM_KEYS(n)[3].key, "b1");
	ck_assert_int_eq(board_claim(n, 3000), WORKERS);
	ck_assert_int_eq(shm_live_pick(n, WORKERS, 2, ex, 3, NOW, &p), -1);
	ck_assert_int_eq(p.sessions_full, 1);
	shm_destroy(h);
	shm_destroy(n);
}
END_TEST

#define CONC_CHILDREN	WORKERS
#define CONC_ROUNDS	300

/*
 * One child's race: pick a session on m0, check under the lock that no
 * project holds more than its one, end it; again.  Returns violations.
 */
static int
race(struct shm_header *h, int slot)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	struct shm_pick		 p;
	uint32_t		 i, n;
	int			 r, bad = 0;

	for (r = 0; r < CONC_ROUNDS; r++) {
		if (shm_live_pick(h, slot, 0, NULL, 0, NOW, &p) == -1) {
			if (!p.sessions_full)
				bad++;
			continue;
		}
		shm_lock(h);
		for (i = n = 0; i < h->max_workers; i++)
			n += s[i].live_model == 0 &&
			    s[i].live_project == p.project;
		shm_unlock(h);
		bad += n != 1;
		shm_live_end(h, slot, &p, 0);
	}
	/* The last round holds its place, if it gets one. */
	return bad * 2 + (shm_live_pick(h, slot, 0, NULL, 0, NOW, &p) == 0);
}

START_TEST(test_concurrent_picks)
{
	struct shm_header	*h = setup();
	int			 go[2], res[2], i, n, bad = 0, held = 0, st;
	pid_t			 pid;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	for (i = 0; i < CONC_CHILDREN; i++) {
		pid = fork();
		ck_assert_int_ne(pid, -1);
		if (pid == 0) {
			char	 c;

			close(go[1]);
			close(res[0]);
			/* EOF once the parent closes its end: all start. */
			if (read(go[0], &c, 1) != 0)
				_exit(1);
			n = race(h, i);
			_exit(write(res[1], &n, sizeof(n)) == sizeof(n) ?
			    0 : 1);
		}
	}
	close(go[0]);
	close(res[1]);
	close(go[1]);		/* the start */
	for (i = 0; i < CONC_CHILDREN; i++) {
		ck_assert_int_eq(read(res[0], &n, sizeof(n)), sizeof(n));
		bad += n / 2;
		held += n % 2;
	}
	while (wait(&st) > 0)
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(bad, 0);
	/* Three projects, one place each. */
	ck_assert_int_eq(held, 3);
	ck_assert_int_eq(shm_live_sessions(h, 0), 3);
	shm_destroy(h);
}
END_TEST

Suite *
live_suite(void)
{
	Suite	*s = suite_create("live");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_limit_per_project);
	tcase_add_test(tc, test_limit_per_model);
	tcase_add_test(tc, test_end_frees);
	tcase_add_test(tc, test_killed_worker);
	tcase_add_test(tc, test_fresh_slots);
	tcase_add_test(tc, test_open_counts_one_request);
	tcase_add_test(tc, test_end_without_open_releases);
	tcase_add_test(tc, test_usage);
	tcase_add_test(tc, test_usage_after_reload);
	tcase_add_test(tc, test_reload_moves_project);
	tcase_add_test(tc, test_carry);
	tcase_add_test(tc, test_concurrent_picks);
	suite_add_tcase(s, tc);
	return s;
}
