/*
 * Small things shared by every process: clocks and the process state.
 */
#include <time.h>

#include "looper.h"
#include "util.h"

/* Wall-clock milliseconds since the epoch: what until-times are kept in. */
int64_t
now_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic milliseconds: for timeouts and durations. */
int64_t
mono_ms(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What this process knows about itself (see struct looper). */
struct looper	 looper = { .listen_fd = -1, .slot = -1 };
