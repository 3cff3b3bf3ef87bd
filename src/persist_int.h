/*
 * Between the usage file's three parts: persist.c (when to read and
 * write, the file itself), persist_out.c (the tables as JSON) and
 * persist_in.c (JSON back into the tables).
 */
#ifndef PERSIST_INT_H
#define PERSIST_INT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "shm.h"

#define PERSIST_VERSION		1
#define PERSIST_NUM_MAX		9007199254740992LL	/* 2^53 */
#define PERSIST_FP_LEN		16
#define PERSIST_AFF_MAX_AGE_MS	(48LL * 3600 * 1000)	/* files expire */

struct config;
struct persist_info;

/* A cell's counters as the file names them, in the file's order. */
struct persist_count {
	const char	*name;
	size_t		 off;		/* of a uint64_t in struct shm_usage */
};

#define PERSIST_NCOUNTS		(5 + SHM_TOK_N)
extern const struct persist_count persist_counts[PERSIST_NCOUNTS];

#define PERSIST_COUNT(u, i) \
	(*(uint64_t *)((char *)(u) + persist_counts[i].off))
#define PERSIST_COUNT_C(u, i) \
	(*(const uint64_t *)((const char *)(u) + persist_counts[i].off))

/* Each key slot's second fingerprint, "" for slots not in use. */
struct persist_fps {
	char		(*fp)[PERSIST_FP_LEN + 1];
	size_t		 n;
	int		 oom;
};

int		 persist_snap(struct shm_header *, unsigned, int64_t,
		    struct shm_snap *, struct persist_fps *);
void		 persist_fps_free(struct persist_fps *);

/* persist_out.c */
cJSON		*persist_json(const struct shm_snap *,
		    const struct persist_fps *, const struct config *,
		    int64_t);

/* persist_in.c */
int		 persist_parse(struct shm_header *, const char *, const char *,
		    size_t, int64_t, struct persist_info *, char *, size_t);

#endif /* PERSIST_INT_H */
