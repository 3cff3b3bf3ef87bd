/*
 * The operator's actions, for a worker's status.c: the admin token's
 * check, POST /api/test_key (one upstream request with a key the
 * operator types in), and POST /api/keys/{id}/probe (a pool key's probe,
 * now, in this worker: an operator's action, like test_key; its answer
 * lands in shared memory as the prober's do).
 *
 * Secrets: the admin token is compared in constant time.  The key given
 * to test_key is wiped from every buffer of ours once the upstream has
 * answered, and the answer is scrubbed of it before it is quoted.
 * test_key touches no shared state beyond the worker's scoreboard slot.
 */
#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "http.h"
#include "looper.h"
#include "probe.h"
#include "scrub.h"
#include "shm.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

#define ADM_TEST_BODY_MAX	(64 * 1024)	/* of the upstream's answer */
#define ADM_TEST_TIMEOUT_S	30		/* cap on the test's wait */
#define ADM_MESSAGE_MAX		512		/* test_key's quoted message */

static int
adm_token_eq(const char *want, const char *got, size_t gotlen)
{
	size_t	 wl = strlen(want);

	/* The length is no secret worth a constant-time compare. */
	return gotlen == wl && CRYPTO_memcmp(want, got, wl) == 0;
}

/*
 * Does the request carry the admin token want, as "Authorization: Bearer"
 * (auth, may be NULL) or as ?token= in target?  An empty want lets
 * everyone in.  1 if so, 0 if not.
 */
int
admin_token_ok(const char *want, const char *auth, const char *target)
{
	const char	*tok, *t;
	char		 q[CFG_TOKEN_MAX * 3];
	size_t		 tlen;
	int		 n, ok = 0;

	if (want == NULL || want[0] == '\0')
		return 1;
	if ((tok = http_bearer(auth, &tlen)) != NULL &&
	    adm_token_eq(want, tok, tlen))
		return 1;
	if ((t = strchr(target, '?')) != NULL &&
	    (n = http_query_param(t + 1, "token", q, sizeof(q))) >= 0) {
		ok = adm_token_eq(want, q, (size_t)n);
		explicit_bzero(q, sizeof(q));
	}
	return ok;
}

/*
 * Checks a test_key request body: {"api_key": "...", "model_name": "..."}.
 * The key must be printable ASCII without blanks and shorter than
 * CFG_KEY_MAX; the model a name of [A-Za-z0-9._-].  Copies both out and
 * returns 0, or sets *why and returns -1.  The parsed copy of the key is
 * wiped before it is freed.
 */
int
admin_test_input(const char *body, size_t len, char *key, size_t keylen,
    char *model, size_t modellen, const char **why)
{
	cJSON		*root, *k, *m;
	const char	*p;
	int		 rv = -1;

	key[0] = model[0] = '\0';
	*why = "the body must be a JSON object: {\"api_key\": \"...\", "
	    "\"model_name\": \"...\"}";
	if (body == NULL || len == 0 ||
	    (root = cJSON_ParseWithLength(body, len)) == NULL)
		return -1;
	if (!cJSON_IsObject(root))
		goto done;
	k = cJSON_GetObjectItemCaseSensitive(root, "api_key");
	m = cJSON_GetObjectItemCaseSensitive(root, "model_name");
	if (!cJSON_IsString(k) || k->valuestring[0] == '\0') {
		*why = "api_key must be a non-empty string";
		goto done;
	}
	if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
		*why = "model_name must be a non-empty string";
		goto done;
	}
	for (p = k->valuestring; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			break;
	if (*p != '\0' || strlen(k->valuestring) >= CFG_KEY_MAX ||
	    strlen(k->valuestring) >= keylen) {
		*why = "api_key must be printable ASCII without spaces, "
		    "shorter than 128 characters";
		goto done;
	}
	for (p = m->valuestring; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		    *p == '-'))
			break;
	if (*p != '\0' || strlen(m->valuestring) >= CFG_NAME_MAX ||
	    strlen(m->valuestring) >= modellen) {
		*why = "model_name may hold only letters, digits, '.', '_' "
		    "and '-' (e.g. \"gemini-2.5-flash\")";
		goto done;
	}
	(void)strlcpy(key, k->valuestring, keylen);
	(void)strlcpy(model, m->valuestring, modellen);
	*why = NULL;
	rv = 0;
 done:
	if (cJSON_IsString(k = cJSON_GetObjectItemCaseSensitive(root,
	    "api_key")) && k->valuestring != NULL)
		explicit_bzero(k->valuestring, strlen(k->valuestring));
	cJSON_Delete(root);
	return rv;
}

/*
 * What the upstream's answer (status, body[0..len), at most cap bytes of
 * room) says of the key: valid (1) or not (0), and a message for the
 * operator in msg.  The body is scrubbed of key (and of anything shaped
 * like a key) in place before anything of it is quoted.
 */
int
admin_test_verdict(int status, char *body, size_t len, const char *key,
    char *msg, size_t msglen)
{
	cJSON		*root = NULL, *e, *m;
	size_t		 n;
	int		 valid = status == 200 || status == 429;

	if (msglen == 0)
		return valid;
	if (status == 200)
		(void)strlcpy(msg, "key accepted", msglen);
	else if (status == 429)
		(void)strlcpy(msg, "key valid but out of quota", msglen);
	else {
		snprintf(msg, msglen, "upstream answered %d", status);
		if (body != NULL && len > 0) {
			n = scrub_one(key, body, len);
			if (n < len)
				body[n] = '\0';	/* it shrank */
			len = n;
			root = cJSON_ParseWithLength(body, len);
		}
		/* Errors come wrapped in an array on some paths. */
		if (cJSON_IsArray(root))
			e = cJSON_GetObjectItemCaseSensitive(
			    cJSON_GetArrayItem(root, 0), "error");
		else
			e = cJSON_GetObjectItemCaseSensitive(root, "error");
		m = cJSON_GetObjectItemCaseSensitive(e, "message");
		if (cJSON_IsString(m) && m->valuestring[0] != '\0')
			(void)strlcpy(msg, m->valuestring, msglen);
		cJSON_Delete(root);
	}
	/* A belt: a key too short to scrub must still not come back. */
	msg[scrub_one(key, msg, strlen(msg))] = '\0';
	if (key[0] != '\0' && strstr(msg, key) != NULL)
		snprintf(msg, msglen, "upstream answered %d", status);
	return valid;
}

static void
adm_wipe_request(struct conn *c)
{
	if (c->body != NULL && c->body_len > 0)
		explicit_bzero(c->body, c->body_len);
	/* The raw body may also sit in the read buffer, after the head. */
	if (c->buf != NULL && c->next > c->req.head_len && c->next <= c->len)
		explicit_bzero(c->buf + c->req.head_len,
		    c->next - c->req.head_len);
}

/*
 * One generateContent with key on model.  0 with *status, the start of
 * the answer's body in body (*blen bytes, NUL-terminated); -1 with err
 * when the upstream could not be reached or answered nothing readable.
 */
static int
adm_test_upstream(const char *key, const char *model, int *status,
    char *body, size_t bodycap, size_t *blen, char *err, size_t errlen)
{
	static const char req_body[] = "{\"contents\":[{\"role\":\"user\","
	    "\"parts\":[{\"text\":\"Hi\"}]}],\"generationConfig\":"
	    "{\"maxOutputTokens\":1}}";
	const struct config	*cfg = looper.cfg;
	char			 head[2048];
	int64_t			 deadline;
	int			 n, t, rv = -1;

	*blen = 0;
	body[0] = '\0';
	t = cfg->upstream_timeout_s;
	if (t <= 0 || t > ADM_TEST_TIMEOUT_S)
		t = ADM_TEST_TIMEOUT_S;
	deadline = mono_ms() + (int64_t)t * 1000;
	n = snprintf(head, sizeof(head), "POST %s/v1beta/models/%s:"
	    "generateContent HTTP/1.1\r\nHost: %s\r\nx-goog-api-key: %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", cfg->upstream_prefix, model,
	    cfg->upstream_authority, key, sizeof(req_body) - 1);
	if (n < 0 || (size_t)n >= sizeof(head))
		(void)strlcpy(err, "upstream request too long", errlen);
	else
		rv = up_fetch(cfg, head, (size_t)n, req_body,
		    sizeof(req_body) - 1, deadline, status, body, bodycap,
		    blen, err, errlen);
	explicit_bzero(head, sizeof(head));
	return rv;
}

void
admin_test_key(struct conn *c)
{
	const char	*why;
	char		 key[CFG_KEY_MAX], model[CFG_NAME_MAX];
	char		 err[256], msg[ADM_MESSAGE_MAX], ebuf[400];
	char		*body = NULL, *out = NULL;
	size_t		 blen = 0;
	cJSON		*o;
	int		 status = 0, valid, rv;

	rv = admin_test_input(c->body, c->body_len, key, sizeof(key), model,
	    sizeof(model), &why);
	adm_wipe_request(c);
	if (rv == -1) {
		conn_error(c, 400, why, NULL);
		return;
	}
	if ((body = malloc(ADM_TEST_BODY_MAX + 1)) == NULL) {
		explicit_bzero(key, sizeof(key));
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	err[0] = '\0';
	board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
	rv = adm_test_upstream(key, model, &status, body, ADM_TEST_BODY_MAX + 1,
	    &blen, err, sizeof(err));
	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	if (rv == -1) {
		err[scrub_one(key, err, strlen(err))] = '\0';
		explicit_bzero(key, sizeof(key));
		snprintf(ebuf, sizeof(ebuf), "could not reach the upstream: %s",
		    err[0] != '\0' ? err : "unknown error");
		conn_error(c, 502, ebuf, NULL);
		goto done;
	}
	valid = admin_test_verdict(status, body, blen, key, msg, sizeof(msg));
	explicit_bzero(key, sizeof(key));
	snprintf(c->log, sizeof(c->log), "model=%s test_status=%d valid=%d",
	    model, status, valid);

	if ((o = cJSON_CreateObject()) == NULL ||
	    cJSON_AddBoolToObject(o, "valid", valid) == NULL ||
	    cJSON_AddNumberToObject(o, "status", status) == NULL ||
	    cJSON_AddStringToObject(o, "message", msg) == NULL ||
	    (out = cJSON_PrintUnformatted(o)) == NULL) {
		cJSON_Delete(o);
		conn_error(c, 500, "out of memory", NULL);
		goto done;
	}
	cJSON_Delete(o);
	conn_respond(c, 200, "application/json; charset=UTF-8",
	    "Cache-Control: no-store\r\n", out, strlen(out));
 done:
	explicit_bzero(body, ADM_TEST_BODY_MAX + 1);
	free(body);
	free(out);
}


/*
 * POST /api/keys/{id}/probe: probe the pool's key with that id (the
 * first, should two share it) now, write the answer where the prober
 * writes its own, and answer as test_key does: {"valid": the key works,
 * "status": the upstream's status, "message": ...}.
 */
void
admin_probe_key(struct conn *c, const char *id, size_t idlen)
{
	struct shm_probe_conf	 pc;
	struct shm_probe_res	 r;
	char			 want[CFG_ID_SIZE], key[SHM_KEY_MAX];
	char			 msg[PROBE_MESSAGE_MAX], ebuf[PROBE_MESSAGE_MAX + 64];
	char			*out = NULL;
	int64_t			 stamp;
	size_t			 i;
	int			 slot, rv;
	cJSON			*o;

	for (i = 0; i < idlen; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
		    (id[i] >= 'a' && id[i] <= 'f')))
			break;
	if (idlen != CFG_ID_SIZE - 1 || i != idlen) {
		conn_error(c, 400, "a key's id is its 8 hex digits, as "
		    "/api/status_data shows them: /api/keys/{id}/probe", NULL);
		return;
	}
	memcpy(want, id, idlen);
	want[idlen] = '\0';
	if ((slot = shm_probe_take(looper.shm, -1, want, key, sizeof(key),
	    &stamp)) == -1) {
		conn_error(c, 404, "no key in the pool has this id", NULL);
		return;
	}
	board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
	rv = probe_key(looper.cfg, key, &r, msg, sizeof(msg));
	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	probe_conf(looper.cfg, &pc);
	(void)shm_probe_done(looper.shm, slot, key, stamp, now_ms(), &pc, &r);
	explicit_bzero(key, sizeof(key));
	snprintf(c->log, sizeof(c->log), "key=%s probe_status=%d probe=%s",
	    want, r.status, shm_probe_names[r.kind]);
	if (rv == -1) {
		snprintf(ebuf, sizeof(ebuf), "could not reach the upstream: %s",
		    msg);
		conn_error(c, 502, ebuf, NULL);
		return;
	}
	if ((o = cJSON_CreateObject()) == NULL ||
	    cJSON_AddBoolToObject(o, "valid", r.status == 200 ||
	    r.status == 429) == NULL ||
	    cJSON_AddNumberToObject(o, "status", r.status) == NULL ||
	    cJSON_AddStringToObject(o, "message", msg) == NULL ||
	    (out = cJSON_PrintUnformatted(o)) == NULL) {
		cJSON_Delete(o);
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	cJSON_Delete(o);
	conn_respond(c, 200, "application/json; charset=UTF-8",
	    "Cache-Control: no-store\r\n", out, strlen(out));
	free(out);
}
