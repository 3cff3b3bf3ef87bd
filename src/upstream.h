/*
 * The upstream module: upstream.c (the connection, sending), upread.c
 * (reading the answer), uphead.c (parsing the answer's head).
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
 * tls.c).  An answer's head is parsed into struct up_resp (uphead.c); its
 * body is then read piece by piece, already de-chunked (upread.c), so
 * nothing holds a whole answer.
 */
#define UP_MAX_HEAD		(64 * 1024)
#define UP_MAX_HEADERS		100

/*
 * How calls report failure, one convention for the whole module: a call
 * that can fail returns -1 (up_read_body: -1, else a count, 0 at the end
 * of the body) and records why until the next up_request(): up_failure()
 * gives the kind, for the caller to act on, up_error() the words, for the
 * log (never a key).  Callers decide on kinds, never on words.
 */
enum up_fail {
	UP_ERR_NONE = 0,
	UP_ERR_RESOLVE,		/* no address for the upstream's name */
	UP_ERR_CONNECT,		/* no TCP connection to any address */
	UP_ERR_TLS,		/* the TLS handshake failed */
	UP_ERR_IO,		/* a send or a read failed (a reset...) */
	UP_ERR_CLOSED,		/* closed before the answer was whole */
	UP_ERR_PROTOCOL,	/* a malformed answer head or body */
	UP_ERR_TIMEOUT,		/* the deadline passed, at any step */
	UP_ERR_GONE,		/* the watched client hung up (up_watch) */
	UP_ERR_USAGE		/* called out of turn */
};

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

/* up_read_head()'s and up_parse_head()'s head_request: what was asked. */
#define UP_HEAD_REQ	0x1	/* a HEAD: no body, whatever the head says */
#define UP_HEAD_UPGRADE	0x2	/* an Upgrade: a 101 ends the head */

/* upstream.c */
struct upstream	*up_new(const struct config *);
void		 up_free(struct upstream *);
int		 up_request(struct upstream *, const char *, size_t,
		    const char *, size_t, int64_t, char *, size_t);
void		 up_close(struct upstream *);
void		 up_watch(struct upstream *, int);
int		 up_gone(const struct upstream *);
int		 up_fd(const struct upstream *);
int		 up_reused(const struct upstream *);
int		 up_stale(const struct upstream *);
int		 up_resumed(const struct upstream *);
const char	*up_error(const struct upstream *);
enum up_fail	 up_failure(const struct upstream *);
int		 up_fail_status(enum up_fail);

/* upread.c */
int		 up_read_head(struct upstream *, struct up_resp *, int,
		    int64_t, char *, size_t);
ssize_t		 up_read_body(struct upstream *, char *, size_t, int64_t);
int		 up_body_done(const struct upstream *);
int		 up_fetch(const struct config *, const char *, size_t,
		    const char *, size_t, int64_t, int *, char *, size_t,
		    size_t *, char *, size_t);
int		 up_body_ready(const struct upstream *);
int		 up_pending(const struct upstream *);

/* uplink.c: the connection after a 101, bytes both ways */
ssize_t		 up_link_recv(struct upstream *, void *, size_t);
ssize_t		 up_link_send(struct upstream *, const void *, size_t);
int		 up_link_pending(const struct upstream *);

/* uphead.c */
int		 up_scan_head(const char *, size_t, size_t *, size_t *,
		    size_t *, const char **);
int		 up_parse_head(char *, size_t, struct up_resp *, int,
		    const char **);
const char	*up_header(const struct up_resp *, const char *);

#endif /* UPSTREAM_H */
