/*
 * pool.c: how many workers the master forks or stops on a tick; which
 * clients the workers give up first when the pool is full.
 */
#ifndef POOL_H
#define POOL_H

#include <stdint.h>

struct config;

#define POOL_SPAWN_MAX	32	/* forks per tick, at most */
#define POOL_STOP_MAX	8	/* idle workers told to go per tick */

struct pool_plan {
	int	 spawn;		/* workers to fork now (back-off allowing) */
	int	 stop;		/* idle workers to stop, when none is forked */
};

void	 pool_plan(int, int, const struct config *, struct pool_plan *);
int	 pool_yield_before(uint32_t, int64_t, uint32_t, uint32_t, int64_t,
	    uint32_t);

#endif /* POOL_H */
