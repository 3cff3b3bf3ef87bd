/*
 * Projects: keys of one Google Cloud project share one set of counters
 * and one state per model; a key without a project is its own; a key
 * moved to another project on reload takes nothing with it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */

/* a1, a2 in project "team-a"; b1 in "team-b"; s1 its own.  m0: rpm 3. */
static const struct shm_key_spec base[4] = {
	{ "a1", "aaaaaaa1", "a1", 0, "team-a", "alice" },
	{ "a2", "aaaaaaa2", "a2", 0, "team-a", NULL },
	{ "b1", "bbbbbbb1", "b1", 0, "team-b", NULL },
	{ "s1", "sssssss1", "s1", 1, NULL, NULL },
};

static const struct shm_model_spec models[2] = {
	{ "m0", -1, -1, 3, -1 },
	{ "m1", -1, -1, -1, -1 },
};

static struct shm_header *
setup(void)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;

	shm_sizes_for(4, 2, 4, 2, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, base, 4, models, 2, 0), 0);
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

static uint32_t
project_of(struct shm_header *h, const char *key)
{
	return SHM_KEYS(h)[slot_of(h, key)].project;
}

static struct shm_usage *
pcell(struct shm_header *h, const char *key, int m)
{
	struct shm_usage	*u;
	int			 k = slot_of(h, key);

	shm_lock(h);
	u = shm_project_cell_locked(h, k, m);
	shm_unlock(h);
	return u;
}

START_TEST(test_same_project_same_value)
{
	struct shm_header	*h = setup();

	ck_assert_uint_eq(project_of(h, "a1"), project_of(h, "a2"));
	ck_assert_uint_ne(project_of(h, "a1"), project_of(h, "b1"));
	ck_assert(project_of(h, "a1") & SHM_PROJECT_NAMED);
	/* A key of its own project: its own slot, its own cells. */
	ck_assert_uint_eq(project_of(h, "s1"), (uint32_t)slot_of(h, "s1"));
	ck_assert_ptr_eq(pcell(h, "s1", 0), SHM_USAGE(h, slot_of(h, "s1"), 0));
	ck_assert_ptr_eq(pcell(h, "a1", 0), pcell(h, "a2", 0));
	ck_assert_str_eq(SHM_KEYS(h)[slot_of(h, "a1")].label, "alice");
	ck_assert_str_eq(SHM_KEYS(h)[slot_of(h, "a2")].label, "");
	ck_assert_uint_eq(h->nprojects, 2);
	shm_destroy(h);
}
END_TEST

/* The model's limits apply to the project: rpm 3 over a1 + a2 together. */
START_TEST(test_limits_per_project)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	int			 i, n_a = 0, k;

	for (i = 0; i < 8; i++) {
		/* Only team-a's keys may serve. */
		if (shm_pick(h, 0, 10, NULL, 0, slot_of(h, i % 2 ? "a2" : "a1"),
		    NOW, &p) == 0) {
			n_a++;
			k = p.key;
			ck_assert(k == slot_of(h, "a1") || k == slot_of(h, "a2"));
			shm_settle(h, &p, NULL, NOW);
		}
	}
	ck_assert_int_eq(n_a, 3);
	ck_assert_uint_eq(pcell(h, "a1", 0)->rpd_used, 3);
	/* Each key still has its own counts. */
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a1"), 0)->requests +
	    SHM_USAGE(h, slot_of(h, "a2"), 0)->requests, 3);
	/* team-b is untouched and can serve. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, slot_of(h, "b1"), NOW,
	    &p), 0);
	shm_destroy(h);
}
END_TEST

/* A 429 on a1 cools a2 too: the sibling is never tried. */
START_TEST(test_cool_whole_project)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;

	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_int_eq(p.key, slot_of(h, "a1"));
	shm_cool(h, &p, NOW + 30000, SHM_R_RPM);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, NOW, &p), 0);
	ck_assert_int_eq(p.key, slot_of(h, "b1"));
	shm_settle(h, &p, NULL, NOW);
	/* a2 alone: it waits for the project's cooldown. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, slot_of(h, "a2"), NOW,
	    &p), -1);
	ck_assert_int_eq(p.wait_ms, 30000);
	/* Another model is not affected. */
	ck_assert_int_eq(shm_pick(h, 1, 10, NULL, 0, slot_of(h, "a2"), NOW,
	    &p), 0);
	shm_settle(h, &p, NULL, NOW);
	/* Exhaustion too. */
	ck_assert_int_eq(shm_pick(h, 1, 10, NULL, 0, slot_of(h, "a1"), NOW,
	    &p), 0);
	shm_exhaust(h, &p, SHM_R_RPD);
	shm_release(h, &p);
	ck_assert_int_eq(shm_pick(h, 1, 10, NULL, 0, slot_of(h, "a2"), NOW,
	    &p), -1);
	shm_destroy(h);
}
END_TEST

/* Settling puts the truth on the key and on its project. */
START_TEST(test_settle_both)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;
	struct shm_tokens	 t = { 70, 5, 0, 0, 75 };

	ck_assert_int_eq(shm_pick(h, 1, 100, NULL, 0, slot_of(h, "a2"), NOW,
	    &p), 0);
	ck_assert_uint_eq(pcell(h, "a2", 1)->tpd_used, 100);
	shm_settle(h, &p, &t, NOW);
	ck_assert_uint_eq(pcell(h, "a1", 1)->tpd_used, 70);
	ck_assert_uint_eq(pcell(h, "a1", 1)->tokens[SHM_TOK_TOTAL], 75);
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a2"), 1)->tpd_used, 70);
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a2"), 1)->m_tokens[
	    SHM_TOK_TOTAL], 75);
	ck_assert_uint_eq(pcell(h, "a1", 1)->m_tokens[SHM_TOK_TOTAL], 0);
	/* A release gives the room back on both. */
	ck_assert_int_eq(shm_pick(h, 1, 100, NULL, 0, slot_of(h, "a1"), NOW,
	    &p), 0);
	shm_release(h, &p);
	ck_assert_uint_eq(pcell(h, "a1", 1)->tpd_used, 70);
	ck_assert_uint_eq(pcell(h, "a1", 1)->errors, 1);
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a1"), 1)->tpd_used, 0);
	/* A batch job counts on the key and on its project. */
	ck_assert_int_eq(shm_pick(h, 1, -1, NULL, 0, slot_of(h, "a2"), NOW,
	    &p), 0);
	shm_settle_batch(h, &p);
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a2"), 1)->batches, 1);
	ck_assert_uint_eq(pcell(h, "a1", 1)->batches, 1);
	shm_destroy(h);
}
END_TEST

/*
 * Reload: a2 moves to team-b.  team-a keeps what it spent, team-b gains
 * nothing; a1 cooling stays cooling; a project no key names is freed.
 */
START_TEST(test_reload_moves_nothing)
{
	struct shm_header	*h = setup();
	struct shm_key_spec	 ks[4];
	struct shm_pick		 p;
	int			 i, n;

	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0,
		    slot_of(h, "a2"), NOW, &p), 0);
		shm_settle(h, &p, NULL, NOW);
	}
	ck_assert_uint_eq(pcell(h, "a1", 0)->rpd_used, 2);
	memcpy(ks, base, sizeof(ks));
	ks[1].project = "team-b";
	ck_assert_int_eq(shm_publish(h, ks, 4, models, 2, 0), 0);
	ck_assert_uint_eq(project_of(h, "a2"), project_of(h, "b1"));
	ck_assert_uint_eq(pcell(h, "a1", 0)->rpd_used, 2);
	ck_assert_uint_eq(pcell(h, "b1", 0)->rpd_used, 0);
	/* a2's own counts stay with it. */
	ck_assert_uint_eq(SHM_USAGE(h, slot_of(h, "a2"), 0)->requests, 2);

	/* a2 leaves for a project of its own: it starts afresh for limits. */
	ks[1].project = NULL;
	ck_assert_int_eq(shm_publish(h, ks, 4, models, 2, 0), 0);
	ck_assert_uint_eq(project_of(h, "a2"), (uint32_t)slot_of(h, "a2"));
	ck_assert_uint_eq(pcell(h, "a2", 0)->rpd_used, 0);
	ck_assert_uint_eq(pcell(h, "a2", 0)->requests, 2);

	/* Nobody in team-a any more but a1; then a1 leaves too. */
	ks[0].project = "team-c";
	ck_assert_int_eq(shm_publish(h, ks, 4, models, 2, 0), 0);
	ck_assert_uint_eq(pcell(h, "a1", 0)->rpd_used, 0);
	n = 0;
	for (i = 0; i < (int)h->nprojects; i++)
		if (SHM_PROJECTS(h)[i].in_use) {
			ck_assert_str_ne(SHM_PROJECTS(h)[i].name, "team-a");
			n++;
		}
	ck_assert_int_eq(n, 2);	/* team-b, team-c */
	shm_destroy(h);
}
END_TEST

/*
 * A reload into a bigger segment carries a project's cells by name (and
 * a model's storm pause).
 */
START_TEST(test_carry_projects)
{
	struct shm_header	*h = setup(), *big;
	struct shm_sizes	 sz;
	struct shm_pick		 p;

	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, slot_of(h, "a1"), NOW,
	    &p), 0);
	shm_cool(h, &p, NOW + 5000, SHM_R_429);
	shm_settle(h, &p, NULL, NOW);
	SHM_MODELS(h)[0].paused_until = NOW + 9000;	/* a storm's pause */
	shm_sizes_for(40, 4, 8, 20, &sz);
	big = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(shm_publish(big, base, 4, models, 2, 0), 0);
	shm_carry(big, h);
	ck_assert_uint_eq(pcell(big, "a2", 0)->state, SHM_COOLING);
	ck_assert_uint_eq(pcell(big, "a2", 0)->rpd_used, 1);
	ck_assert_uint_eq(pcell(big, "b1", 0)->rpd_used, 0);
	ck_assert_int_eq(SHM_MODELS(big)[0].paused_until, NOW + 9000);
	shm_destroy(big);
	shm_destroy(h);
}
END_TEST

/*
 * A reload that renames every project needs no more room than the new
 * config's count: the old names are freed before the new take slots.
 */
START_TEST(test_rename_all_projects)
{
	struct shm_key_spec	 ks[8];
	struct shm_sizes	 sz;
	struct shm_header	*h;
	static char		 keys[8][8], ids[8][9], pa[8][8], pb[8][8];
	int			 i;

	memset(ks, 0, sizeof(ks));
	for (i = 0; i < 8; i++) {
		(void)snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		(void)snprintf(ids[i], sizeof(ids[i]), "%08d", i);
		(void)snprintf(pa[i], sizeof(pa[i]), "a%d", i);
		(void)snprintf(pb[i], sizeof(pb[i]), "b%d", i);
		ks[i].key = keys[i];
		ks[i].id = ids[i];
		ks[i].masked = keys[i];
		ks[i].project = pa[i];
	}
	shm_sizes_for(8, 2, 4, 0, &sz);		/* room for 8 projects */
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_uint_eq(h->max_projects, 8);
	ck_assert_int_eq(shm_publish(h, ks, 8, models, 2, 0), 0);
	for (i = 0; i < 8; i++)
		ks[i].project = pb[i];
	ck_assert_int_eq(shm_publish(h, ks, 8, models, 2, 0), 0);
	for (i = 0; i < 8; i++)
		ck_assert_str_eq(SHM_PROJECTS(h)[SHM_PROJECT_SLOT(
		    SHM_KEYS(h)[slot_of(h, keys[i])].project)].name, pb[i]);
	shm_destroy(h);
}
END_TEST

/* The daily reset clears the projects' day too. */
START_TEST(test_reset_projects)
{
	struct shm_header	*h = setup();
	struct shm_pick		 p;

	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, slot_of(h, "a1"), NOW,
	    &p), 0);
	shm_exhaust(h, &p, SHM_R_RPD);
	shm_settle(h, &p, NULL, NOW);
	shm_daily_reset(h, NOW, NOW + 86400000);
	ck_assert_uint_eq(pcell(h, "a2", 0)->state, SHM_AVAILABLE);
	ck_assert_uint_eq(pcell(h, "a2", 0)->rpd_used, 0);
	shm_destroy(h);
}
END_TEST

Suite *
project_suite(void)
{
	Suite	*s = suite_create("project");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_same_project_same_value);
	tcase_add_test(tc, test_limits_per_project);
	tcase_add_test(tc, test_cool_whole_project);
	tcase_add_test(tc, test_settle_both);
	tcase_add_test(tc, test_reload_moves_nothing);
	tcase_add_test(tc, test_carry_projects);
	tcase_add_test(tc, test_reset_projects);
	tcase_add_test(tc, test_rename_all_projects);
	suite_add_tcase(s, tc);
	return s;
}
