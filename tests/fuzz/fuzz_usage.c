/*
 * Fuzz target: the usage file's reader (persist_parse() of
 * src/persist_in.c) on any text, into a fresh segment holding three
 * configured keys and two models, as at start.
 *
 * Invariants: the reader accepts the text (0) or says why not (-1 and a
 * message); it never adds or drops a configured key; every cell it leaves
 * has a known state and reason, a cooldown only when cooling, and window
 * buckets on their 5-second stamps; and what the writer makes of the
 * tables afterwards (persist_json(), the next save) the reader accepts in
 * turn, into another fresh segment.
 */
#include <bsd/string.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "persist.h"
#include "persist_int.h"
#include "shm.h"

#define NOW	((int64_t)1800000000000LL)	/* a fixed wall clock, ms */
#define NKEYS	3

static struct shm_header *
fresh(void)
{
	static const char *const keys[NKEYS] = { "key-one", "key-two",
	    "key-three" };
	static const char *const ids[NKEYS] = { "aaaaaaaa", "bbbbbbbb",
	    "aaaaaaaa" };	/* two keys share an id, as ids can */
	struct shm_key_spec	 ks[NKEYS];
	struct shm_model_spec	 ms[2];
	struct shm_sizes	 sz;
	struct shm_header	*h;
	int			 i;

	log_init(0, "/dev/null", LOG_ERR);
	memset(ks, 0, sizeof(ks));
	memset(ms, 0, sizeof(ms));
	for (i = 0; i < NKEYS; i++) {
		ks[i].key = keys[i];
		ks[i].id = ids[i];
		ks[i].masked = "k...y";
	}
	ks[1].project = ks[2].project = "team-a";	/* a named project too */
	ms[0].name = "m0";
	ms[0].tpm_limit = 1000;
	ms[0].tpd_limit = ms[0].rpm_limit = ms[0].rpd_limit = -1;
	ms[1].name = "m1";
	ms[1].tpm_limit = ms[1].tpd_limit = -1;
	ms[1].rpm_limit = 5;
	ms[1].rpd_limit = 100;
	shm_sizes_for(NKEYS, 2, 1, 1, &sz);
	if ((h = shm_create(&sz, 0)) == NULL ||
	    shm_publish(h, ks, NKEYS, ms, 2, 0) == -1)
		abort();
	return h;
}

static void
check_tables(struct shm_header *h)
{
	const struct shm_usage	*u;
	uint32_t		 k, m, n = 0;
	int			 b;

	for (k = 0; k < h->nkeys; k++)
		n += SHM_KEYS(h)[k].in_use != 0;
	FUZZ_CHECK(n == NKEYS, "%u keys configured after a load", n);
	FUZZ_CHECK(h->nmodels <= h->max_models, "%u models", h->nmodels);
	for (k = 0; k < h->nkeys; k++)
		for (m = 0; m < h->nmodels; m++) {
			u = SHM_USAGE(h, k, m);
			FUZZ_CHECK(u->state <= SHM_EXHAUSTED, "state %u",
			    u->state);
			FUZZ_CHECK(u->reason < SHM_R_N, "reason %u",
			    u->reason);
			FUZZ_CHECK(u->state == SHM_COOLING ||
			    u->cooldown_until == 0, "cooldown while %u",
			    u->state);
			for (b = 0; b < SHM_WIN_BUCKETS; b++)
				FUZZ_CHECK(u->win[b].stamp % SHM_WIN_SPAN == 0,
				    "bucket stamp %u", u->win[b].stamp);
		}
	FUZZ_CHECK(h->nprojects == 1, "%u projects", h->nprojects);
	for (m = 0; m < h->nmodels; m++) {
		u = SHM_PUSAGE(h, 0, m);
		FUZZ_CHECK(u->state <= SHM_EXHAUSTED, "project state %u",
		    u->state);
		FUZZ_CHECK(u->state == SHM_COOLING || u->cooldown_until == 0,
		    "project cooldown while %u", u->state);
	}
}

/* What the writer makes of h, read back into a fresh segment. */
static void
round_trip(struct shm_header *h)
{
	struct config		*cfg;
	struct shm_snap		 s;
	struct persist_fps	 f;
	struct shm_header	*h2;
	cJSON			*root;
	char			*text, err[256];

	if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
		abort();
	(void)strlcpy(cfg->reset_after, "00:00", sizeof(cfg->reset_after));
	(void)strlcpy(cfg->timezone, "UTC", sizeof(cfg->timezone));
	if (persist_snap(h, SHM_SNAP_AFFINITY, NOW, &s, &f) == -1)
		abort();
	root = persist_json(&s, &f, cfg, NOW);
	shm_snap_free(&s);
	persist_fps_free(&f);
	if (root == NULL || (text = cJSON_PrintUnformatted(root)) == NULL)
		abort();
	cJSON_Delete(root);
	h2 = fresh();
	FUZZ_CHECK(persist_parse(h2, "fuzz", text, strlen(text), NOW, NULL,
	    err, sizeof(err)) == 0, "the writer's own text refused: %s", err);
	check_tables(h2);
	shm_destroy(h2);
	cJSON_free(text);
	free(cfg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct shm_header	*h;
	struct persist_info	 pi;
	char			*text, err[256];
	int			 rv;

	if ((text = malloc(len + 1)) == NULL)
		return 0;
	memcpy(text, data, len);
	text[len] = '\0';
	h = fresh();
	err[0] = '\0';
	rv = persist_parse(h, "fuzz", text, len, NOW, &pi, err, sizeof(err));
	FUZZ_CHECK(rv == 0 || rv == -1, "persist_parse gave %d", rv);
	FUZZ_CHECK(rv == 0 || err[0] != '\0', "refused without a reason");
	check_tables(h);
	if (rv == 0)
		round_trip(h);
	shm_destroy(h);
	free(text);
	return 0;
}
