/*
 * upstream.c: one kept-alive connection to the upstream per worker.
 */
#ifndef UPSTREAM_H
#define UPSTREAM_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct config;
struct upstream;

/*
 * The upstream: one kept-alive TLS connection per worker (upstream.c over
 * tls.c).  An answer's head is parsed into struct up_resp; its body is then
 * read piece by piece, already de-chunked, so nothing holds a whole answer.
 */
#define UP_MAX_HEAD		(64 * 1024)
#define UP_MAX_HEADERS		100

struct up_resp {
	int			 status;
	int			 minor;
	struct http_header	 hdr[UP_MAX_HEADERS];
	size_t			 nhdr;
	int64_t			 content_length;	/* -1 when absent */
	int			 chunked;
	int			 close;		/* upstream closes after it */
	int			 no_body;	/* HEAD, 1xx, 204, 304 */
};

/* upstream.c */
struct upstream	*up_new(const struct config *);
void		 up_free(struct upstream *);
int		 up_request(struct upstream *, const char *, size_t,
		    const char *, size_t, int64_t, char *, size_t);
int		 up_read_head(struct upstream *, struct up_resp *, int,
		    int64_t, char *, size_t);
ssize_t		 up_read_body(struct upstream *, char *, size_t, int64_t);
int		 up_body_done(const struct upstream *);
int		 up_body_ready(const struct upstream *);
void		 up_close(struct upstream *);
void		 up_watch(struct upstream *, int);
int		 up_gone(const struct upstream *);
const char	*up_header(const struct up_resp *, const char *);
int		 up_fd(const struct upstream *);
int		 up_reused(const struct upstream *);
int		 up_stale(const struct upstream *);
int		 up_resumed(const struct upstream *);
int		 up_pending(const struct upstream *);
const char	*up_error(const struct upstream *);

#endif /* UPSTREAM_H */
