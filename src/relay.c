/*
 * The answer, on its way from the upstream to the client.
 *
 * A good answer is relayed as it arrives: our head (rewrite.c) with
 * whatever of the body came with the upstream's, then each piece of the
 * body in the client's framing (chunks of our own to an HTTP/1.1 client,
 * the close to an HTTP/1.0 one), so that a stream's events reach the
 * client one by one.  On the way every piece is fed to the usage scanner
 * (usagescan.c) and to owner.c, which learns from a whole answer what
 * resources the key's project made.  An error answer is read whole first
 * (proxy.c classifies it), then passed on with every secret masked.
 *
 * Called by proxy.c only.  The abnormal endings are told apart here: the
 * client hung up (the caller stops the upstream, 499), the upstream broke
 * off mid-answer (no last chunk, and the client's connection is closed,
 * or reset where only the close frames the body, since it cannot tell a
 * cut answer from a whole one otherwise; counted by why for /metrics).
 * No lock is taken here but the scoreboard's atomic stores and the
 * counter's (shm_note_broken).
 */
#include <sys/types.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "looper.h"
#include "px.h"
#include "scrub.h"
#include "shm.h"
#include "upstream.h"
#include "usagescan.h"
#include "util.h"
#include "worker.h"

#define RELAY_BUF		(16 * 1024)

/* The deadline of one wait for the upstream. */
static int64_t
relay_deadline(void)
{
	return mono_ms() + (int64_t)looper.cfg->upstream_timeout_s * 1000;
}

/* No body goes to the client: a HEAD request, or a 1xx, 204 or 304. */
static int
relay_head_only(const struct px *x)
{
	return strcmp(x->c->req.method, "HEAD") == 0 || x->resp.no_body;
}

/*
 * Write iov[0..n) in order: one writev when the socket takes it all, the
 * rest the slow way.  One write is one segment, and one wake-up for the
 * client, per answer or per event.
 */
static int
relay_write(struct conn *c, struct iovec *iov, int n)
{
	size_t	 total = 0, off = 0;
	ssize_t	 w;
	int	 i;

	for (i = 0; i < n; i++)
		total += iov[i].iov_len;
	w = writev(c->fd, iov, n);
	if (w < 0 && errno != EAGAIN && errno != EINTR) {
		c->close = 1;
		return -1;
	}
	if (w > 0) {
		off = w;
		c->bytes_out += w;
	}
	if (off == total)
		return 0;
	for (i = 0; i < n; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		if (conn_write(c, (char *)iov[i].iov_base + off,
		    iov[i].iov_len - off) == -1)
			return -1;
		off = 0;
	}
	return 0;
}

/*
 * iov[*n...]: a piece of the body in the client's framing (a chunk of
 * its own when chunked to a 1.1 client), and the last chunk after it when
 * fin.  sz holds the size line.
 */
static void
relay_frame(struct px *x, int chunked, const char *buf, size_t len, int fin,
    char *sz, size_t szlen, struct iovec *iov, int *n)
{
	if (!chunked || x->c->req.minor == 0) {
		iov[*n].iov_base = (void *)(uintptr_t)buf;
		iov[(*n)++].iov_len = len;
		return;
	}
	iov[*n].iov_base = sz;
	iov[(*n)++].iov_len = snprintf(sz, szlen, "%zx\r\n", len);
	iov[*n].iov_base = (void *)(uintptr_t)buf;
	iov[(*n)++].iov_len = len;
	iov[*n].iov_base = (void *)(uintptr_t)(fin ? "\r\n0\r\n\r\n" : "\r\n");
	iov[(*n)++].iov_len = fin ? 7 : 2;
}

/*
 * Our answer's head (rewrite.c), and the first piece of the body,
 * body_len bytes (framed as chunked says; fin: and the last chunk), in
 * the same write.  chunked: the body is relayed as it comes, else it is
 * length bytes.  Returns 0, or -1 when the client cannot be written to
 * (or the head does not fit).
 */
static int
relay_send_head(struct px *x, int chunked, int64_t length, const char *body,
    size_t body_len, int fin)
{
	const char	*h;
	char		 sz[32];
	struct iovec	 iov[4];
	size_t		 len;
	int		 head_only, niov = 1;

	head_only = relay_head_only(x);
	if ((h = rw_answer_head(x, head_only, chunked, length, &len)) == NULL)
		return -1;
	x->c->status = x->resp.status;
	x->c->sent_head = 1;
	iov[0].iov_base = (void *)(uintptr_t)h;
	iov[0].iov_len = len;
	if (body_len > 0 && !head_only)
		relay_frame(x, chunked, body, body_len, fin, sz, sizeof(sz),
		    iov, &niov);
	return relay_write(x->c, iov, niov);
}

/* One relayed piece, in the client's framing (fin: the last one). */
static int
relay_piece(struct px *x, int chunked, const char *buf, size_t len, int fin)
{
	char		 sz[32];
	struct iovec	 iov[3];
	int		 n = 0;

	relay_frame(x, chunked, buf, len, fin, sz, sizeof(sz), iov, &n);
	return relay_write(x->c, iov, n);
}

/* A piece of the body read: scanned for usage, and kept for names. */
static void
relay_saw(struct px *x, const char *buf, size_t n, size_t *scanned)
{
	gem_scan_feed(&x->scan, buf, n);
	owner_feed(x, buf, n);
	*scanned += n;
}

/*
 * The rest of the body, each piece relayed as it arrives.  *n: what the
 * last read said (0: the end, -1: a failure); *fin: the end went out with
 * the last piece.  Returns 1 when the client could not be written to.
 */
static int
relay_body(struct px *x, int chunked, char *buf, ssize_t *n, int *fin,
    size_t *scanned)
{
	for (;;) {
		*n = up_read_body(x->up, buf, RELAY_BUF, relay_deadline());
		if (*n <= 0)
			return 0;
		relay_saw(x, buf, *n, scanned);
		/* The end came with this piece: the last chunk goes too. */
		*fin = up_body_done(x->up);
		if (relay_piece(x, chunked, buf, *n, *fin) == -1)
			return 1;
		if (*fin)
			return 0;
	}
}

/*
 * Why an answer broke off, from how the upstream failed: a pure mapping,
 * for the metric and the access log (enum shm_broken).
 */
int
relay_broken_why(enum up_fail f)
{
	switch (f) {
	case UP_ERR_TIMEOUT:
		return SHM_B_TIMEOUT;
	case UP_ERR_CLOSED:
		return SHM_B_CLOSED;
	case UP_ERR_PROTOCOL:
		return SHM_B_MALFORMED;
	default:
		return SHM_B_RESET;
	}
}

/*
 * A cut answer must look cut to the client.  Chunks (no terminating
 * chunk follows) and a Content-Length (fewer bytes follow) show it once
 * the connection closes; a body framed by the close itself (an HTTP/1.0
 * client, an answer without a length) would look whole, so that one ends
 * with a TCP reset instead.  chunked: the answer has no length of its own.
 */
int
relay_cut_needs_reset(int chunked, int minor)
{
	return chunked && minor == 0;
}

/*
 * The upstream broke off mid-answer, after our head went out: no retry
 * (bytes went out), no last chunk, and the client's connection closes
 * (or resets); counted by why and logged.
 */
static void
relay_broken(struct px *x, int chunked)
{
	int	 why = relay_broken_why(up_failure(x->up));

	x->broken = shm_broken_names[why];
	x->c->close = 1;
	x->c->reset = relay_cut_needs_reset(chunked, x->c->req.minor);
	shm_note_broken(looper.shm, x->model_slot, why);
	log_warnx("upstream answer cut short: key=%s model=%s why=%s "
	    "bytes=%llu: %s", x->pick.id, x->model, x->broken,
	    (unsigned long long)x->c->bytes_out, up_error(x->up));
}

/*
 * How the relay ended, n and fin as relay_body() left them: the last
 * chunk still to send, the client gone while we waited, or the upstream
 * broken off mid-answer (relay_broken).  Returns 1 when the client went
 * away.
 */
static int
relay_ending(struct px *x, int chunked, ssize_t *n, int fin, int gone)
{
	if (*n < 0 && up_gone(x->up))
		gone = 1;	/* hung up while we waited for more */
	if (fin)
		*n = 0;		/* whole, its last chunk sent if it needs one */
	else if (!gone && *n == 0 && chunked && x->c->req.minor == 1 &&
	    conn_write(x->c, "0\r\n\r\n", 5) == -1)
		gone = 1;
	if (*n < 0 && !gone)
		relay_broken(x, chunked);
	return gone;
}

/*
 * Relay a good answer: head, then each piece of the body as it arrives.
 * The connection to the client is marked for closing when the relay could
 * not finish, and the upstream's closed unless it may carry the next
 * request.  Returns 0, or -1 when the client went away (the caller stops
 * the upstream: client gone).
 */
int
relay_answer(struct px *x)
{
	struct up_resp	*r = &x->resp;
	char		 buf[RELAY_BUF];
	ssize_t		 n = 0;
	size_t		 scanned = 0, held = 0;
	int		 chunked, gone = 0, head_only, more = 1, fin = 0;

	chunked = !(r->content_length >= 0 && !r->chunked);
	head_only = relay_head_only(x);
	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	/* What came with the head goes with ours: a short answer, whole. */
	if (!head_only && up_body_ready(x->up)) {
		if ((n = up_read_body(x->up, buf, sizeof(buf),
		    relay_deadline())) > 0) {
			relay_saw(x, buf, n, &scanned);
			held = n;
			fin = up_body_done(x->up);
		}
		more = n > 0 && !fin;	/* else the end, or a failure */
	}
	if (relay_send_head(x, chunked, r->content_length, buf, held,
	    fin) == -1)
		return -1;
	if (!head_only) {
		if (more)
			gone = relay_body(x, chunked, buf, &n, &fin, &scanned);
		if (relay_ending(x, chunked, &n, fin, gone))
			return -1;
	}
	if (n == 0)
		owner_done(x);	/* whole: what it names is learnt */
	if (n < 0 || !up_body_done(x->up) || r->close)
		up_close(x->up);
	return 0;
}

/*
 * Read an error answer whole, at most cap bytes: it is classified before
 * anything of it is relayed.  Returns its length, -1 when the upstream
 * broke off (or the client went away), and sets *over when the answer
 * was longer than cap (the upstream connection is then closed).
 */
ssize_t
relay_read_error(struct px *x, char *buf, size_t cap, int *over)
{
	size_t		 len = 0;
	ssize_t		 n;
	int64_t		 deadline = relay_deadline();

	*over = 0;
	if (relay_head_only(x))
		return 0;
	while (len < cap) {
		n = up_read_body(x->up, buf + len, cap - len, deadline);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += n;
	}
	*over = len == cap && !up_body_done(x->up);
	if (!up_body_done(x->up) || x->resp.close)
		up_close(x->up);
	return len;
}

/*
 * Pass the held error answer on as it came, with every secret in it
 * masked; one cut at PX_ERRBODY_MAX is not passed (its JSON is broken,
 * and a key may straddle the cut): our own error with its status instead.
 */
void
relay_pass_error(struct px *x)
{
	char	 msg[160];

	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	if (x->held_over) {
		snprintf(msg, sizeof(msg), "the upstream answered %d with an "
		    "error body over %d KiB, which is not relayed",
		    x->resp.status, PX_ERRBODY_MAX / 1024);
		conn_error(x->c, x->resp.status, msg, NULL);
		return;
	}
	x->elen = scrub_text(looper.cfg->scrub, x->ebody, x->elen);
	if (relay_send_head(x, 0, x->elen, x->ebody, x->elen, 0) == -1)
		x->c->close = 1;
}
