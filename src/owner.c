/*
 * Which key owns a named object.  A file, a cached content or a resumable
 * upload belongs to the Google project of the key that made it: another
 * key of the pool gets a 403 or a 404 for it.  So the proxy learns, from
 * the answers it relays, which key made what, and sends every later
 * request that names the object with that key.
 *
 * proxy.c asks owner_find() before it picks a key (x->prefer); relay.c
 * and rewrite.c teach, with owner_learn() on the body of an answer that
 * created an object and owner_upload_url() on the head that began an
 * upload.  What is learnt lives in shared memory (shm/affinity.c, which
 * takes hdr->lock for each short step); no other lock is taken here.
 */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "looper.h"
#include "px.h"
#include "route.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

/* Where a request names an object: files/abc, cachedContents/xyz. */
static const char *const owner_needles[] = { "files/", "cachedContents/" };
#define OWNER_NNEEDLES	(sizeof(owner_needles) / sizeof(owner_needles[0]))

/* An upload session's name in the affinity table. */
static void
owner_upload_name(const char *id, char *name, size_t len)
{
	snprintf(name, len, "upload:%.80s", id);
}

/* Copy the name "files/abc" or "cachedContents/xyz" found at p. */
static int
owner_object_name(const char *p, const char *end, char *out, size_t outlen)
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
 * The owner of the first object named in hay[0..len) that has one known,
 * or -1.  Every place a needle occurs is tried, in one pass per needle.
 */
static int
owner_named_in(const char *hay, size_t len)
{
	const char	*p, *end = hay + len, *from, *needle;
	char		 name[SHM_AFF_NAME];
	size_t		 i;
	int		 key;

	for (i = 0; i < OWNER_NNEEDLES; i++) {
		needle = owner_needles[i];
		for (from = hay; (p = memmem(from, end - from, needle,
		    strlen(needle))) != NULL; from = p + 1)
			if (owner_object_name(p, end, name,
			    sizeof(name)) == 0 &&
			    (key = shm_affinity_get(looper.shm, name)) >= 0)
				return key;
	}
	return -1;
}

/*
 * Does this request name an object that belongs to one key's project?
 * In the upload session, in the path (files/x, cachedContents/x), or in
 * the body (fileUri, cachedContent: a generate request may name one; the
 * body is scanned as text, whatever its size).  Sets x->prefer.
 */
void
owner_find(struct px *x)
{
	const char	*p, *end = x->path + x->path_len;
	char		 name[SHM_AFF_NAME];
	size_t		 i;

	x->prefer = -1;
	if (x->upload && http_query_param(x->query, "upload_id",
	    x->upload_id, sizeof(x->upload_id)) >= 0) {
		owner_upload_name(x->upload_id, name, sizeof(name));
		x->prefer = shm_affinity_get(looper.shm, name);
		return;
	}
	/* In the path, only the first place each needle occurs counts. */
	for (i = 0; i < OWNER_NNEEDLES; i++) {
		p = memmem(x->path, x->path_len, owner_needles[i],
		    strlen(owner_needles[i]));
		if (p != NULL && owner_object_name(p, end, name,
		    sizeof(name)) == 0 &&
		    (x->prefer = shm_affinity_get(looper.shm, name)) >= 0)
			return;
	}
	if (x->c->body_len > 0)
		x->prefer = owner_named_in(x->c->body, x->c->body_len);
}

/*
 * An answer that created a file or a cached content names it: remember
 * which key made it.  buf[0..n) is a piece of the answer's body.
 */
void
owner_learn(struct px *x, const char *buf, size_t n)
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
		    owner_object_name(p + 1, end, name, sizeof(name)) == 0) {
			shm_affinity_put(looper.shm, name, x->pick.key, now_ms());
			return;
		}
	}
}

/*
 * An upload session began: url is the answer's x-goog-upload-url.  Its
 * chunks must go with a key of the same project as the one that began it.
 */
void
owner_upload_url(struct px *x, const char *url)
{
	const char	*q = strchr(url, '?');
	char		 id[1024], name[SHM_AFF_NAME];

	if (q == NULL || http_query_param(q + 1, "upload_id", id,
	    sizeof(id)) < 0)
		return;
	owner_upload_name(id, name, sizeof(name));
	shm_affinity_put(looper.shm, name, x->pick.key, now_ms());
}
