/*
 * The names of resources that only their creating project can read:
 * files/x, cachedContents/x, batches/x, models/m/operations/x,
 * fileSearchStores/x (with its documents and operations), tunedModels/x
 * (with its operations), corpora/x.  What lies under a store, a tuned
 * model or a corpus belongs to its project too, so a name is reduced to
 * its root: fileSearchStores/s/documents/d is fileSearchStores/s.
 *
 * Requests name them in the path, and in the body (fileData.fileUri,
 * cachedContent, a batch's inputConfig.fileName, the fileSearch tool's
 * fileSearchStoreNames): res_path(), res_refs().  Answers create them,
 * and say when they expire (a file's expirationTime, a cache's
 * expireTime) or finish (an operation's done, a batch's terminal state):
 * res_learn().  Called by owner.c.  No I/O, no state, no lock.
 */
#include <bsd/sys/cdefs.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "resname.h"
#include "shm.h"

static const struct {
	const char	*prefix;
	uint32_t	 kind;
} res_prefixes[] = {
	{ "files/", SHM_RES_FILE },
	{ "cachedContents/", SHM_RES_CACHE },
	{ "batches/", SHM_RES_BATCH },
	{ "fileSearchStores/", SHM_RES_STORE },
	{ "tunedModels/", SHM_RES_TUNED },
	{ "corpora/", SHM_RES_CORPUS },
	{ "models/", SHM_RES_OPERATION }	/* models/m/operations/x */
};

static int
res_idch(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* One segment of [A-Za-z0-9_-] (dots too: model names): its end. */
static const char *
res_segment(const char *p, const char *end, int dots)
{
	while (p < end && (res_idch((unsigned char)*p) || (dots && *p == '.')))
		p++;
	return p;
}

/*
 * The resource whose name starts at p (before end): its root name and
 * kind in *r, and in *len the root's length.  Returns 0, or -1 when p
 * starts no such name.
 */
int
res_root(const char *p, const char *end, struct res_ref *r, size_t *len)
{
	const char	*s, *e;
	size_t		 i, n;

	for (i = 0; i < __arraycount(res_prefixes); i++) {
		n = strlen(res_prefixes[i].prefix);
		if ((size_t)(end - p) > n &&
		    memcmp(p, res_prefixes[i].prefix, n) == 0)
			break;
	}
	if (i == __arraycount(res_prefixes))
		return -1;
	s = p + n;
	if (res_prefixes[i].kind == SHM_RES_OPERATION) {
		e = res_segment(s, end, 1);
		if (e == s || end - e <= 12 || memcmp(e, "/operations/", 12))
			return -1;
		s = e + 12;
	}
	e = res_segment(s, end, 0);
	if (e == s || (size_t)(e - p) >= sizeof(r->name))
		return -1;
	memcpy(r->name, p, e - p);
	r->name[e - p] = '\0';
	r->kind = res_prefixes[i].kind;
	*len = e - p;
	return 0;
}

/* May a name start at p (not in the middle of a word)? */
static int
res_boundary(const char *hay, const char *p)
{
	return p == hay || !(res_idch((unsigned char)p[-1]) || p[-1] == '.');
}

/*
 * Every resource named in hay[0..len), added to out[n..max) unless there
 * already.  Returns the new count.
 */
size_t
res_refs(const char *hay, size_t len, struct res_ref *out, size_t n,
    size_t max)
{
	const char	*p, *from, *end = hay + len;
	struct res_ref	 r;
	size_t		 i, j, rl, plen;

	for (i = 0; i < __arraycount(res_prefixes) && n < max; i++) {
		plen = strlen(res_prefixes[i].prefix);
		for (from = hay; n < max && (p = memmem(from, end - from,
		    res_prefixes[i].prefix, plen)) != NULL; from = p + plen) {
			if (!res_boundary(hay, p) || res_root(p, end, &r,
			    &rl) == -1)
				continue;
			for (j = 0; j < n; j++)
				if (strcmp(out[j].name, r.name) == 0)
					break;
			if (j == n)
				out[n++] = r;
		}
	}
	return n;
}

/*
 * The resource a request's path names (/v1beta/batches/x:cancel,
 * /upload/v1beta/fileSearchStores/s:uploadToFileSearchStore), in *r;
 * *exact: the path names the root itself (no sub-resource, no action).
 * Returns 0, or -1 when it names none.
 */
int
res_path(const char *path, size_t len, struct res_ref *r, int *exact)
{
	static const char *const pre[] = {
		"/upload/v1beta/", "/upload/v1/", "/upload/v1alpha/",
		"/v1beta/", "/v1/", "/v1alpha/"
	};
	const char	*q, *end = path + len;
	size_t		 i, n, rl;

	if ((q = memchr(path, '?', len)) != NULL)
		end = q;
	for (i = 0; i < __arraycount(pre); i++) {
		n = strlen(pre[i]);
		if ((size_t)(end - path) > n && memcmp(path, pre[i], n) == 0)
			break;
	}
	if (i == __arraycount(pre) || res_root(path + n, end, r, &rl) == -1)
		return -1;
	*exact = path + n + rl == end;
	return 0;
}

/* A new entry's expiry when the answer says nothing of it. */
int64_t
res_default_expiry(uint32_t kind, int64_t now)
{
	switch (kind) {
	case SHM_RES_FILE:
	case SHM_RES_UPLOAD:
		return now + RES_FILE_TTL_MS;
	case SHM_RES_CACHE:
		return now + RES_CACHE_TTL_MS;
	case SHM_RES_BATCH:
	case SHM_RES_OPERATION:
		return now + RES_RUNNING_TTL_MS;
	default:
		return 0;	/* stores, tuned models, corpora: until deleted */
	}
}

/*
 * An RFC 3339 time ("2026-12-01T10:00:00.123456Z", "...+05:30") as ms
 * since the epoch, or -1.
 */
int64_t
res_rfc3339(const char *s)
{
	struct tm	 tm;
	int		 n = 0, oh, om;
	int64_t		 t, ms = 0, scale = 100;
	const char	*p;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year,
	    &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
	    &n) != 6 || n == 0)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	p = s + n;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			ms += (*p - '0') * scale;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	t = t * 1000 + ms;
	if (*p == 'Z' || *p == 'z')
		return t;
	if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh,
	    &om) == 2)
		return t - (*p == '+' ? 1 : -1) * ((int64_t)oh * 60 + om) *
		    60000;
	return -1;
}

/* A batch's or job's state that will not change again. */
static int
res_terminal(const cJSON *state)
{
	static const char *const ends[] = {
		"_SUCCEEDED", "_FAILED", "_CANCELLED", "_EXPIRED"
	};
	size_t	 i, n, e;

	if (!cJSON_IsString(state))
		return 0;
	n = strlen(state->valuestring);
	for (i = 0; i < __arraycount(ends); i++) {
		e = strlen(ends[i]);
		if (n > e && strcmp(state->valuestring + n - e, ends[i]) == 0)
			return 1;
	}
	return 0;
}

struct res_learning {
	struct res_fact	*out;
	size_t		 n, max;
	int64_t		 now;
};

static void
res_add(struct res_learning *l, const struct res_fact *f)
{
	size_t	 i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->out[i].name, f->name) == 0) {
			/* What the resource's own object says wins. */
			if (!f->keep_expiry)
				l->out[i] = *f;
			return;
		}
	if (l->n < l->max)
		l->out[l->n++] = *f;
}

/*
 * An object that is itself a resource ("name" is its root): when it
 * expires, whether it is done.
 */
static void
res_object(struct res_learning *l, const cJSON *o, const struct res_ref *r,
    int self)
{
	const cJSON	*meta = cJSON_GetObjectItemCaseSensitive(o, "metadata");
	const cJSON	*t;
	struct res_fact	 f;

	memset(&f, 0, sizeof(f));
	memcpy(f.name, r->name, sizeof(f.name));
	f.kind = r->kind;
	f.keep_expiry = 1;
	f.expires = res_default_expiry(r->kind, l->now);
	if (self && (r->kind == SHM_RES_FILE || r->kind == SHM_RES_CACHE)) {
		t = cJSON_GetObjectItemCaseSensitive(o, r->kind ==
		    SHM_RES_FILE ? "expirationTime" : "expireTime");
		if (cJSON_IsString(t) &&
		    (f.expires = res_rfc3339(t->valuestring)) > 0)
			f.keep_expiry = 0;
		else
			f.expires = res_default_expiry(r->kind, l->now);
	} else if (self && (r->kind == SHM_RES_BATCH ||
	    r->kind == SHM_RES_OPERATION)) {
		f.done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o,
		    "done")) || res_terminal(cJSON_GetObjectItemCaseSensitive(o,
		    "state")) || (cJSON_IsObject(meta) && res_terminal(
		    cJSON_GetObjectItemCaseSensitive(meta, "state")));
		if (f.done) {
			f.expires = l->now + RES_DONE_MARGIN_MS;
			f.keep_expiry = 0;
		}
	} else if (self)
		f.keep_expiry = 0;	/* until deleted */
	res_add(l, &f);
}

static void
res_walk(struct res_learning *l, const cJSON *j, int depth)
{
	const cJSON	*c;
	struct res_ref	 refs[RES_MAX_REFS];
	struct res_fact	 f;
	size_t		 i, n, rl;

	if (depth > 16)
		return;
	if (cJSON_IsString(j)) {
		n = res_refs(j->valuestring, strlen(j->valuestring), refs, 0,
		    RES_MAX_REFS);
		for (i = 0; i < n; i++) {
			memset(&f, 0, sizeof(f));
			memcpy(f.name, refs[i].name, sizeof(f.name));
			f.kind = refs[i].kind;
			f.keep_expiry = 1;
			f.expires = res_default_expiry(f.kind, l->now);
			res_add(l, &f);
		}
		return;
	}
	if (cJSON_IsObject(j) && cJSON_IsString(c =
	    cJSON_GetObjectItemCaseSensitive(j, "name")) &&
	    res_root(c->valuestring, c->valuestring + strlen(c->valuestring),
	    &refs[0], &rl) == 0)
		res_object(l, j, &refs[0], c->valuestring[rl] == '\0');
	for (c = j->child; c != NULL; c = c->next)
		res_walk(l, c, depth + 1);
}

/*
 * What a good answer (JSON, len bytes) to a request made with one key
 * says about the resources it names, at now: up to max facts in out.
 * Every resource it names belongs to that key's project.  Returns how
 * many facts.
 */
size_t
res_learn(const char *body, size_t len, int64_t now, struct res_fact *out,
    size_t max)
{
	struct res_learning	 l = { out, 0, max, now };
	cJSON			*root;

	if ((root = cJSON_ParseWithLength(body, len)) == NULL)
		return 0;
	res_walk(&l, root, 0);
	cJSON_Delete(root);
	return l.n;
}
