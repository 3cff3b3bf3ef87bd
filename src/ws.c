/*
 * WebSocket (RFC 6455) for the Live API: the handshake's checks, and one
 * side of a relayed session framed by wslay.  live.c owns two sides and
 * calls everything here from one worker; nothing here locks or logs.
 *
 * wslay (1.1.1) assembles messages, answers pings and queues what we
 * send, but some of its checks are not RFC 6455's, and it says which
 * close code it failed a connection with only once that frame was sent:
 *
 *  - a close reason's UTF-8 check skips the first two bytes of every
 *    piece of the payload it gets, not only of the first, so a close
 *    frame read in pieces is refused when valid or passed when not;
 *  - a close payload of one byte counts as "no status" (RFC: 1002);
 *  - it refuses the registered codes 1012-1014 (1013 is "try again");
 *  - a bad length encoding or a control frame over 125 bytes gets a
 *    close frame with no code, and wslay_event_recv() fails outright;
 *  - wslay_event_shutdown_read() takes effect only at the next frame;
 *  - a control frame overtakes data messages queued before it, and after
 *    a close frame nothing more is sent: a close queued right after a
 *    message would drop it.
 *
 * So every byte goes through a guard (ws_guard and what it calls) in
 * wslay's receive callback before wslay sees it.  The guard parses frame
 * heads, unmasks to check text and close payloads, and hands on only
 * what is valid, in whole units: a data frame's head at once, a control
 * frame with its payload at once (wslay's 4096-byte input buffer always
 * has room for one, at most 131 bytes, when it asks).  What is invalid
 * never reaches wslay: the guard queues the close frame with the right
 * code itself.  The peer's close frame is taken by the guard as well and
 * never handed on: its code and reason are checked here, echoed as wslay
 * would, and reported by ws_read() after every message before it.
 *
 * Our own close frames (ws_queue_close(), the echo) wait in struct ws
 * until wslay has sent everything queued before them; only a failure's
 * close goes ahead of queued data, as RFC 6455 7.1.7 wants.
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <wslay/wslay.h>

#include "http.h"
#include "ws.h"

#define WS_INBUF	4096	/* bytes read from the transport at once */
#define WS_CTL_MAX	125	/* a control frame's payload at most */
#define WS_HEAD_MAX	14	/* 2 + 8 (length) + 4 (mask) */
#define WS_MSG_DEFAULT	((1u << 31) - 1)	/* wslay's default */

/* An incremental UTF-8 check: continuation bytes still wanted and the
 * range of the next one (overlong forms, surrogates and code points over
 * U+10FFFF are refused at their second byte). */
struct ws_utf8 {
	uint8_t		 need;
	uint8_t		 lo;
	uint8_t		 hi;
};

/* A frame head as the guard parses it. */
struct ws_head {
	int		 fin;
	int		 rsv;
	int		 opcode;
	int		 masked;
	int		 minimal;	/* the length in its shortest form */
	uint64_t	 len;
	uint8_t		 key[4];
	size_t		 size;		/* bytes of the head */
};

struct ws {
	wslay_event_context_ptr ctx;
	struct ws_io	 io;
	struct ws_cb	 cb;
	uint64_t	 max_message;
	size_t		 max_fragments;
	int		 server;
	int		 failed;
	int		 fail_code;
	int		 closed;	/* the peer's close frame came */
	int		 close_told;	/* and cb->close heard of it */
	int		 close_code;
	size_t		 close_len;
	char		 close_reason[WS_REASON_MAX];
	uint64_t	 pings;

	/* Our close frame, waiting for the data queued before it. */
	int		 cl_pending;
	int		 cl_queued;	/* given to wslay */
	int		 cl_code;	/* 0: no payload */
	size_t		 cl_len;
	char		 cl_reason[WS_REASON_MAX];

	/* The guard: bytes read, not yet handed to wslay. */
	uint8_t		 in[WS_INBUF];
	size_t		 inoff;
	size_t		 inlen;

	/* The data frame whose payload is being handed on. */
	int		 f_payload;	/* in its payload */
	int		 f_fin;
	int		 f_masked;
	uint8_t		 f_key[4];
	uint64_t	 f_left;	/* payload bytes still to come */
	uint64_t	 f_off;		/* payload bytes gone: the mask's phase */

	/* The data message those frames make. */
	int		 m_opcode;	/* 0: none open */
	uint64_t	 m_len;
	size_t		 m_frames;
	struct ws_utf8	 m_utf8;
};

/*
 * The handshake.
 */

/* Whether the comma-separated list v holds token t, in any case. */
static int
ws_list_has(const char *v, const char *t)
{
	const char	*p, *e;
	size_t		 tl = strlen(t), n;

	if (v == NULL)
		return 0;
	for (p = v; *p != '\0'; p = *e == '\0' ? e : e + 1) {
		e = p + strcspn(p, ",");
		while (p < e && (*p == ' ' || *p == '\t'))
			p++;
		n = e - p;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(p, t, tl) == 0)
			return 1;
	}
	return 0;
}

/* Whether any field name of req holds token t: a list may be split over
 * several fields ("Connection: keep-alive" and "Connection: Upgrade"). */
static int
ws_req_has(const struct http_request *req, const char *name, const char *t)
{
	size_t	 i;

	for (i = 0; i < req->nhdr; i++)
		if (strcasecmp(req->hdr[i].name, name) == 0 &&
		    ws_list_has(req->hdr[i].value, t))
			return 1;
	return 0;
}

static int
ws_b64char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Whether k is base64 of exactly 16 bytes: 22 characters and "==". */
static int
ws_key_ok(const char *k)
{
	size_t	 i;

	if (k == NULL || strlen(k) != WS_KEY_LEN)
		return 0;
	for (i = 0; i < WS_KEY_LEN - 2; i++)
		if (!ws_b64char(k[i]))
			return 0;
	return k[WS_KEY_LEN - 2] == '=' && k[WS_KEY_LEN - 1] == '=';
}

/*
 * Whether a client's request asks for a WebSocket correctly (RFC 6455
 * 4.2.1).  0, or -1 with the status to answer and why: 405 for another
 * method, 426 for another version (the caller names 13 in its answer),
 * 400 for the rest.
 */
int
ws_check_upgrade(const struct http_request *req, int *status,
    const char **why)
{
	const char	*v;

	*status = 400;
	if (strcmp(req->method, "GET") != 0) {
		*status = 405;
		*why = "a WebSocket upgrade must be a GET";
	} else if (req->minor < 1)
		*why = "a WebSocket upgrade needs HTTP/1.1";
	else if (!ws_req_has(req, "Upgrade", "websocket"))
		*why = "Upgrade does not name websocket";
	else if (!ws_req_has(req, "Connection", "upgrade"))
		*why = "Connection does not name upgrade";
	else if (!ws_key_ok(http_header(req, "Sec-WebSocket-Key")))
		*why = "Sec-WebSocket-Key is not base64 of 16 bytes";
	else if ((v = http_header(req, "Sec-WebSocket-Version")) == NULL ||
	    strcmp(v, "13") != 0) {
		*status = 426;
		*why = "Sec-WebSocket-Version must be 13";
	} else
		return 0;
	return -1;
}

/* Sec-WebSocket-Accept for key: base64(SHA-1(key WS_GUID)). */
int
ws_accept(const char *key, size_t keylen, char out[WS_ACCEPT_LEN + 1])
{
	EVP_MD_CTX	*md;
	unsigned char	 sum[EVP_MAX_MD_SIZE];
	unsigned int	 sumlen = 0;
	int		 ok;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(md, key, keylen) == 1 &&
	    EVP_DigestUpdate(md, WS_GUID, strlen(WS_GUID)) == 1 &&
	    EVP_DigestFinal_ex(md, sum, &sumlen) == 1 && sumlen == 20;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, sum, 20) != WS_ACCEPT_LEN)
		return -1;
	return 0;
}

/* A fresh Sec-WebSocket-Key: 16 random bytes in base64. */
int
ws_new_key(char out[WS_KEY_LEN + 1])
{
	unsigned char	 raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw)) !=
	    WS_KEY_LEN)
		return -1;
	return 0;
}

/*
 * Whether the upstream's answer switches to a WebSocket for the key we
 * sent (RFC 6455 4.1).  Header values are NULL when absent.
 */
int
ws_check_switch(int status, const char *upgrade, const char *connection,
    const char *accept, const char *key, const char **why)
{
	char	 want[WS_ACCEPT_LEN + 1];

	if (status != 101)
		*why = "the upstream did not switch protocols";
	else if (!ws_list_has(upgrade, "websocket"))
		*why = "the upstream's Upgrade does not name websocket";
	else if (!ws_list_has(connection, "upgrade"))
		*why = "the upstream's Connection does not name upgrade";
	else if (key == NULL || ws_accept(key, strlen(key), want) == -1)
		*why = "no key to check the upstream's accept against";
	else if (accept == NULL || strcmp(accept, want) != 0)
		*why = "the upstream's Sec-WebSocket-Accept is wrong";
	else
		return 0;
	return -1;
}

/*
 * Codes and text.
 */

/* Whether a close code may travel in a close frame: RFC 6455 7.4 and
 * IANA's registry (1012-1014), and 3000-4999 for libraries and apps. */
static int
ws_code_ok(int code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* Steps s over byte b: 0, or -1 when b cannot come next. */
static int
ws_utf8_step(struct ws_utf8 *s, uint8_t b)
{
	if (s->need > 0) {
		if (b < s->lo || b > s->hi)
			return -1;
		s->need--;
		s->lo = 0x80;
		s->hi = 0xbf;
		return 0;
	}
	if (b < 0x80)
		return 0;
	s->lo = 0x80;
	s->hi = 0xbf;
	if (b >= 0xc2 && b <= 0xdf)
		s->need = 1;
	else if (b >= 0xe0 && b <= 0xef) {
		s->need = 2;
		if (b == 0xe0)
			s->lo = 0xa0;		/* overlong */
		else if (b == 0xed)
			s->hi = 0x9f;		/* surrogates */
	} else if (b >= 0xf0 && b <= 0xf4) {
		s->need = 3;
		if (b == 0xf0)
			s->lo = 0x90;		/* overlong */
		else if (b == 0xf4)
			s->hi = 0x8f;		/* over U+10FFFF */
	} else
		return -1;
	return 0;
}

/* How much of s[0..len) fits in max bytes without cutting a character. */
static size_t
ws_utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
		max--;
	return max;
}

/*
 * Failing and closing.
 */

/* Gives wslay our waiting close frame once all before it has gone. */
static int
ws_close_flush(struct ws *w)
{
	int	 r;

	if (!w->cl_pending || wslay_event_get_queued_msg_count(w->ctx) > 0)
		return 0;
	w->cl_pending = 0;
	w->cl_queued = 1;
	r = wslay_event_queue_close(w->ctx, w->cl_code,
	    (const uint8_t *)w->cl_reason, w->cl_len);
	return r == 0 || r == WSLAY_ERR_NO_MORE_MSG ? 0 : -1;
}

/* Queues our close frame behind what is queued: code (0 for none) and
 * reason, already fit to be sent.  The first close only counts. */
static int
ws_close_queue(struct ws *w, int code, const char *reason, size_t len)
{
	if (w->cl_pending || w->cl_queued || w->failed)
		return 0;
	w->cl_pending = 1;
	w->cl_code = code;
	w->cl_len = len;
	if (len > 0)
		memcpy(w->cl_reason, reason, len);
	return ws_close_flush(w);
}

/* Fails the side: nothing more is read, and unless the transport broke
 * (1006) a close frame with code and why is queued for ws_write(), ahead
 * of any data (and instead of a close of ours still waiting). */
static void
ws_fail(struct ws *w, int code, const char *why)
{
	if (w->failed)
		return;
	w->failed = 1;
	w->fail_code = code;
	w->cl_pending = 0;
	wslay_event_shutdown_read(w->ctx);
	if (code != WS_CLOSE_ABNORMAL && !w->cl_queued) {
		w->cl_queued = 1;
		(void)wslay_event_queue_close(w->ctx, code,
		    (const uint8_t *)why, why != NULL ? strlen(why) : 0);
	}
}

/* The peer's close frame, payload p[0..n) unmasked: checked, kept for
 * ws_read() to report, echoed.  Returns 0, or the code to fail with. */
static int
ws_close_take(struct ws *w, const uint8_t *p, size_t n, const char **why)
{
	struct ws_utf8	 u = { 0, 0, 0 };
	size_t		 i;
	int		 code;

	if (n == 1) {
		*why = "a close frame of one byte";
		return WS_CLOSE_PROTOCOL;
	}
	code = n == 0 ? WS_CLOSE_NO_STATUS : (p[0] << 8 | p[1]);
	if (n > 0 && !ws_code_ok(code)) {
		*why = "an invalid close code";
		return WS_CLOSE_PROTOCOL;
	}
	for (i = 2; i < n; i++)
		if (ws_utf8_step(&u, p[i]) == -1)
			break;
	if (n > 2 && (i < n || u.need != 0)) {
		*why = "a close reason that is not UTF-8";
		return WS_CLOSE_BAD_DATA;
	}
	w->closed = 1;
	w->close_code = code;
	w->close_len = n > 2 ? n - 2 : 0;
	if (w->close_len > 0)
		memcpy(w->close_reason, p + 2, w->close_len);
	wslay_event_shutdown_read(w->ctx);
	/* The echo, as wslay would send it; none if ours went first. */
	(void)ws_close_queue(w, code == WS_CLOSE_NO_STATUS ? 0 : code,
	    w->close_reason, w->close_len);
	return 0;
}

/*
 * The guard.
 */

/* Parses the frame head at p[0..n) into h: its size, or 0 if incomplete. */
static size_t
ws_head_parse(const uint8_t *p, size_t n, struct ws_head *h)
{
	size_t	 ext, i;

	if (n < 2)
		return 0;
	h->fin = p[0] >> 7;
	h->rsv = (p[0] >> 4) & 7;
	h->opcode = p[0] & 0xf;
	h->masked = p[1] >> 7;
	h->len = p[1] & 0x7f;
	ext = h->len == 126 ? 2 : h->len == 127 ? 8 : 0;
	h->size = 2 + ext + (h->masked ? 4 : 0);
	if (n < h->size)
		return 0;
	h->minimal = 1;
	if (ext > 0) {
		h->len = 0;
		for (i = 0; i < ext; i++)
			h->len = h->len << 8 | p[2 + i];
		h->minimal = ext == 2 ? h->len >= 126 :
		    h->len >= 65536 && (h->len >> 63) == 0;
	}
	if (h->masked)
		memcpy(h->key, p + 2 + ext, 4);
	return h->size;
}

/* What a data frame of head h does to its message's limits and text:
 * 0, or the code to fail with and why. */
static int
ws_msg_check(const struct ws *w, const struct ws_head *h, const char **why)
{
	int		 cont = h->opcode == WSLAY_CONTINUATION_FRAME;
	uint64_t	 have = cont ? w->m_len : 0;

	if (cont && w->max_fragments > 0 && w->m_frames >= w->max_fragments) {
		*why = "too many fragments";
		return WS_CLOSE_TOO_BIG;
	}
	if (h->len > w->max_message - have) {
		*why = "a message too big";
		return WS_CLOSE_TOO_BIG;
	}
	/* An empty last frame cannot finish a character. */
	if (cont && h->fin && h->len == 0 && w->m_opcode == WS_TEXT &&
	    w->m_utf8.need != 0) {
		*why = "a text message that is not UTF-8";
		return WS_CLOSE_BAD_DATA;
	}
	return 0;
}

/* What is wrong with a frame of head h, here and now: 0, or the code to
 * fail with and why.  The payload is not looked at. */
static int
ws_head_check(const struct ws *w, const struct ws_head *h, const char **why)
{
	int	 ctl = wslay_is_ctrl_frame(h->opcode);

	if (h->rsv != 0)
		*why = "reserved bits set";
	else if (h->opcode > WSLAY_BINARY_FRAME && (h->opcode < 8 ||
	    h->opcode > WSLAY_PONG))
		*why = "an unknown opcode";
	else if (h->masked != w->server)
		*why = w->server ? "an unmasked frame from a client" :
		    "a masked frame from a server";
	else if (!h->minimal)
		*why = "a length not in its shortest form";
	else if (ctl && !h->fin)
		*why = "a fragmented control frame";
	else if (ctl && h->len > WS_CTL_MAX)
		*why = "a control frame over 125 bytes";
	else if (ctl)
		return 0;
	else if (h->opcode == WSLAY_CONTINUATION_FRAME && w->m_opcode == 0)
		*why = "a continuation without a message";
	else if (h->opcode != WSLAY_CONTINUATION_FRAME && w->m_opcode != 0)
		*why = "a new message inside a fragmented one";
	else
		return ws_msg_check(w, h, why);
	return WS_CLOSE_PROTOCOL;
}

/* A data frame's head went to wslay: its message grows. */
static void
ws_frame_start(struct ws *w, const struct ws_head *h)
{
	if (h->opcode != WSLAY_CONTINUATION_FRAME) {
		w->m_opcode = h->opcode;
		w->m_len = 0;
		w->m_frames = 0;
		memset(&w->m_utf8, 0, sizeof(w->m_utf8));
	}
	w->m_frames++;
	w->m_len += h->len;
	w->f_fin = h->fin;
	w->f_masked = h->masked;
	memcpy(w->f_key, h->key, sizeof(w->f_key));
	w->f_left = h->len;
	w->f_off = 0;
	w->f_payload = h->len > 0;
	if (!w->f_payload && w->f_fin)
		w->m_opcode = 0;
}

/*
 * The next unit from a frame's head at w->in into out (room bytes): a
 * data frame's head, or a ping or pong whole.  A close frame is taken,
 * an invalid frame fails the side; either only when nothing is handed in
 * this round (done == 0), so that wslay first delivers every message
 * before it.  Returns the bytes handed, 0 to stop.
 */
static size_t
ws_guard_head(struct ws *w, uint8_t *out, size_t room, size_t done)
{
	const uint8_t	*p = w->in + w->inoff;
	size_t		 avail = w->inlen - w->inoff, unit, i;
	uint8_t		 pl[WS_CTL_MAX];
	struct ws_head	 h;
	const char	*why;
	int		 code;

	if (ws_head_parse(p, avail, &h) == 0)
		return 0;
	code = ws_head_check(w, &h, &why);
	unit = h.size;
	if (code == 0 && wslay_is_ctrl_frame(h.opcode)) {
		unit += h.len;
		if (avail < unit)
			return 0;
	}
	if (code == 0 && h.opcode == WSLAY_CONNECTION_CLOSE) {
		if (done > 0)
			return 0;
		for (i = 0; i < h.len; i++)
			pl[i] = p[h.size + i] ^ (h.masked ? h.key[i & 3] : 0);
		w->inoff += unit;
		code = ws_close_take(w, pl, h.len, &why);
	}
	if (code != 0) {
		if (done == 0)
			ws_fail(w, code, why);
		return 0;
	}
	if (w->closed)
		return 0;
	if (unit > room) {
		/* wslay always asks for more than a unit: never here. */
		if (done == 0)
			ws_fail(w, WS_CLOSE_INTERNAL, "no room for a frame");
		return 0;
	}
	memcpy(out, p, unit);
	w->inoff += unit;
	if (!wslay_is_ctrl_frame(h.opcode))
		ws_frame_start(w, &h);
	return unit;
}

/* The next payload bytes of a data frame at w->in into out, a text
 * message's checked as UTF-8 on the way.  As ws_guard_head(). */
static size_t
ws_guard_payload(struct ws *w, uint8_t *out, size_t room, size_t done)
{
	const uint8_t	*p = w->in + w->inoff;
	struct ws_utf8	 u;
	size_t		 n = w->inlen - w->inoff, i;
	uint8_t		 b;

	if (n > room)
		n = room;
	if (n > w->f_left)
		n = w->f_left;
	for (i = 0; w->m_opcode == WS_TEXT && i < n; i++) {
		b = p[i] ^ (w->f_masked ? w->f_key[(w->f_off + i) & 3] : 0);
		u = w->m_utf8;
		if (ws_utf8_step(&u, b) == -1 || (w->f_fin &&
		    i + 1 == w->f_left && u.need != 0))
			break;
		w->m_utf8 = u;
	}
	if (w->m_opcode == WS_TEXT && i < n) {
		if (i == 0 && done == 0)
			ws_fail(w, WS_CLOSE_BAD_DATA,
			    "a text message that is not UTF-8");
		n = i;
	}
	if (n == 0)
		return 0;
	memcpy(out, p, n);
	w->inoff += n;
	w->f_left -= n;
	w->f_off += n;
	if (w->f_left == 0) {
		w->f_payload = 0;
		if (w->f_fin)
			w->m_opcode = 0;
	}
	return n;
}

/* As much of w->in as is checked and fits into out, whole units. */
static size_t
ws_guard(struct ws *w, uint8_t *out, size_t room)
{
	size_t	 done = 0, n;

	while (!w->failed && !w->closed && done < room) {
		if (w->f_payload)
			n = ws_guard_payload(w, out + done, room - done, done);
		else
			n = ws_guard_head(w, out + done, room - done, done);
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

/*
 * wslay's callbacks.
 */

/* wslay wants bytes: the guard's, read from the transport as needed.
 * Never a failure to wslay, only "would block", so that wslay_event_recv()
 * returns 0 and ws_read() tells a failure by w->failed. */
static ssize_t
ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
    void *arg)
{
	struct ws	*w = arg;
	size_t		 n;
	ssize_t		 r;

	(void)flags;
	while (!w->failed && !w->closed) {
		if ((n = ws_guard(w, buf, len)) > 0)
			return n;
		if (w->failed || w->closed)
			break;
		if (w->inoff > 0) {
			memmove(w->in, w->in + w->inoff, w->inlen - w->inoff);
			w->inlen -= w->inoff;
			w->inoff = 0;
		}
		if (w->inlen == sizeof(w->in)) {
			/* A unit is at most WS_HEAD_MAX + 125 bytes. */
			ws_fail(w, WS_CLOSE_INTERNAL, "no room for a frame");
			break;
		}
		r = w->io.recv(w->io.arg, w->in + w->inlen,
		    sizeof(w->in) - w->inlen);
		if (r > 0 && (size_t)r <= sizeof(w->in) - w->inlen)
			w->inlen += r;
		else if (r == WS_IO_AGAIN)
			break;
		else
			ws_fail(w, WS_CLOSE_ABNORMAL, NULL);
	}
	wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
	return -1;
}

static ssize_t
ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
    int flags, void *arg)
{
	struct ws	*w = arg;
	ssize_t		 r;

	(void)flags;
	r = w->io.send(w->io.arg, data, len);
	if (r > 0 && (size_t)r <= len)
		return r;
	wslay_event_set_error(ctx, r == WS_IO_AGAIN || r == 0 ?
	    WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

/* A client's frames are masked with keys nobody can guess (RFC 6455
 * 5.3): a proxy's cache must not be poisoned through us. */
static int
ws_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
    void *arg)
{
	(void)ctx;
	(void)arg;
	return RAND_bytes(buf, len) == 1 ? 0 : -1;
}

static void
ws_msg_cb(wslay_event_context_ptr ctx,
    const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
	static const uint8_t	 empty[1];
	struct ws		*w = arg;

	(void)ctx;
	if (w->failed || w->closed)
		return;
	if ((a->opcode == WS_TEXT || a->opcode == WS_BINARY) &&
	    w->cb.msg != NULL)
		w->cb.msg(w->cb.arg, a->opcode,
		    a->msg != NULL ? a->msg : empty, a->msg_length);
	else if (a->opcode == WSLAY_PONG && w->cb.pong != NULL)
		w->cb.pong(w->cb.arg);
}

/*
 * A side.
 */

/*
 * A side facing a client (server != 0) or the upstream.  Limits of 0
 * mean wslay's own: 2^31 - 1 bytes, fragments without count.  NULL when
 * memory runs out.
 */
struct ws *
ws_new(int server, const struct ws_io *io, const struct ws_cb *cb,
    const struct ws_limits *lim)
{
	struct wslay_event_callbacks	 wcb = {
		ws_recv_cb, ws_send_cb, ws_genmask_cb, NULL, NULL, NULL,
		ws_msg_cb
	};
	struct ws			*w;
	int				 r;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->io = *io;
	w->cb = *cb;
	w->server = server != 0;
	w->max_message = WS_MSG_DEFAULT;
	if (lim != NULL && lim->max_message > 0 &&
	    lim->max_message < WS_MSG_DEFAULT)
		w->max_message = lim->max_message;
	if (lim != NULL)
		w->max_fragments = lim->max_fragments;
	r = w->server ? wslay_event_context_server_init(&w->ctx, &wcb, w) :
	    wslay_event_context_client_init(&w->ctx, &wcb, w);
	if (r != 0) {
		free(w);
		return NULL;
	}
	/* The guard enforces it first; wslay's is the same, for safety,
	 * but wslay applies it to control frames too: a ping of 125 bytes
	 * must pass whatever the limit of a message. */
	wslay_event_config_set_max_recv_msg_length(w->ctx,
	    w->max_message < WS_CTL_MAX ? WS_CTL_MAX : w->max_message);
	return w;
}

void
ws_free(struct ws *w)
{
	if (w == NULL)
		return;
	wslay_event_context_free(w->ctx);
	free(w);
}

/*
 * Reads what the transport has: messages to cb->msg, pongs to cb->pong,
 * the peer's close to cb->close (once, after every message before it).
 * 0 while the side is fine, also once closed; -1 once it failed
 * (ws_failed() says how).
 */
int
ws_read(struct ws *w)
{
	if (w->failed)
		return -1;
	if (!w->closed && wslay_event_recv(w->ctx) != 0)
		ws_fail(w, WS_CLOSE_INTERNAL, "out of memory");
	/* wslay refused something the guard passed: it must not happen,
	 * and wslay has queued its own close frame. */
	if (!w->failed && !w->closed &&
	    !wslay_event_get_read_enabled(w->ctx))
		ws_fail(w, WS_CLOSE_PROTOCOL, NULL);
	if (w->failed)
		return -1;
	if (w->closed && !w->close_told) {
		w->close_told = 1;
		if (w->cb.close != NULL)
			w->cb.close(w->cb.arg, w->close_code,
			    w->close_reason, w->close_len);
	}
	return 0;
}

/* Sends what is queued until the transport would block.  0, or -1 when
 * it failed (the side has then failed, 1006). */
int
ws_write(struct ws *w)
{
	if (wslay_event_send(w->ctx) == 0 && (!w->cl_pending ||
	    (ws_close_flush(w) == 0 && wslay_event_send(w->ctx) == 0)))
		return 0;
	ws_fail(w, WS_CLOSE_ABNORMAL, NULL);
	return -1;
}

int
ws_want_read(const struct ws *w)
{
	return !w->failed && !w->closed && wslay_event_want_read(w->ctx);
}

int
ws_want_write(const struct ws *w)
{
	return wslay_event_want_write(w->ctx) ||
	    (w->cl_pending && wslay_event_get_write_enabled(w->ctx));
}

/* Queues a copy of a data message, WS_TEXT or WS_BINARY.  0 or -1. */
int
ws_queue(struct ws *w, int opcode, const void *data, size_t len)
{
	struct wslay_event_msg	 m;

	if ((opcode != WS_TEXT && opcode != WS_BINARY) || w->cl_pending)
		return -1;
	m.opcode = opcode;
	m.msg = data;
	m.msg_length = len;
	return wslay_event_queue_msg(w->ctx, &m) == 0 ? 0 : -1;
}

/*
 * Queues our close frame, sent after what is queued before it: code and
 * reason, cut to WS_REASON_MAX bytes between characters.  WS_CLOSE_NO_STATUS sends an empty close frame;
 * another code that may not be sent becomes 1011.  A close already
 * queued or sent makes this a no-op.  0 or -1.
 */
int
ws_queue_close(struct ws *w, int code, const char *reason, size_t len)
{
	if (reason == NULL)
		len = 0;
	len = ws_utf8_cut(reason, len, WS_REASON_MAX);
	if (code == WS_CLOSE_NO_STATUS) {
		code = 0;
		len = 0;
	} else if (!ws_code_ok(code))
		code = WS_CLOSE_INTERNAL;
	return ws_close_queue(w, code, reason, len);
}

/* Queues a ping whose payload is a count, 8 bytes. */
int
ws_ping(struct ws *w)
{
	struct wslay_event_msg	 m;
	uint8_t			 p[8];
	uint64_t		 n = ++w->pings;
	int			 i;

	for (i = 7; i >= 0; i--, n >>= 8)
		p[i] = n & 0xff;
	m.opcode = WSLAY_PING;
	m.msg = p;
	m.msg_length = sizeof(p);
	return wslay_event_queue_msg(w->ctx, &m) == 0 ? 0 : -1;
}

int
ws_close_sent(const struct ws *w)
{
	return wslay_event_get_close_sent(w->ctx);
}

/* The guard takes the peer's close frame, so wslay never sees it. */
int
ws_close_received(const struct ws *w)
{
	return w->closed;
}

int
ws_failed(const struct ws *w, int *code)
{
	if (w->failed && code != NULL)
		*code = w->fail_code;
	return w->failed;
}

size_t
ws_queued(const struct ws *w)
{
	return wslay_event_get_queued_msg_length(w->ctx);
}
