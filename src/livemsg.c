/*
 * What the proxy reads in a Live session's messages (live.c relays them
 * unchanged): the model named in the client's setup, and in the server's
 * messages setupComplete and usageMetadata; and what an upstream close
 * says about the key that opened the session.
 *
 * Server messages are JSON (sent as binary frames); most are audio or text
 * chunks.  Only those that can hold what we want are parsed: a message
 * without the bytes "usageMetadata" or "setupComplete" is passed over
 * after one memmem, so audio is never parsed.
 *
 * usageMetadata in Live is per turn: each turnComplete (and toolCall)
 * carries that turn's counts, the prompt counting the session's context so
 * far (the stand-in does so too; googleapis/js-genai's types.ts documents
 * UsageMetadata as "usage metadata about the response(s)").  A session's
 * usage is the sum of its messages' counts, as Google bills it.
 */
#include <sys/types.h>

#include <cjson/cJSON.h>

#include <bsd/string.h>
#include <stdint.h>
#include <string.h>

#include "classify.h"
#include "livemsg.h"
#include "shm.h"

/* s[0..n) contains the NUL-terminated word w? */
static int
lm_has(const void *s, size_t n, const char *w)
{
	return memmem(s, n, w, strlen(w)) != NULL;
}

/*
 * The client's first message: {"setup": {"model": "models/x", ...}}.
 * Returns 0 with the model (without "models/") in model, 1 for a setup
 * that names no model, -1 when msg is no setup at all.
 */
int
lm_setup_model(const uint8_t *msg, size_t len, char *model, size_t mlen)
{
	cJSON		*root, *setup, *m;
	const char	*name;
	int		 rv = -1;

	if ((root = cJSON_ParseWithLength((const char *)msg, len)) == NULL)
		return -1;
	setup = cJSON_GetObjectItemCaseSensitive(root, "setup");
	if (cJSON_IsObject(setup)) {
		rv = 1;
		m = cJSON_GetObjectItemCaseSensitive(setup, "model");
		if (cJSON_IsString(m) && m->valuestring[0] != '\0') {
			name = m->valuestring;
			if (strncmp(name, "models/", 7) == 0)
				name += 7;
			if (*name != '\0' && strlen(name) < mlen &&
			    strpbrk(name, "/?#\"\\") == NULL) {
				strlcpy(model, name, mlen);
				rv = 0;
			}
		}
	}
	cJSON_Delete(root);
	return rv;
}

/* An integer member of o, or 0. */
static int64_t
lm_count(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(v) || v->valuedouble < 0 ||
	    v->valuedouble > 1e15)
		return 0;
	return (int64_t)v->valuedouble;
}

/*
 * What a server message holds for the proxy: LM_SETUP_COMPLETE,
 * LM_USAGE (with its counts in *t), both or neither (0).  Live names the
 * answer's tokens responseTokenCount; candidatesTokenCount is read too.
 */
int
lm_server(const uint8_t *msg, size_t len, struct shm_tokens *t)
{
	cJSON		*root, *u;
	int		 what = 0;

	memset(t, 0, sizeof(*t));
	if (!lm_has(msg, len, "usageMetadata") &&
	    !lm_has(msg, len, "setupComplete"))
		return 0;
	if ((root = cJSON_ParseWithLength((const char *)msg, len)) == NULL)
		return 0;
	if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root,
	    "setupComplete")))
		what |= LM_SETUP_COMPLETE;
	u = cJSON_GetObjectItemCaseSensitive(root, "usageMetadata");
	if (cJSON_IsObject(u)) {
		what |= LM_USAGE;
		t->prompt = lm_count(u, "promptTokenCount");
		t->candidates = lm_count(u, "responseTokenCount") +
		    lm_count(u, "candidatesTokenCount");
		t->cached = lm_count(u, "cachedContentTokenCount");
		t->thoughts = lm_count(u, "thoughtsTokenCount");
		t->total = lm_count(u, "totalTokenCount");
	}
	cJSON_Delete(root);
	return what;
}

/*
 * What the upstream's close of a session (code, reason[0..len)) says of
 * the key: Google closes with 1011 and "RESOURCE_EXHAUSTED..." for quota
 * (a bare 429: cool the key), 1007 "API key not valid" or 1008 for a
 * missing, suspended or refused key (invalid), 1011 for an internal
 * error (a fault: another key may do).  Anything else is the session's
 * own business (pass).
 */
void
lm_close_verdict(int code, const char *reason, size_t len,
    struct gem_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->action = GEM_PASS;
	v->retry_ms = -1;
	if (code == 1011 && (lm_has(reason, len, "RESOURCE_EXHAUSTED") ||
	    lm_has(reason, len, "quota"))) {
		v->action = GEM_COOL;
		v->reason = SHM_R_429;
		v->delay_ms = GEM_COOL_DEFAULT_MS;
		strlcpy(v->why, "session closed: quota", sizeof(v->why));
	} else if ((code == 1007 && lm_has(reason, len, "API key")) ||
	    (code == 1008 && (lm_has(reason, len, "API key") ||
	    lm_has(reason, len, "unregistered callers") ||
	    lm_has(reason, len, "suspended") ||
	    lm_has(reason, len, "denied")))) {
		v->action = GEM_INVALID;
		v->reason = SHM_R_INVALID;
		strlcpy(v->why, code == 1007 ? "API_KEY_INVALID (Live)" :
		    "key refused (Live)", sizeof(v->why));
	} else if (code == 1011 || code == 1013 || code == 1006) {
		v->action = GEM_RETRY;
		strlcpy(v->why, "session closed: upstream fault",
		    sizeof(v->why));
	}
}
