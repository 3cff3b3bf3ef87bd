/*
 * "live": {"max_message_bytes": 16777216, "ping_s": 20}: the Live API's
 * WebSocket sessions (live.c).  max_message_bytes bounds one message either
 * way (a longer one ends the session); ping_s is how often an idle side is
 * pinged, 0 for never.  Both optional; the block itself too.
 *
 * Called by config.c's cfg_build().  No global state, no locks.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"

#define CFG_LIVE_MESSAGE_MIN	1024		/* max_message_bytes: 1 KiB */
#define CFG_LIVE_MESSAGE_MAX	1073741824	/* ... to 1 GiB */
#define CFG_LIVE_PING_MAX	3600		/* ping_s: an hour at most */

static const char *const cfg_live_fields[] = { "max_message_bytes",
    "ping_s" };

int
cfg_live(struct cfg_parse *p, const cJSON *v)
{
	const cJSON	*f[2];
	int64_t		 max = CFG_DEF_LIVE_MAX_MESSAGE;
	int64_t		 ping = CFG_DEF_LIVE_PING_S;
	char		 got[64];

	if (v != NULL && !cJSON_IsObject(v))
		return cfg_err(p, "live", "must be an object "
		    "{\"max_message_bytes\": N, \"ping_s\": N} (got %s)",
		    cfg_what(v, got, sizeof(got)));
	if (v != NULL) {
		if (cfg_members(p, v, "live.", cfg_live_fields, 2, f) == -1)
			return -1;
		if (f[0] != NULL && cfg_int(p, f[0], "live.max_message_bytes",
		    1, CFG_LIVE_MESSAGE_MAX, 0, &max) == -1)
			return -1;
		if (max < CFG_LIVE_MESSAGE_MIN)
			return cfg_err(p, "live.max_message_bytes", "must be at "
			    "least %d (got %lld)", CFG_LIVE_MESSAGE_MIN,
			    (long long)max);
		if (f[1] != NULL && cfg_int(p, f[1], "live.ping_s", 0,
		    CFG_LIVE_PING_MAX, 0, &ping) == -1)
			return -1;
	}
	p->cfg->live_max_message = (size_t)max;
	p->cfg->live_ping_s = (int)ping;
	return 0;
}
