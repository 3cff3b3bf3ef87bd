/*
 * Probing invalid keys (shm/probe.c, src/probe.c): the schedule's math
 * (first_s, doubling, max_s, the long interval of a deleted key, the
 * jitter's bounds), which keys are due, a probe's answer written back,
 * spent keys left alone, and the cap: 10,000 keys of 1,000 projects
 * marked invalid in the same second never get more than per_s probes in
 * a second, on a simulated clock driving the prober's own functions.
 */
#include <bsd/string.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "probe.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */
#define FIRST	60000
#define MAX	3600000

static const struct shm_probe_conf pc = { FIRST, MAX };

static struct shm_header *
setup(uint32_t nkeys, uint32_t per_project)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	*ks;
	struct shm_model_spec	 ms[2] = {
		{ "m0", -1, -1, -1, -1 },
		{ "m1", -1, -1, -1, -1 },
	};
	char			(*names)[40], (*projects)[16];
	uint32_t		 i;

	ks = calloc(nkeys, sizeof(*ks));
	names = calloc(nkeys, sizeof(*names));
	projects = calloc(nkeys, sizeof(*projects));
	ck_assert_ptr_nonnull(ks);
	ck_assert_ptr_nonnull(names);
	ck_assert_ptr_nonnull(projects);
	for (i = 0; i < nkeys; i++) {
		(void)snprintf(names[i], sizeof(names[i]), "%08x", i * 2654435761u);
		(void)snprintf(projects[i], sizeof(projects[i]), "p%u",
		    i / per_project);
		ks[i].key = names[i];
		ks[i].id = names[i];
		ks[i].masked = names[i];
		ks[i].project = projects[i];
	}
	shm_sizes_for(nkeys, 2, 4, nkeys / per_project, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, nkeys, ms, 2, 0), 0);
	free(ks);
	free(names);
	free(projects);
	return h;
}

static void
mark(struct shm_header *h, int k, int64_t when)
{
	struct shm_pick	 p;

	memset(&p, 0, sizeof(p));
	p.key = k;
	p.model = 0;
	p.generation = h->generation;
	(void)strlcpy(p.key_str, SHM_KEYS(h)[k].key, sizeof(p.key_str));
	shm_invalidate(h, &p, "API_KEY_INVALID", when);
}

static struct shm_probe_res
res(uint32_t kind, int status)
{
	struct shm_probe_res	 r;

	memset(&r, 0, sizeof(r));
	r.kind = kind;
	r.status = status;
	(void)strlcpy(r.why, status == 0 ? "connect: refused" :
	    "CONSUMER_SUSPENDED", sizeof(r.why));
	return r;
}

START_TEST(test_jitter_bounds)
{
	char		 id[16];
	int64_t		 j, lo = INT64_MAX, hi = 0;
	uint32_t	 i, n;

	for (i = 0; i < 5000; i++) {
		(void)snprintf(id, sizeof(id), "%08x", i * 40503u);
		for (n = 0; n < 4; n++) {
			j = shm_probe_jitter(id, n, FIRST);
			ck_assert_int_ge(j, FIRST - FIRST / 10);
			ck_assert_int_le(j, FIRST + FIRST / 10);
			ck_assert_int_eq(j, shm_probe_jitter(id, n, FIRST));
			lo = j < lo ? j : lo;
			hi = j > hi ? j : hi;
		}
	}
	/* It does spread: nearly the whole +-10 % is used. */
	ck_assert_int_lt(lo, FIRST - FIRST / 11);
	ck_assert_int_gt(hi, FIRST + FIRST / 11);
	ck_assert_int_eq(shm_probe_jitter("x", 0, MAX) > 0, 1);
}
END_TEST

START_TEST(test_interval)
{
	int64_t	 iv = FIRST, want = FIRST;
	int	 i;

	/* Doubling from first_s, capped at max_s. */
	for (i = 0; i < 10; i++) {
		iv = shm_probe_interval(&pc, iv, SHM_PROBE_REFUSED);
		want = want * 2 > MAX ? MAX : want * 2;
		ck_assert_int_eq(iv, want);
	}
	ck_assert_int_eq(shm_probe_interval(&pc, 0, SHM_PROBE_FAILED),
	    2 * FIRST);
	/* A deleted key: straight to max_s. */
	ck_assert_int_eq(shm_probe_interval(&pc, FIRST, SHM_PROBE_DELETED),
	    MAX);
}
END_TEST

START_TEST(test_schedule)
{
	struct shm_header	*h = setup(3, 1);
	struct shm_probe_res	 r;
	struct shm_key		*k = SHM_KEYS(h);
	char			 key[SHM_KEY_MAX];
	int64_t			 next, stamp, t, first;
	int			 due[4];

	/* Nothing invalid: nothing due. */
	ck_assert_uint_eq(shm_probe_due(h, NOW, &pc, due, 4, &next), 0);
	ck_assert_int_eq(next, INT64_MAX);
	mark(h, 1, NOW);
	mark(h, 1, NOW + 5000);		/* a second rejection: same mark */
	ck_assert_uint_eq(shm_probe_due(h, NOW, &pc, due, 4, &next), 0);
	first = next;
	ck_assert_int_ge(first, NOW + FIRST - FIRST / 10);
	ck_assert_int_le(first, NOW + FIRST + FIRST / 10);
	/* Off: nothing is ever due. */
	{
		struct shm_probe_conf off = { 0, MAX };
		ck_assert_uint_eq(shm_probe_due(h, first, &off, due, 4,
		    &next), 0);
	}
	ck_assert_uint_eq(shm_probe_due(h, first, &pc, due, 4, &next), 1);
	ck_assert_int_eq(due[0], 1);
	ck_assert_int_eq(shm_probe_take(h, 1, NULL, key, sizeof(key), &stamp),
	    1);
	ck_assert_str_eq(key, k[1].key);
	ck_assert_int_eq(stamp, NOW);
	ck_assert_int_eq(shm_probe_take(h, 0, NULL, key, sizeof(key), &stamp),
	    -1);	/* not invalid */

	/* Suspended: the interval doubles, +-10 %. */
	t = first + 300;
	r = res(SHM_PROBE_REFUSED, 403);
	ck_assert_int_eq(shm_probe_done(h, 1, key, stamp, t, &pc, &r), 0);
	ck_assert_int_ge(k[1].probe_next, t + 2 * FIRST - 2 * FIRST / 10);
	ck_assert_int_le(k[1].probe_next, t + 2 * FIRST + 2 * FIRST / 10);
	ck_assert_str_eq(k[1].invalid_why, "CONSUMER_SUSPENDED");
	ck_assert_int_eq(k[1].probe_status, 403);
	ck_assert_int_eq(h->m_probes[SHM_PROBE_REFUSED], 1);
	/* No answer: doubles again, and says why. */
	t = k[1].probe_next;
	r = res(SHM_PROBE_FAILED, 0);
	(void)shm_probe_done(h, 1, key, stamp, t, &pc, &r);
	ck_assert_int_ge(k[1].probe_next, t + 4 * FIRST - 4 * FIRST / 10);
	ck_assert_str_eq(k[1].probe_err, "connect: refused");
	/* Deleted: max_s. */
	t = k[1].probe_next;
	r = res(SHM_PROBE_DELETED, 400);
	(void)shm_probe_done(h, 1, key, stamp, t, &pc, &r);
	ck_assert_int_ge(k[1].probe_next, t + MAX - MAX / 10);
	ck_assert_int_le(k[1].probe_next, t + MAX + MAX / 10);
	/* 200: back, nothing scheduled. */
	t = k[1].probe_next;
	r = res(SHM_PROBE_OK, 200);
	ck_assert_int_eq(shm_probe_done(h, 1, key, stamp, t, &pc, &r), 1);
	ck_assert_int_eq(k[1].invalid, 0);
	ck_assert_int_eq(k[1].probe_next, 0);
	ck_assert_int_eq(k[1].probe_last, t);
	ck_assert_uint_eq(shm_probe_due(h, t + MAX * 2, &pc, due, 4, &next),
	    0);
	/* A slot that changed hands is not written. */
	ck_assert_int_eq(shm_probe_done(h, 1, "someone else", stamp, t, &pc,
	    &r), -1);
	/* An operator's probe finds a valid key deleted: marked. */
	ck_assert_int_eq(shm_probe_take(h, -1, k[2].id, key, sizeof(key),
	    &stamp), 2);
	ck_assert_int_eq(stamp, 0);
	r = res(SHM_PROBE_DELETED, 400);
	(void)shm_probe_done(h, 2, key, stamp, NOW, &pc, &r);
	ck_assert_int_eq(k[2].invalid, 1);
	ck_assert_int_ge(k[2].probe_next, NOW + MAX - MAX / 10);
	/* A reload makes every key valid, no probe scheduled. */
	ck_assert_int_eq(shm_probe_take(h, -1, "nosuchid", key, sizeof(key),
	    &stamp), -1);
	shm_destroy(h);
}
END_TEST

START_TEST(test_spent_not_probed)
{
	struct shm_header	*h = setup(20, 10);	/* 2 projects */
	struct shm_pick		 p;
	int64_t			 next;
	int			 due[4];

	/* Key 3's project (key 0's) spent its day on both models. */
	memset(&p, 0, sizeof(p));
	p.key = 0;
	p.generation = h->generation;
	(void)strlcpy(p.key_str, SHM_KEYS(h)[0].key, sizeof(p.key_str));
	p.model = 0;
	shm_exhaust(h, &p, SHM_R_RPD);
	p.model = 1;
	shm_exhaust(h, &p, SHM_R_RPD);
	shm_set_next_reset(h, NOW + 36000000);
	mark(h, 3, NOW);
	mark(h, 13, NOW);		/* the other project: probed */
	ck_assert_uint_eq(shm_probe_due(h, NOW + 2 * FIRST, &pc, due, 4,
	    &next), 1);
	ck_assert_int_eq(due[0], 13);
	ck_assert_int_ge(SHM_KEYS(h)[3].probe_next, NOW + 36000000 + FIRST -
	    FIRST / 10);
	ck_assert_int_le(SHM_KEYS(h)[3].probe_next, NOW + 36000000 + FIRST +
	    FIRST / 10);
	/* The daily reset frees the project: then it is probed. */
	shm_daily_reset(h, NOW + 36000000, NOW + 36000000 + 86400000);
	ck_assert_uint_eq(shm_probe_due(h, NOW + 36000000 + 2 * FIRST, &pc,
	    due, 4, &next), 2);
	shm_destroy(h);
}
END_TEST

/*
 * The prober's loop on a simulated clock: 10,000 keys in 1,000 projects
 * marked in the same second, each probe 20 ms, every answer a 403.  Over
 * 20 minutes, never more than per_s probes start in one second; the
 * prober keeps up to the cap while keys wait; and the jitter spreads the
 * first probes over 54..66 s after the marking.
 */
START_TEST(test_cap_10000_keys)
{
	enum { NKEYS = 10000, PER_S = 5, SPAN_S = 1200 };
	struct shm_header	*h = setup(NKEYS, 10);
	struct shm_probe_res	 r = res(SHM_PROBE_REFUSED, 403);
	struct probe_pace	 pace;
	static int		 per_sec[SPAN_S + 1];
	char			 key[SHM_KEY_MAX];
	int64_t			 t = NOW, mono = 1000000, next, stamp, w, n;
	int64_t			 total = 0, lo = INT64_MAX, hi = 0, step;
	int			 due[16], i, k, busy = 0;
	size_t			 nd, j;

	for (k = 0; k < NKEYS; k++)
		mark(h, k, NOW + k % 1000);
	ck_assert_int_eq(probe_pace_init(&pace, PER_S), 0);
	/* The first probes, scheduled: spread over 54..66 s. */
	ck_assert_uint_eq(shm_probe_due(h, t, &pc, due, 16, &next), 0);
	for (k = 0; k < NKEYS; k++) {
		n = SHM_KEYS(h)[k].probe_next - SHM_KEYS(h)[k].invalid_at;
		lo = n < lo ? n : lo;
		hi = n > hi ? n : hi;
	}
	ck_assert_int_ge(lo, FIRST - FIRST / 10);
	ck_assert_int_le(hi, FIRST + FIRST / 10);
	ck_assert_int_gt(hi - lo, FIRST / 6);
	while (t < NOW + (int64_t)SPAN_S * 1000) {
		nd = shm_probe_due(h, t, &pc, due, 16, &next);
		if (nd == 0) {
			step = next - t < 1000 ? next - t : 1000;
			t += step;
			mono += step;
			continue;
		}
		for (j = 0; j < nd; j++) {
			if ((w = probe_pace_wait(&pace, mono)) > 0) {
				t += w;
				mono += w;
			}
			ck_assert_int_eq(shm_probe_take(h, due[j], NULL, key,
			    sizeof(key), &stamp), due[j]);
			i = (int)((t - NOW) / 1000);
			if (i <= SPAN_S)
				per_sec[i]++;
			t += 20;
			mono += 20;
			probe_pace_note(&pace, mono);
			(void)shm_probe_done(h, due[j], key, stamp, t, &pc, &r);
			total++;
		}
	}
	for (i = 0; i <= SPAN_S; i++) {
		ck_assert_msg(per_sec[i] <= PER_S, "%d probes in second %d",
		    per_sec[i], i);
		if (i > 60 && i < SPAN_S)
			busy += per_sec[i] == PER_S;
	}
	/* Keys waited all along: the prober ran at the cap (a probe takes
	 * 20 ms, and the next five wait a second after the last five's
	 * answers: five in 1.02 s). */
	ck_assert_int_ge(busy, (SPAN_S - 70) * 8 / 10);
	ck_assert_int_ge(total, (int64_t)PER_S * (SPAN_S - 70) * 95 / 100);
	free(pace.done);
	shm_destroy(h);
}
END_TEST

Suite *
probe_suite(void)
{
	Suite	*s = suite_create("probe");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, test_jitter_bounds);
	tcase_add_test(tc, test_interval);
	tcase_add_test(tc, test_schedule);
	tcase_add_test(tc, test_spent_not_probed);
	suite_add_tcase(s, tc);
	tc = tcase_create("cap");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_cap_10000_keys);
	suite_add_tcase(s, tc);
	return s;
}
