/*
 * The worker pool's size, after Apache prefork's rule, for the master's
 * tick: fork while fewer than min_spare workers are idle (blocked in
 * accept, or starting) or fewer than start_workers are alive -- the
 * floor, so a dead worker is replaced even while enough others are idle
 * -- but never past max_workers; stop idle workers beyond max_spare.
 * Both are capped per tick, so a burst grows the pool in steps and an
 * idle spell shrinks it gently.  And, when the pool is full and clients
 * wait, which clients its workers give up first.  Functions of what they
 * are given alone: master.c and conn.c count, fork and signal.
 */
#include <stdint.h>

#include "config.h"
#include "pool.h"
#include "shm.h"

/* total: live workers not told to stop; idle: of them, idle or starting. */
void
pool_plan(int total, int idle, const struct config *cfg, struct pool_plan *p)
{
	int	 spawn, stop;

	spawn = cfg->min_spare - idle;
	if (spawn < cfg->start_workers - total)
		spawn = cfg->start_workers - total;
	if (spawn > cfg->max_workers - total)
		spawn = cfg->max_workers - total;
	if (spawn > POOL_SPAWN_MAX)
		spawn = POOL_SPAWN_MAX;
	stop = idle - cfg->max_spare;
	if (stop > POOL_STOP_MAX)
		stop = POOL_STOP_MAX;
	p->spawn = spawn > 0 ? spawn : 0;
	p->stop = stop > 0 ? stop : 0;
}

/*
 * When the pool is full and connections wait, the order in which workers
 * give up their clients (conn.c), lower first: kept-alive connections
 * between requests, then request heads by how long they have been
 * arriving (oldest first), then by slot.  Worker a in state st_a whose
 * request started at start_a, against b.
 */
int
pool_yield_before(uint32_t st_a, int64_t start_a, uint32_t a, uint32_t st_b,
    int64_t start_b, uint32_t b)
{
	if (st_a != st_b)
		return st_a == SHM_W_KEEPALIVE;
	if (st_a == SHM_W_READING && start_a != start_b)
		return start_a < start_b;
	return a < b;
}
