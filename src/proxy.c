/*
 * A request's journey to the upstream and back.  Called by the worker (via
 * route.c) for everything under /v1beta/, /v1/ and /upload/.
 *
 *   1. once the head is in, the client's credentials are checked
 *      (access_tokens, proxy_admit) and never forwarded;
 *   2. the model is found (path, or the body on /openai/ paths) and a key is
 *      picked for it in shared memory, with room reserved (shm/pick.c);
 *      with no key free the request waits up to max_wait_s, else 429;
 *   3. the request goes upstream over the worker's kept-alive TLS
 *      connection with the pool key;
 *   4. an error answer is read whole (up to 64 KiB) and classified
 *      (classify.c): quota errors cool or exhaust the key, key errors mark
 *      it invalid, 5xx and dead connections are retried once on another
 *      key - all while nothing has been sent to the client, and at most
 *      max_attempts times;
 *   5. a good answer is relayed piece by piece as it arrives (SSE events
 *      reach the client one by one) while its usage is scanned on the fly,
 *      and the reservation is settled with the real counts.
 *
 * A client that closes its connection at any point stops the upstream
 * request at once (499).  Locks: none held here; shm/pick.c and
 * shm/affinity.c take hdr->lock for each short step.  No secret leaves:
 * answer heads and error bodies are scrubbed (scrub.c).
 */
#include <sys/socket.h>
#include <sys/uio.h>

#include <bsd/string.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "classify.h"
#include "config.h"
#include "http.h"
#include "inspect.h"
#include "log.h"
#include "looper.h"
#include "proxy.h"
#include "route.h"
#include "scrub.h"
#include "shm.h"
#include "upstream.h"
#include "usagescan.h"
#include "util.h"
#include "worker.h"

#define PX_ERRBODY_MAX		(64 * 1024)	/* error answers read whole */
#define PX_NAMESCAN_MAX		(64 * 1024)	/* answers scanned for names */
#define PX_RELAY_BUF		(16 * 1024)
#define PX_MAX_TRIED		64
#define PX_HEAD_MAX		(HTTP_MAX_HEAD + 4096)

/* What the client gets if no further attempt is made (give_up). */
#define PX_HELD_NONE	0	/* our own 429 or 503 */
#define PX_HELD_ANSWER	1	/* the upstream's error answer in ebody */
#define PX_HELD_FAULT	2	/* no answer: 502 or 504 (fault_status) */

enum px_kind {
	PX_OTHER,		/* models list, files, operations...: not metered */
	PX_GENERATE,		/* metered: generate, stream, embed, openai chat */
	PX_COUNT		/* countTokens: a key, but no quota */
};

struct px {
	struct conn		*c;
	const char		*path;
	size_t			 path_len;
	const char		*query;		/* after '?', or NULL */
	int			 openai;
	int			 upload;
	enum px_kind		 kind;
	int			 scan_mode;
	char			 model[CFG_NAME_MAX];
	int			 model_slot;
	int64_t			 est;
	int			 prefer;	/* key slot owning a named object */
	char			 upload_id[1024];
	int			 tried[PX_MAX_TRIED];
	size_t			 ntried;
	int			 retried_fault;
	int			 sent;		/* requests sent upstream */
	int			 waited;	/* throttled at least once */
	int64_t			 wait_end;	/* mono ms: no waiting after */
	int			 held;		/* PX_HELD_*: the answer so far */
	enum up_fail		 fault;		/* PX_HELD_FAULT: what failed */
	char			*ebody;		/* an error answer, read whole */
	ssize_t			 elen;
	int			 held_over;	/* ebody was cut at its cap */
	struct shm_pick		 pick;
	char			*head;		/* the upstream request head */
	size_t			 head_len;
	/* Last, and not zeroed with the rest (10 KiB a request):
	 * up_read_head() and gem_scan_init() set them up. */
	struct up_resp		 resp;
	struct gem_scan		 scan;
};

static struct upstream	*up;
static int		 up_ready;
/* Heads are built here: a worker serves one request at a time. */
static char		 px_reqhead[PX_HEAD_MAX];	/* to the upstream */
static char		 px_anshead[PX_HEAD_MAX];	/* to the client */

/* Masks every secret of the config in buf[0..len); returns the new length. */
static size_t
scrub(char *buf, size_t len)
{
	return scrub_text(looper.cfg->scrub, buf, len);
}

/* Constant-time: is tok[0..n) one of the access tokens? */
static int
token_ok(const char *tok, size_t n)
{
	const struct config	*cfg = looper.cfg;
	size_t			 i;
	int			 ok = 0;

	for (i = 0; i < cfg->naccess_tokens; i++)
		if (strlen(cfg->access_tokens[i]) == n &&
		    CRYPTO_memcmp(cfg->access_tokens[i], tok, n) == 0)
			ok = 1;
	return ok;
}

/*
 * Once a request's head is in, before its body is read: with access_tokens
 * set, the client must present one as its key, else 401.  Returns 0, or
 * -1 when the answer has been sent.
 */
int
proxy_admit(struct conn *c)
{
	const char	*v, *q;
	char		 tok[CFG_TOKEN_MAX];
	size_t		 n;
	int		 ok;

	if (looper.cfg->naccess_tokens == 0)
		return 0;
	if ((v = http_header(&c->req, "x-goog-api-key")) != NULL &&
	    token_ok(v, strlen(v)))
		return 0;
	if ((v = http_bearer(http_header(&c->req, "authorization"),
	    &n)) != NULL && token_ok(v, n))
		return 0;
	q = c->req.target + c->req.path_len;
	if (*q == '?' && http_query_param(q + 1, "key", tok,
	    sizeof(tok)) >= 0) {
		ok = token_ok(tok, strlen(tok));
		explicit_bzero(tok, sizeof(tok));
		if (ok)
			return 0;
	}
	conn_error(c, 401, "a valid access token is required: send it as "
	    "x-goog-api-key, ?key= or Authorization: Bearer",
	    "WWW-Authenticate: Bearer\r\n");
	return -1;
}

/* Copy the name "files/abc" or "cachedContents/xyz" found at p. */
static int
object_name(const char *p, const char *end, char *out, size_t outlen)
{
	const char	*s = p;
	size_t		 n;

	if (route_prefix(p, end - p, "files/"))
		s = p + 6;
	else if (route_prefix(p, end - p, "cachedContents/"))
		s = p + 15;
	else
		return -1;
	while (s < end && ((*s >= 'a' && *s <= 'z') || (*s >= '0' &&
	    *s <= '9') || (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_'))
		s++;
	n = s - p;
	if (n >= outlen || p[n - 1] == '/')
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/*
 * Does this request name an object that belongs to one key's project?
 * In the path (files/x, cachedContents/x), in the upload session, or in
 * the body (fileUri, cachedContent).  Sets x->prefer.
 */
static void
find_owner(struct px *x)
{
	const char	*p, *end, *hay;
	char		 name[SHM_AFF_NAME];
	size_t		 i;
	static const char *const needles[] = { "files/", "cachedContents/" };

	x->prefer = -1;
	if (x->upload && http_query_param(x->query, "upload_id",
	    x->upload_id, sizeof(x->upload_id)) >= 0) {
		snprintf(name, sizeof(name), "upload:%.80s", x->upload_id);
		x->prefer = shm_affinity_get(looper.shm, name);
		return;
	}
	end = x->path + x->path_len;
	for (i = 0; i < 2; i++) {
		p = memmem(x->path, x->path_len, needles[i],
		    strlen(needles[i]));
		if (p != NULL && object_name(p, end, name, sizeof(name)) == 0 &&
		    (x->prefer = shm_affinity_get(looper.shm, name)) >= 0)
			return;
	}
	/* A generate request may name a file or a cached content: the body
	 * is scanned as text, whatever its size, in one pass per needle. */
	if (x->c->body_len == 0)
		return;
	for (i = 0; i < 2; i++) {
		hay = x->c->body;
		end = x->c->body + x->c->body_len;
		while ((p = memmem(hay, end - hay, needles[i],
		    strlen(needles[i]))) != NULL) {
			if (object_name(p, end, name, sizeof(name)) == 0 &&
			    (x->prefer = shm_affinity_get(looper.shm,
			    name)) >= 0)
				return;
			hay = p + 1;
		}
	}
}

/* What kind of request is this, and on which model is it metered? */
static void
classify_request(struct px *x)
{
	const char	*colon, *slash;
	int		 have_model = 0;

	x->openai = memmem(x->path, x->path_len, "/openai/", 8) != NULL;
	x->upload = route_prefix(x->path, x->path_len, "/upload/");
	x->kind = PX_OTHER;
	x->scan_mode = GEM_SCAN_JSON;
	if (x->openai) {
		x->scan_mode = GEM_SCAN_OPENAI;
		if (strcmp(x->c->req.method, "POST") == 0 && x->c->body_len > 0 &&
		    gem_model_from_body(x->c->body, x->c->body_len, x->model,
		    sizeof(x->model)) == 0) {
			have_model = 1;
			x->kind = PX_GENERATE;
		}
	} else if (gem_model_from_path(x->path, x->path_len, x->model,
	    sizeof(x->model)) == 0) {
		have_model = 1;
		colon = memchr(x->path, ':', x->path_len);
		slash = colon;
		if (colon != NULL && strcmp(x->c->req.method, "POST") == 0) {
			if (route_prefix(colon, x->path + x->path_len - colon,
			    ":countTokens"))
				x->kind = PX_COUNT;
			else
				x->kind = PX_GENERATE;
		}
		(void)slash;
	}
	if (x->query != NULL && strstr(x->query, "alt=sse") != NULL &&
	    !x->openai)
		x->scan_mode = GEM_SCAN_SSE;
	if (!have_model)
		strlcpy(x->model, looper.cfg->default_model,
		    sizeof(x->model));
	x->model_slot = shm_model_slot(looper.shm, x->model);
	x->est = x->kind == PX_GENERATE ?
	    gem_estimate_tokens(x->c->body_len) : -1;
}

/* A header name and its length: the length rules most names out. */
struct px_name {
	const char	*name;
	size_t		 len;
};
#define PX_NAME(s)	{ s, sizeof(s) - 1 }

static int
name_in(const char *name, size_t n, const struct px_name *set, size_t nset)
{
	size_t	 i;

	for (i = 0; i < nset; i++)
		if (set[i].len == n && strcasecmp(name, set[i].name) == 0)
			return 1;
	return 0;
}

/* Headers a proxy never forwards (RFC 9110 7.6.1), plus credentials. */
static int
drop_request_header(const char *name, const char *connection)
{
	static const struct px_name drop[] = {
		PX_NAME("connection"), PX_NAME("keep-alive"),
		PX_NAME("proxy-connection"), PX_NAME("te"),
		PX_NAME("trailer"), PX_NAME("transfer-encoding"),
		PX_NAME("upgrade"), PX_NAME("host"),
		PX_NAME("content-length"), PX_NAME("expect"),
		PX_NAME("proxy-authorization"), PX_NAME("proxy-authenticate"),
		PX_NAME("x-goog-api-key"), PX_NAME("authorization"),
		PX_NAME("accept-encoding")
	};
	const char	*p;
	size_t		 n = strlen(name);

	if (name_in(name, n, drop, sizeof(drop) / sizeof(drop[0])))
		return 1;
	/* And whatever the client's Connection header names. */
	for (p = connection; p != NULL && *p != '\0';) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (strncasecmp(p, name, n) == 0 && (p[n] == '\0' ||
		    p[n] == ',' || p[n] == ' ' || p[n] == '\t'))
			return 1;
		p = strchr(p, ',');
	}
	return 0;
}

static int
append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((__format__ (printf, 4, 5)));

static int
append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (*len >= cap)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len) {
		*len = cap;
		return -1;
	}
	*len += n;
	return 0;
}

/* append(buf, cap, len, "%s: %s\r\n", name, value), without printf. */
static int
append_field(char *buf, size_t cap, size_t *len, const char *name,
    const char *value)
{
	size_t	 nl = strlen(name), vl = strlen(value);

	if (*len >= cap || nl + vl + 4 >= cap - *len) {
		*len = cap;
		return -1;
	}
	memcpy(buf + *len, name, nl);
	memcpy(buf + *len + nl, ": ", 2);
	memcpy(buf + *len + nl + 2, value, vl);
	memcpy(buf + *len + nl + 2 + vl, "\r\n", 2);
	*len += nl + vl + 4;
	return 0;
}

/* The upstream's Host header: brackets for IPv6, port unless default. */
static void
upstream_host(char *out, size_t len)
{
	const struct config	*cfg = looper.cfg;
	int			 v6 = strchr(cfg->upstream_host, ':') != NULL;

	if (strcmp(cfg->upstream_port, "443") == 0)
		snprintf(out, len, v6 ? "[%s]" : "%s", cfg->upstream_host);
	else
		snprintf(out, len, v6 ? "[%s]:%s" : "%s:%s",
		    cfg->upstream_host, cfg->upstream_port);
}

/* Appends "?" and query q (NULL: nothing) without its key= parameters. */
static void
append_query(char *buf, size_t cap, size_t *len, const char *q)
{
	const char	*end;
	int		 first = 1;

	for (; q != NULL && *q != '\0'; q = *end == '&' ? end + 1 : end) {
		if ((end = strchr(q, '&')) == NULL)
			end = q + strlen(q);
		if (end - q >= 4 && strncmp(q, "key=", 4) == 0)
			continue;
		append(buf, cap, len, "%c%.*s", first ? '?' : '&',
		    (int)(end - q), q);
		first = 0;
	}
}

/*
 * The request head for the upstream, with the picked key.  The client's
 * key= is left out of the query; everything else goes as it came.
 */
static int
build_head(struct px *x)
{
	struct conn	*c = x->c;
	const char	*conn_hdr = http_header(&c->req, "connection");
	char		 host[300];
	size_t		 len = 0, i;

	x->head = px_reqhead;
	append(x->head, PX_HEAD_MAX, &len, "%s %s%.*s", c->req.method,
	    looper.cfg->upstream_prefix, (int)x->path_len, x->path);
	append_query(x->head, PX_HEAD_MAX, &len, x->query);
	upstream_host(host, sizeof(host));
	append(x->head, PX_HEAD_MAX, &len, " HTTP/1.1\r\nHost: %s\r\n", host);
	for (i = 0; i < c->req.nhdr; i++) {
		if (drop_request_header(c->req.hdr[i].name, conn_hdr))
			continue;
		append_field(x->head, PX_HEAD_MAX, &len, c->req.hdr[i].name,
		    c->req.hdr[i].value);
	}
	if (x->openai)
		append(x->head, PX_HEAD_MAX, &len,
		    "Authorization: Bearer %s\r\n", x->pick.key_str);
	else
		append(x->head, PX_HEAD_MAX, &len, "x-goog-api-key: %s\r\n",
		    x->pick.key_str);
	/* The answer's usage is read on the fly: it must not be gzipped. */
	append(x->head, PX_HEAD_MAX, &len, "Accept-Encoding: identity\r\n");
	if (c->body_len > 0 || strcmp(c->req.method, "POST") == 0 ||
	    strcmp(c->req.method, "PUT") == 0 ||
	    strcmp(c->req.method, "PATCH") == 0)
		append(x->head, PX_HEAD_MAX, &len, "Content-Length: %zu\r\n",
		    c->body_len);
	if (append(x->head, PX_HEAD_MAX, &len, "\r\n") == -1)
		return -1;
	x->head_len = len;
	return 0;
}

static void
wipe_head(struct px *x)
{
	if (x->head != NULL)
		explicit_bzero(x->head, x->head_len);
	x->head_len = 0;
}

static int
ensure_upstream(struct px *x)
{
	if (up_ready)
		return 0;
	if ((up = up_new(looper.cfg)) == NULL) {
		conn_error(x->c, 502, "out of memory", NULL);
		return -1;
	}
	up_ready = 1;
	return 0;
}

/* Wait ms for a key to free, unless the client goes away first. */
static int
throttle_wait(struct px *x, int64_t ms)
{
	struct pollfd	 pfd;
	int64_t		 end = mono_ms() + ms, left;

	pfd.fd = x->c->fd;
	pfd.events = POLLRDHUP;
	while ((left = end - mono_ms()) > 0) {
		if (poll(&pfd, 1, (int)left) > 0 &&
		    (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return -1;
	}
	return 0;
}

/*
 * No key can serve: 429 with when to come back (free_ms: until the
 * earliest key of the pool frees, tried ones included; -1: none will
 * before the daily reset), or 503 when every key is invalid.
 */
static void
no_key(struct px *x, int64_t free_ms, int all_invalid)
{
	char		 extra[64], msg[320];
	int64_t		 secs, now = now_ms();

	if (all_invalid) {
		conn_error(x->c, 503, "every API key in the pool was rejected "
		    "by the upstream as invalid; fix the keys and reload", NULL);
		return;
	}
	if (free_ms >= 0)
		secs = (free_ms + 999) / 1000;
	else if (looper.shm->next_reset > now)
		secs = (looper.shm->next_reset - now + 999) / 1000;
	else
		secs = 60;
	if (secs < 1)
		secs = 1;
	snprintf(extra, sizeof(extra), "Retry-After: %lld\r\n",
	    (long long)secs);
	if (x->sent >= looper.cfg->max_attempts)
		snprintf(msg, sizeof(msg), "%d API keys tried for model %s "
		    "were rate-limited or out of quota (max_attempts); retry "
		    "in %llds", x->sent, x->model, (long long)secs);
	else
		snprintf(msg, sizeof(msg), "every API key in the pool is "
		    "rate-limited or out of quota for model %s; retry in "
		    "%llds", x->model, (long long)secs);
	conn_error(x->c, 429, msg, extra);
}

static void
tried_add(struct px *x, int key)
{
	if (x->ntried < PX_MAX_TRIED)
		x->tried[x->ntried++] = key;
}

/* Response headers a proxy does not pass on, or sets itself. */
static int
drop_response_header(const char *name)
{
	static const struct px_name drop[] = {
		PX_NAME("connection"), PX_NAME("keep-alive"),
		PX_NAME("proxy-connection"), PX_NAME("te"),
		PX_NAME("trailer"), PX_NAME("transfer-encoding"),
		PX_NAME("upgrade"), PX_NAME("content-length"),
		PX_NAME("date"), PX_NAME("server")
	};

	return name_in(name, strlen(name), drop,
	    sizeof(drop) / sizeof(drop[0]));
}

/*
 * x-goog-upload-url points at the upstream: point it at us instead, and
 * without the key= Google puts in it (the upload id is the session's
 * credential; the proxy adds a key of the same project to each chunk).
 */
static int
rewrite_upload_url(struct px *x, const char *v, char *out, size_t cap)
{
	const char	*host = http_header(&x->c->req, "host");
	const char	*path, *q;
	size_t		 len = 0;

	if (host == NULL || strncmp(v, "https://", 8) != 0 ||
	    (path = strchr(v + 8, '/')) == NULL)
		return -1;
	/* Our prefix, if any, is not part of what the client addresses. */
	if (looper.cfg->upstream_prefix[0] != '\0' && strncmp(path,
	    looper.cfg->upstream_prefix,
	    strlen(looper.cfg->upstream_prefix)) == 0)
		path += strlen(looper.cfg->upstream_prefix);
	q = strchr(path, '?');
	append(out, cap, &len, "http://%s%.*s", host,
	    (int)(q != NULL ? (size_t)(q - path) : strlen(path)), path);
	append_query(out, cap, &len, q != NULL ? q + 1 : NULL);
	return len < cap ? 0 : -1;
}

/*
 * Write iov[0..n) in order: one writev when the socket takes it all, the
 * rest the slow way.  One write is one segment, and one wake-up for the
 * client, per answer or per event.
 */
static int
write_iov(struct conn *c, struct iovec *iov, int n)
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
frame_piece(struct px *x, int chunked, const char *buf, size_t len, int fin,
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
 * The head of our answer: the upstream's status and end-to-end headers,
 * and our own framing.  chunked: the body is relayed as it comes.  The
 * first piece of the body, body_len bytes (framed as chunked says; fin:
 * and the last chunk), leaves in the same write.
 */
static int
send_head(struct px *x, int chunked, int64_t length, const char *body,
    size_t body_len, int fin)
{
	struct conn	*c = x->c;
	struct up_resp	*r = &x->resp;
	char		*h = px_anshead, url[2048], name[SHM_AFF_NAME];
	char		 id[1024], sz[32];
	struct iovec	 iov[4];
	size_t		 len = 0, i;
	int		 head_only, niov = 1;

	if (wrk_stopping())
		c->close = 1;
	append(h, PX_HEAD_MAX, &len, "HTTP/1.1 %d %s\r\nDate: %s\r\n",
	    r->status, http_reason(r->status), conn_date());
	for (i = 0; i < r->nhdr; i++) {
		const char *n = r->hdr[i].name, *v = r->hdr[i].value;

		if (drop_response_header(n))
			continue;
		if (strcasecmp(n, "x-goog-upload-url") == 0 &&
		    rewrite_upload_url(x, v, url, sizeof(url)) == 0) {
			if (strchr(v, '?') != NULL &&
			    http_query_param(strchr(v, '?') + 1, "upload_id",
			    id, sizeof(id)) >= 0) {
				snprintf(name, sizeof(name), "upload:%.80s",
				    id);
				shm_affinity_put(looper.shm, name,
				    x->pick.key);
			}
			v = url;
		}
		append_field(h, PX_HEAD_MAX, &len, n, v);
	}
	head_only = strcmp(c->req.method, "HEAD") == 0 || r->no_body;
	if (head_only) {
		if (length >= 0)
			append(h, PX_HEAD_MAX, &len,
			    "Content-Length: %lld\r\n", (long long)length);
	} else if (chunked) {
		if (c->req.minor == 0)
			c->close = 1;	/* 1.0: the end is the close */
		else
			append(h, PX_HEAD_MAX, &len,
			    "Transfer-Encoding: chunked\r\n");
	} else
		append(h, PX_HEAD_MAX, &len, "Content-Length: %lld\r\n",
		    (long long)length);
	if (c->close)
		append(h, PX_HEAD_MAX, &len, "Connection: close\r\n");
	else if (c->req.minor == 0)
		append(h, PX_HEAD_MAX, &len, "Connection: keep-alive\r\n");
	if (append(h, PX_HEAD_MAX, &len, "\r\n") == -1)
		return -1;
	/* No secret leaves in a header, whatever the status: the whole
	 * head is scrubbed at once (a mask only shortens a line). */
	len = scrub(h, len);
	c->status = r->status;
	c->sent_head = 1;
	iov[0].iov_base = h;
	iov[0].iov_len = len;
	if (body_len > 0 && !head_only)
		frame_piece(x, chunked, body, body_len, fin, sz, sizeof(sz),
		    iov, &niov);
	return write_iov(c, iov, niov);
}

/* One relayed piece, in the client's framing (fin: the last one). */
static int
relay_piece(struct px *x, int chunked, const char *buf, size_t len, int fin)
{
	char		 sz[32];
	struct iovec	 iov[3];
	int		 n = 0;

	frame_piece(x, chunked, buf, len, fin, sz, sizeof(sz), iov, &n);
	return write_iov(x->c, iov, n);
}

/* Remember which key made a file or a cached content. */
static void
note_created(struct px *x, const char *buf, size_t n)
{
	const char	*p, *end = buf + n;
	char		 name[SHM_AFF_NAME];

	if (!(x->upload || memmem(x->path, x->path_len, "/files", 6) != NULL ||
	    memmem(x->path, x->path_len, "/cachedContents", 15) != NULL))
		return;
	if (strcmp(x->c->req.method, "POST") != 0 && !x->upload)
		return;
	for (p = buf; (p = memmem(p, end - p, "\"name\"", 6)) != NULL; p++) {
		p += 6;
		while (p < end && (*p == ' ' || *p == ':' || *p == '\n' ||
		    *p == '\r' || *p == '\t'))
			p++;
		if (p < end && *p == '"' &&
		    object_name(p + 1, end, name, sizeof(name)) == 0) {
			shm_affinity_put(looper.shm, name, x->pick.key);
			return;
		}
	}
}

static void
log_usage(struct px *x)
{
	const struct gem_usage	*u = &x->scan.usage;

	if (!log_wants(LOG_NOTICE))
		return;		/* only the access log shows it */
	snprintf(x->c->log, sizeof(x->c->log), "key=%s model=%s attempts=%d "
	    "prompt=%lld candidates=%lld cached=%lld thoughts=%lld total=%lld",
	    x->pick.id[0] ? x->pick.id : "-", x->model, x->sent,
	    (long long)u->prompt, (long long)u->candidates,
	    (long long)u->cached, (long long)u->thoughts, (long long)u->total);
}

/* Settle the pick with what the scanner saw (or only count the request). */
static void
settle(struct px *x)
{
	struct shm_tokens	 t;
	const struct gem_usage	*u = &x->scan.usage;

	if (u->seen) {
		t.prompt = u->prompt;
		t.candidates = u->candidates;
		t.cached = u->cached;
		t.thoughts = u->thoughts;
		t.total = u->total;
		shm_settle(looper.shm, &x->pick, &t);
	} else if (x->scan.error_seen)
		shm_release(looper.shm, &x->pick);
	else
		shm_settle(looper.shm, &x->pick, NULL);
}

/*
 * The client went away (while the request waited for a key, went upstream,
 * or was relayed): the upstream connection is closed at once, so that
 * Gemini stops generating, and the request is logged as nginx does, 499.
 * Usage is settled by the caller.
 */
static void
client_gone(struct px *x)
{
	if (up_fd(up) != -1)
		up_close(up);
	x->c->status = 499;
	x->c->close = 1;
}

/*
 * Relay a good answer: head, then each piece of the body as it arrives.
 * The connection to the client is marked for closing when the relay could
 * not finish.
 */
static void
relay(struct px *x)
{
	struct up_resp	*r = &x->resp;
	char		 buf[PX_RELAY_BUF];
	ssize_t		 n = 0;
	size_t		 scanned = 0, held = 0;
	int		 chunked, gone = 0, head_only, more = 1, fin = 0;
	int64_t		 deadline;

	chunked = !(r->content_length >= 0 && !r->chunked);
	head_only = strcmp(x->c->req.method, "HEAD") == 0 || r->no_body;
	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	/* What came with the head goes with ours: a short answer, whole. */
	if (!head_only && up_body_ready(up)) {
		deadline = mono_ms() + (int64_t)looper.cfg->upstream_timeout_s *
		    1000;
		if ((n = up_read_body(up, buf, sizeof(buf), deadline)) > 0) {
			gem_scan_feed(&x->scan, buf, n);
			note_created(x, buf, n);
			scanned = held = n;
			fin = up_body_done(up);
		}
		more = n > 0 && !fin;	/* else the end, or a failure */
	}
	if (send_head(x, chunked, r->content_length, buf, held, fin) == -1) {
		gone = 1;
		goto done;
	}
	if (head_only)
		goto done;
	while (more) {
		deadline = mono_ms() + (int64_t)looper.cfg->upstream_timeout_s *
		    1000;
		n = up_read_body(up, buf, sizeof(buf), deadline);
		if (n <= 0)
			break;
		gem_scan_feed(&x->scan, buf, n);
		if (scanned < PX_NAMESCAN_MAX) {
			note_created(x, buf, n);
			scanned += n;
		}
		/* The end came with this piece: the last chunk goes too. */
		fin = up_body_done(up);
		if (relay_piece(x, chunked, buf, n, fin) == -1) {
			gone = 1;
			break;
		}
		more = !fin;
	}
	if (n < 0 && up_gone(up))
		gone = 1;	/* hung up while we waited for more */
	if (fin)
		n = 0;		/* whole, its last chunk sent if it needs one */
	else if (!gone && n == 0 && chunked && x->c->req.minor == 1 &&
	    conn_write(x->c, "0\r\n\r\n", 5) == -1)
		gone = 1;
	if (n < 0 && !gone) {
		/* The upstream broke mid-answer: the client cannot tell a
		 * cut answer from a whole one unless we close. */
		x->c->close = 1;
		log_warnx("upstream answer cut short: key=%s model=%s",
		    x->pick.id, x->model);
	}
done:
	if (gone)
		client_gone(x);
	else if (n < 0 || !up_body_done(up) || r->close)
		up_close(up);
	settle(x);
}

/*
 * Read an error answer whole, at most cap bytes: it is classified before
 * anything of it is relayed.  Returns its length, -1 when the upstream
 * broke off (or the client went away), and sets *over when the answer
 * was longer than cap (the upstream connection is then closed).
 */
static ssize_t
read_error_body(struct px *x, char *buf, size_t cap, int *over)
{
	size_t		 len = 0;
	ssize_t		 n;
	int64_t		 deadline = mono_ms() +
	    (int64_t)looper.cfg->upstream_timeout_s * 1000;

	*over = 0;
	if (x->resp.no_body || strcmp(x->c->req.method, "HEAD") == 0)
		return 0;
	while (len < cap) {
		n = up_read_body(up, buf + len, cap - len, deadline);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += n;
	}
	*over = len == cap && !up_body_done(up);
	if (!up_body_done(up) || x->resp.close)
		up_close(up);
	return len;
}

/*
 * Pass the held error answer on as it came, with every secret in it
 * masked; one cut at PX_ERRBODY_MAX is not passed (its JSON is broken,
 * and a key may straddle the cut): our own error with its status instead.
 */
static void
pass_error(struct px *x)
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
	x->elen = scrub(x->ebody, x->elen);
	if (send_head(x, 0, x->elen, x->ebody, x->elen, 0) == -1)
		x->c->close = 1;
}

/*
 * The status a client gets for an upstream that could not be reached or
 * did not answer, by what failed (upstream.h): 504 when a deadline passed
 * (the lookup, the connection, the handshake, the sending or the wait for
 * the answer's head), 502 for every other way.  The one place that maps a
 * failure to a status.
 */
static int
fault_status(enum up_fail fault)
{
	return fault == UP_ERR_TIMEOUT ? 504 : 502;
}

/*
 * No attempt left, or no key to make one with: what the client gets.  A
 * held upstream answer (an upstream fault that the one retry did not get
 * past, or the answer to a request that costs no quota) goes as it came;
 * a fault without an answer is a 502 or 504; otherwise our 429 or 503.
 */
static void
give_up(struct px *x, int64_t free_ms, int all_invalid)
{
	if (x->held == PX_HELD_ANSWER)
		pass_error(x);
	else if (x->held == PX_HELD_FAULT)
		conn_error(x->c, fault_status(x->fault),
		    "the upstream did not answer", NULL);
	else
		no_key(x, free_ms, all_invalid);
}

/* What the classifier decided, applied to the key and logged. */
static void
apply_verdict(struct px *x, const struct gem_verdict *v)
{
	switch (v->action) {
	case GEM_COOL:
		shm_cool(looper.shm, &x->pick, now_ms() + v->delay_ms,
		    v->reason);
		log_info("key=%s model=%s status=%d cooling %lld ms: %s",
		    x->pick.id, x->model, x->resp.status,
		    (long long)v->delay_ms, v->why);
		break;
	case GEM_EXHAUST:
		shm_exhaust(looper.shm, &x->pick, v->reason);
		log_info("key=%s model=%s status=%d exhausted until the daily "
		    "reset: %s", x->pick.id, x->model, x->resp.status, v->why);
		break;
	case GEM_INVALID:
		shm_invalidate(looper.shm, &x->pick, v->why);
		log_warnx("key=%s rejected by the upstream (status=%d %s): out "
		    "of the pool until a reload", x->pick.id, x->resp.status,
		    v->why);
		break;
	case GEM_RETRY:
		log_info("key=%s model=%s status=%d: upstream fault%s",
		    x->pick.id, x->model, x->resp.status, x->retried_fault ||
		    x->prefer >= 0 ? "" : ", retrying on another key");
		break;
	case GEM_PASS:
		break;
	}
}

/*
 * Send the request upstream with the pick and read the answer's head.
 * A kept-alive connection that the upstream had just closed is tried once
 * more on a new one, same key.  Returns 0, or -1 with the failure kept by
 * the upstream (up_failure, up_error).
 */
static int
exchange(struct px *x)
{
	struct conn	*c = x->c;
	int64_t		 deadline;
	int		 rv, fresh = 0;

	for (;;) {
		deadline = mono_ms() + (int64_t)looper.cfg->upstream_timeout_s *
		    1000;
		rv = up_request(up, x->head, x->head_len, c->body, c->body_len,
		    deadline, NULL, 0);
		if (rv == 0) {
			x->sent++;
			rv = up_read_head(up, &x->resp,
			    strcmp(c->req.method, "HEAD") == 0, deadline, NULL,
			    0);
		}
		if (rv == -1 && up_stale(up) && !fresh) {
			up_close(up);
			fresh = 1;
			if (x->sent > 0)
				x->sent--;	/* it never arrived */
			continue;
		}
		return rv;
	}
}

/* What a step of the request's loop says: go round again, or it is over. */
enum px_next {
	PX_AGAIN,
	PX_DONE
};

/*
 * A key to send with, reserved in x->pick: PX_AGAIN once there is one.
 * No key can take the request: it waits, when one frees within
 * max_wait_s and the client stays, else the client gets its answer
 * (give_up), as it does once max_attempts requests went out.
 */
static enum px_next
pick_or_wait(struct px *x)
{
	int64_t	 free_ms;
	int	 all_invalid;

	for (;;) {
		if (x->sent >= looper.cfg->max_attempts) {
			free_ms = shm_free_ms(looper.shm, x->model_slot, x->est,
			    now_ms(), &all_invalid);
			give_up(x, free_ms, all_invalid);
			return PX_DONE;
		}
		if (shm_pick(looper.shm, x->model_slot, x->est, x->tried,
		    x->ntried, x->prefer, now_ms(), &x->pick) == 0)
			return PX_AGAIN;
		if (x->wait_end == 0)
			x->wait_end = mono_ms() +
			    (int64_t)looper.cfg->max_wait_s * 1000;
		if (x->pick.all_invalid || x->pick.wait_ms < 0 ||
		    mono_ms() + x->pick.wait_ms > x->wait_end) {
			give_up(x, x->pick.free_ms, x->pick.all_invalid);
			return PX_DONE;
		}
		/* The seed's small delay: a key frees soon. */
		board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
		if (throttle_wait(x, x->pick.wait_ms + 1) == -1) {
			client_gone(x);
			return PX_DONE;
		}
		x->waited = 1;
	}
}

/*
 * The exchange failed before an answer's head came: the client left
 * (the request counts if it went out), or the upstream could not be
 * reached or did not answer, which is retried once on another key.
 */
static enum px_next
exchange_failed(struct px *x, int sent_before)
{
	int	 key = x->pick.key;

	shm_note_upstream(looper.shm, &x->pick, 0, 0);
	if (up_gone(up)) {
		if (x->sent > sent_before)
			shm_settle(looper.shm, &x->pick, NULL);
		else
			shm_cancel(looper.shm, &x->pick);
		client_gone(x);
		return PX_DONE;
	}
	up_close(up);
	shm_release(looper.shm, &x->pick);
	log_warnx("upstream: %s (key=%s model=%s)", up_error(up), x->pick.id,
	    x->model);
	x->held = PX_HELD_FAULT;
	x->fault = up_failure(up);
	/* Before the answer started: once more, elsewhere. */
	if (!x->retried_fault && x->prefer < 0) {
		x->retried_fault = 1;
		tried_add(x, key);
		return PX_AGAIN;
	}
	give_up(x, -1, 0);
	return PX_DONE;
}

/*
 * An error answer: read it whole, classify it, apply the verdict to the
 * key, and either pass it on or try again (another key, or the same one
 * once its short cool-down is over).
 */
static enum px_next
error_answer(struct px *x)
{
	struct gem_verdict	 v;
	int			 key, over;

	if (x->ebody == NULL &&
	    (x->ebody = malloc(PX_ERRBODY_MAX + 1)) == NULL) {
		up_close(up);
		shm_release(looper.shm, &x->pick);
		conn_error(x->c, 500, "out of memory", NULL);
		return PX_DONE;
	}
	x->elen = read_error_body(x, x->ebody, PX_ERRBODY_MAX, &over);
	if (x->elen < 0) {
		shm_note_upstream(looper.shm, &x->pick, x->resp.status, 0);
		if (up_gone(up)) {
			shm_settle(looper.shm, &x->pick, NULL);
			client_gone(x);
			return PX_DONE;
		}
		up_close(up);
		shm_release(looper.shm, &x->pick);
		conn_error(x->c, 502, "the upstream's answer was cut short",
		    NULL);
		return PX_DONE;
	}
	x->ebody[x->elen] = '\0';
	x->held_over = over;
	gem_classify(x->resp.status, x->ebody, x->elen, &v);
	/* A request that costs no quota says nothing about the model's
	 * quota: its 429 leaves the key alone, and the next key is tried. */
	if (x->est < 0 && (v.action == GEM_COOL || v.action == GEM_EXHAUST))
		v.action = GEM_PASS;
	shm_note_upstream(looper.shm, &x->pick, x->resp.status,
	    v.action == GEM_EXHAUST ? SHM_Q_DAY : v.action == GEM_COOL &&
	    v.reason != SHM_R_429 ? SHM_Q_MINUTE : SHM_Q_OTHER);
	apply_verdict(x, &v);
	key = x->pick.key;
	shm_release(looper.shm, &x->pick);
	switch (v.action) {
	case GEM_PASS:
		x->held = PX_HELD_ANSWER;
		if (x->resp.status == 429 && x->prefer < 0) {
			tried_add(x, key);
			return PX_AGAIN;	/* another key may answer */
		}
		break;
	case GEM_RETRY:
		x->held = PX_HELD_ANSWER;
		if (x->retried_fault || x->prefer >= 0)
			break;
		x->retried_fault = 1;
		tried_add(x, key);
		return PX_AGAIN;
	default:
		/* The key's state now keeps it out (or in, after a short
		 * cool-down: it counts for the wait). */
		return PX_AGAIN;
	}
	pass_error(x);
	return PX_DONE;
}

/*
 * The journey: pick a key (or wait for one), send the request and read
 * the answer's head, then relay a good answer or weigh an error one, as
 * often as the verdicts say and max_attempts allows.
 */
void
proxy_handle(struct conn *c)
{
	struct px	 x;
	const char	*q;
	int		 sent;

	memset(&x, 0, offsetof(struct px, resp));
	x.c = c;
	x.path = c->req.target;
	x.path_len = c->req.path_len;
	q = c->req.target + c->req.path_len;
	x.query = *q == '?' ? q + 1 : NULL;
	x.pick.key = -1;

	classify_request(&x);
	if (x.model_slot < 0) {
		conn_error(c, 500, "no model slot", NULL);
		return;
	}
	find_owner(&x);
	if (ensure_upstream(&x) == -1)
		return;
	gem_scan_init(&x.scan, x.scan_mode);
	up_watch(up, c->fd);

	while (pick_or_wait(&x) == PX_AGAIN) {
		if (build_head(&x) == -1) {
			shm_release(looper.shm, &x.pick);
			conn_error(c, 431, "request head too large to forward",
			    NULL);
			break;
		}
		board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
		sent = x.sent;
		x.held = PX_HELD_NONE;
		if (exchange(&x) == -1) {
			wipe_head(&x);
			if (exchange_failed(&x, sent) == PX_DONE)
				break;
			continue;
		}
		wipe_head(&x);
		if (x.resp.status < 400) {
			shm_note_upstream(looper.shm, &x.pick, x.resp.status, 0);
			relay(&x);
			break;
		}
		if (error_answer(&x) == PX_DONE)
			break;
	}
	up_watch(up, -1);	/* the client's fd is closed and reused next */
	log_usage(&x);
	shm_note_request(looper.shm, x.model_slot, c->status,
	    mono_ms() - c->started, x.sent > 1 ? x.sent - 1 : 0, x.waited);
	if (x.ebody != NULL) {
		explicit_bzero(x.ebody, PX_ERRBODY_MAX);
		free(x.ebody);
	}
	explicit_bzero(&x.pick.key_str, sizeof(x.pick.key_str));
}
