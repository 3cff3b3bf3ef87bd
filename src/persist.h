/*
 * persist.c: the usage file (master only).
 */
#ifndef PERSIST_H
#define PERSIST_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct config;
struct shm_header;
struct stat;

/* What the usage file said about the reset schedule, for reset.c. */
struct persist_info {
	int		 loaded;		/* a usage file was read */
	int64_t		 last_reset;		/* ms since the epoch, 0: none */
	int64_t		 next_reset;
	char		 reset_after[8];	/* the schedule it was for */
	char		 timezone[64];
};

#define PERSIST_ERROR	(-1)	/* not read: the path is not written */
#define PERSIST_LOADED	0
#define PERSIST_ABSENT	1
#define PERSIST_CORRUPT	2	/* moved aside to <name>.corrupt-<time> */

int		 persist_load(struct shm_header *, const struct config *,
		    int64_t, struct persist_info *);
int		 persist_save(struct shm_header *, const struct config *, int,
		    int64_t);
void		 persist_tick(struct shm_header *, const struct config *,
		    int64_t, int64_t);
void		 persist_fp(const char *, char [17]);	/* PERSIST_FP_LEN + 1 */

#endif /* PERSIST_H */
