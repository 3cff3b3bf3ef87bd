/*
 * Which key owns a named resource.  A file, a cached content, an upload
 * session, a batch, a long-running operation, a file search store, a
 * tuned model or a corpus belongs to the Google project of the key that
 * made it: another project's key gets a 403 or a 404 for it.  So the
 * proxy learns, from the answers it relays, which key made what, and
 * sends every later request that names it with that key (or, when that
 * key is invalid, another key of its project).
 *
 * proxy.c asks owner_find() before it picks a key (x->prefer); it may
 * answer the request itself: a 400 when the request names resources of
 * two projects (no key can read both), a 503 when the owner's project has
 * no valid key left.  relay.c feeds owner_feed() the start of a good
 * answer and calls owner_done() at its end, which learns what the answer
 * names (resname.c) or forgets what a DELETE removed; rewrite.c calls
 * owner_upload_url() on the head that began an upload.  What is learnt
 * lives in shared memory (shm/affinity.c, which takes hdr->lock for each
 * short step); no other lock is taken here.
 */
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "looper.h"
#include "px.h"
#include "resname.h"
#include "shm.h"
#include "util.h"
#include "worker.h"

#define OWNER_CAPTURE	(64 * 1024)	/* answers learnt from, at most */

static char	 owner_buf[OWNER_CAPTURE];
static size_t	 owner_len;
static int	 owner_over;

/* An upload session's name in the affinity table. */
static void
owner_upload_name(const char *id, char *name, size_t len)
{
	snprintf(name, len, "upload:%.80s", id);
}

/* One owner found for what a request names. */
struct owner {
	uint32_t	 project;
	int		 use;		/* key to send with, -1: none valid */
	size_t		 ref;		/* the name it owns */
	char		 id[12];	/* the key that made it */
};

static void
owner_conflict(struct px *x, const struct res_ref *refs,
    const struct owner *o)
{
	char	 msg[512];

	snprintf(msg, sizeof(msg), "this request names resources of two "
	    "different projects: %s (made with API key %s) and %s (made "
	    "with API key %s); no one key can read both, so it was not sent",
	    refs[o[0].ref].name, o[0].id, refs[o[1].ref].name, o[1].id);
	log_info("owner conflict: %s (key=%s) and %s (key=%s)",
	    refs[o[0].ref].name, o[0].id, refs[o[1].ref].name, o[1].id);
	conn_error(x->c, 400, msg, NULL);
}

static void
owner_invalid(struct px *x, const struct res_ref *r, const struct owner *o)
{
	char	 msg[512];

	snprintf(msg, sizeof(msg), "%s belongs to the project of API key %s, "
	    "which the upstream rejected as invalid, and no other key of that "
	    "project is valid: only that project can read it; fix the key "
	    "and reload", r->name, o->id);
	conn_error(x->c, 503, msg, NULL);
}

/*
 * The owners of refs[0..n): none, one project (x->prefer), or two (the
 * request is answered).  Returns 0, or -1 when the request was answered.
 */
static int
owner_resolve(struct px *x, const struct res_ref *refs, size_t n)
{
	struct owner	 own[2];
	uint32_t	 project;
	size_t		 i, nown = 0;
	int64_t		 now = now_ms();
	int		 k;

	for (i = 0; i < n; i++) {
		if ((k = shm_affinity_get(looper.shm, refs[i].name, now)) < 0)
			continue;
		memset(&own[nown], 0, sizeof(own[nown]));
		own[nown].use = shm_owner_key(looper.shm, k, &project,
		    own[nown].id, sizeof(own[nown].id));
		if (own[nown].id[0] == '\0')
			continue;	/* a reload took its key meanwhile */
		own[nown].project = project;
		own[nown].ref = i;
		if (nown == 1 && own[0].project == own[1].project)
			continue;
		if (++nown == 2) {
			owner_conflict(x, refs, own);
			return -1;
		}
	}
	if (nown == 0)
		return 0;
	if (own[0].use < 0) {
		owner_invalid(x, &refs[own[0].ref], &own[0]);
		return -1;
	}
	x->prefer = own[0].use;
	return 0;
}

/*
 * Does this request name resources that belong to one key's project?
 * In the upload session, in the path (files/x, batches/x:cancel,
 * models/m/operations/x), or in the body (fileUri, cachedContent,
 * inputConfig.fileName, fileSearchStoreNames: the body is scanned as
 * text, whatever its size).  Sets x->prefer and x->learn.  Returns 0, or
 * -1 when the request has been answered (two projects, owner invalid).
 */
int
owner_find(struct px *x)
{
	struct res_ref	 refs[RES_MAX_REFS];
	size_t		 n = 0;
	int		 exact;

	x->prefer = -1;
	owner_len = 0;
	owner_over = 0;
	x->learn = !x->openai && (x->kind == PX_OTHER || x->kind == PX_BATCH ||
	    memmem(x->path, x->path_len, ":predictLongRunning", 19) != NULL);
	if (x->upload && http_query_param(x->query, "upload_id",
	    x->upload_id, sizeof(x->upload_id)) >= 0) {
		owner_upload_name(x->upload_id, refs[0].name,
		    sizeof(refs[0].name));
		refs[0].kind = SHM_RES_UPLOAD;
		n = 1;
	}
	if (res_path(x->path, x->path_len, &refs[n], &exact) == 0)
		n++;
	if (x->c->body_len > 0)
		n = res_refs(x->c->body, x->c->body_len, refs, n,
		    RES_MAX_REFS);
	return owner_resolve(x, refs, n);
}

/* A piece of a good answer's body: its start is kept to learn from. */
void
owner_feed(struct px *x, const char *buf, size_t n)
{
	if (!x->learn || owner_over)
		return;
	if (n > OWNER_CAPTURE - owner_len) {
		owner_over = 1;
		return;
	}
	memcpy(owner_buf + owner_len, buf, n);
	owner_len += n;
}

/*
 * A good answer has been relayed whole: a DELETE of a resource forgets
 * it; any other answer teaches what it names, created, expires or
 * finished (every resource an answer names belongs to the project of
 * the key that got it).
 */
void
owner_done(struct px *x)
{
	static struct res_fact	 f[RES_MAX_FACTS];
	struct shm_aff_note	 note;
	struct res_ref		 r;
	size_t			 i, n;
	int64_t			 now = now_ms();
	int			 exact;

	if (x->resp.status < 200 || x->resp.status > 299 || x->pick.key < 0)
		return;
	if (strcmp(x->c->req.method, "DELETE") == 0) {
		if (res_path(x->path, x->path_len, &r, &exact) == 0 && exact)
			shm_affinity_forget(looper.shm, r.name);
		return;
	}
	if (!x->learn || owner_over || owner_len == 0)
		return;
	n = res_learn(owner_buf, owner_len, now, f, RES_MAX_FACTS);
	for (i = 0; i < n; i++) {
		memset(&note, 0, sizeof(note));
		note.name = f[i].name;
		note.kind = f[i].kind;
		note.key = x->pick.key;
		note.created = now;
		note.expires = f[i].expires;
		note.keep_expiry = f[i].keep_expiry;
		note.done = f[i].done;
		shm_affinity_put(looper.shm, &note, now);
		log_debug("key=%s owns %s%s", x->pick.id, f[i].name,
		    f[i].done ? " (done)" : "");
	}
}

/*
 * An upload session began: url is the answer's x-goog-upload-url.  Its
 * chunks must go with a key of the same project as the one that began it.
 */
void
owner_upload_url(struct px *x, const char *url)
{
	const char		*q = strchr(url, '?');
	char			 id[1024], name[SHM_AFF_NAME];
	struct shm_aff_note	 note;
	int64_t			 now = now_ms();

	if (q == NULL || http_query_param(q + 1, "upload_id", id,
	    sizeof(id)) < 0)
		return;
	owner_upload_name(id, name, sizeof(name));
	memset(&note, 0, sizeof(note));
	note.name = name;
	note.kind = SHM_RES_UPLOAD;
	note.key = x->pick.key;
	note.created = now;
	note.expires = res_default_expiry(SHM_RES_UPLOAD, now);
	shm_affinity_put(looper.shm, &note, now);
}
