/*
 * One probe of a key: GET {upstream}/v1beta/models?pageSize=1 with the key
 * as x-goog-api-key, a call that costs no quota, over the same upstream
 * client as every request (tls.c's verification, resolve.c's lookups),
 * on a connection of its own that closes after the answer.  What the
 * answer says of the key (classify.c reads it as for any request):
 *   200                        ok: the key works;
 *   400 and a key fault        deleted (API_KEY_INVALID, "API key not
 *                              valid"): the long interval;
 *   401/403 and a key fault    refused (suspended, blocked, leaked);
 *   anything else, no answer   failed.
 * Both keep the key invalid and double the interval.
 *
 * Callers: the prober (prober.c) and an operator's POST
 * /api/keys/{id}/probe (admin.c), in a worker.  No shared memory here:
 * the callers write the result through shm_probe_done().  The key is
 * never logged; the answer is scrubbed of it before it is quoted.
 */
#include <bsd/string.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "classify.h"
#include "config.h"
#include "probe.h"
#include "scrub.h"
#include "shm.h"
#include "upstream.h"
#include "util.h"

#define PROBE_BODY_MAX		(16 * 1024)	/* of an answer, read */

void
probe_conf(const struct config *cfg, struct shm_probe_conf *pc)
{
	pc->first_ms = (int64_t)cfg->probe_first_s * 1000;
	pc->max_ms = (int64_t)cfg->probe_max_s * 1000;
}

/* The GET; 0 with *status and the body's start, or -1 with err. */
static int
probe_get(const struct config *cfg, const char *key, int *status,
    char *body, size_t cap, size_t *blen, char *err, size_t errlen)
{
	char		 head[1024];
	int64_t		 deadline;
	int		 n, t, rv = -1;

	*blen = 0;
	body[0] = '\0';
	t = cfg->upstream_timeout_s;
	if (t <= 0 || t > PROBE_TIMEOUT_S)
		t = PROBE_TIMEOUT_S;
	deadline = mono_ms() + (int64_t)t * 1000;
	n = snprintf(head, sizeof(head), "GET %s/v1beta/models?pageSize=1 "
	    "HTTP/1.1\r\nHost: %s\r\nx-goog-api-key: %s\r\n"
	    "Connection: close\r\n\r\n", cfg->upstream_prefix,
	    cfg->upstream_authority, key);
	if (n < 0 || (size_t)n >= sizeof(head))
		(void)strlcpy(err, "upstream request too long", errlen);
	else
		rv = up_fetch(cfg, head, (size_t)n, NULL, 0, deadline, status,
		    body, cap, blen, err, errlen);
	explicit_bzero(head, sizeof(head));
	return rv;
}

/* What the answer (status, body) says of the key, into r. */
static void
probe_judge(int status, const char *body, size_t blen,
    struct shm_probe_res *r)
{
	struct gem_verdict	 v;

	r->status = status;
	r->why[0] = '\0';
	if (status == 200) {
		r->kind = SHM_PROBE_OK;
		return;
	}
	gem_classify(status, body, blen, &v);
	if (v.action == GEM_INVALID)
		r->kind = status == 400 ? SHM_PROBE_DELETED : SHM_PROBE_REFUSED;
	else
		r->kind = SHM_PROBE_FAILED;
	(void)strlcpy(r->why, v.why, sizeof(r->why));
}

/*
 * Probe key now.  Fills r (kind, status 0 when no answer came, why) and
 * msg, a message for the operator that never holds the key.  Returns 0
 * when the upstream answered, -1 when it could not be reached.
 */
int
probe_key(const struct config *cfg, const char *key, struct shm_probe_res *r,
    char *msg, size_t msglen)
{
	char	*body;
	char	 err[256];
	size_t	 blen = 0;
	int	 status = 0, rv;

	memset(r, 0, sizeof(*r));
	r->kind = SHM_PROBE_FAILED;
	err[0] = '\0';
	if ((body = malloc(PROBE_BODY_MAX + 1)) == NULL) {
		(void)strlcpy(r->why, "out of memory", sizeof(r->why));
		(void)strlcpy(msg, r->why, msglen);
		return -1;
	}
	rv = probe_get(cfg, key, &status, body, PROBE_BODY_MAX + 1, &blen,
	    err, sizeof(err));
	if (rv == -1) {
		err[scrub_one(key, err, strlen(err))] = '\0';
		(void)strlcpy(r->why, err[0] != '\0' ? err : "no answer",
		    sizeof(r->why));
		(void)strlcpy(msg, r->why, msglen);
	} else {
		probe_judge(status, body, blen, r);
		(void)admin_test_verdict(status, body, blen, key, msg, msglen);
	}
	scrub_str(NULL, r->why);
	explicit_bzero(body, PROBE_BODY_MAX + 1);
	free(body);
	return rv;
}

int
probe_pace_init(struct probe_pace *p, int per_s)
{
	p->n = per_s > 0 ? per_s : 1;
	p->next = 0;
	p->done = calloc((size_t)p->n, sizeof(*p->done));
	return p->done == NULL ? -1 : 0;
}

/* How long (ms) from now (monotonic) until the next probe may start. */
int64_t
probe_pace_wait(const struct probe_pace *p, int64_t now)
{
	int64_t	 t = p->done[p->next];

	return t == 0 || t + 1000 <= now ? 0 : t + 1000 - now;
}

/* A probe's answer came in at now (monotonic). */
void
probe_pace_note(struct probe_pace *p, int64_t now)
{
	p->done[p->next] = now;
	p->next = (p->next + 1) % p->n;
}
