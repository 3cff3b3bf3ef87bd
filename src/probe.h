/*
 * probe.c: one probe of a key (GET /v1beta/models?pageSize=1, which costs
 * no quota) and the pace of probes; prober.c: the process that probes the
 * invalid keys on their schedule.
 */
#ifndef PROBE_H
#define PROBE_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct config;
struct shm_probe_conf;
struct shm_probe_res;

#define PROBE_TIMEOUT_S		10	/* one probe's wait, at most */
#define PROBE_MESSAGE_MAX	512

/*
 * At most per_s probes in any second: a ring of the last per_s probes'
 * completion times (monotonic ms).  A probe starts only once the one
 * per_s before it has been answered for a second, so even the upstream,
 * seeing each probe between its start and its answer, never counts more
 * than per_s in a second.
 */
struct probe_pace {
	int64_t		*done;
	int		 n;		/* per_s */
	int		 next;		/* the oldest entry */
};

/* probe.c */
int		 probe_key(const struct config *, const char *,
		    struct shm_probe_res *, char *, size_t);
void		 probe_conf(const struct config *, struct shm_probe_conf *);
int		 probe_pace_init(struct probe_pace *, int);
int64_t		 probe_pace_wait(const struct probe_pace *, int64_t);
void		 probe_pace_note(struct probe_pace *, int64_t);

/* prober.c */
pid_t		 prober_spawn(void);
void		 prober_main(void) __attribute__((__noreturn__));

#endif /* PROBE_H */
