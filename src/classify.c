/*
 * What an upstream answer that is not 2xx means for the key that got it:
 * cool it for the model, exhaust it until the daily reset, drop it from
 * the pool as invalid, retry the request elsewhere, or just hand the
 * answer to the client (gem_classify).  The facts that decide are read
 * from the parsed body or, when it does not parse (cut short, not JSON),
 * from a scan of its raw text, so that one set of rules serves both.
 *
 * Called by proxy.c for every error answer, before anything of it is
 * relayed.  No I/O, no globals but const tables, no locks.  The rules
 * follow google-gemini/gemini-cli's quota classifier
 * (packages/core/src/utils/googleQuotaErrors.ts) and bodies captured in
 * public issue threads; ../shared/GEMINI.md has the wire facts.
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <bsd/sys/cdefs.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "scrub.h"
#include "shm.h"
#include "wire.h"

#define GEM_DELAY_MAX_MS	(24LL * 3600 * 1000)	/* longest cool-down */
#define GEM_QUOTAS_MAX		8	/* violations looked at */
#define GEM_REASONS_MAX		4	/* ErrorInfo reasons looked at */
#define GEM_ID_MAX		96	/* a quotaId, sanitised */

/*
 * Error classification.
 *
 * The facts that decide are gathered first, from the parsed body or, when
 * it does not parse (truncated, not JSON), from a scan of the raw text, so
 * that one set of rules serves both.
 */
struct gem_quota {
	char		 id[GEM_ID_MAX];	/* violations[].quotaId */
	int		 zero;		/* quotaValue "0": no quota at all */
	int64_t		 value;		/* quotaValue, -1 when not given */
};

struct gem_facts {
	struct gem_quota quota[GEM_QUOTAS_MAX];
	size_t		 nquota;
	char		 reason[GEM_REASONS_MAX][48];	/* ErrorInfo.reason */
	size_t		 nreason;
	char		 quota_limit[GEM_ID_MAX];	/* ErrorInfo quota_limit */
	char		 status[32];			/* error.status */
	int64_t		 retry_ms;	/* RetryInfo.retryDelay, -1: none */
	const char	*msg;		/* error.message, or the raw body */
	size_t		 msglen;
};

/*
 * ErrorInfo reasons that say the key itself will never serve from here:
 * rejected, suspended, blocked for this API, its project without the API,
 * or restricted to callers the proxy is not.  Every further request with
 * such a key fails the same way, so it is dropped from the pool until a
 * reload instead of being retried forever as the sticky key.
 */
static const char *const gem_invalid_reasons[] = {
	"API_KEY_INVALID",
	"API_KEY_EXPIRED",
	"CONSUMER_SUSPENDED",
	"CONSUMER_INVALID",
	"API_KEY_SERVICE_BLOCKED",
	"SERVICE_DISABLED",
	"API_KEY_IP_ADDRESS_BLOCKED",
	"API_KEY_HTTP_REFERRER_BLOCKED",
	"API_KEY_ANDROID_APP_BLOCKED",
	"API_KEY_IOS_APP_BLOCKED"
};

/* Message texts (compared without case) that say the same of the key. */
static const struct {
	const char	*text;
	const char	*why;
} gem_invalid_msgs[] = {
	{ "api key not valid",		"API key not valid" },
	{ "api key not found",		"API key not found" },
	{ "api key expired",		"API key expired" },
	{ "reported as leaked",		"key reported as leaked" },
	{ "has been suspended",		"consumer suspended" }
};

static int
gem_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
gem_lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* memmem() that ignores ASCII case; needle is lower case. */
static const char *
gem_cifind(const char *hay, size_t len, const char *needle)
{
	size_t	 n = strlen(needle), i, j;

	if (n == 0 || n > len)
		return NULL;
	for (i = 0; i + n <= len; i++) {
		for (j = 0; j < n; j++)
			if (gem_lower((unsigned char)hay[i + j]) != needle[j])
				break;
		if (j == n)
			return hay + i;
	}
	return NULL;
}

/*
 * Reads "<decimal>s" or "<decimal>ms" at the start of p[0..n).  Returns the
 * bytes used, or -1.  Fractions round up: waiting a little longer than told
 * costs nothing, coming back too early costs another 429.
 */
static int
gem_delay_scan(const char *p, size_t n, int64_t *ms)
{
	uint64_t	 ip = 0, frac = 0;
	size_t		 i = 0;
	int		 idig = 0, fdig = 0, more = 0;

	while (i < n && gem_digit((unsigned char)p[i])) {
		if (ip > 1000000000000ULL)
			return -1;
		ip = ip * 10 + (uint64_t)(p[i] - '0');
		idig++;
		i++;
	}
	if (i < n && p[i] == '.') {
		i++;
		while (i < n && gem_digit((unsigned char)p[i])) {
			if (fdig < 9) {
				frac = frac * 10 + (uint64_t)(p[i] - '0');
				fdig++;
			} else if (p[i] != '0')
				more = 1;
			i++;
		}
	}
	if (idig == 0 && fdig == 0)
		return -1;
	for (; fdig < 9; fdig++)
		frac *= 10;
	if (more)
		frac++;
	/* frac is now in units of 1e-9 of the unit. */
	if (i + 2 <= n && p[i] == 'm' && p[i + 1] == 's') {
		*ms = (int64_t)ip + (frac > 0 ? 1 : 0);
		return (int)(i + 2);
	}
	if (i < n && p[i] == 's') {
		*ms = (int64_t)ip * 1000 + (int64_t)((frac + 999999) / 1000000);
		return (int)(i + 1);
	}
	return -1;
}

/*
 * A google.protobuf.Duration as the API writes it: "40s", "34.07s",
 * "900ms".  Surrounding blanks are allowed.  Returns 0, or -1 when s is not
 * such a duration.
 */
int
gem_retry_delay_parse(const char *s, int64_t *ms)
{
	size_t	 n;
	int	 used;

	if (s == NULL)
		return -1;
	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if ((used = gem_delay_scan(s, n, ms)) == -1 || (size_t)used != n)
		return -1;
	return 0;
}

/* RetryInfo.retryDelay: "40s", or the object form {seconds, nanos}. */
static int
gem_json_duration(const cJSON *j, int64_t *ms)
{
	int64_t	 sec = 0, nanos = 0;

	if (cJSON_IsString(j))
		return gem_retry_delay_parse(j->valuestring, ms);
	if (cJSON_IsNumber(j)) {
		if (!(j->valuedouble >= 0) || j->valuedouble > 1e9)
			return -1;
		*ms = (int64_t)(j->valuedouble * 1000 + 0.999);
		return 0;
	}
	if (cJSON_IsObject(j)) {
		if (gem_json_int(cJSON_GetObjectItemCaseSensitive(j, "seconds"),
		    &sec) == -1)
			sec = 0;
		if (gem_json_int(cJSON_GetObjectItemCaseSensitive(j, "nanos"),
		    &nanos) == -1)
			nanos = 0;
		if (sec > 1000000000)
			return -1;
		*ms = sec * 1000 + (nanos + 999999) / 1000000;
		return 0;
	}
	return -1;
}

static void
gem_facts_add_quota(struct gem_facts *f, const char *id, size_t n,
    int64_t value)
{
	if (f->nquota == GEM_QUOTAS_MAX)
		return;
	gem_idcopy(f->quota[f->nquota].id, sizeof(f->quota[0].id), id, n);
	f->quota[f->nquota].zero = value == 0;
	f->quota[f->nquota].value = value;
	f->nquota++;
}

static void
gem_facts_add_reason(struct gem_facts *f, const char *r, size_t n)
{
	if (f->nreason == GEM_REASONS_MAX)
		return;
	gem_idcopy(f->reason[f->nreason], sizeof(f->reason[0]), r, n);
	f->nreason++;
}

/* One element of error.details; kinds are told by shape, not by @type. */
static void
gem_facts_detail(struct gem_facts *f, const cJSON *d)
{
	const cJSON	*viol, *v, *id, *qv, *rd, *reason, *md, *svc, *ql;
	int64_t		 ms, n;

	viol = cJSON_GetObjectItemCaseSensitive(d, "violations");
	if (cJSON_IsArray(viol)) {
		cJSON_ArrayForEach(v, viol) {
			id = cJSON_GetObjectItemCaseSensitive(v, "quotaId");
			if (!cJSON_IsString(id))
				continue;
			qv = cJSON_GetObjectItemCaseSensitive(v, "quotaValue");
			if (gem_json_int(qv, &n) == -1)
				n = -1;
			gem_facts_add_quota(f, id->valuestring,
			    strlen(id->valuestring), n);
		}
	}
	rd = cJSON_GetObjectItemCaseSensitive(d, "retryDelay");
	if (rd != NULL && f->retry_ms == -1 &&
	    gem_json_duration(rd, &ms) == 0 && ms > 0)
		f->retry_ms = ms;
	reason = cJSON_GetObjectItemCaseSensitive(d, "reason");
	if (cJSON_IsString(reason)) {
		md = cJSON_GetObjectItemCaseSensitive(d, "metadata");
		svc = cJSON_GetObjectItemCaseSensitive(md, "service");
		/* Another API disabled is not this key's problem. */
		if (strcmp(reason->valuestring, "SERVICE_DISABLED") == 0 &&
		    cJSON_IsString(svc) && strcmp(svc->valuestring,
		    "generativelanguage.googleapis.com") != 0)
			return;
		gem_facts_add_reason(f, reason->valuestring,
		    strlen(reason->valuestring));
		ql = cJSON_GetObjectItemCaseSensitive(md, "quota_limit");
		if (cJSON_IsString(ql) && f->quota_limit[0] == '\0')
			gem_idcopy(f->quota_limit, sizeof(f->quota_limit),
			    ql->valuestring, strlen(ql->valuestring));
	}
}

/*
 * Facts from a parsed body: {"error": {...}}, or on the OpenAI-compatible
 * path [{"error": {...}}].  Returns -1 when there is no error object.
 */
static int
gem_facts_json(const cJSON *root, struct gem_facts *f)
{
	const cJSON	*e, *msg, *st, *details, *d;

	if (cJSON_IsArray(root))
		root = cJSON_GetArrayItem(root, 0);
	e = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (!cJSON_IsObject(e))
		return -1;
	msg = cJSON_GetObjectItemCaseSensitive(e, "message");
	if (cJSON_IsString(msg)) {
		f->msg = msg->valuestring;
		f->msglen = strlen(msg->valuestring);
	}
	st = cJSON_GetObjectItemCaseSensitive(e, "status");
	if (cJSON_IsString(st))
		gem_idcopy(f->status, sizeof(f->status), st->valuestring,
		    strlen(st->valuestring));
	details = cJSON_GetObjectItemCaseSensitive(e, "details");
	if (cJSON_IsArray(details)) {
		cJSON_ArrayForEach(d, details)
			if (cJSON_IsObject(d))
				gem_facts_detail(f, d);
	}
	return 0;
}

/*
 * At p (just past a "name" key in raw JSON text), the string value after
 * the colon: sets *v and *vn, returns 0.  A bare number is accepted too.
 */
static int
gem_raw_value(const char *p, size_t n, const char **v, size_t *vn)
{
	size_t	 i = 0, s;

	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' ||
	    p[i] == '\n'))
		i++;
	if (i == n || p[i] != ':')
		return -1;
	for (i++; i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' ||
	    p[i] == '\n'); i++)
		;
	if (i < n && gem_digit((unsigned char)p[i])) {
		for (s = i; i < n && gem_digit((unsigned char)p[i]); i++)
			;
		*v = p + s;
		*vn = i - s;
		return 0;
	}
	if (i == n || p[i] != '"')
		return -1;
	for (s = ++i; i < n && p[i] != '"' && p[i] != '\\'; i++)
		;
	if (i == n || p[i] != '"')
		return -1;	/* cut off, or escapes nobody sends here */
	*v = p + s;
	*vn = i - s;
	return 0;
}

/* A quotaValue found as text: digits only, else left unknown. */
static void
gem_raw_quota_value(struct gem_quota *q, const char *v, size_t vn)
{
	int64_t	 n = 0;
	size_t	 i;

	if (vn == 0 || vn > 15)
		return;
	for (i = 0; i < vn; i++) {
		if (!gem_digit((unsigned char)v[i]))
			return;
		n = n * 10 + (v[i] - '0');
	}
	q->value = n;
	q->zero = n == 0;
}

/*
 * Facts from a body that does not parse, typically one cut short: the same
 * members, found as text.  quotaValue belongs to the last quotaId seen,
 * the order the API writes them in.
 */
static void
gem_facts_raw(const char *b, size_t len, struct gem_facts *f)
{
	static const char kqid[] = "\"quotaId\"", kqv[] = "\"quotaValue\"";
	static const char krd[] = "\"retryDelay\"", krs[] = "\"reason\"";
	const char	*v;
	size_t		 i, vn;
	int64_t		 ms;
	char		 tmp[32];

	f->msg = b;
	f->msglen = len;
	for (i = 0; i < len; i++) {
		if (b[i] != '"')
			continue;
		if (len - i >= sizeof(kqid) - 1 &&
		    memcmp(b + i, kqid, sizeof(kqid) - 1) == 0) {
			i += sizeof(kqid) - 2;
			if (gem_raw_value(b + i + 1, len - i - 1, &v, &vn) == 0)
				gem_facts_add_quota(f, v, vn, -1);
		} else if (len - i >= sizeof(kqv) - 1 &&
		    memcmp(b + i, kqv, sizeof(kqv) - 1) == 0) {
			i += sizeof(kqv) - 2;
			if (gem_raw_value(b + i + 1, len - i - 1, &v, &vn) == 0 &&
			    f->nquota > 0)
				gem_raw_quota_value(&f->quota[f->nquota - 1],
				    v, vn);
		} else if (len - i >= sizeof(krd) - 1 &&
		    memcmp(b + i, krd, sizeof(krd) - 1) == 0) {
			i += sizeof(krd) - 2;
			if (gem_raw_value(b + i + 1, len - i - 1, &v, &vn) == 0 &&
			    vn < sizeof(tmp) && f->retry_ms == -1) {
				memcpy(tmp, v, vn);
				tmp[vn] = '\0';
				if (gem_retry_delay_parse(tmp, &ms) == 0 && ms > 0)
					f->retry_ms = ms;
			}
		} else if (len - i >= sizeof(krs) - 1 &&
		    memcmp(b + i, krs, sizeof(krs) - 1) == 0) {
			i += sizeof(krs) - 2;
			if (gem_raw_value(b + i + 1, len - i - 1, &v, &vn) == 0)
				gem_facts_add_reason(f, v, vn);
		}
	}
}

/* "Please retry in 35.59s." in the message; -1 when absent. */
static int64_t
gem_msg_retry(const struct gem_facts *f)
{
	static const char	 pre[] = "Please retry in ";
	const char		*p;
	int64_t			 ms;

	if (f->msg == NULL)
		return -1;
	p = memmem(f->msg, f->msglen, pre, sizeof(pre) - 1);
	if (p == NULL)
		return -1;
	p += sizeof(pre) - 1;
	if (gem_delay_scan(p, f->msglen - (size_t)(p - f->msg), &ms) == -1 ||
	    ms <= 0)
		return -1;
	return ms;
}

/* "..., limit: 0, model: ..." in the message: the tier has no quota. */
static int
gem_msg_limit_zero(const struct gem_facts *f)
{
	static const char	 pre[] = "limit: 0";
	const char		*p, *end;
	size_t			 off = 0;

	if (f->msg == NULL)
		return 0;
	end = f->msg + f->msglen;
	while ((p = memmem(f->msg + off, f->msglen - off, pre,
	    sizeof(pre) - 1)) != NULL) {
		p += sizeof(pre) - 1;
		if (p == end || !gem_digit((unsigned char)*p))
			return 1;
		off = (size_t)(p - f->msg);
	}
	return 0;
}

/* Token or request quota, per minute or per day, from a quotaId. */
static uint32_t
gem_quota_reason(const char *id, int daily)
{
	if (strstr(id, "Token") != NULL)
		return daily ? SHM_R_TPD : SHM_R_TPM;
	if (strstr(id, "Request") != NULL || daily)
		return daily ? SHM_R_RPD : SHM_R_RPM;
	return SHM_R_429;
}

static int
gem_quota_daily(const char *id)
{
	return strstr(id, "PerDay") != NULL || strstr(id, "Daily") != NULL;
}

/* The reason a cool-down is shown under: the per-minute quota hit. */
static uint32_t
gem_minute_reason(const struct gem_facts *f, const char **id)
{
	size_t	 i;

	for (i = 0; i < f->nquota; i++)
		if (strstr(f->quota[i].id, "PerMinute") != NULL) {
			*id = f->quota[i].id;
			return gem_quota_reason(f->quota[i].id, 0);
		}
	if (f->nquota > 0) {
		*id = f->quota[0].id;
		return gem_quota_reason(f->quota[0].id, 0);
	}
	*id = NULL;
	return SHM_R_429;
}

static void
gem_set(struct gem_verdict *v, enum gem_action a, uint32_t reason,
    int64_t delay_ms, const char *fmt, ...)
    __attribute__((__format__ (printf, 5, 6)));

static void
gem_set(struct gem_verdict *v, enum gem_action a, uint32_t reason,
    int64_t delay_ms, const char *fmt, ...)
{
	va_list	 ap;

	v->action = a;
	v->reason = reason;
	if (delay_ms > GEM_DELAY_MAX_MS)
		delay_ms = GEM_DELAY_MAX_MS;
	v->delay_ms = delay_ms;
	va_start(ap, fmt);
	(void)vsnprintf(v->why, sizeof(v->why), fmt, ap);
	va_end(ap);
}

/*
 * 429, in gemini-cli's order: a per-day quotaId first (per-day 429s carry a
 * short retryDelay too, and cooling a key for 40 s that is spent until
 * midnight would waste a request a minute on it), then RetryInfo, then a
 * per-minute quotaId, then "Please retry in" in the message, then a bare 60 s.
 * Added to that order: a violation with quota 0 ("limit: 0") means the model
 * has no quota on this key's tier at all, so the key is exhausted for it.
 */
static void
gem_decide_429(const struct gem_facts *f, struct gem_verdict *v)
{
	const char	*id;
	uint32_t	 reason;
	int64_t		 ms;
	size_t		 i;

	for (i = 0; i < f->nquota; i++)
		if (gem_quota_daily(f->quota[i].id)) {
			gem_set(v, GEM_EXHAUST, gem_quota_reason(f->quota[i].id,
			    1), 0, "per-day %s", f->quota[i].id);
			return;
		}
	for (i = 0; i < f->nquota; i++)
		if (f->quota[i].zero) {
			gem_set(v, GEM_EXHAUST, gem_quota_reason(f->quota[i].id,
			    0), 0, "limit 0 %s", f->quota[i].id);
			return;
		}
	if (gem_msg_limit_zero(f)) {
		reason = gem_minute_reason(f, &id);
		gem_set(v, GEM_EXHAUST, reason, 0, "limit 0%s%s",
		    id ? " " : "", id ? id : "");
		return;
	}
	if (f->retry_ms > 0) {
		reason = gem_minute_reason(f, &id);
		gem_set(v, GEM_COOL, reason, f->retry_ms, "retryDelay%s%s",
		    id ? " " : "", id ? id : "");
		return;
	}
	for (i = 0; i < f->nquota; i++)
		if (strstr(f->quota[i].id, "PerMinute") != NULL) {
			gem_set(v, GEM_COOL, gem_quota_reason(f->quota[i].id, 0),
			    GEM_COOL_DEFAULT_MS, "per-minute %s", f->quota[i].id);
			return;
		}
	if (strstr(f->quota_limit, "PerMinute") != NULL) {
		gem_set(v, GEM_COOL, gem_quota_reason(f->quota_limit, 0),
		    GEM_COOL_DEFAULT_MS, "per-minute %s", f->quota_limit);
		return;
	}
	if ((ms = gem_msg_retry(f)) > 0) {
		reason = gem_minute_reason(f, &id);
		gem_set(v, GEM_COOL, reason, ms, "retry in message");
		return;
	}
	gem_set(v, GEM_COOL, SHM_R_429, GEM_COOL_DEFAULT_MS, "bare 429");
}

/*
 * What a 429 says of itself, for the storm check: the delay it asked for
 * (RetryInfo, else "Please retry in"), and each quota it names with its
 * kind and quotaValue, so that the project's own counters can be held
 * against it.
 */
static void
gem_named(const struct gem_facts *f, struct gem_verdict *v)
{
	size_t	 i;

	v->retry_ms = f->retry_ms > 0 ? f->retry_ms : gem_msg_retry(f);
	for (i = 0; i < f->nquota && v->nnamed < GEM_NAMED_MAX; i++) {
		v->named_kind[v->nnamed] = gem_quota_reason(f->quota[i].id,
		    gem_quota_daily(f->quota[i].id));
		v->named_value[v->nnamed] = f->quota[i].value;
		v->nnamed++;
	}
}

/* 400, 401, 403: is it the key, or the request? */
static void
gem_decide_key(int status, const struct gem_facts *f, struct gem_verdict *v)
{
	size_t	 i, j;

	for (i = 0; i < f->nreason; i++)
		for (j = 0; j < __arraycount(gem_invalid_reasons); j++)
			if (strcmp(f->reason[i], gem_invalid_reasons[j]) == 0) {
				gem_set(v, GEM_INVALID, SHM_R_INVALID, 0, "%s",
				    gem_invalid_reasons[j]);
				return;
			}
	if (f->msg != NULL)
		for (j = 0; j < __arraycount(gem_invalid_msgs); j++)
			if (gem_cifind(f->msg, f->msglen,
			    gem_invalid_msgs[j].text) != NULL) {
				gem_set(v, GEM_INVALID, SHM_R_INVALID, 0, "%s",
				    gem_invalid_msgs[j].why);
				return;
			}
	gem_set(v, GEM_PASS, SHM_R_NONE, 0, "upstream %d%s%s", status,
	    f->status[0] ? " " : "", f->status);
}

/*
 * What to do with the key after an upstream answer with this status (not
 * 2xx) and this complete body (may be NULL, not NUL-terminated, truncated,
 * or not JSON at all).  Fills *v; v->why never holds a key.
 */
void
gem_classify(int status, const char *body, size_t len, struct gem_verdict *v)
{
	struct gem_facts f;
	cJSON		*root = NULL;

	memset(v, 0, sizeof(*v));
	v->retry_ms = -1;
	memset(&f, 0, sizeof(f));
	f.retry_ms = -1;
	if (body != NULL && len > 0) {
		root = cJSON_ParseWithLength(body, len);
		if (root == NULL || gem_facts_json(root, &f) == -1) {
			memset(&f, 0, sizeof(f));
			f.retry_ms = -1;
			gem_facts_raw(body, len, &f);
		}
	}

	if (status == 429) {
		gem_decide_429(&f, v);
		gem_named(&f, v);
	}
	else if (status == 400 || status == 401 || status == 403)
		gem_decide_key(status, &f, v);
	else if (status == 500 || status == 502 || status == 503 ||
	    status == 504)
		gem_set(v, GEM_RETRY, SHM_R_NONE, 0, "upstream %d%s%s", status,
		    f.status[0] ? " " : "", f.status);
	else
		gem_set(v, GEM_PASS, SHM_R_NONE, 0, "upstream %d%s%s", status,
		    f.status[0] ? " " : "", f.status);
	cJSON_Delete(root);

	/* Identifiers were sanitised already; this is the belt to that. */
	scrub_str(NULL, v->why);
}

const char *
gem_action_name(enum gem_action a)
{
	switch (a) {
	case GEM_PASS:
		return "pass";
	case GEM_COOL:
		return "cool";
	case GEM_EXHAUST:
		return "exhaust";
	case GEM_INVALID:
		return "invalid";
	case GEM_RETRY:
		return "retry";
	}
	return "?";
}
