/*
 * upconn.h: the upstream connection as upstream.c keeps it, shared with
 * upread.c, which reads the answers off it.  Only those two include this
 * file; everyone else knows struct upstream by upstream.h's calls.
 */
#ifndef UPCONN_H
#define UPCONN_H

#include <sys/types.h>

#include <openssl/ssl.h>

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "upstream.h"

#define UP_READ_MAX	(16 * 1024)	/* one TLS record's worth */
#define UP_BUF_SIZE	(UP_MAX_HEAD + UP_READ_MAX)
#define UP_ERR_MAX	256

/*
 * The transport's convention (up_wait, up_recv, up_send): 1 or a count
 * when it went well, else one of these.  The public calls turn them into
 * a recorded failure (up_seterr) and -1.
 */
#define UP_EOF		0	/* the upstream closed the connection */
#define UP_FAIL		(-1)	/* failed: why (or errno) says how */
#define UP_TIMEOUT	(-2)	/* the deadline passed */
#define UP_GONE		(-3)	/* the watched client went away */

/* How the answer's body is delimited. */
enum up_framing {
	UP_BODY_NONE = 0,
	UP_BODY_LENGTH,
	UP_BODY_CHUNKED,
	UP_BODY_EOF		/* until the upstream closes */
};

/* Where the connection is in the request/answer cycle. */
enum up_state {
	UP_S_IDLE = 0,		/* nothing in flight */
	UP_S_SENT,		/* request sent, head not read yet */
	UP_S_BODY,		/* head read, body under way */
	UP_S_DONE,		/* whole answer read */
	UP_S_UPGRADED		/* 101: another protocol now (uplink.c) */
};

struct upstream {
	char		 host[256];	/* a name or an IP literal */
	char		 port[16];
	char		 prefix[256];
	char		 name[300];	/* "host:port", "[v6]:port" */
	int		 is_ip;

	int		 fd;
	SSL		*ssl;
	SSL_SESSION	*sess;		/* the newest, to resume */
	int		 keep;		/* may carry another request */
	int		 reused;	/* last request: older conn. */
	int		 stale;		/* failed as a dead kept conn. does */
	int		 resumed;	/* last handshake resumed */
	int		 dns_valid_s;	/* resolver_valid_s */
	int		 watch;		/* the client's socket, or -1 */
	int		 gone;		/* it hung up while we waited */

	/* The answer under way (upread.c). */
	enum up_state	 state;
	enum up_framing	 framing;
	int		 close;		/* the answer ends the link */
	uint64_t	 remain;	/* UP_BODY_LENGTH: bytes due */
	struct http_chunked ch;

	size_t		 head_end;	/* bytes of buf the head uses */
	size_t		 rpos;		/* unread: rpos to rlen */
	size_t		 rlen;

	enum up_fail	 fail;		/* the last failure's kind */
	char		 err[UP_ERR_MAX];	/* and its words */
	char		 buf[UP_BUF_SIZE];
};

/* upstream.c */
int		 up_seterr(struct upstream *, enum up_fail, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
int		 up_gave_up(struct upstream *, int, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
int		 up_copy_err(const struct upstream *, char *, size_t);
int		 up_wait(struct upstream *, int, short, int64_t);
ssize_t		 up_recv(struct upstream *, void *, size_t, int64_t, char *,
		    size_t);
void		 up_drop(struct upstream *, int);

#endif /* UPCONN_H */
