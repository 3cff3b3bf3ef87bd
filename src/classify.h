/*
 * classify.c: what an upstream answer that is not 2xx means for its key.
 */
#ifndef CLASSIFY_H
#define CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

/*
 * What to do with a key after an upstream answer that is not 2xx.
 * reason is an enum shm_reason (SHM_R_*), kept as the uint32_t that
 * struct shm_usage stores; why is short, for logs and the dashboard, and
 * never holds a key.
 */
enum gem_action {
	GEM_PASS = 0,		/* hand the answer to the client; key untouched */
	GEM_COOL,		/* key x model rate-limited for delay_ms */
	GEM_EXHAUST,		/* key x model spent until the daily reset */
	GEM_INVALID,		/* key rejected: out of the pool for all models */
	GEM_RETRY		/* upstream fault: retry once on another key */
};

#define GEM_COOL_DEFAULT_MS	60000	/* bare 429, per-minute quota */
#define GEM_WHY_MAX		64
#define GEM_NAMED_MAX		4	/* quotas a verdict carries */

struct gem_verdict {
	enum gem_action	 action;
	uint32_t	 reason;	/* enum shm_reason */
	int64_t		 delay_ms;	/* GEM_COOL: how long to cool */
	char		 why[GEM_WHY_MAX];
	/* A 429's own words, for the storm check (shm/storm.c). */
	int64_t		 retry_ms;	/* the delay it asked for, -1: none */
	size_t		 nnamed;	/* quotas it names (QuotaFailure) */
	uint32_t	 named_kind[GEM_NAMED_MAX];	/* enum shm_reason */
	int64_t		 named_value[GEM_NAMED_MAX];	/* quotaValue, -1 */
};

void		 gem_classify(int, const char *, size_t, struct gem_verdict *);
const char	*gem_action_name(enum gem_action);
int		 gem_retry_delay_parse(const char *, int64_t *);

#endif /* CLASSIFY_H */
