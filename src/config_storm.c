/*
 * "storm": {"keys": 3, "window_s": 10}: when keys distinct projects get a
 * 429 their own usage does not explain, for one model within window_s,
 * the model pauses pool-wide (shm/storm.c).  "keys": 0 turns storms off.
 *
 * Called by config.c's cfg_build().  No global state, no locks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"
#include "shm.h"

#define CFG_STORM_WINDOW_MAX	3600	/* window_s: an hour at most */

static const char *const cfg_storm_fields[] = { "keys", "window_s" };

int
cfg_storm(struct cfg_parse *p, const cJSON *v)
{
	const cJSON	*f[2];
	int64_t		 keys = CFG_DEF_STORM_KEYS;
	int64_t		 window = CFG_DEF_STORM_WINDOW_S;
	char		 got[64];

	if (v != NULL && !cJSON_IsObject(v))
		return cfg_err(p, "storm", "must be an object {\"keys\": N, "
		    "\"window_s\": N} (got %s)", cfg_what(v, got, sizeof(got)));
	if (v != NULL) {
		if (cfg_members(p, v, "storm.", cfg_storm_fields, 2, f) == -1)
			return -1;
		if (f[0] != NULL && cfg_int(p, f[0], "storm.keys", 0,
		    SHM_STORM_MAX, 0, &keys) == -1)
			return -1;
		if (f[1] != NULL && cfg_int(p, f[1], "storm.window_s", 1,
		    CFG_STORM_WINDOW_MAX, 0, &window) == -1)
			return -1;
	}
	p->cfg->storm_keys = (int)keys;
	p->cfg->storm_window_s = (int)window;
	return 0;
}
