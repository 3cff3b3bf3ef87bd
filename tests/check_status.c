/*
 * Unit tests of status.c: times, the admin token, test_key's input and
 * verdict, and /api/status_data and /metrics built from a real segment
 * (keys published, picked, settled, cooled, exhausted, invalidated), down
 * to 10,000 keys.  No full key may appear in any output.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "check_suites.h"
#include "admin.h"
#include "config.h"
#include "looper.h"
#include "shm.h"
#include "reset.h"
#include "status.h"
#include "util.h"

/* status.c's exports for tests (to move to looper.h with status.c's). */

/* Fakes of the right shapes; none of them was ever a key. */
#define KA	"AIzaSyAAAAaaaa0123456789abcdefghijKLMNO"
#define KB	"AIzaSyBBBBbbbb0123456789abcdefghijKLMNO"
#define KC	"AIzaSyCCCCcccc0123456789abcdefghijKLMNO"
#define KD	"AQ.DDDDddddPoolKeyValue0123456789xyzabc"

#define T0	1795668600000LL		/* 2026-11-26T04:50:00Z */

START_TEST(test_iso8601)
{
	char	 b[32];

	status_iso8601(0, b, sizeof(b));
	ck_assert_str_eq(b, "1970-01-01T00:00:00Z");
	status_iso8601(T0 + 999, b, sizeof(b));
	ck_assert_str_eq(b, "2026-11-26T04:50:00Z");
	status_iso8601(T0, b, 5);
	ck_assert_str_eq(b, "");
}
END_TEST

START_TEST(test_local_time)
{
	char	 b[32];

	unsetenv("TZ");
	ck_assert_int_eq(reset_format("UTC", T0, b, sizeof(b)), 0);
	ck_assert_str_eq(b, "2026-11-26 04:50");
	ck_assert_int_eq(reset_format("America/Los_Angeles", T0, b,
	    sizeof(b)), 0);
	ck_assert_str_eq(b, "2026-11-25 20:50");
	ck_assert_ptr_null(getenv("TZ"));
	/* Summer time, and TZ put back as it was. */
	setenv("TZ", "Asia/Tokyo", 1);
	ck_assert_int_eq(reset_format("America/Los_Angeles",
	    T0 - 150LL * 86400 * 1000, b, sizeof(b)), 0);
	ck_assert_str_eq(b, "2026-06-28 21:50");
	ck_assert_str_eq(getenv("TZ"), "Asia/Tokyo");
	ck_assert_int_eq(reset_format("", T0, b, sizeof(b)), 0);
	ck_assert_str_eq(b, "2026-11-26 04:50");
	unsetenv("TZ");
}
END_TEST

START_TEST(test_token)
{
	ck_assert_int_eq(admin_token_ok("", NULL, "/status"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", NULL, "/status"), 0);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "Bearer s3cr+t",
	    "/status"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "bearer  s3cr+t",
	    "/status"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "Bearer s3cr+", "/s"), 0);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "Bearer s3cr+tt", "/s"), 0);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "Basic s3cr+t", "/s"), 0);
	ck_assert_int_eq(admin_token_ok("s3cr+t", NULL,
	    "/api/status_data?token=s3cr%2Bt"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", NULL,
	    "/api/status_data?token=s3cr+t"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", "Bearer wrong",
	    "/metrics?token=s3cr+t"), 1);
	ck_assert_int_eq(admin_token_ok("s3cr+t", NULL,
	    "/metrics?token=s3cr"), 0);
}
END_TEST

static int
input(const char *body, char *key, char *model, const char **why)
{
	return admin_test_input(body, strlen(body), key, CFG_KEY_MAX, model,
	    CFG_NAME_MAX, why);
}

START_TEST(test_input)
{
	char		 key[CFG_KEY_MAX], model[CFG_NAME_MAX], big[400];
	const char	*why;

	ck_assert_int_eq(input("{\"api_key\": \"" KA "\", \"model_name\": "
	    "\"gemini-2.5-flash\"}", key, model, &why), 0);
	ck_assert_str_eq(key, KA);
	ck_assert_str_eq(model, "gemini-2.5-flash");
	ck_assert_ptr_null(why);

	ck_assert_int_eq(input("", key, model, &why), -1);
	ck_assert_int_eq(input("[1]", key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"\", \"model_name\": \"m\"}",
	    key, model, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "api_key"));
	ck_assert_int_eq(input("{\"api_key\": 5, \"model_name\": \"m\"}",
	    key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"k\"}", key, model, &why), -1);
	ck_assert_ptr_nonnull(strstr(why, "model_name"));
	ck_assert_int_eq(input("{\"api_key\": \"a b\", \"model_name\": "
	    "\"m\"}", key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"a\\u00e9\", \"model_name\": "
	    "\"m\"}", key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"k\", \"model_name\": "
	    "\"../x\"}", key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"k\", \"model_name\": "
	    "\"models/x\"}", key, model, &why), -1);
	ck_assert_int_eq(input("{\"api_key\": \"k\", \"model_name\": "
	    "\"a:generateContent\"}", key, model, &why), -1);
	/* 127 characters pass, 128 do not. */
	snprintf(big, sizeof(big), "{\"api_key\": \"%0127d\", \"model_name\":"
	    " \"m\"}", 0);
	ck_assert_int_eq(input(big, key, model, &why), 0);
	snprintf(big, sizeof(big), "{\"api_key\": \"%0128d\", \"model_name\":"
	    " \"m\"}", 0);
	ck_assert_int_eq(input(big, key, model, &why), -1);
}
END_TEST

START_TEST(test_verdict)
{
	char	 msg[512], body[1024];

	ck_assert_int_eq(admin_test_verdict(200, NULL, 0, KA, msg,
	    sizeof(msg)), 1);
	ck_assert_str_eq(msg, "key accepted");
	ck_assert_int_eq(admin_test_verdict(429, NULL, 0, KA, msg,
	    sizeof(msg)), 1);
	ck_assert_str_eq(msg, "key valid but out of quota");

	/* Google echoes a suspended key whole. */
	snprintf(body, sizeof(body), "{\"error\": {\"code\": 403, \"message\":"
	    " \"Permission denied: Consumer 'api_key:%s' has been suspended.\","
	    " \"status\": \"PERMISSION_DENIED\", \"details\": [{\"metadata\":"
	    " {\"consumer\": \"%s\"}}]}}", KA, KA);
	ck_assert_int_eq(admin_test_verdict(403, body, strlen(body), KA, msg,
	    sizeof(msg)), 0);
	ck_assert_ptr_null(strstr(msg, KA));
	ck_assert_ptr_nonnull(strstr(msg, "has been suspended"));
	ck_assert_ptr_null(strstr(body, KA));

#define NOT_VALID	"API key not valid. Please pass a valid API key."
	snprintf(body, sizeof(body), "[{\"error\": {\"code\": 400, "
	    "\"message\": \"" NOT_VALID "\"}}]");
	ck_assert_int_eq(admin_test_verdict(400, body, strlen(body), KD, msg,
	    sizeof(msg)), 0);
	ck_assert_str_eq(msg, NOT_VALID);

	snprintf(body, sizeof(body), "<html>bad gateway</html>");
	ck_assert_int_eq(admin_test_verdict(502, body, strlen(body), KA, msg,
	    sizeof(msg)), 0);
	ck_assert_str_eq(msg, "upstream answered 502");

	/* A key too short for the scrubber is still never echoed. */
	snprintf(body, sizeof(body), "{\"error\": {\"message\": \"bad key "
	    "xyz\"}}");
	ck_assert_int_eq(admin_test_verdict(401, body, strlen(body), "xyz",
	    msg, sizeof(msg)), 0);
	ck_assert_ptr_null(strstr(msg, "xyz"));
}
END_TEST

/*
 * A segment with four keys in two tiers, published twice so that slot
 * order (d, c, b, a) differs from config order (a, b, c, d).
 */
static struct shm_header *
make4(void)
{
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	 ks[4] = {
		{ KD, "dddddddd", "AQ.D…xabc", 1 },
		{ KC, "cccccccc", "AIza…LMNO", 1 },
		{ KB, "bbbbbbbb", "AIza…LMNO", 0 },
		{ KA, "aaaaaaaa", "AIza…LMNO", 0 },
	};
	struct shm_key_spec	 ks2[4];
	struct shm_model_spec	 ms[2] = {
		{ "gemini-2.5-pro", 100, -1, 5, -1, 2 },
		{ "gemini-2.5-flash", 200, 20, 10, -1, -1 },
	};
	int			 i;

	shm_sizes_for(4, 2, 8, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, 4, ms, 2, 1), 0);
	for (i = 0; i < 4; i++)
		ks2[i] = ks[3 - i];
	ck_assert_int_eq(shm_publish(h, ks2, 4, ms, 2, 1), 0);
	return h;
}

static struct config *
make_cfg(void)
{
	struct config	*cfg = calloc(1, sizeof(*cfg));

	ck_assert_ptr_nonnull(cfg);
	strlcpy(cfg->timezone, "UTC", sizeof(cfg->timezone));
	return cfg;
}

static cJSON *
item(cJSON *o, const char *path)
{
	char	 buf[256], *p, *save = NULL;

	strlcpy(buf, path, sizeof(buf));
	for (p = strtok_r(buf, "/", &save); p != NULL && o != NULL;
	    p = strtok_r(NULL, "/", &save))
		o = cJSON_GetObjectItemCaseSensitive(o, p);
	ck_assert_msg(o != NULL, "no %s", path);
	return o;
}

static const char *
str(cJSON *o, const char *path)
{
	cJSON	*i = item(o, path);

	ck_assert_msg(cJSON_IsString(i), "%s is not a string", path);
	return i->valuestring;
}

static double
num(cJSON *o, const char *path)
{
	cJSON	*i = item(o, path);

	ck_assert_msg(cJSON_IsNumber(i), "%s is not a number", path);
	return i->valuedouble;
}

static void
no_keys(const char *out)
{
	ck_assert_ptr_null(strstr(out, KA));
	ck_assert_ptr_null(strstr(out, KB));
	ck_assert_ptr_null(strstr(out, KC));
	ck_assert_ptr_null(strstr(out, KD));
	ck_assert_ptr_null(strstr(out, "AIzaSy"));
}

/* Drive the tables the way the proxy does. */
static void
traffic(struct shm_header *h, int64_t now)
{
	struct shm_pick		 p;
	struct shm_tokens	 t1 = { 8, 5, 4, 0, 13 };
	struct shm_tokens	 t2 = { 25, 1, 0, 0, 26 };
	int			 ex[3];
	int			 a, b, c;

	shm_lock(h);
	a = shm_find_key_locked(h, KA);
	b = shm_find_key_locked(h, KB);
	c = shm_find_key_locked(h, KC);
	shm_unlock(h);

	/* a serves the pro model. */
	ck_assert_int_eq(shm_pick(h, 0, 10, NULL, 0, -1, now, &p), 0);
	ck_assert_int_eq(p.key, a);
	shm_note_upstream(h, &p, 200, 0);
	shm_settle(h, &p, &t1, now);
	/* b gets a bare 429 on it. */
	ex[0] = a;
	ck_assert_int_eq(shm_pick(h, 0, 10, ex, 1, -1, now, &p), 0);
	ck_assert_int_eq(p.key, b);
	shm_note_upstream(h, &p, 429, SHM_Q_MINUTE);
	shm_cool(h, &p, now + 30000, SHM_R_429);
	shm_release(h, &p);
	/* a spends flash's daily tokens (20) on its own counters. */
	ck_assert_int_eq(shm_pick(h, 1, 5, NULL, 0, -1, now, &p), 0);
	ck_assert_int_eq(p.key, a);
	shm_settle(h, &p, &t2, now);
	/* c is out of flash's requests per day. */
	ex[1] = b;
	ck_assert_int_eq(shm_pick(h, 1, 5, ex, 2, -1, now, &p), 0);
	ck_assert_int_eq(p.key, c);
	shm_note_upstream(h, &p, 429, SHM_Q_DAY);
	shm_exhaust(h, &p, SHM_R_RPD);
	shm_release(h, &p);
	/* d is rejected by the upstream. */
	ex[2] = c;
	ck_assert_int_eq(shm_pick(h, 0, 5, ex, 3, -1, now, &p), 0);
	shm_note_upstream(h, &p, 400, 0);
	shm_invalidate(h, &p, "API_KEY_INVALID", 1000);
	shm_release(h, &p);
	/* What the clients got: pro once after a retry, flash once. */
	shm_note_request(h, 0, 200, 1234, 1, 0);
	shm_note_request(h, 1, 200, 40, 0, 1);
}

static double
sum60(cJSON *arr)
{
	cJSON	*e;
	double	 s = 0;

	ck_assert_int_eq(cJSON_GetArraySize(arr), 60);
	cJSON_ArrayForEach(e, arr)
		s += e->valuedouble;
	return s;
}

/*
 * A strict reading of the text exposition format 0.0.4, enough to catch
 * what Prometheus would refuse: every sample belongs to the family whose
 * HELP and TYPE came just before it (histograms: _bucket, _sum, _count),
 * no family twice, names and label names well formed, label values
 * properly escaped, values numbers, no sample twice, "le" on every
 * bucket and +Inf last.  (The integration tests run promtool on top.)
 */
static int
prom_name_ok(const char *p, size_t n)
{
	size_t	 i;

	if (n == 0 || (p[0] >= '0' && p[0] <= '9'))
		return 0;
	for (i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') ||
		    (p[i] >= 'A' && p[i] <= 'Z') ||
		    (p[i] >= '0' && p[i] <= '9') || p[i] == '_' ||
		    p[i] == ':'))
			return 0;
	return 1;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ck_assert marks a point through a pipe each time: too slow here. */
#define PC(x, ...)	do { if (!(x)) ck_abort_msg(__VA_ARGS__); } while (0)

static void
prom_check(const char *text)
{
	char		 fam[128] = "", type[16] = "", seen[64][128];
	char		 line[4096], *e, *q, *v;
	const char	*p, *nl;
	char		**samples = NULL;
	size_t		 nseen = 0, i, n, nsamples = 0, capsamples = 0;
	int		 help = 0;

	for (p = text; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		PC(nl != NULL, "last line without a newline");
		n = (size_t)(nl - p);
		PC(n > 0 && n < sizeof(line), "empty or long line");
		memcpy(line, p, n);
		line[n] = '\0';
		if (strncmp(line, "# HELP ", 7) == 0) {
			e = strchr(line + 7, ' ');
			PC(e != NULL, "no space in %s", line);
			*e = '\0';
			PC(prom_name_ok(line + 7, strlen(line + 7)),
			    "bad name %s", line + 7);
			for (i = 0; i < nseen; i++)
				PC(strcmp(seen[i], line + 7) != 0,
				    "family %s twice", line + 7);
			PC(nseen < 64, "too many families");
			strlcpy(seen[nseen++], line + 7, sizeof(seen[0]));
			strlcpy(fam, line + 7, sizeof(fam));
			type[0] = '\0';
			help = 1;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			PC(help, "TYPE without HELP: %s", line);
			e = strchr(line + 7, ' ');
			PC(e != NULL, "no space in %s", line);
			*e = '\0';
			PC(strcmp(line + 7, fam) == 0, "TYPE %s after HELP %s", line + 7, fam);
			PC(strcmp(e + 1, "counter") == 0 ||
			    strcmp(e + 1, "gauge") == 0 ||
			    strcmp(e + 1, "histogram") == 0, "type %s", e + 1);
			strlcpy(type, e + 1, sizeof(type));
			if (strcmp(type, "counter") == 0)
				PC(n > 6 && strcmp(fam + strlen(fam)
				    - 6, "_total") == 0, "counter %s", fam);
			help = 0;
			continue;
		}
		PC(line[0] != '#', "stray comment %s", line);
		PC(type[0] != '\0', "sample before TYPE: %s", line);
		/* name, {labels}, a space, a value. */
		n = strcspn(line, "{ ");
		PC(prom_name_ok(line, n), "bad sample name %s", line);
		if (strcmp(type, "histogram") == 0) {
			size_t	 fl = strlen(fam);

			PC(n > fl && strncmp(line, fam, fl) == 0 &&
			    (strncmp(line + fl, "_bucket", n - fl) == 0 ||
			    strncmp(line + fl, "_sum", n - fl) == 0 ||
			    strncmp(line + fl, "_count", n - fl) == 0),
			    "%s not of %s", line, fam);
			if (strncmp(line + fl, "_bucket", 7) == 0)
				PC(strstr(line, ",le=\"") != NULL,
				    "bucket without le: %s", line);
		} else
			PC(n == strlen(fam) &&
			    strncmp(line, fam, n) == 0, "%s not of %s", line,
			    fam);
		q = line + n;
		if (*q == '{') {
			for (q++; *q != '}'; ) {
				n = strcspn(q, "=");
				PC(prom_name_ok(q, n) && q[n] == '=' &&
				    q[n + 1] == '"', "bad label in %s", line);
				for (q += n + 2; *q != '"'; q++) {
					PC(*q != '\0' && *q != '\n',
					    "open label value: %s", line);
					if (*q == '\\') {
						q++;
						PC(*q == '\\' ||
						    *q == '"' || *q == 'n',
						    "bad escape: %s", line);
					}
				}
				q++;
				if (*q == ',')
					q++;
				else
					PC(*q == '}', "bad labels: %s",
					    line);
			}
			q++;
		}
		PC(*q == ' ', "no space before value: %s", line);
		v = q + 1;
		if (strcmp(v, "+Inf") != 0 && strcmp(v, "-Inf") != 0 &&
		    strcmp(v, "NaN") != 0) {
			(void)strtod(v, &e);
			PC(e != v && *e == '\0', "bad value: %s",
			    line);
		}
		/* Kept to find a sample that comes twice. */
		*q = '\0';
		if (nsamples == capsamples) {
			capsamples = capsamples ? capsamples * 2 : 256;
			samples = realloc(samples, capsamples *
			    sizeof(*samples));
			PC(samples != NULL, "out of memory");
		}
		samples[nsamples] = strdup(line);
		PC(samples[nsamples] != NULL, "out of memory");
		nsamples++;
	}
	qsort(samples, nsamples, sizeof(*samples), str_cmp);
	for (i = 0; i < nsamples; i++) {
		if (i > 0)
			PC(strcmp(samples[i - 1], samples[i]) != 0,
			    "sample twice: %s", samples[i]);
	}
	for (i = 0; i < nsamples; i++)
		free(samples[i]);
	free(samples);
}

START_TEST(test_status_data)
{
	struct shm_header	*h = make4();
	struct config		*cfg = make_cfg();
	cJSON			*d, *keys, *k, *e;
	char			*out, t[32];
	size_t			 len;
	int64_t			 now = now_ms();
	int			 slot, i;
	double			 tot;

	traffic(h, now);
	h->next_reset = T0;
	h->started = now - 5000;
	h->generation = 3;
	slot = board_claim(h, 4242);
	ck_assert_int_ge(slot, 0);
	board_set(h, slot, SHM_W_READING, NULL);
	board_set(h, slot, SHM_W_WRITING,
	    "GET /api/status_data?token=sekrit&key=" KA);
	/* A worker holding a Live session on pro. */
	SHM_SLOTS(h)[board_claim(h, 4243)].live_model = 0;

	out = status_data_json(h, cfg, now, &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), len);
	no_keys(out);
	ck_assert_ptr_null(strstr(out, "sekrit"));
	d = cJSON_Parse(out);
	ck_assert_ptr_nonnull(d);

	status_iso8601(now, t, sizeof(t));
	ck_assert_str_eq(str(d, "now"), t);
	ck_assert_str_eq(str(d, "next_quota_reset"), "2026-11-26 04:50");
	ck_assert_str_eq(str(d, "timezone"), "UTC");
	ck_assert_str_eq(str(d, "version"), LOOPER_VERSION);
	ck_assert(num(d, "uptime_s") == 5);
	ck_assert(num(d, "config_generation") == 3);
	ck_assert(cJSON_IsNull(item(d, "last_reset")));
	ck_assert(cJSON_IsNull(item(d, "last_reload/time")));

	/* pro: a is sticky and can serve; flash: c is sticky but exhausted
	 * and a is out too, so the next request goes to b. */
	ck_assert_str_eq(str(d, "current_keys/gemini-2.5-pro"), "aaaaaaaa");
	ck_assert_str_eq(str(d, "current_keys/gemini-2.5-flash"), "bbbbbbbb");

	ck_assert(num(d, "models/gemini-2.5-pro/tpm_limit") == 100);
	ck_assert(cJSON_IsNull(item(d, "models/gemini-2.5-pro/tpd_limit")));
	ck_assert(num(d, "models/gemini-2.5-flash/tpd_limit") == 20);
	ck_assert(num(d, "models/gemini-2.5-pro/sessions_limit") == 2);
	ck_assert(cJSON_IsNull(item(d, "models/gemini-2.5-flash/"
	    "sessions_limit")));
	ck_assert(num(d, "models/gemini-2.5-pro/live_sessions") == 1);
	ck_assert(num(d, "models/gemini-2.5-flash/live_sessions") == 0);
	ck_assert(cJSON_IsTrue(item(d, "models/gemini-2.5-flash/configured")));
	ck_assert(cJSON_IsTrue(item(d, "models/gemini-2.5-flash/default")));
	/* The models' sums over their keys, and their keys by state. */
	ck_assert(num(d, "models/gemini-2.5-pro/requests_today") == 1);
	ck_assert(num(d, "models/gemini-2.5-pro/errors_today") == 2);
	ck_assert(num(d, "models/gemini-2.5-pro/tokens_today/prompt") == 8);
	ck_assert(num(d, "models/gemini-2.5-pro/tokens_today/cached") == 4);
	ck_assert(num(d, "models/gemini-2.5-pro/tokens_today/total") == 13);
	ck_assert(num(d, "models/gemini-2.5-pro/cache_hit_ratio") == 0.5);
	ck_assert(num(d, "models/gemini-2.5-flash/tokens_today/total") == 26);
	ck_assert(num(d, "models/gemini-2.5-pro/keys/available") == 2);
	ck_assert(num(d, "models/gemini-2.5-pro/keys/cooling") == 1);
	ck_assert(num(d, "models/gemini-2.5-pro/keys/exhausted") == 0);
	ck_assert(num(d, "models/gemini-2.5-pro/keys/invalid") == 1);
	ck_assert(num(d, "models/gemini-2.5-flash/keys/exhausted") == 2);
	ck_assert(num(d, "tokens_today/prompt") == 33);
	ck_assert(num(d, "tokens_today/cached") == 4);
	ck_assert(num(d, "tokens_today/total") == 39);
	ck_assert(num(d, "requests_today") == 2);
	ck_assert(num(d, "cache_hit_ratio") == 0.1212);

	keys = item(d, "keys");
	ck_assert_int_eq(cJSON_GetArraySize(keys), 4);
	k = cJSON_GetArrayItem(keys, 0);
	ck_assert_str_eq(str(k, "id"), "aaaaaaaa");
	ck_assert_str_eq(str(k, "masked"), "AIza…LMNO");
	ck_assert_str_eq(str(k, "tier"), "priority");
	ck_assert_str_eq(str(k, "state"), "exhausted");
	ck_assert(cJSON_IsNull(item(k, "invalid_reason")));
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/state"), "available");
	ck_assert(cJSON_IsNull(item(k, "models/gemini-2.5-pro/reason")));
	ck_assert(num(k, "models/gemini-2.5-pro/tpm_used") == 8);
	ck_assert(num(k, "models/gemini-2.5-pro/rpm_used") == 1);
	ck_assert(num(k, "models/gemini-2.5-pro/tpd_used") == 8);
	ck_assert(num(k, "models/gemini-2.5-pro/rpd_used") == 1);
	ck_assert(num(k, "models/gemini-2.5-pro/tpm_limit") == 100);
	ck_assert(cJSON_IsNull(item(k, "models/gemini-2.5-pro/rpd_limit")));
	ck_assert(num(k, "models/gemini-2.5-pro/requests_today") == 1);
	ck_assert(num(k, "models/gemini-2.5-pro/errors_today") == 0);
	ck_assert(num(k, "models/gemini-2.5-pro/tokens_today/prompt") == 8);
	ck_assert(num(k, "models/gemini-2.5-pro/tokens_today/candidates") ==
	    5);
	ck_assert(num(k, "models/gemini-2.5-pro/tokens_today/cached") == 4);
	ck_assert(num(k, "models/gemini-2.5-pro/tokens_today/thoughts") == 0);
	ck_assert(num(k, "models/gemini-2.5-pro/tokens_today/total") == 13);
	ck_assert(num(k, "models/gemini-2.5-pro/cache_hit_ratio") == 0.5);
	ck_assert(cJSON_IsNull(item(k, "models/gemini-2.5-pro/"
	    "cooldown_until")));
	ck_assert(cJSON_IsNull(item(k, "models/gemini-2.5-pro/until")));
	ck_assert_str_eq(str(k, "models/gemini-2.5-flash/state"), "exhausted");
	ck_assert_str_eq(str(k, "models/gemini-2.5-flash/reason"), "tpd");
	ck_assert(num(k, "models/gemini-2.5-flash/tpd_used") == 25);
	/* Exhausted: until the next reset, for the cell and the key. */
	ck_assert_str_eq(str(k, "models/gemini-2.5-flash/until"),
	    "2026-11-26T04:50:00Z");
	ck_assert_str_eq(str(k, "until"), "2026-11-26T04:50:00Z");

	k = cJSON_GetArrayItem(keys, 1);
	ck_assert_str_eq(str(k, "id"), "bbbbbbbb");
	ck_assert_str_eq(str(k, "state"), "cooling");
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/state"), "cooling");
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/reason"), "429");
	status_iso8601(now + 30000, t, sizeof(t));
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/cooldown_until"), t);
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/until"), t);
	ck_assert_str_eq(str(k, "until"), t);
	ck_assert(cJSON_IsNull(item(k, "models/gemini-2.5-flash/until")));
	ck_assert(num(k, "models/gemini-2.5-pro/errors_today") == 1);
	ck_assert(num(k, "models/gemini-2.5-pro/tpm_used") == 0);
	ck_assert_str_eq(str(k, "models/gemini-2.5-flash/state"), "available");

	k = cJSON_GetArrayItem(keys, 2);
	ck_assert_str_eq(str(k, "id"), "cccccccc");
	ck_assert_str_eq(str(k, "tier"), "secondary");
	ck_assert_str_eq(str(k, "state"), "exhausted");
	ck_assert_str_eq(str(k, "models/gemini-2.5-flash/reason"), "rpd");

	k = cJSON_GetArrayItem(keys, 3);
	ck_assert_str_eq(str(k, "id"), "dddddddd");
	ck_assert_str_eq(str(k, "masked"), "AQ.D…xabc");
	ck_assert_str_eq(str(k, "state"), "invalid");
	ck_assert_str_eq(str(k, "invalid_reason"), "API_KEY_INVALID");
	ck_assert(cJSON_IsNull(item(k, "until")));
	ck_assert_str_eq(str(k, "models/gemini-2.5-pro/reason"), "invalid");

	/* 60 minutes, oldest first, ending with this one. */
	e = item(d, "history");
	ck_assert_int_eq(cJSON_GetArraySize(e), 60);
	status_iso8601(now / 60000 * 60000, t, sizeof(t));
	ck_assert_str_eq(str(cJSON_GetArrayItem(e, 59), "minute"), t);
	status_iso8601((now / 60000 - 59) * 60000, t, sizeof(t));
	ck_assert_str_eq(str(cJSON_GetArrayItem(e, 0), "minute"), t);
	for (tot = 0, i = 0; i < 60; i++)
		tot += num(cJSON_GetArrayItem(e, i), "tokens");
	ck_assert(tot == 13 + 26);
	ck_assert(sum60(item(d, "history_by_model/gemini-2.5-pro")) == 13);
	ck_assert(sum60(item(d, "history_by_model/gemini-2.5-flash")) == 26);
	ck_assert(sum60(item(d, "history_by_key/aaaaaaaa")) == 39);
	ck_assert(sum60(item(d, "history_by_key/dddddddd")) == 0);

	e = item(d, "workers");
	ck_assert_int_eq(cJSON_GetArraySize(e), 2);
	ck_assert(num(cJSON_GetArrayItem(e, 0), "pid") == 4242);
	ck_assert_str_eq(str(cJSON_GetArrayItem(e, 0), "state"), "writing");
	ck_assert_str_eq(str(cJSON_GetArrayItem(e, 0), "request"),
	    "GET /api/status_data?token=-&key=-");
	ck_assert_str_eq(str(cJSON_GetArrayItem(e, 1), "state"), "starting");
	ck_assert(num(d, "workers_busy") == 1);
	ck_assert(num(d, "workers_idle") == 1);

	cJSON_Delete(d);
	free(out);
	free(cfg);
	shm_destroy(h);
}
END_TEST

/* Unknown reset time: the config's string, else null. */
START_TEST(test_status_reset_unknown)
{
	struct shm_header	*h = make4();
	struct config		*cfg = make_cfg();
	cJSON			*d;
	char			*out;
	size_t			 len;

	out = status_data_json(h, cfg, T0, &len);
	ck_assert_ptr_nonnull(out);
	d = cJSON_Parse(out);
	ck_assert(cJSON_IsNull(item(d, "next_quota_reset")));
	/* Never served: no current key. */
	ck_assert(cJSON_IsNull(item(d, "current_keys/gemini-2.5-pro")));
	cJSON_Delete(d);
	free(out);
	strlcpy(cfg->next_reset, "2026-11-27 00:00", sizeof(cfg->next_reset));
	out = status_data_json(h, cfg, T0, &len);
	d = cJSON_Parse(out);
	ck_assert_str_eq(str(d, "next_quota_reset"), "2026-11-27 00:00");
	cJSON_Delete(d);
	free(out);
	free(cfg);
	shm_destroy(h);
}
END_TEST

/* A model named by a client, with everything JSON and Prometheus escape. */
#define ODD	"od\"d\\m\nx\x01"

START_TEST(test_odd_model)
{
	struct shm_header	*h = make4();
	struct config		*cfg = make_cfg();
	cJSON			*d, *k;
	char			*out;
	size_t			 len;

	ck_assert_int_eq(shm_model_slot(h, ODD), 2);
	out = status_data_json(h, cfg, now_ms(), &len);
	ck_assert_ptr_nonnull(out);
	d = cJSON_Parse(out);
	ck_assert_ptr_nonnull(d);
	k = cJSON_GetObjectItemCaseSensitive(item(d, "models"), ODD);
	ck_assert(cJSON_IsFalse(item(k, "configured")));
	k = cJSON_GetArrayItem(item(d, "keys"), 0);
	ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(
	    item(k, "models"), ODD));
	ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(
	    item(d, "history_by_model"), ODD));
	cJSON_Delete(d);
	free(out);

	out = metrics_text(h, now_ms(), &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_nonnull(strstr(out, "gemini_looper_tpm_used"
	    "{key=\"aaaaaaaa\",model=\"od\\\"d\\\\m\\nx\x01\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out, "gemini_looper_requests_total"
	    "{model=\"od\\\"d\\\\m\\nx\x01\",class=\"2xx\"} 0\n"));
	prom_check(out);
	free(out);
	free(cfg);
	shm_destroy(h);
}
END_TEST

START_TEST(test_metrics)
{
	struct shm_header	*h = make4();
	struct config		*cfg = make_cfg();
	char			*out, *p;
	size_t			 len;
	int			 n;

	traffic(h, now_ms());
	h->started = now_ms() - 90000;
	h->next_reset = T0;
	board_set(h, board_claim(h, 77), SHM_W_UPSTREAM, NULL);
	SHM_SLOTS(h)[board_claim(h, 78)].live_model = 1;	/* flash */
	out = metrics_text(h, now_ms(), &len);
	ck_assert_ptr_nonnull(out);
	ck_assert_uint_eq(strlen(out), len);
	no_keys(out);
	prom_check(out);
#define HAS(s)	ck_assert_msg(strstr(out, s) != NULL, "missing: %s", s)
#define HASNT(s) ck_assert_msg(strstr(out, s) == NULL, "present: %s", s)
	HAS("# TYPE gemini_looper_up gauge\ngemini_looper_up 1\n");
	HAS("gemini_looper_build_info{version=\"" LOOPER_VERSION "\"} 1\n");
	HAS("gemini_looper_next_reset_timestamp_seconds 1795668600.000\n");
	HAS("gemini_looper_workers{state=\"busy\"} 1\n");
	HAS("gemini_looper_workers{state=\"idle\"} 1\n");
	HAS("gemini_looper_keys{state=\"exhausted\"} 2\n");
	HAS("gemini_looper_keys{state=\"cooling\"} 1\n");
	HAS("gemini_looper_keys{state=\"invalid\"} 1\n");
	/* Per model: answers by class, retries, waits, durations. */
	HAS("gemini_looper_requests_total{model=\"gemini-2.5-pro\","
	    "class=\"2xx\"} 1\n");
	HAS("gemini_looper_requests_total{model=\"gemini-2.5-pro\","
	    "class=\"5xx\"} 0\n");
	HAS("gemini_looper_retries_total{model=\"gemini-2.5-pro\"} 1\n");
	HAS("gemini_looper_retries_total{model=\"gemini-2.5-flash\"} 0\n");
	HAS("gemini_looper_waits_total{model=\"gemini-2.5-flash\"} 1\n");
	HAS("# TYPE gemini_looper_live_sessions gauge\n");
	HAS("gemini_looper_live_sessions{model=\"gemini-2.5-flash\"} 1\n");
	HAS("gemini_looper_live_sessions{model=\"gemini-2.5-pro\"} 0\n");
	HAS("# TYPE gemini_looper_request_duration_seconds histogram\n");
	HAS("gemini_looper_request_duration_seconds_bucket{model="
	    "\"gemini-2.5-pro\",le=\"1\"} 0\n");
	HAS("gemini_looper_request_duration_seconds_bucket{model="
	    "\"gemini-2.5-pro\",le=\"2.5\"} 1\n");
	HAS("gemini_looper_request_duration_seconds_bucket{model="
	    "\"gemini-2.5-pro\",le=\"+Inf\"} 1\n");
	HAS("gemini_looper_request_duration_seconds_sum{model="
	    "\"gemini-2.5-pro\"} 1.234\n");
	HAS("gemini_looper_request_duration_seconds_count{model="
	    "\"gemini-2.5-pro\"} 1\n");
	HAS("gemini_looper_request_duration_seconds_bucket{model="
	    "\"gemini-2.5-flash\",le=\"0.05\"} 1\n");
	/* Per key x model: upstream answers, 429s by quota, tokens. */
	HAS("gemini_looper_upstream_requests_total{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-pro\",class=\"2xx\"} 1\n");
	HAS("gemini_looper_upstream_requests_total{key=\"bbbbbbbb\",model="
	    "\"gemini-2.5-pro\",class=\"4xx\"} 1\n");
	HAS("gemini_looper_upstream_requests_total{key=\"dddddddd\",model="
	    "\"gemini-2.5-pro\",class=\"4xx\"} 1\n");
	HAS("gemini_looper_upstream_429_total{key=\"bbbbbbbb\",model="
	    "\"gemini-2.5-pro\",quota=\"minute\"} 1\n");
	HAS("gemini_looper_upstream_429_total{key=\"cccccccc\",model="
	    "\"gemini-2.5-flash\",quota=\"day\"} 1\n");
	HASNT("gemini_looper_upstream_429_total{key=\"dddddddd\"");
	HAS("gemini_looper_tokens_total{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-pro\",kind=\"cached\"} 4\n");
	HAS("gemini_looper_tokens_total{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-flash\",kind=\"total\"} 26\n");
	HAS("gemini_looper_tokens_total{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-flash\",kind=\"thoughts\"} 0\n");
	/* A cell that never had traffic has no counters... */
	HASNT("gemini_looper_tokens_total{key=\"cccccccc\",model="
	    "\"gemini-2.5-pro\"");
	/* ... but its gauges. */
	HAS("gemini_looper_tpm_used{key=\"cccccccc\",model="
	    "\"gemini-2.5-pro\"} 0\n");
	HAS("gemini_looper_key_state{key=\"bbbbbbbb\",model="
	    "\"gemini-2.5-pro\",state=\"cooling\"} 1\n");
	HAS("gemini_looper_key_state{key=\"bbbbbbbb\",model="
	    "\"gemini-2.5-pro\",state=\"available\"} 0\n");
	HAS("gemini_looper_key_state{key=\"dddddddd\",model="
	    "\"gemini-2.5-flash\",state=\"invalid\"} 1\n");
	HAS("gemini_looper_key_state{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-flash\",state=\"exhausted\"} 1\n");
	HAS("gemini_looper_tpm_used{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-flash\"} 25\n");
	HAS("gemini_looper_tpm_limit{key=\"aaaaaaaa\",model="
	    "\"gemini-2.5-pro\"} 100\n");
#undef HAS
#undef HASNT
	/* Each key x model x state once. */
	for (n = 0, p = out; (p = strstr(p, "gemini_looper_key_state{")) !=
	    NULL; p++)
		n++;
	ck_assert_int_eq(n, 4 * 2 * 4);
	free(out);
	free(cfg);
	shm_destroy(h);
}
END_TEST

/* 10,000 keys: one pass, bounded time, a valid document. */
START_TEST(test_status_big)
{
	enum { NK = 10000 };
	struct shm_sizes	 sz;
	struct shm_header	*h;
	struct shm_key_spec	*ks;
	struct shm_model_spec	 ms[3] = {
		{ "gemini-2.5-pro", 250000, -1, 5, 100 },
		{ "gemini-2.5-flash", 250000, -1, 10, 250 },
		{ "gemini-2.5-flash-lite", 250000, -1, 15, 1000 },
	};
	struct config		*cfg = make_cfg();
	struct shm_pick		 p;
	struct shm_tokens	 t = { 100, 10, 0, 0, 110 };
	struct timespec		 a, b;
	char			(*kstr)[48], (*ids)[12];
	char			*out;
	cJSON			*d;
	size_t			 len;
	double			 ms_json, ms_prom;
	int			 i;

	ks = calloc(NK, sizeof(*ks));
	kstr = calloc(NK, sizeof(*kstr));
	ids = calloc(NK, sizeof(*ids));
	ck_assert(ks != NULL && kstr != NULL && ids != NULL);
	for (i = 0; i < NK; i++) {
		snprintf(kstr[i], sizeof(kstr[i]), "AIzaSyBIG%030d", i);
		snprintf(ids[i], sizeof(ids[i]), "%08x", i);
		ks[i].key = kstr[i];
		ks[i].id = ids[i];
		ks[i].masked = "AIza…0000";
		ks[i].tier = i < NK / 2 ? 0 : 1;
	}
	shm_sizes_for(NK, 3, 8, 0, &sz);
	h = shm_create(&sz, 0);
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(shm_publish(h, ks, NK, ms, 3, 1), 0);
	for (i = 0; i < 50; i++) {
		ck_assert_int_eq(shm_pick(h, i % 3, 100, NULL, 0, -1,
		    now_ms(), &p), 0);
		shm_settle(h, &p, &t, now_ms());
	}

	clock_gettime(CLOCK_MONOTONIC, &a);
	out = status_data_json(h, cfg, now_ms(), &len);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms_json = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_null(strstr(out, "AIzaSyBIG"));
	d = cJSON_Parse(out);
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(cJSON_GetArraySize(item(d, "keys")), NK);
	ck_assert_str_eq(str(cJSON_GetArrayItem(item(d, "keys"), NK - 1),
	    "id"), ids[NK - 1]);
	/* 17 requests at 10 a minute: the second key took over. */
	ck_assert_str_eq(str(d, "current_keys/gemini-2.5-flash"), ids[1]);
	ck_assert_int_eq(cJSON_GetArraySize(item(d, "history_by_key")), NK);
	cJSON_Delete(d);
	free(out);

	clock_gettime(CLOCK_MONOTONIC, &a);
	out = metrics_text(h, now_ms(), &len);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms_prom = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	ck_assert_ptr_nonnull(out);
	ck_assert_ptr_null(strstr(out, "AIzaSyBIG"));
	prom_check(out);
	/* Every cell's state, once per state. */
	ck_assert_ptr_nonnull(strstr(out, "gemini_looper_key_state{key=\""
	    "0000270f\",model=\"gemini-2.5-flash-lite\",state=\"invalid\"} 0\n"));
	free(out);
	/* Generous: sanitizers slow this down several times. */
	ck_assert_msg(ms_json < 5000 && ms_prom < 5000,
	    "status_data %.0f ms, metrics %.0f ms", ms_json, ms_prom);

	free(ks);
	free(kstr);
	free(ids);
	free(cfg);
	shm_destroy(h);
}
END_TEST

Suite *
status_suite(void)
{
	Suite	*s = suite_create("status");
	TCase	*tc = tcase_create("pure");
	TCase	*tt = tcase_create("tables");

	tcase_add_test(tc, test_iso8601);
	tcase_add_test(tc, test_local_time);
	tcase_add_test(tc, test_token);
	tcase_add_test(tc, test_input);
	tcase_add_test(tc, test_verdict);
	suite_add_tcase(s, tc);
	tcase_add_test(tt, test_status_data);
	tcase_add_test(tt, test_status_reset_unknown);
	tcase_add_test(tt, test_odd_model);
	tcase_add_test(tt, test_metrics);
	tcase_add_test(tt, test_status_big);
	tcase_set_timeout(tt, 120);
	suite_add_tcase(s, tt);
	return s;
}
