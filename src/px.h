/*
 * px.h: one request's journey through the proxy, struct px, shared by the
 * proxy's files: proxy.c (the journey), rewrite.c (the heads that cross
 * the proxy), relay.c (the answer to the client) and owner.c (which key
 * owns a named resource).  Nothing outside them
 * includes it: route.c knows the proxy by proxy.h.
 */
#ifndef PX_H
#define PX_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "shm.h"
#include "upstream.h"
#include "usagescan.h"

#define PX_ERRBODY_MAX		(64 * 1024)	/* error answers read whole */
#define PX_MAX_TRIED		64
#define PX_HEAD_MAX		(HTTP_MAX_HEAD + 4096)

/* What the client gets if no further attempt is made (px_give_up). */
#define PX_HELD_NONE	0	/* our own 429 or 503 */
#define PX_HELD_ANSWER	1	/* the upstream's error answer in ebody */
#define PX_HELD_FAULT	2	/* no answer: 502 or 504 (px_fault_status) */

enum px_kind {
	PX_OTHER,	/* models list, files, operations...: not metered */
	PX_GENERATE,	/* metered: generate, stream, embed, openai chat */
	PX_COUNT,	/* countTokens: a key, but no quota */
	PX_BATCH	/* a batch job created: counted as one, not metered */
};

struct conn;

struct px {
	struct conn		*c;
	struct upstream		*up;		/* the worker's upstream */
	const char		*path;
	size_t			 path_len;
	const char		*query;		/* after '?', or NULL */
	int			 openai;
	int			 upload;
	enum px_kind		 kind;
	int			 scan_mode;
	char			 model[CFG_NAME_MAX];
	int			 model_slot;
	int64_t			 est;
	int			 prefer;	/* key owning what it names */
	int			 learn;		/* the answer may name resources */
	char			 upload_id[1024];
	int			 tried[PX_MAX_TRIED];
	size_t			 ntried;
	int			 retried_fault;
	int			 sent;		/* requests sent upstream */
	int			 waited;	/* throttled at least once */
	int64_t			 wait_end;	/* mono ms: no waiting after */
	int			 held;		/* PX_HELD_*: answer so far */
	enum up_fail		 fault;		/* PX_HELD_FAULT: how */
	char			*ebody;		/* an error answer, whole */
	ssize_t			 elen;
	int			 held_over;	/* ebody was cut at its cap */
	const char		*broken;	/* why the answer broke off */
	struct shm_pick		 pick;
	char			*head;		/* the upstream request head */
	size_t			 head_len;
	uint32_t		 storm_probe;	/* the half-open probe it holds */
	/* Last, and not zeroed with the rest (10 KiB a request):
	 * up_read_head() and gem_scan_init() set them up. */
	struct up_resp		 resp;
	struct gem_scan		 scan;
};

/* rewrite.c */
int		 rw_request_head(struct px *);
void		 rw_wipe_request_head(struct px *);
const char	*rw_answer_head(struct px *, int, int, int64_t, size_t *);

/* relay.c */
int		 relay_answer(struct px *);
ssize_t		 relay_read_error(struct px *, char *, size_t, int *);
void		 relay_pass_error(struct px *);
int		 relay_broken_why(enum up_fail);
int		 relay_cut_needs_reset(int, int);

/* owner.c */
int		 owner_find(struct px *);
void		 owner_feed(struct px *, const char *, size_t);
void		 owner_done(struct px *);
void		 owner_upload_url(struct px *, const char *);

#endif /* PX_H */
