/*
 * The workers' scoreboard, after Apache's scoreboard.h: one slot per worker
 * with its pid, what it is doing, how many requests it served and when its
 * current request started.  The master reads it to size the pool and the
 * dashboard shows it.
 *
 * No lock: a slot is claimed by the master (which alone forks, so claims
 * never race), then written only by its worker; readers tolerate a torn
 * read of one field, which is only ever shown or counted.
 */
#include <string.h>
#include <time.h>

#include "shm.h"

static int64_t
board_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Master: take a free slot for a child about to be forked; -1 if full. */
int
board_claim(struct shm_header *h, pid_t pid)
{
	struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t	 i;

	for (i = 0; i < h->max_workers; i++) {
		if (s[i].state != SHM_W_FREE)
			continue;
		memset(&s[i], 0, sizeof(s[i]));
		shm_live_clear(&s[i]);
		s[i].pid = pid;
		s[i].generation = h->generation;
		s[i].started = board_now();
		__atomic_store_n(&s[i].state, SHM_W_STARTING, __ATOMIC_RELEASE);
		return (int)i;
	}
	return -1;
}

/*
 * Master: the worker of this slot was reaped.  A Live session it held
 * (live.c) is over with it, however it died.
 */
void
board_release(struct shm_header *h, int slot)
{
	struct shm_slot	*s = SHM_SLOTS(h);

	if (slot < 0 || (uint32_t)slot >= h->max_workers)
		return;
	shm_live_clear(&s[slot]);
	s[slot].pid = 0;
	__atomic_store_n(&s[slot].state, SHM_W_FREE, __ATOMIC_RELEASE);
}

/* Worker: what it is doing now; req is "METHOD /path" or NULL. */
void
board_set(struct shm_header *h, int slot, enum shm_worker_state st,
    const char *req)
{
	struct shm_slot	*s = SHM_SLOTS(h) + slot;

	if (st == SHM_W_READING && s->req_start == 0)
		s->req_start = board_now();
	if (st == SHM_W_IDLE || st == SHM_W_KEEPALIVE) {
		s->req_start = 0;
		s->req[0] = '\0';
	}
	if (req != NULL) {
		size_t	n = strlen(req);

		if (n >= sizeof(s->req))
			n = sizeof(s->req) - 1;
		memcpy(s->req, req, n);
		s->req[n] = '\0';
	}
	__atomic_store_n(&s->state, st, __ATOMIC_RELEASE);
}

void
board_served(struct shm_header *h, int slot)
{
	__atomic_add_fetch(&SHM_SLOTS(h)[slot].requests, 1, __ATOMIC_RELAXED);
}

/* Master: the child forked for a slot board_claim() gave. */
void
board_set_pid(struct shm_header *h, int slot, pid_t pid)
{
	SHM_SLOTS(h)[slot].pid = pid;
}

/* A slot's state (enum shm_worker_state), as its worker last set it. */
uint32_t
board_state(const struct shm_header *h, int slot)
{
	return __atomic_load_n(&SHM_SLOTS(h)[slot].state, __ATOMIC_ACQUIRE);
}

/* Count live workers: idle ones wait in accept(), busy ones serve. */
void
board_count(const struct shm_header *h, int *total, int *idle, int *busy)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t		 i, st;

	*total = *idle = *busy = 0;
	for (i = 0; i < h->max_workers; i++) {
		st = __atomic_load_n(&s[i].state, __ATOMIC_ACQUIRE);
		if (st == SHM_W_FREE)
			continue;
		(*total)++;
		if (st == SHM_W_IDLE || st == SHM_W_STARTING)
			(*idle)++;
		else if (st != SHM_W_CLOSING)
			(*busy)++;
	}
}

/*
 * The slots in use, copied into out (room for max_workers) for showing;
 * a field torn by its worker's write is only shown.  Returns how many.
 */
size_t
board_copy(const struct shm_header *h, struct shm_slot *out)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t		 i, st;
	size_t			 n = 0;

	for (i = 0; i < h->max_workers; i++) {
		st = __atomic_load_n(&s[i].state, __ATOMIC_ACQUIRE);
		if (st == SHM_W_FREE)
			continue;
		out[n] = s[i];
		out[n].state = st;
		out[n].requests = __atomic_load_n(&s[i].requests,
		    __ATOMIC_RELAXED);
		out[n].req[sizeof(out[n].req) - 1] = '\0';
		n++;
	}
	return n;
}

int
board_find(const struct shm_header *h, pid_t pid)
{
	const struct shm_slot	*s = SHM_SLOTS(h);
	uint32_t		 i;

	for (i = 0; i < h->max_workers; i++)
		if (s[i].state != SHM_W_FREE && s[i].pid == pid)
			return (int)i;
	return -1;
}

const char *
board_state_name(uint32_t st)
{
	static const char *const names[] = {
		"free", "starting", "idle", "reading", "upstream", "writing",
		"keepalive", "closing"
	};

	return st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}
