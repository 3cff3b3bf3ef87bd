/*
 * Fuzz target: a side of a WebSocket session, src/ws.c, over wslay.
 *
 * The first byte picks the side's role (facing a client, whose frames
 * must be masked, or the upstream), its limits and how its reads are cut;
 * the second seeds the sizes of the pieces the rest arrives in, as the
 * peer's bytes, through a transport in memory.  Every message the side
 * passes on is sent back, and its close frame is written as it comes.
 * Whatever the bytes: no message after a failure or after the peer's
 * close; a message within the limit, a text one valid UTF-8; the peer's
 * close told once, with a code that may travel and a reason of at most
 * 123 bytes of UTF-8; ws_read() failing exactly when ws_failed() says so,
 * with a code that may be sent, or 1006 when the bytes ran out.
 */
#include <sys/types.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ws.h"

struct fz {
	struct ws	*w;
	const uint8_t	*in;
	size_t		 inlen;		/* what has arrived so far */
	size_t		 off;
	size_t		 step;		/* bytes per read at most, 0: all */
	int		 eof;
	size_t		 max_message;
	int		 nclose;
	int		 closed_code;
	size_t		 sent;
};

/* An independent UTF-8 check (RFC 3629): whether p[0..n) is valid. */
static int
utf8_ok(const uint8_t *p, size_t n)
{
	size_t		 i = 0, k, need;
	uint32_t	 c, min;

	while (i < n) {
		c = p[i++];
		if (c < 0x80)
			continue;
		if (c >= 0xc0 && c < 0xe0) {
			need = 1;
			min = 0x80;
			c &= 0x1f;
		} else if (c >= 0xe0 && c < 0xf0) {
			need = 2;
			min = 0x800;
			c &= 0x0f;
		} else if (c >= 0xf0 && c < 0xf8) {
			need = 3;
			min = 0x10000;
			c &= 0x07;
		} else
			return 0;
		for (k = 0; k < need; k++, i++) {
			if (i >= n || (p[i] & 0xc0) != 0x80)
				return 0;
			c = c << 6 | (p[i] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return 0;
	}
	return 1;
}

static int
code_ok(int code)
{
	return (code >= 1000 && code <= 1003) ||
	    (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

static ssize_t
fz_recv(void *arg, void *buf, size_t len)
{
	struct fz	*f = arg;
	size_t		 n = f->inlen - f->off;

	if (n == 0)
		return f->eof ? 0 : WS_IO_AGAIN;
	if (n > len)
		n = len;
	if (f->step > 0 && n > f->step)
		n = f->step;
	memcpy(buf, f->in + f->off, n);
	f->off += n;
	return n;
}

/* The peer takes 1000 bytes at a time, then has to think. */
static ssize_t
fz_send(void *arg, const void *buf, size_t len)
{
	struct fz	*f = arg;

	(void)buf;
	if (f->sent >= 1000) {
		f->sent = 0;
		return WS_IO_AGAIN;
	}
	if (len > 1000 - f->sent)
		len = 1000 - f->sent;
	f->sent += len;
	return len;
}

static void
fz_msg(void *arg, int op, const uint8_t *p, size_t n)
{
	struct fz	*f = arg;

	FUZZ_CHECK(!ws_failed(f->w, NULL), "a message after a failure");
	FUZZ_CHECK(f->nclose == 0, "a message after the close");
	FUZZ_CHECK(op == WS_TEXT || op == WS_BINARY, "opcode %d", op);
	FUZZ_CHECK(n <= f->max_message, "%zu bytes over %zu", n,
	    f->max_message);
	FUZZ_CHECK(p != NULL, "no message");
	if (op == WS_TEXT)
		FUZZ_CHECK(utf8_ok(p, n), "text of %zu bytes not UTF-8", n);
	(void)ws_queue(f->w, op, p, n);
}

static void
fz_close(void *arg, int code, const char *reason, size_t n)
{
	struct fz	*f = arg;

	FUZZ_CHECK(!ws_failed(f->w, NULL), "a close after a failure");
	FUZZ_CHECK(f->nclose == 0, "a second close");
	FUZZ_CHECK(code == WS_CLOSE_NO_STATUS || code_ok(code), "code %d",
	    code);
	FUZZ_CHECK(n <= WS_REASON_MAX, "reason of %zu bytes", n);
	FUZZ_CHECK(n == 0 || code != WS_CLOSE_NO_STATUS, "reason, no code");
	FUZZ_CHECK(utf8_ok((const uint8_t *)reason, n), "reason not UTF-8");
	f->nclose++;
	f->closed_code = code;
}

static void
fz_pong(void *arg)
{
	(void)arg;
}

/* One read and write, and what must hold after them. */
static void
fz_round(struct fz *f)
{
	int	 rv, failed, code = 0, i;

	rv = ws_read(f->w);
	failed = ws_failed(f->w, &code);
	FUZZ_CHECK((rv == -1) == failed, "ws_read %d, failed %d", rv, failed);
	if (failed)
		FUZZ_CHECK(code_ok(code) || code == WS_CLOSE_ABNORMAL,
		    "failed with %d", code);
	if (failed || f->nclose > 0)
		FUZZ_CHECK(!ws_want_read(f->w), "still wants to read");
	FUZZ_CHECK(ws_close_received(f->w) == (f->nclose > 0),
	    "close received %d, told %d", ws_close_received(f->w), f->nclose);
	/* Write until done or the transport broke. */
	for (i = 0; i < 10000 && ws_want_write(f->w); i++)
		if (ws_write(f->w) == -1)
			break;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const size_t	 maxmsg[4] = { 16, 125, 1000, 65536 };
	static const size_t	 maxfrag[4] = { 0, 1, 3, 16 };
	struct ws_io		 io = { fz_recv, fz_send, NULL };
	struct ws_cb		 cb = { fz_msg, fz_close, fz_pong, NULL };
	struct ws_limits	 lim;
	struct fz		 f;
	uint32_t		 seed;
	size_t			 piece;
	int			 code = 0;

	if (len < 2)
		return 0;
	memset(&f, 0, sizeof(f));
	lim.max_message = f.max_message = maxmsg[(data[0] >> 1) & 3];
	lim.max_fragments = maxfrag[(data[0] >> 3) & 3];
	f.step = (data[0] >> 5) == 0 ? 0 : (size_t)1 << ((data[0] >> 5) - 1);
	seed = data[1];
	io.arg = cb.arg = &f;
	f.in = data + 2;
	if ((f.w = ws_new(data[0] & 1, &io, &cb, &lim)) == NULL)
		abort();
	/* The bytes arrive in pieces of 1 to 256, or whole for seed 0. */
	while (f.inlen < len - 2) {
		seed = seed * 1103515245u + 12345u;
		piece = data[1] == 0 ? len - 2 : 1 + (seed >> 16) % 256;
		f.inlen = piece < len - 2 - f.inlen ? f.inlen + piece : len - 2;
		fz_round(&f);
	}
	f.eof = 1;
	fz_round(&f);
	/* The bytes ran out: a side still reading failed, 1006. */
	FUZZ_CHECK(f.nclose > 0 || ws_failed(f.w, &code),
	    "neither closed nor failed at the end");
	ws_free(f.w);
	return 0;
}
