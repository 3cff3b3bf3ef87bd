/*
 * The worker and the client connection it serves: worker.c (a worker's
 * life, the accept loop), conn.c (a connection's reads, writes and
 * answers), request.c (one request read off it).
 */
#ifndef WORKER_H
#define WORKER_H

#include <sys/types.h>

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct route;

/* One client connection, owned by a worker while it serves it. */
struct conn {
	int			 fd;
	char			 peer[64];
	char			*buf;		/* bytes read from the client */
	size_t			 len;		/* valid bytes in buf */
	size_t			 cap;
	struct http_request	 req;
	char			*body;		/* the request body, decoded */
	size_t			 body_len;
	size_t			 body_cap;
	size_t			 next;		/* the next request's start */
	int64_t			 deadline;	/* mono ms: the request's end */
	int64_t			 started;	/* mono ms: first byte */
	int			 close;		/* close after this answer */
	int			 reset;		/* with a reset: a cut answer */
	int			 body_unread;	/* unread if answered now */
	int			 status;	/* sent, for the access log */
	int			 sent_head;	/* response head already sent */
	uint64_t		 bytes_out;
	char			 log[256];	/* key=, model=, tokens= */
	const struct route	*route;		/* route_admit()'s choice */
};

/* How conn_fill() failed, besides an error or the client's EOF. */
#define CONN_FILL_TIMEOUT	1	/* the deadline passed */
#define CONN_FILL_YIELD		2	/* given up for a queued connection */

/* worker.c */
__attribute__((__noreturn__)) void worker_main(int);
int		 wrk_stopping(void);
int		 wrk_terminating(void);

/* conn.c */
void		 conn_init(const sigset_t *);
int		 conn_wait(int, short, int64_t, int);
ssize_t		 conn_fill(struct conn *, int64_t, int, int, int *);
int		 conn_write(struct conn *, const void *, size_t);
int		 conn_respond(struct conn *, int, const char *, const char *,
		    const void *, size_t);
int		 conn_error(struct conn *, int, const char *, const char *);
const char	*conn_date(void);

/* request.c */
int		 rq_read(struct conn *, int);
void		 rq_board_what(const struct conn *, char *, size_t);

#endif /* WORKER_H */
