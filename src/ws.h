/*
 * WebSocket (RFC 6455) for the Live API: the handshake's checks and
 * Sec-WebSocket-Accept (ws.c, OpenSSL's SHA-1 and base64), and one side of
 * a relayed session, framed by wslay (ws.c).  live.c holds two sides, one
 * towards the client (server role: the client's frames must be masked)
 * and one towards the upstream (client role: ours are masked, the
 * upstream's must not be), and moves whole messages between them.
 *
 * A side does no I/O of its own: it reads and writes through struct
 * ws_io, so that the same code runs over a plain socket (the client), TLS
 * (the upstream) or a buffer (the tests, the fuzzer).
 */
#ifndef WS_H
#define WS_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct http_request;

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN	24	/* base64 of 16 bytes */
#define WS_ACCEPT_LEN	28	/* base64 of a SHA-1 */
#define WS_REASON_MAX	123	/* a close reason's bytes at most */

/* Opcodes of data messages (RFC 6455 5.2). */
#define WS_TEXT		1
#define WS_BINARY	2

/* Close codes used here (RFC 6455 7.4.1). */
#define WS_CLOSE_NORMAL		1000
#define WS_CLOSE_GOING_AWAY	1001
#define WS_CLOSE_PROTOCOL	1002
#define WS_CLOSE_NO_STATUS	1005	/* never sent: the frame had none */
#define WS_CLOSE_ABNORMAL	1006	/* never sent: no close frame */
#define WS_CLOSE_BAD_DATA	1007
#define WS_CLOSE_POLICY		1008
#define WS_CLOSE_TOO_BIG	1009
#define WS_CLOSE_INTERNAL	1011
#define WS_CLOSE_TRY_AGAIN	1013

/*
 * The transport under a side.  recv and send return a count (> 0), 0 for
 * the peer's EOF (recv only), WS_IO_AGAIN when it would block, or
 * WS_IO_ERROR.
 */
#define WS_IO_AGAIN	(-2)
#define WS_IO_ERROR	(-1)
struct ws_io {
	ssize_t		(*recv)(void *, void *, size_t);
	ssize_t		(*send)(void *, const void *, size_t);
	void		*arg;
};

/* What a side tells its owner, as it reads. */
struct ws_cb {
	/* A whole data message (fragments joined), WS_TEXT or WS_BINARY. */
	void		(*msg)(void *, int, const uint8_t *, size_t);
	/* The peer's close frame: its code (WS_CLOSE_NO_STATUS when it had
	 * none) and reason (not NUL-terminated). */
	void		(*close)(void *, int, const char *, size_t);
	/* A pong came (the answer to ws_ping). */
	void		(*pong)(void *);
	void		*arg;
};

/* Limits of a side. */
struct ws_limits {
	size_t		 max_message;	/* bytes of one message, joined */
	size_t		 max_fragments;	/* frames of one message */
};

struct ws;

/* The handshake (ws.c). */
int		 ws_check_upgrade(const struct http_request *, int *,
		    const char **);
int		 ws_accept(const char *, size_t, char[WS_ACCEPT_LEN + 1]);
int		 ws_new_key(char[WS_KEY_LEN + 1]);
int		 ws_check_switch(int, const char *, const char *,
		    const char *, const char *, const char **);

/* A side (ws.c). */
struct ws	*ws_new(int, const struct ws_io *, const struct ws_cb *,
		    const struct ws_limits *);
void		 ws_free(struct ws *);
int		 ws_read(struct ws *);
int		 ws_write(struct ws *);
int		 ws_want_read(const struct ws *);
int		 ws_want_write(const struct ws *);
int		 ws_queue(struct ws *, int, const void *, size_t);
int		 ws_queue_close(struct ws *, int, const char *, size_t);
int		 ws_ping(struct ws *);
int		 ws_close_sent(const struct ws *);
int		 ws_close_received(const struct ws *);
int		 ws_failed(const struct ws *, int *);
size_t		 ws_queued(const struct ws *);

#endif /* WS_H */
