/*
 * A verdict of classify.c (or livemsg.c, for a Live session's close)
 * applied to the key and model of a pick, and logged: cool, exhaust or
 * invalidate in shared memory.  status is the upstream's HTTP status, or
 * the close code of a Live session; retrying says whether another key is
 * tried after an upstream fault.
 */
#include <stdint.h>
#include <syslog.h>

#include "classify.h"
#include "log.h"
#include "looper.h"
#include "shm.h"
#include "util.h"
#include "verdict.h"

void
verdict_apply(const struct shm_pick *p, const char *model, int status,
    const struct gem_verdict *v, int retrying)
{
	switch (v->action) {
	case GEM_COOL:
		shm_cool(looper.shm, p, now_ms() + v->delay_ms, v->reason);
		log_info("key=%s model=%s status=%d cooling %lld ms: %s",
		    p->id, model, status, (long long)v->delay_ms, v->why);
		break;
	case GEM_EXHAUST:
		shm_exhaust(looper.shm, p, v->reason);
		log_info("key=%s model=%s status=%d exhausted until the daily "
		    "reset: %s", p->id, model, status, v->why);
		break;
	case GEM_INVALID:
		shm_invalidate(looper.shm, p, v->why, now_ms());
		log_warnx("key=%s rejected by the upstream (status=%d %s): out "
		    "of the pool until a reload", p->id, status, v->why);
		break;
	case GEM_RETRY:
		log_info("key=%s model=%s status=%d: upstream fault%s", p->id,
		    model, status, retrying ? ", retrying on another key" : "");
		break;
	case GEM_PASS:
		break;
	}
}
