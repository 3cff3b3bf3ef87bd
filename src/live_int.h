/*
 * live_int.h: one Live API session as live.c (the handshakes, the key,
 * the attempts) and liverelay.c (the frames both ways) share it.  Nothing
 * else includes it: route.c knows the Live API by live.h.
 */
#ifndef LIVE_INT_H
#define LIVE_INT_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "shm.h"
#include "ws.h"

#define LIVE_TRIED_MAX		64
#define LIVE_EARLY_MAX		(8u << 20)	/* bytes sent before setupComplete */
#define LIVE_HIGH_WATER		(4u << 20)	/* queued: stop reading the other */
#define LIVE_CLOSE_WAIT_MS	2000		/* for the peer's close */
#define LIVE_FRAGMENTS_MAX	1024

struct conn;
struct upstream;

/* A message the client sent before the session was open, to send again. */
struct live_early {
	int			 op;
	uint8_t			*data;
	size_t			 len;
};

/* One side's close frame, as it came. */
struct live_close {
	int			 got;
	int			 code;
	char			 reason[WS_REASON_MAX + 1];
	size_t			 len;
};

/* What the pump stopped for. */
enum live_end {
	LIVE_OPEN,		/* setupComplete came: the session is open */
	LIVE_REFUSED,		/* the upstream refused it before that */
	LIVE_OVER		/* the session is over, both sides closed */
};

struct live {
	struct conn		*c;
	struct upstream		*up;
	struct ws		*cs;		/* towards the client */
	struct ws		*us;		/* towards the upstream */
	char			 model[CFG_NAME_MAX];
	int			 model_slot;
	const char		*method;	/* "v1beta...BidiGenerateContent" */
	size_t			 method_len;
	struct live_early	*early;		/* [0]: the setup */
	size_t			 nearly;
	size_t			 early_bytes;
	struct shm_pick		 pick;		/* the session's key */
	int			 picked;	/* pick holds a session */
	int			 opened;	/* setupComplete came */
	int			 tried[LIVE_TRIED_MAX];
	size_t			 ntried;
	int			 sent;		/* attempts upstream */
	int			 retried_fault;
	struct live_close	 cclose;	/* the client's close */
	struct live_close	 uclose;	/* the upstream's close */
	int			 closing;	/* we are ending it */
	int64_t			 close_by;	/* mono ms: give up waiting */
	int64_t			 last_client;	/* mono ms: its last frame */
	int64_t			 next_ping;	/* mono ms, 0: no pings */
	int64_t			 term_at;	/* mono ms: TERM's close, 0 */
	uint64_t		 to_client;	/* messages relayed */
	uint64_t		 to_upstream;
	struct shm_tokens	 usage;		/* summed, for the log */
	const char		*why;		/* how it ended, for the log */
};

/* liverelay.c */
int		 lr_client_side(struct live *);
int		 lr_upstream_side(struct live *);
int		 lr_first_message(struct live *);
enum live_end	 lr_pump(struct live *, int64_t);
void		 lr_close_client(struct live *, int, const char *);
void		 lr_finish(struct live *);
void		 lr_early_free(struct live *);

#endif /* LIVE_INT_H */
