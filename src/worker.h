/*
 * worker.c: a worker, and the client connection it serves.
 */
#ifndef WORKER_H
#define WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

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
	size_t			 next;		/* where the next request starts */
	int64_t			 deadline;	/* mono ms: the request's end */
	int64_t			 started;	/* mono ms: first byte */
	int			 close;		/* close after this answer */
	int			 body_unread;	/* answering now leaves it unread */
	int			 status;	/* sent, for the access log */
	int			 sent_head;	/* response head already sent */
	uint64_t		 bytes_out;
	char			 log[256];	/* key=, model=, tokens= */
};

/* worker.c */
__attribute__((__noreturn__)) void worker_main(int);
int		 conn_write(struct conn *, const void *, size_t);
int		 conn_respond(struct conn *, int, const char *, const char *,
		    const void *, size_t);
int		 conn_error(struct conn *, int, const char *, const char *);
int		 wrk_stopping(void);
const char	*conn_date(void);

#endif /* WORKER_H */
