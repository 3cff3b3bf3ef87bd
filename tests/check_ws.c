/*
 * Unit tests of ws.c: the handshake's checks and Accept, and sides that
 * talk through memory: a client side and a server side to each other,
 * and a side fed frames built by hand, whole or a byte at a time.  What
 * a side sends back is read as raw frames too, to see the close codes.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check_suites.h"
#include "http.h"
#include "ws.h"

/* A one-way pipe in memory: send appends, recv takes at most step bytes
 * (0: all it asks for), then WS_IO_AGAIN, or 0 once eof is set. */
struct mem {
	uint8_t		*buf;
	size_t		 len;
	size_t		 cap;
	size_t		 off;
	size_t		 step;
	int		 eof;
};

static ssize_t
mem_recv(void *arg, void *buf, size_t len)
{
	struct mem	*m = arg;
	size_t		 n = m->len - m->off;

	if (n == 0)
		return m->eof ? 0 : WS_IO_AGAIN;
	if (n > len)
		n = len;
	if (m->step > 0 && n > m->step)
		n = m->step;
	memcpy(buf, m->buf + m->off, n);
	m->off += n;
	return n;
}

static ssize_t
mem_send(void *arg, const void *buf, size_t len)
{
	struct mem	*m = arg;

	if (m->len + len > m->cap) {
		m->cap = (m->len + len) * 2;
		m->buf = realloc(m->buf, m->cap);
		ck_assert_ptr_nonnull(m->buf);
	}
	memcpy(m->buf + m->len, buf, len);
	m->len += len;
	return len;
}

static void
mem_put(struct mem *m, const void *p, size_t n)
{
	(void)mem_send(m, p, n);
}

/* What a side told its owner. */
struct rec {
	struct ws	*w;
	int		 nmsg;
	int		 op;
	uint8_t		*msg;
	size_t		 len;
	int		 nclose;
	int		 code;
	char		 reason[WS_REASON_MAX + 1];
	size_t		 rlen;
	int		 npong;
	int		 after_fail;
};

static void
rec_msg(void *arg, int op, const uint8_t *p, size_t n)
{
	struct rec	*r = arg;

	if (r->w != NULL && ws_failed(r->w, NULL))
		r->after_fail++;
	r->nmsg++;
	r->op = op;
	free(r->msg);
	r->msg = malloc(n + 1);
	ck_assert_ptr_nonnull(r->msg);
	memcpy(r->msg, p, n);
	r->msg[n] = '\0';
	r->len = n;
}

static void
rec_close(void *arg, int code, const char *reason, size_t n)
{
	struct rec	*r = arg;

	ck_assert_uint_le(n, WS_REASON_MAX);
	r->nclose++;
	r->code = code;
	memcpy(r->reason, reason, n);
	r->reason[n] = '\0';
	r->rlen = n;
}

static void
rec_pong(void *arg)
{
	((struct rec *)arg)->npong++;
}

/* One side over in (what it reads) and out (what it writes). */
struct side {
	struct mem	 in;
	struct mem	 out;
	struct rec	 rec;
	struct ws	*w;
};

static void
side_free(struct side *s)
{
	ws_free(s->w);
	free(s->in.buf);
	free(s->out.buf);
	free(s->rec.msg);
}

static ssize_t
side_recv(void *arg, void *buf, size_t len)
{
	return mem_recv(&((struct side *)arg)->in, buf, len);
}

static ssize_t
side_send(void *arg, const void *buf, size_t len)
{
	return mem_send(&((struct side *)arg)->out, buf, len);
}

/* A side of each role, or one alone for hand-built frames. */
static void
side_new(struct side *s, int server, size_t max_message,
    size_t max_fragments)
{
	struct ws_io		 io = { side_recv, side_send, NULL };
	struct ws_cb		 cb;
	struct ws_limits	 lim = { max_message, max_fragments };

	memset(s, 0, sizeof(*s));
	io.arg = s;
	cb.msg = rec_msg;
	cb.close = rec_close;
	cb.pong = rec_pong;
	cb.arg = &s->rec;
	s->w = ws_new(server, &io, &cb, &lim);
	ck_assert_ptr_nonnull(s->w);
	s->rec.w = s->w;
}

/*
 * A frame into out: fin, rsv (3 bits), opcode, masked with the key
 * 1 2 3 4 or not, payload p[0..n), the length in its shortest form.
 * Returns its size.
 */
static size_t
frame(uint8_t *out, int fin, int rsv, int op, int mask, const void *p,
    size_t n)
{
	static const uint8_t	 key[4] = { 1, 2, 3, 4 };
	const uint8_t		*d = p;
	size_t			 h = 2, i;

	out[0] = (fin ? 0x80 : 0) | (rsv << 4) | op;
	out[1] = mask ? 0x80 : 0;
	if (n < 126)
		out[1] |= n;
	else if (n < 65536) {
		out[1] |= 126;
		out[2] = n >> 8;
		out[3] = n & 0xff;
		h = 4;
	} else {
		out[1] |= 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint64_t)n >> (56 - 8 * i);
		h = 10;
	}
	if (mask) {
		memcpy(out + h, key, 4);
		h += 4;
	}
	for (i = 0; i < n; i++)
		out[h + i] = d[i] ^ (mask ? key[i & 3] : 0);
	return h + n;
}

/* Puts one frame into what s reads. */
static void
feed(struct side *s, int fin, int rsv, int op, int mask, const void *p,
    size_t n)
{
	uint8_t	*f = malloc(n + 14);

	ck_assert_ptr_nonnull(f);
	mem_put(&s->in, f, frame(f, fin, rsv, op, mask, p, n));
	free(f);
}

/* A close payload: code and reason. */
static size_t
close_payload(uint8_t *out, int code, const char *reason)
{
	size_t	 n = strlen(reason);

	out[0] = code >> 8;
	out[1] = code & 0xff;
	memcpy(out + 2, reason, n);
	return n + 2;
}

/* The code of the close frame s sends last, -1 if none.  Its frames
 * before are short; a client's are masked. */
static int
sent_close(struct side *s)
{
	const uint8_t	*b, *k;
	size_t		 i = 0, n, h;
	int		 code = -1;

	ck_assert_int_eq(ws_write(s->w), 0);
	while (i + 2 <= s->out.len) {
		b = s->out.buf + i;
		n = b[1] & 0x7f;
		ck_assert_uint_lt(n, 126);
		h = b[1] & 0x80 ? 6 : 2;
		k = b + 2;
		if ((b[0] & 0x0f) == 8 && n >= 2)
			code = h == 6 ? (b[h] ^ k[0]) << 8 | (b[h + 1] ^ k[1]) :
			    b[h] << 8 | b[h + 1];
		else if ((b[0] & 0x0f) == 8)
			code = WS_CLOSE_NO_STATUS;
		i += h + n;
	}
	return code;
}

/* The side s reads and fails with code, and sends a close with it. */
static void
fails_with(struct side *s, int code)
{
	int	 got = 0;

	ck_assert_int_eq(ws_read(s->w), -1);
	ck_assert_int_eq(ws_failed(s->w, &got), 1);
	ck_assert_int_eq(got, code);
	ck_assert_int_eq(ws_want_read(s->w), 0);
	ck_assert_int_eq(sent_close(s), code);
	ck_assert_int_eq(s->rec.nclose, 0);
	ck_assert_int_eq(s->rec.after_fail, 0);
}

/*
 * The handshake.
 */

START_TEST(test_accept)
{
	char	 out[WS_ACCEPT_LEN + 1], key[WS_KEY_LEN + 1], key2[WS_KEY_LEN + 1];

	ck_assert_int_eq(ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0);
	ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	ck_assert_int_eq(ws_new_key(key), 0);
	ck_assert_int_eq(ws_new_key(key2), 0);
	ck_assert_uint_eq(strlen(key), WS_KEY_LEN);
	ck_assert_str_eq(key + 22, "==");
	ck_assert_str_ne(key, key2);
}
END_TEST

static struct http_request req;

static void
req_set(const char *method, int minor, const char *upgrade,
    const char *connection, const char *key, const char *version)
{
	memset(&req, 0, sizeof(req));
	req.method = (char *)method;
	req.minor = minor;
#define ADD(n, v) if ((v) != NULL) {					\
		req.hdr[req.nhdr].name = (char *)(n);			\
		req.hdr[req.nhdr++].value = (char *)(v);		\
	}
	ADD("Host", "example.com");
	ADD("upgrade", upgrade);
	ADD("Connection", connection);
	ADD("Sec-WebSocket-Key", key);
	ADD("Sec-WebSocket-Version", version);
#undef ADD
}

static int
upgrade_status(void)
{
	const char	*why = NULL;
	int		 status = 0;

	if (ws_check_upgrade(&req, &status, &why) == 0)
		return 0;
	ck_assert_ptr_nonnull(why);
	return status;
}

#define KEY	"dGhlIHNhbXBsZSBub25jZQ=="

START_TEST(test_check_upgrade)
{
	req_set("GET", 1, "websocket", "keep-alive, Upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 0);
	req_set("GET", 1, "WebSocket", "upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 0);
	req_set("POST", 1, "websocket", "Upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 405);
	req_set("GET", 0, "websocket", "Upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "h2c", "Upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, NULL, "Upgrade", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "keep-alive", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "upgraded", KEY, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ=", "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25jZQ", "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "Upgrade", "dGhlIHNhbXBsZSBub25j*Q==",
	    "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "Upgrade", NULL, "13");
	ck_assert_int_eq(upgrade_status(), 400);
	req_set("GET", 1, "websocket", "Upgrade", KEY, "8");
	ck_assert_int_eq(upgrade_status(), 426);
	req_set("GET", 1, "websocket", "Upgrade", KEY, "13, 8");
	ck_assert_int_eq(upgrade_status(), 426);
	req_set("GET", 1, "websocket", "Upgrade", KEY, NULL);
	ck_assert_int_eq(upgrade_status(), 426);
	/* A list split over two fields. */
	req_set("GET", 1, "websocket", "keep-alive", KEY, "13");
	req.hdr[req.nhdr].name = "connection";
	req.hdr[req.nhdr++].value = "Upgrade";
	ck_assert_int_eq(upgrade_status(), 0);
}
END_TEST

START_TEST(test_check_switch)
{
	const char	*why = NULL;
	const char	*acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

	ck_assert_int_eq(ws_check_switch(101, "websocket", "Upgrade", acc, KEY,
	    &why), 0);
	ck_assert_int_eq(ws_check_switch(101, "WebSocket", "keep-alive, upgrade",
	    acc, KEY, &why), 0);
	ck_assert_int_eq(ws_check_switch(200, "websocket", "Upgrade", acc, KEY,
	    &why), -1);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_eq(ws_check_switch(101, NULL, "Upgrade", acc, KEY,
	    &why), -1);
	ck_assert_int_eq(ws_check_switch(101, "websocket", NULL, acc, KEY,
	    &why), -1);
	ck_assert_int_eq(ws_check_switch(101, "websocket", "Upgrade", NULL, KEY,
	    &why), -1);
	ck_assert_int_eq(ws_check_switch(101, "websocket", "Upgrade",
	    "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", KEY, &why), -1);
	ck_assert_int_eq(ws_check_switch(101, "websocket", "Upgrade", acc,
	    "AAAAAAAAAAAAAAAAAAAAAA==", &why), -1);
}
END_TEST

/*
 * Sides.
 */

/* What a wrote goes to what b reads. */
static void
pass(struct side *a, struct side *b)
{
	ck_assert_int_eq(ws_write(a->w), 0);
	mem_put(&b->in, a->out.buf, a->out.len);
	a->out.len = 0;
}

START_TEST(test_round_trip)
{
	struct side	 c, s;
	uint8_t		*big;
	size_t		 i, n = 1024 * 1024;
	int		 code;

	side_new(&c, 0, 2 * n, 16);
	side_new(&s, 1, 2 * n, 16);
	big = malloc(n);
	ck_assert_ptr_nonnull(big);
	for (i = 0; i < n; i++)
		big[i] = i * 7 + (i >> 11);
	ck_assert_int_eq(ws_queue(c.w, WS_TEXT, "hello", 5), 0);
	ck_assert_int_eq(ws_queue(c.w, WS_BINARY, big, n), 0);
	ck_assert_uint_eq(ws_queued(c.w), n + 5);
	ck_assert_int_eq(ws_want_write(c.w), 1);
	pass(&c, &s);
	ck_assert_uint_eq(ws_queued(c.w), 0);
	ck_assert_int_eq(ws_want_write(c.w), 0);
	/* The client masked it: the server takes it, in 1000-byte reads. */
	s.in.step = 1000;
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 2);
	ck_assert_int_eq(s.rec.op, WS_BINARY);
	ck_assert_uint_eq(s.rec.len, n);
	ck_assert_mem_eq(s.rec.msg, big, n);
	ck_assert_int_eq(ws_failed(s.w, &code), 0);
	/* And back, unmasked. */
	ck_assert_int_eq(ws_queue(s.w, WS_BINARY, big, n), 0);
	ck_assert_int_eq(ws_ping(s.w), 0);
	pass(&s, &c);
	ck_assert_int_eq(ws_read(c.w), 0);
	ck_assert_int_eq(c.rec.nmsg, 1);
	ck_assert_uint_eq(c.rec.len, n);
	ck_assert_mem_eq(c.rec.msg, big, n);
	/* The client answered the ping; the server hears the pong. */
	pass(&c, &s);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.npong, 1);
	/* A close each way: 4000 "bye", echoed. */
	ck_assert_int_eq(ws_queue_close(c.w, 4000, "bye", 3), 0);
	pass(&c, &s);
	ck_assert_int_eq(ws_close_sent(c.w), 1);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nclose, 1);
	ck_assert_int_eq(s.rec.code, 4000);
	ck_assert_str_eq(s.rec.reason, "bye");
	ck_assert_int_eq(ws_close_received(s.w), 1);
	ck_assert_int_eq(ws_want_read(s.w), 0);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nclose, 1);
	pass(&s, &c);
	ck_assert_int_eq(ws_close_sent(s.w), 1);
	ck_assert_int_eq(ws_read(c.w), 0);
	ck_assert_int_eq(c.rec.nclose, 1);
	ck_assert_int_eq(c.rec.code, 4000);
	ck_assert_int_eq(ws_failed(c.w, &code), 0);
	ck_assert_int_eq(ws_failed(s.w, &code), 0);
	free(big);
	side_free(&c);
	side_free(&s);
}
END_TEST

START_TEST(test_masking)
{
	struct side	 s;

	/* A client's frame must be masked... */
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 0, "hi", 2);
	fails_with(&s, WS_CLOSE_PROTOCOL);
	ck_assert_int_eq(s.rec.nmsg, 0);
	side_free(&s);
	/* ...and a server's must not. */
	side_new(&s, 0, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "hi", 2);
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 0, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 0, "hi", 2);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_str_eq((char *)s.rec.msg, "hi");
	side_free(&s);
}
END_TEST

START_TEST(test_fragments_ping)
{
	struct side	 s;
	size_t		 i;

	side_new(&s, 1, 1000, 10);
	feed(&s, 0, 0, WS_TEXT, 1, "Hel", 3);
	feed(&s, 1, 0, 9, 1, "p1", 2);
	feed(&s, 0, 0, 0, 1, "l\xc3", 2);	/* a character split */
	feed(&s, 1, 0, 0, 1, "\xa9o", 2);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_int_eq(s.rec.op, WS_TEXT);
	ck_assert_str_eq((char *)s.rec.msg, "Hell\xc3\xa9o");
	/* A pong with the ping's payload was queued. */
	ck_assert_int_eq(ws_want_write(s.w), 1);
	ck_assert_int_eq(ws_write(s.w), 0);
	ck_assert_uint_eq(s.out.len, 4);
	ck_assert_mem_eq(s.out.buf, "\x8a\x02p1", 4);
	side_free(&s);

	/* The same a byte at a time. */
	side_new(&s, 1, 1000, 10);
	s.in.step = 1;
	feed(&s, 0, 0, WS_TEXT, 1, "Hel", 3);
	feed(&s, 1, 0, 9, 1, "p1", 2);
	feed(&s, 1, 0, 0, 1, "lo", 2);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_str_eq((char *)s.rec.msg, "Hello");
	side_free(&s);
}
END_TEST

START_TEST(test_bad_utf8)
{
	struct side	 s;

	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "ok\xff", 3);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	ck_assert_int_eq(s.rec.nmsg, 0);
	side_free(&s);
	/* A message that ends inside a character. */
	side_new(&s, 1, 1000, 10);
	feed(&s, 0, 0, WS_TEXT, 1, "ok", 2);
	feed(&s, 1, 0, 0, 1, "\xe2\x80", 2);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	side_free(&s);
	/* ...or in an empty last frame; a surrogate; an overlong. */
	side_new(&s, 1, 1000, 10);
	feed(&s, 0, 0, WS_TEXT, 1, "\xe2\x80", 2);
	feed(&s, 1, 0, 0, 1, "", 0);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "\xed\xa0\x80", 3);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "\xc0\xaf", 2);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	side_free(&s);
	/* Binary is not text. */
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_BINARY, 1, "\xff", 1);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	side_free(&s);
}
END_TEST

START_TEST(test_limits)
{
	struct side	 s;
	uint8_t		 big[125];

	side_new(&s, 1, 10, 3);
	feed(&s, 1, 0, WS_TEXT, 1, "0123456789", 10);
	feed(&s, 1, 0, WS_TEXT, 1, "0123456789a", 11);
	fails_with(&s, WS_CLOSE_TOO_BIG);
	ck_assert_int_eq(s.rec.nmsg, 1);
	side_free(&s);
	/* Joined, it is too big. */
	side_new(&s, 1, 10, 3);
	feed(&s, 0, 0, WS_BINARY, 1, "012345", 6);
	feed(&s, 1, 0, 0, 1, "012345", 6);
	fails_with(&s, WS_CLOSE_TOO_BIG);
	ck_assert_int_eq(s.rec.nmsg, 0);
	side_free(&s);
	/* Three fragments pass, four do not. */
	side_new(&s, 1, 10, 3);
	feed(&s, 0, 0, WS_BINARY, 1, "a", 1);
	feed(&s, 0, 0, 0, 1, "b", 1);
	feed(&s, 1, 0, 0, 1, "c", 1);
	feed(&s, 0, 0, WS_BINARY, 1, "a", 1);
	feed(&s, 0, 0, 0, 1, "b", 1);
	feed(&s, 0, 0, 0, 1, "c", 1);
	feed(&s, 1, 0, 0, 1, "d", 1);
	fails_with(&s, WS_CLOSE_TOO_BIG);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_str_eq((char *)s.rec.msg, "abc");
	side_free(&s);
	/* A ping is no message: 125 bytes pass whatever the limit. */
	side_new(&s, 1, 10, 3);
	memset(big, 'p', sizeof(big));
	feed(&s, 1, 0, 9, 1, big, 125);
	feed(&s, 1, 0, WS_TEXT, 1, "after", 5);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_int_eq(ws_write(s.w), 0);
	ck_assert_uint_eq(s.out.len, 2 + 125);
	ck_assert_uint_eq(s.out.buf[0], 0x8a);
	side_free(&s);
	/* A 64-bit length far over the limit, with no payload behind. */
	side_new(&s, 1, 10, 3);
	mem_put(&s.in, "\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00"
	    "\x01\x02\x03\x04", 14);
	fails_with(&s, WS_CLOSE_TOO_BIG);
	side_free(&s);
}
END_TEST

START_TEST(test_protocol_errors)
{
	struct side	 s;
	uint8_t		 big[126];

	memset(big, 'x', sizeof(big));
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 9, 1, big, 126);		/* a ping of 126 bytes */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 0, 0, 9, 1, "p", 1);		/* a fragmented ping */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 4, WS_TEXT, 1, "x", 1);	/* RSV1 */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 1, 9, 1, "x", 1);		/* RSV3 on a ping */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 3, 1, "x", 1);		/* opcode 3 */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 0xb, 1, "x", 1);		/* opcode 11 */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 0, 1, "x", 1);		/* continuation alone */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 0, 0, WS_TEXT, 1, "x", 1);
	feed(&s, 1, 0, WS_TEXT, 1, "y", 1);	/* a message inside one */
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	mem_put(&s.in, "\x81\xfe\x00\x05\x01\x02\x03\x04xxxxx", 13);
	fails_with(&s, WS_CLOSE_PROTOCOL);	/* 5 in 16 bits */
	side_free(&s);
}
END_TEST

START_TEST(test_no_msg_after_failure)
{
	struct side	 s;

	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "a", 1);
	feed(&s, 1, 0, WS_TEXT, 0, "b", 1);	/* unmasked */
	feed(&s, 1, 0, WS_TEXT, 1, "c", 1);
	fails_with(&s, WS_CLOSE_PROTOCOL);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_str_eq((char *)s.rec.msg, "a");
	feed(&s, 1, 0, WS_TEXT, 1, "d", 1);
	ck_assert_int_eq(ws_read(s.w), -1);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_int_eq(s.rec.after_fail, 0);
	side_free(&s);
	/* Bad UTF-8 in the middle of a frame that follows a good one. */
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "a", 1);
	feed(&s, 1, 0, WS_TEXT, 1, "bc\xff", 3);
	fails_with(&s, WS_CLOSE_BAD_DATA);
	ck_assert_int_eq(s.rec.nmsg, 1);
	side_free(&s);
}
END_TEST

START_TEST(test_eof)
{
	struct side	 s;
	int		 code = 0;

	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, WS_TEXT, 1, "a", 1);
	mem_put(&s.in, "\x81", 1);		/* half a head */
	s.in.eof = 1;
	ck_assert_int_eq(ws_read(s.w), -1);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_int_eq(ws_failed(s.w, &code), 1);
	ck_assert_int_eq(code, WS_CLOSE_ABNORMAL);
	/* No close frame for a transport that is gone. */
	ck_assert_int_eq(ws_want_write(s.w), 0);
	side_free(&s);
}
END_TEST

/* The close frame s gets (masked), and what it makes of it. */
static void
close_in(struct side *s, int code, const char *reason)
{
	uint8_t	 p[200];

	feed(s, 1, 0, 8, 1, p, close_payload(p, code, reason));
}

START_TEST(test_close_codes)
{
	static const int	 bad[] = { 0, 999, 1004, 1005, 1006, 1015,
	    1016, 2999, 5000, 65535 };
	static const int	 good[] = { 1000, 1001, 1003, 1007, 1011,
	    1012, 1013, 1014, 3000, 4999 };
	struct side		 s;
	size_t			 i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		side_new(&s, 1, 1000, 10);
		close_in(&s, bad[i], "");
		fails_with(&s, WS_CLOSE_PROTOCOL);
		ck_assert_int_eq(ws_close_received(s.w), 0);
		side_free(&s);
	}
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		side_new(&s, 1, 1000, 10);
		close_in(&s, good[i], "why");
		ck_assert_int_eq(ws_read(s.w), 0);
		ck_assert_int_eq(s.rec.nclose, 1);
		ck_assert_int_eq(s.rec.code, good[i]);
		ck_assert_str_eq(s.rec.reason, "why");
		/* The echo carries the peer's code. */
		ck_assert_int_eq(sent_close(&s), good[i]);
		side_free(&s);
	}
	/* One byte: 1002.  None: no status, echoed empty. */
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 8, 1, "\x03", 1);
	fails_with(&s, WS_CLOSE_PROTOCOL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	feed(&s, 1, 0, 8, 1, "", 0);
	ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nclose, 1);
	ck_assert_int_eq(s.rec.code, WS_CLOSE_NO_STATUS);
	ck_assert_uint_eq(s.rec.rlen, 0);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_NO_STATUS);
	ck_assert_uint_eq(s.out.len, 2);
	side_free(&s);
	/* A reason that is not UTF-8: 1007. */
	side_new(&s, 1, 1000, 10);
	close_in(&s, 1000, "\xc3\x28");
	fails_with(&s, WS_CLOSE_BAD_DATA);
	side_free(&s);
}
END_TEST

START_TEST(test_close_bytewise)
{
	struct side	 s;
	const char	*why = "\xc3\xa9\xe2\x80\xa6 \xf0\x9f\x98\x80";
	size_t		 i;

	/* wslay alone refuses this when it comes in pieces. */
	side_new(&s, 1, 1000, 10);
	s.in.step = 1;
	feed(&s, 1, 0, WS_TEXT, 1, "before", 6);
	close_in(&s, 1000, why);
	feed(&s, 1, 0, WS_TEXT, 1, "after", 5);
	for (i = 0; i < 40; i++)
		ck_assert_int_eq(ws_read(s.w), 0);
	ck_assert_int_eq(s.rec.nmsg, 1);
	ck_assert_str_eq((char *)s.rec.msg, "before");
	ck_assert_int_eq(s.rec.nclose, 1);
	ck_assert_int_eq(s.rec.code, 1000);
	ck_assert_str_eq(s.rec.reason, why);
	ck_assert_int_eq(ws_failed(s.w, NULL), 0);
	side_free(&s);
	/* And passes this. */
	side_new(&s, 1, 1000, 10);
	s.in.step = 1;
	close_in(&s, 1000, "ab\xff\xfe");
	for (i = 0; i < 10; i++)
		if (ws_read(s.w) == -1)
			break;
	ck_assert_int_eq(ws_failed(s.w, NULL), 1);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_BAD_DATA);
	ck_assert_int_eq(s.rec.nclose, 0);
	side_free(&s);
}
END_TEST

START_TEST(test_queue_close)
{
	struct side	 s;
	char		 r[130];

	/* 122 bytes, then a two-byte character across 123. */
	memset(r, 'a', sizeof(r));
	r[122] = '\xc3';
	r[123] = '\xa9';
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue_close(s.w, 4001, r, sizeof(r)), 0);
	ck_assert_int_eq(sent_close(&s), 4001);
	ck_assert_uint_eq(s.out.buf[1], 2 + 122);
	ck_assert_mem_eq(s.out.buf + 4, r, 122);
	/* A second close is nothing. */
	s.out.len = 0;
	ck_assert_int_eq(ws_queue_close(s.w, 1000, NULL, 0), 0);
	ck_assert_int_eq(ws_write(s.w), 0);
	ck_assert_uint_eq(s.out.len, 0);
	ck_assert_int_eq(ws_queue(s.w, WS_TEXT, "x", 1), -1);
	side_free(&s);
	/* Exactly 123 bytes stay. */
	side_new(&s, 1, 1000, 10);
	r[122] = 'a';
	ck_assert_int_eq(ws_queue_close(s.w, 1000, r, 123), 0);
	ck_assert_int_eq(sent_close(&s), 1000);
	ck_assert_uint_eq(s.out.buf[1], 2 + 123);
	side_free(&s);
	/* Codes that may not be sent. */
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue_close(s.w, WS_CLOSE_ABNORMAL, "x", 1), 0);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_INTERNAL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue_close(s.w, 1015, NULL, 0), 0);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_INTERNAL);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue_close(s.w, WS_CLOSE_NO_STATUS, "x", 1), 0);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_NO_STATUS);
	ck_assert_uint_eq(s.out.len, 2);
	ck_assert_mem_eq(s.out.buf, "\x88\x00", 2);
	side_free(&s);
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue_close(s.w, WS_CLOSE_TRY_AGAIN, NULL, 0), 0);
	ck_assert_int_eq(sent_close(&s), WS_CLOSE_TRY_AGAIN);
	side_free(&s);
}
END_TEST

START_TEST(test_close_after_data)
{
	struct side	 c, s;

	/* wslay sends control frames first: the close must wait. */
	side_new(&c, 0, 1000, 10);
	side_new(&s, 1, 1000, 10);
	ck_assert_int_eq(ws_queue(s.w, WS_TEXT, "last words", 10), 0);
	ck_assert_int_eq(ws_queue_close(s.w, 1000, "done", 4), 0);
	ck_assert_int_eq(ws_close_sent(s.w), 0);
	ck_assert_int_eq(ws_want_write(s.w), 1);
	pass(&s, &c);
	ck_assert_int_eq(ws_close_sent(s.w), 1);
	ck_assert_int_eq(ws_want_write(s.w), 0);
	ck_assert_int_eq(ws_read(c.w), 0);
	ck_assert_int_eq(c.rec.nmsg, 1);
	ck_assert_str_eq((char *)c.rec.msg, "last words");
	ck_assert_int_eq(c.rec.nclose, 1);
	ck_assert_str_eq(c.rec.reason, "done");
	/* A failure's close goes ahead. */
	ck_assert_int_eq(ws_queue(c.w, WS_TEXT, "x", 1), -1);
	side_free(&c);
	side_free(&s);
}
END_TEST

Suite *
ws_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("ws");
	tc = tcase_create("handshake");
	tcase_add_test(tc, test_accept);
	tcase_add_test(tc, test_check_upgrade);
	tcase_add_test(tc, test_check_switch);
	suite_add_tcase(s, tc);
	tc = tcase_create("side");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_masking);
	tcase_add_test(tc, test_fragments_ping);
	tcase_add_test(tc, test_bad_utf8);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_protocol_errors);
	tcase_add_test(tc, test_no_msg_after_failure);
	tcase_add_test(tc, test_eof);
	suite_add_tcase(s, tc);
	tc = tcase_create("close");
	tcase_add_test(tc, test_close_codes);
	tcase_add_test(tc, test_close_bytewise);
	tcase_add_test(tc, test_queue_close);
	tcase_add_test(tc, test_close_after_data);
	suite_add_tcase(s, tc);
	return s;
}
