/*
 * The worker pool's decisions (src/pool.c): from the counts the master
 * sees on a tick, what it forks or stops; which clients workers give up
 * first when the pool is full.
 */
#include <check.h>
#include <string.h>

#include "check_suites.h"
#include "config.h"
#include "pool.h"
#include "shm.h"

START_TEST(test_pool_plan)
{
	static const struct {
		int	 start, min_spare, max_spare, max;
		int	 total, idle;
		int	 spawn, stop;
	} cases[] = {
		/* Steady: enough idle, no more than max_spare. */
		{ 4, 2, 6, 16,		4, 3,		0, 0 },
		/* A worker died: the floor forks it again though 3 idle. */
		{ 4, 2, 6, 16,		3, 3,		1, 0 },
		/* Busy: too few idle, fork up to min_spare. */
		{ 4, 2, 6, 16,		8, 0,		2, 0 },
		/* ... but never past max. */
		{ 4, 2, 6, 16,		15, 0,		1, 0 },
		{ 4, 2, 6, 16,		16, 0,		0, 0 },
		/* Quiet again: idle beyond max_spare are told to go. */
		{ 4, 2, 6, 16,		12, 10,		0, 4 },
		/* At most POOL_STOP_MAX a tick. */
		{ 4, 2, 6, 64,		60, 40,		0, POOL_STOP_MAX },
		/* At start: the floor, at most POOL_SPAWN_MAX a tick. */
		{ 100, 2, 6, 200,	0, 0,		POOL_SPAWN_MAX, 0 },
		{ 4, 2, 6, 16,		0, 0,		4, 0 },
	};
	struct config		 cfg;
	struct pool_plan	 p;
	size_t			 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&cfg, 0, sizeof(cfg));
		cfg.start_workers = cases[i].start;
		cfg.min_spare = cases[i].min_spare;
		cfg.max_spare = cases[i].max_spare;
		cfg.max_workers = cases[i].max;
		pool_plan(cases[i].total, cases[i].idle, &cfg, &p);
		ck_assert_msg(p.spawn == cases[i].spawn && p.stop ==
		    cases[i].stop, "case %zu: spawn %d stop %d, want %d %d",
		    i, p.spawn, p.stop, cases[i].spawn, cases[i].stop);
	}
}
END_TEST

/* Kept-alive clients go first, then the oldest heads, then by slot. */
START_TEST(test_pool_yield_order)
{
	ck_assert(pool_yield_before(SHM_W_KEEPALIVE, 0, 5, SHM_W_READING, 1,
	    0));
	ck_assert(!pool_yield_before(SHM_W_READING, 1, 0, SHM_W_KEEPALIVE, 0,
	    5));
	ck_assert(pool_yield_before(SHM_W_READING, 100, 7, SHM_W_READING,
	    200, 1));
	ck_assert(!pool_yield_before(SHM_W_READING, 200, 1, SHM_W_READING,
	    100, 7));
	ck_assert(pool_yield_before(SHM_W_READING, 100, 1, SHM_W_READING,
	    100, 7));
	ck_assert(pool_yield_before(SHM_W_KEEPALIVE, 300, 1, SHM_W_KEEPALIVE,
	    100, 7));	/* between requests, age does not matter */
}
END_TEST

Suite *
pool_suite(void)
{
	Suite	*s = suite_create("pool");
	TCase	*tc = tcase_create("plan");

	tcase_add_test(tc, test_pool_plan);
	tcase_add_test(tc, test_pool_yield_order);
	suite_add_tcase(s, tc);
	return s;
}
