/*
 * resname.c: the names of the resources that belong to one project, as
 * requests name them and answers create, expire or finish them.
 */
#ifndef RESNAME_H
#define RESNAME_H

#include <stddef.h>
#include <stdint.h>

#include "shm.h"

#define RES_HOUR_MS		(3600LL * 1000)
#define RES_FILE_TTL_MS		(48 * RES_HOUR_MS)	/* files, uploads */
#define RES_CACHE_TTL_MS	RES_HOUR_MS	/* Gemini's default ttl */
#define RES_DONE_MARGIN_MS	(48 * RES_HOUR_MS)	/* after it finished */
#define RES_RUNNING_TTL_MS	(96 * RES_HOUR_MS)	/* never seen done */
#define RES_MAX_REFS		16	/* names one request may name */
#define RES_MAX_FACTS		64	/* names one answer may teach */

struct res_ref {
	char		 name[SHM_AFF_NAME];
	uint32_t	 kind;		/* enum shm_res */
};

/* What an answer says about one resource. */
struct res_fact {
	char		 name[SHM_AFF_NAME];
	uint32_t	 kind;
	int64_t		 expires;	/* ms since epoch; 0: until deleted */
	int		 keep_expiry;	/* a known one keeps its own */
	int		 done;
};

int		 res_root(const char *, const char *, struct res_ref *,
		    size_t *);
size_t		 res_refs(const char *, size_t, struct res_ref *, size_t,
		    size_t);
int		 res_path(const char *, size_t, struct res_ref *, int *);
int64_t		 res_default_expiry(uint32_t, int64_t);
size_t		 res_learn(const char *, size_t, int64_t, struct res_fact *,
		    size_t);
int64_t		 res_rfc3339(const char *);

#endif /* RESNAME_H */
