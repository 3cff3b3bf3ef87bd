/*
 * The heads that cross the proxy, rewritten on the way.
 *
 *   - the request's, for the upstream: the client's credentials (its
 *     x-goog-api-key, Authorization, ?key=) and hop-by-hop fields out, the
 *     picked pool key, the upstream's Host and our framing in;
 *   - the answer's, for the client: hop-by-hop fields out, an upload URL
 *     pointed at us instead of the upstream, our Date and framing in, and
 *     every secret of the config masked.
 *
 * proxy.c builds the request head once a key is picked, and wipes it once
 * sent (it holds the key); relay.c writes the answer head.  Heads are
 * built in static buffers: a worker serves one request at a time.  No
 * lock is taken here.
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "http.h"
#include "looper.h"
#include "px.h"
#include "scrub.h"
#include "worker.h"

static char	 rw_reqhead[PX_HEAD_MAX];	/* to the upstream */
static char	 rw_anshead[PX_HEAD_MAX];	/* to the client */

/* A header name and its length: the length rules most names out. */
struct rw_name {
	const char	*name;
	size_t		 len;
};
#define RW_NAME(s)	{ s, sizeof(s) - 1 }
#define RW_NNAMES(a)	(sizeof(a) / sizeof((a)[0]))

static int	 rw_append(char *, size_t, size_t *, const char *, ...)
		    __attribute__((__format__ (printf, 4, 5)));

static int
rw_name_in(const char *name, size_t n, const struct rw_name *set,
    size_t nset)
{
	size_t	 i;

	for (i = 0; i < nset; i++)
		if (set[i].len == n && strcasecmp(name, set[i].name) == 0)
			return 1;
	return 0;
}

/* Headers a proxy never forwards (RFC 9110 7.6.1), plus credentials. */
static int
rw_drop_request_field(const char *name, const char *connection)
{
	static const struct rw_name drop[] = {
		RW_NAME("connection"), RW_NAME("keep-alive"),
		RW_NAME("proxy-connection"), RW_NAME("te"),
		RW_NAME("trailer"), RW_NAME("transfer-encoding"),
		RW_NAME("upgrade"), RW_NAME("host"),
		RW_NAME("content-length"), RW_NAME("expect"),
		RW_NAME("proxy-authorization"), RW_NAME("proxy-authenticate"),
		RW_NAME("x-goog-api-key"), RW_NAME("authorization"),
		RW_NAME("accept-encoding")
	};
	const char	*p;
	size_t		 n = strlen(name);

	if (rw_name_in(name, n, drop, RW_NNAMES(drop)))
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

/* Response headers a proxy does not pass on, or sets itself. */
static int
rw_drop_answer_field(const char *name)
{
	static const struct rw_name drop[] = {
		RW_NAME("connection"), RW_NAME("keep-alive"),
		RW_NAME("proxy-connection"), RW_NAME("te"),
		RW_NAME("trailer"), RW_NAME("transfer-encoding"),
		RW_NAME("upgrade"), RW_NAME("content-length"),
		RW_NAME("date"), RW_NAME("server")
	};

	return rw_name_in(name, strlen(name), drop, RW_NNAMES(drop));
}

/*
 * Append to buf[*len..cap) as printf does.  Returns 0, or -1 when it does
 * not fit: *len is then cap, and every later append fails too.
 */
static int
rw_append(char *buf, size_t cap, size_t *len, const char *fmt, ...)
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

/* rw_append(buf, cap, len, "%s: %s\r\n", name, value), without printf. */
static int
rw_append_field(char *buf, size_t cap, size_t *len, const char *name,
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

/* Appends "?" and query q (NULL: nothing) without its key= parameters. */
static void
rw_append_query(char *buf, size_t cap, size_t *len, const char *q)
{
	const char	*end;
	int		 first = 1;

	for (; q != NULL && *q != '\0'; q = *end == '&' ? end + 1 : end) {
		if ((end = strchr(q, '&')) == NULL)
			end = q + strlen(q);
		if (end - q >= 4 && strncmp(q, "key=", 4) == 0)
			continue;
		rw_append(buf, cap, len, "%c%.*s", first ? '?' : '&',
		    (int)(end - q), q);
		first = 0;
	}
}

/*
 * The request head for the upstream, with the picked key, into x->head.
 * The client's key= is left out of the query; everything else goes as it
 * came.  Returns 0, or -1 when it does not fit.
 */
int
rw_request_head(struct px *x)
{
	struct conn	*c = x->c;
	const char	*conn_hdr = http_header(&c->req, "connection");
	size_t		 len = 0, i;

	x->head = rw_reqhead;
	rw_append(x->head, PX_HEAD_MAX, &len, "%s %s%.*s", c->req.method,
	    looper.cfg->upstream_prefix, (int)x->path_len, x->path);
	rw_append_query(x->head, PX_HEAD_MAX, &len, x->query);
	rw_append(x->head, PX_HEAD_MAX, &len, " HTTP/1.1\r\nHost: %s\r\n",
	    looper.cfg->upstream_authority);
	for (i = 0; i < c->req.nhdr; i++) {
		if (rw_drop_request_field(c->req.hdr[i].name, conn_hdr))
			continue;
		rw_append_field(x->head, PX_HEAD_MAX, &len, c->req.hdr[i].name,
		    c->req.hdr[i].value);
	}
	if (x->openai)
		rw_append(x->head, PX_HEAD_MAX, &len,
		    "Authorization: Bearer %s\r\n", x->pick.key_str);
	else
		rw_append(x->head, PX_HEAD_MAX, &len, "x-goog-api-key: %s\r\n",
		    x->pick.key_str);
	/* The answer's usage is read on the fly: it must not be gzipped. */
	rw_append(x->head, PX_HEAD_MAX, &len, "Accept-Encoding: identity\r\n");
	if (c->body_len > 0 || strcmp(c->req.method, "POST") == 0 ||
	    strcmp(c->req.method, "PUT") == 0 ||
	    strcmp(c->req.method, "PATCH") == 0)
		rw_append(x->head, PX_HEAD_MAX, &len,
		    "Content-Length: %zu\r\n", c->body_len);
	if (rw_append(x->head, PX_HEAD_MAX, &len, "\r\n") == -1)
		return -1;
	x->head_len = len;
	return 0;
}

/* The request head holds a pool key: wiped once it is sent. */
void
rw_wipe_request_head(struct px *x)
{
	if (x->head != NULL)
		explicit_bzero(x->head, x->head_len);
	x->head_len = 0;
}

/*
 * x-goog-upload-url points at the upstream: point it at us instead, and
 * without the key= Google puts in it (the upload id is the session's
 * credential; the proxy adds a key of the same project to each chunk).
 */
static int
rw_upload_url(struct px *x, const char *v, char *out, size_t cap)
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
	rw_append(out, cap, &len, "http://%s%.*s", host,
	    (int)(q != NULL ? (size_t)(q - path) : strlen(path)), path);
	rw_append_query(out, cap, &len, q != NULL ? q + 1 : NULL);
	return len < cap ? 0 : -1;
}

/* The upstream's end-to-end header fields, for the client. */
static void
rw_answer_fields(struct px *x, char *h, size_t *len)
{
	const struct up_resp	*r = &x->resp;
	const char		*n, *v;
	char			 url[2048];
	size_t			 i;

	for (i = 0; i < r->nhdr; i++) {
		n = r->hdr[i].name;
		v = r->hdr[i].value;
		if (rw_drop_answer_field(n))
			continue;
		if (strcasecmp(n, "x-goog-upload-url") == 0 &&
		    rw_upload_url(x, v, url, sizeof(url)) == 0) {
			owner_upload_url(x, v);
			v = url;
		}
		rw_append_field(h, PX_HEAD_MAX, len, n, v);
	}
}

/*
 * The head of our answer: the upstream's status and end-to-end fields,
 * and our own framing.  head_only: no body follows (HEAD, 204...);
 * chunked: the body is relayed as it comes, else it is length bytes.  No
 * secret leaves in a field, whatever the status: the whole head is
 * scrubbed at once (a mask only shortens a line).  Returns the head, *len
 * bytes, or NULL when it does not fit.
 */
const char *
rw_answer_head(struct px *x, int head_only, int chunked, int64_t length,
    size_t *len)
{
	struct conn	*c = x->c;
	char		*h = rw_anshead;

	*len = 0;
	if (wrk_stopping())
		c->close = 1;
	rw_append(h, PX_HEAD_MAX, len, "HTTP/1.1 %d %s\r\nDate: %s\r\n",
	    x->resp.status, http_reason(x->resp.status), conn_date());
	rw_answer_fields(x, h, len);
	if (head_only) {
		if (length >= 0)
			rw_append(h, PX_HEAD_MAX, len,
			    "Content-Length: %lld\r\n", (long long)length);
	} else if (chunked) {
		if (c->req.minor == 0)
			c->close = 1;	/* 1.0: the end is the close */
		else
			rw_append(h, PX_HEAD_MAX, len,
			    "Transfer-Encoding: chunked\r\n");
	} else
		rw_append(h, PX_HEAD_MAX, len, "Content-Length: %lld\r\n",
		    (long long)length);
	if (c->close)
		rw_append(h, PX_HEAD_MAX, len, "Connection: close\r\n");
	else if (c->req.minor == 0)
		rw_append(h, PX_HEAD_MAX, len, "Connection: keep-alive\r\n");
	if (rw_append(h, PX_HEAD_MAX, len, "\r\n") == -1)
		return NULL;
	*len = scrub_text(looper.cfg->scrub, h, *len);
	return h;
}
