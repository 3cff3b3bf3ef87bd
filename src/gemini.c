/*
 * Gemini's wire, as far as the proxy has to read it:
 *
 *  - gem_classify(): what an upstream answer that is not 2xx means for the
 *    key that got it (cool it, exhaust it for the day, drop it as invalid,
 *    retry elsewhere, or just hand the answer to the client);
 *  - gem_scan_*(): a streaming scanner that finds the token counts of an
 *    answer while it is relayed, in any framing the API uses, without
 *    holding the answer in memory;
 *  - which model a request names, and a conservative token estimate;
 *
 * Called by the worker's proxy code.  Everything here depends only on its
 * arguments and the caller's structs: no I/O, no globals but const tables,
 * no locks.  The wire facts (429 bodies, quota ids, stream framing,
 * usageMetadata semantics) were checked against google-gemini/gemini-cli's
 * quota classifier (packages/core/src/utils/googleQuotaErrors.ts), the
 * official SDKs, and bodies captured in public issue threads.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "looper.h"
#include "scrub.h"
#include "shm.h"

#define GEM_DELAY_MAX_MS	(24LL * 3600 * 1000)	/* longest cool-down */
#define GEM_QUOTAS_MAX		8	/* violations looked at */
#define GEM_REASONS_MAX		4	/* ErrorInfo reasons looked at */
#define GEM_ID_MAX		96	/* a quotaId, sanitised */

#ifndef nitems
#define nitems(a)	(sizeof(a) / sizeof((a)[0]))
#endif

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

/* [A-Za-z0-9_-]: the characters of a Google API key after "AIza". */
static int
gem_gch(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    gem_digit(c) || c == '_' || c == '-';
}

/* [A-Za-z0-9._-]: a token that may be a pool key ("AQ." keys have a dot). */
static int
gem_runch(int c)
{
	return gem_gch(c) || c == '.';
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
 * Copies an identifier from the upstream (quotaId, reason, status) keeping
 * only [A-Za-z0-9_.-]: it ends up in logs and on the dashboard, so nothing
 * else the body holds may ride along.  No identifier of Google's holds
 * "AIza" and every API key starts with it, so the copy ends there, with
 * "...": a key glued to other characters, or cut short by dstlen, has no
 * longer the shape scrub_text() masks, and would show (found by
 * tests/fuzz/fuzz_classify.c).
 */
static void
gem_idcopy(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t	 i, o = 0, d;

	for (i = 0; i < n && o + 1 < dstlen; i++) {
		if (n - i >= 4 && memcmp(src + i, "AIza", 4) == 0) {
			for (d = 0; d < 3 && o + 1 < dstlen; d++)
				dst[o++] = '.';
			break;
		}
		dst[o++] = gem_runch((unsigned char)src[i]) ? src[i] : '_';
	}
	dst[o] = '\0';
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

/* An integer that JSON may write as a number or, proto-style, a string. */
static int
gem_json_int(const cJSON *j, int64_t *v)
{
	char	*end;
	double	 d;

	if (cJSON_IsNumber(j)) {
		d = j->valuedouble;
		if (!(d >= 0))
			return -1;
		*v = d > 9e15 ? (int64_t)9e15 : (int64_t)d;
		return 0;
	}
	if (cJSON_IsString(j) && j->valuestring[0] != '\0') {
		*v = strtoll(j->valuestring, &end, 10);
		if (*end != '\0' || *v < 0)
			return -1;
		return 0;
	}
	return -1;
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
gem_facts_add_quota(struct gem_facts *f, const char *id, size_t n, int zero)
{
	if (f->nquota == GEM_QUOTAS_MAX)
		return;
	gem_idcopy(f->quota[f->nquota].id, sizeof(f->quota[0].id), id, n);
	f->quota[f->nquota].zero = zero;
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
	int		 zero;

	viol = cJSON_GetObjectItemCaseSensitive(d, "violations");
	if (cJSON_IsArray(viol)) {
		cJSON_ArrayForEach(v, viol) {
			id = cJSON_GetObjectItemCaseSensitive(v, "quotaId");
			if (!cJSON_IsString(id))
				continue;
			qv = cJSON_GetObjectItemCaseSensitive(v, "quotaValue");
			zero = gem_json_int(qv, &n) == 0 && n == 0;
			gem_facts_add_quota(f, id->valuestring,
			    strlen(id->valuestring), zero);
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
				gem_facts_add_quota(f, v, vn, 0);
		} else if (len - i >= sizeof(kqv) - 1 &&
		    memcmp(b + i, kqv, sizeof(kqv) - 1) == 0) {
			i += sizeof(kqv) - 2;
			if (gem_raw_value(b + i + 1, len - i - 1, &v, &vn) == 0 &&
			    f->nquota > 0 && vn == 1 && v[0] == '0')
				f->quota[f->nquota - 1].zero = 1;
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

/* 400, 401, 403: is it the key, or the request? */
static void
gem_decide_key(int status, const struct gem_facts *f, struct gem_verdict *v)
{
	size_t	 i, j;

	for (i = 0; i < f->nreason; i++)
		for (j = 0; j < nitems(gem_invalid_reasons); j++)
			if (strcmp(f->reason[i], gem_invalid_reasons[j]) == 0) {
				gem_set(v, GEM_INVALID, SHM_R_INVALID, 0, "%s",
				    gem_invalid_reasons[j]);
				return;
			}
	if (f->msg != NULL)
		for (j = 0; j < nitems(gem_invalid_msgs); j++)
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

	if (status == 429)
		gem_decide_429(&f, v);
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

/*
 * The usage scanner.
 *
 * A byte-level JSON tokenizer that keeps only what it needs: whether it is
 * in a string (and after a backslash), the nesting (a bit per level), and
 * whether the next string is a member name.  A member named usageMetadata
 * ("usage" on the OpenAI path) or "error" of a response object (a top-level
 * object, or an element of a top-level array: the non-SSE stream) whose
 * value is an object has that object's bytes copied into s->cap and parsed
 * with cJSON when it closes.  Names anywhere else are not even collected,
 * so neither the model's text nor a function call's arguments can fake
 * usage.  SSE is a filter in front: the values of "data:" lines go to the
 * tokenizer, and a blank line (the end of an event) resets it, so that one
 * broken event cannot derail the ones after it.  All state lives in
 * struct gem_scan, which is why any split of the input gives the same
 * result; memory is that struct, whatever the answer's size.
 */
enum {
	GEM_F_UNKNOWN = 0,
	GEM_F_JSON,
	GEM_F_SSE
};

enum {
	GEM_SSE_LINE = 0,	/* at the start of a line */
	GEM_SSE_FIELD,		/* in the field name */
	GEM_SSE_DATA,		/* in the value of a data field */
	GEM_SSE_SKIP		/* in any other line */
};

enum {
	GEM_T_NONE = 0,
	GEM_T_USAGE,
	GEM_T_ERROR
};

#define GEM_OBJ		1
#define GEM_ARR		2

void
gem_scan_init(struct gem_scan *s, int mode)
{
	/* cap[] is read only up to cap_len: its 8 KiB need no zeroing. */
	memset(s, 0, offsetof(struct gem_scan, cap));
	s->mode = mode;
}

static void
gem_scan_reset_json(struct gem_scan *s)
{
	s->depth = 0;
	s->in_str = 0;
	s->esc = 0;
	s->want_key = 0;
	s->key_on = 0;
	s->pending = GEM_T_NONE;
	s->cap_on = 0;
}

static int
gem_scan_inner(const struct gem_scan *s)
{
	if (s->depth <= 0 || s->depth > GEM_SCAN_DEPTH)
		return 0;
	return s->stack[s->depth - 1];
}

/* In a response object: where usageMetadata and error are members. */
static int
gem_scan_top(const struct gem_scan *s)
{
	if (s->depth == 1)
		return s->stack[0] == GEM_OBJ;
	if (s->depth == 2)
		return s->stack[0] == GEM_ARR && s->stack[1] == GEM_OBJ;
	return 0;
}

static void
gem_scan_cap(struct gem_scan *s, const char *p, size_t n)
{
	if (s->cap_over)
		return;
	if (n > sizeof(s->cap) - s->cap_len) {
		s->cap_over = 1;	/* not ours to keep: skip this one */
		return;
	}
	memcpy(s->cap + s->cap_len, p, n);
	s->cap_len += n;
}

static void
gem_scan_key(struct gem_scan *s, const char *p, size_t n)
{
	if (s->key_len + n >= sizeof(s->key)) {
		s->key_len = sizeof(s->key);	/* too long for a name we want */
		return;
	}
	memcpy(s->key + s->key_len, p, n);
	s->key_len += n;
}

static void
gem_scan_keydone(struct gem_scan *s)
{
	const char	*usage = s->mode == GEM_SCAN_OPENAI ? "usage" :
			    "usageMetadata";

	s->key_on = 0;
	s->pending = GEM_T_NONE;
	if (s->key_len >= sizeof(s->key))
		return;
	if (s->key_len == strlen(usage) &&
	    memcmp(s->key, usage, s->key_len) == 0)
		s->pending = GEM_T_USAGE;
	else if (s->key_len == 5 && memcmp(s->key, "error", 5) == 0)
		s->pending = GEM_T_ERROR;
}

static void
gem_scan_usage(struct gem_scan *s, const cJSON *o)
{
	struct gem_usage	 u;
	const cJSON		*d;

	memset(&u, 0, sizeof(u));
	if (s->mode == GEM_SCAN_OPENAI) {
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "prompt_tokens"), &u.prompt);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "completion_tokens"), &u.candidates);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "total_tokens"), &u.total);
		d = cJSON_GetObjectItemCaseSensitive(o, "prompt_tokens_details");
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(d,
		    "cached_tokens"), &u.cached);
		d = cJSON_GetObjectItemCaseSensitive(o,
		    "completion_tokens_details");
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(d,
		    "reasoning_tokens"), &u.thoughts);
	} else {
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "promptTokenCount"), &u.prompt);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "candidatesTokenCount"), &u.candidates);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "cachedContentTokenCount"), &u.cached);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "thoughtsTokenCount"), &u.thoughts);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "toolUsePromptTokenCount"), &u.tool_use);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "totalTokenCount"), &u.total);
	}
	/* Cumulative in every chunk: the last one replaces, never adds. */
	u.seen = 1;
	s->usage = u;
}

/* The captured object just closed. */
static void
gem_scan_done(struct gem_scan *s)
{
	cJSON		*o;
	const cJSON	*st;
	int64_t		 code;

	s->cap_on = 0;
	if (s->cap_what == GEM_T_ERROR) {
		s->error_seen = 1;
		s->error_code = 0;
		s->error_status[0] = '\0';
	}
	if (s->cap_over)
		return;
	if ((o = cJSON_ParseWithLength(s->cap, s->cap_len)) == NULL)
		return;
	if (s->cap_what == GEM_T_USAGE)
		gem_scan_usage(s, o);
	else {
		if (gem_json_int(cJSON_GetObjectItemCaseSensitive(o, "code"),
		    &code) == 0 && code < 1000)
			s->error_code = (int)code;
		st = cJSON_GetObjectItemCaseSensitive(o, "status");
		if (cJSON_IsString(st))
			gem_idcopy(s->error_status, sizeof(s->error_status),
			    st->valuestring, strlen(st->valuestring));
	}
	cJSON_Delete(o);
}

/* Where in p[i..n) the first '"' or '\\' is, or n: memchr is vectorised. */
static size_t
gem_strspan(const char *p, size_t i, size_t n)
{
	const char	*q, *b;

	q = memchr(p + i, '"', n - i);
	b = memchr(p + i, '\\', (q != NULL ? (size_t)(q - p) : n) - i);
	if (b != NULL)
		return b - p;
	return q != NULL ? (size_t)(q - p) : n;
}

static void
gem_scan_json(struct gem_scan *s, const char *p, size_t n)
{
	size_t	 i = 0, j;
	char	 c;

	while (i < n) {
		if (s->in_str) {
			if (s->esc) {
				s->esc = 0;
				if (s->cap_on)
					gem_scan_cap(s, p + i, 1);
				i++;
				continue;
			}
			/* The bulk of an answer is text: skip it in one go. */
			j = gem_strspan(p, i, n);
			if (j > i) {
				if (s->cap_on)
					gem_scan_cap(s, p + i, j - i);
				if (s->key_on)
					gem_scan_key(s, p + i, j - i);
				i = j;
				continue;
			}
			c = p[i];
			if (s->cap_on)
				gem_scan_cap(s, p + i, 1);
			i++;
			if (c == '\\') {
				s->esc = 1;
				if (s->key_on)	/* no name we want is escaped */
					s->key_len = sizeof(s->key);
				continue;
			}
			s->in_str = 0;
			if (s->key_on)
				gem_scan_keydone(s);
			continue;
		}

		c = p[i];
		/* Pretty-printed answers indent every line: a run of blanks
		 * goes in one step. */
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			for (j = i + 1; j < n && (p[j] == ' ' || p[j] == '\n' ||
			    p[j] == '\r' || p[j] == '\t'); j++)
				;
			if (s->cap_on)
				gem_scan_cap(s, p + i, j - i);
			i = j;
			continue;
		}
		if (s->cap_on)
			gem_scan_cap(s, p + i, 1);
		i++;
		switch (c) {
		case ':':
			break;
		case '"':
			s->in_str = 1;
			s->pending = GEM_T_NONE;
			if (s->want_key && gem_scan_inner(s) == GEM_OBJ) {
				s->want_key = 0;
				if (!s->cap_on && gem_scan_top(s)) {
					s->key_on = 1;
					s->key_len = 0;
				}
			}
			break;
		case ',':
			s->pending = GEM_T_NONE;
			s->want_key = gem_scan_inner(s) == GEM_OBJ;
			break;
		case '{':
		case '[':
			if (c == '{' && s->pending != GEM_T_NONE && !s->cap_on) {
				s->cap_on = 1;
				s->cap_what = s->pending;
				s->cap_depth = s->depth;
				s->cap_len = 0;
				s->cap_over = 0;
				gem_scan_cap(s, "{", 1);
			}
			s->pending = GEM_T_NONE;
			if (s->depth < GEM_SCAN_DEPTH)
				s->stack[s->depth] = c == '{' ? GEM_OBJ : GEM_ARR;
			if (s->depth < INT_MAX)
				s->depth++;
			s->want_key = c == '{';
			break;
		case '}':
		case ']':
			s->pending = GEM_T_NONE;
			s->want_key = 0;
			if (s->depth == 0)
				break;	/* stray: nothing to close */
			s->depth--;
			if (s->cap_on && s->depth == s->cap_depth)
				gem_scan_done(s);
			break;
		default:
			/* Numbers, true, false, null, or junk: a scalar. */
			s->pending = GEM_T_NONE;
			break;
		}
	}
}

/* The end of an SSE line. */
static void
gem_scan_eol(struct gem_scan *s, char c)
{
	if (s->sse_state == GEM_SSE_LINE)
		gem_scan_reset_json(s);		/* blank line: event over */
	else if (s->sse_state == GEM_SSE_DATA)
		gem_scan_json(s, "\n", 1);	/* data lines join with LF */
	s->sse_state = GEM_SSE_LINE;
	s->sse_field = 0;
	s->sse_data = 1;
	s->sse_cr = c == '\r';
}

static void
gem_scan_sse(struct gem_scan *s, const char *p, size_t n)
{
	static const char	 data[] = "data";
	size_t			 i = 0, j;
	char			 c;

	while (i < n) {
		c = p[i];
		if (s->sse_cr) {
			s->sse_cr = 0;
			if (c == '\n') {	/* the LF of a CRLF */
				i++;
				continue;
			}
		}
		switch (s->sse_state) {
		case GEM_SSE_LINE:
		case GEM_SSE_FIELD:
			i++;
			if (c == '\r' || c == '\n') {
				gem_scan_eol(s, c);
				break;
			}
			if (s->sse_state == GEM_SSE_LINE) {
				s->sse_state = GEM_SSE_FIELD;
				s->sse_field = 0;
				s->sse_data = 1;
			}
			if (c == ':') {
				s->sse_state = s->sse_data && s->sse_field == 4 ?
				    GEM_SSE_DATA : GEM_SSE_SKIP;
				break;
			}
			if (s->sse_field >= 4 || c != data[s->sse_field])
				s->sse_data = 0;
			if (s->sse_field < INT_MAX)
				s->sse_field++;
			break;
		case GEM_SSE_DATA:
		case GEM_SSE_SKIP:
			for (j = i; j < n && p[j] != '\r' && p[j] != '\n'; j++)
				;
			if (s->sse_state == GEM_SSE_DATA && j > i)
				gem_scan_json(s, p + i, j - i);
			i = j;
			if (i < n) {
				gem_scan_eol(s, p[i]);
				i++;
			}
			break;
		}
	}
}

/*
 * Feeds the next piece of an answer body (already de-chunked).  The framing
 * is read off the first byte that is not blank whatever the mode says:
 * JSON starts with { or [, an event stream never does, and an API that
 * answers alt=sse with a JSON error body is then still read right.
 */
void
gem_scan_feed(struct gem_scan *s, const char *p, size_t n)
{
	unsigned char	 c;

	s->bytes += n;
	while (s->framing == GEM_F_UNKNOWN && n > 0) {
		c = (unsigned char)*p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
		    c == 0xef || c == 0xbb || c == 0xbf) {	/* BOM too */
			p++;
			n--;
			continue;
		}
		s->framing = (c == '{' || c == '[') ? GEM_F_JSON : GEM_F_SSE;
	}
	if (n == 0)
		return;
	if (s->framing == GEM_F_JSON)
		gem_scan_json(s, p, n);
	else
		gem_scan_sse(s, p, n);
}

/*
 * Request inspection.
 */
static int
gem_model_ok(const char *m, size_t n)
{
	size_t	 i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!gem_runch((unsigned char)m[i]))
			return 0;
	return 1;
}

/*
 * The model of /v1beta/models/{model}:{action} (or /v1/, /v1alpha/; the
 * action may be missing: GET models/{model}).  path is the request target,
 * len its length up to '?' (a '?' inside stops the path too).  Returns 0
 * and the name in out, or -1: not a models/ path, or a name that is empty,
 * has unexpected characters, or does not fit.
 */
int
gem_model_from_path(const char *path, size_t len, char *out, size_t outlen)
{
	static const char *const pre[] = {
		"/v1beta/models/", "/v1/models/", "/v1alpha/models/"
	};
	const char	*q;
	size_t		 i, start = 0, end, plen;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if ((q = memchr(path, '?', len)) != NULL)
		len = (size_t)(q - path);
	for (i = 0; i < nitems(pre); i++) {
		plen = strlen(pre[i]);
		if (len > plen && memcmp(path, pre[i], plen) == 0) {
			start = plen;
			break;
		}
	}
	if (i == nitems(pre))
		return -1;
	for (end = start; end < len; end++) {
		if (path[end] == ':' || path[end] == '/')
			break;
		/* Some HTTP libraries send the colon as %3A. */
		if (path[end] == '%' && end + 2 < len && path[end + 1] == '3' &&
		    (path[end + 2] == 'A' || path[end + 2] == 'a'))
			break;
	}
	if (end < len && path[end] == '/')
		return -1;	/* models/x/operations/y: not a model call */
	if (!gem_model_ok(path + start, end - start) ||
	    end - start >= outlen)
		return -1;
	memcpy(out, path + start, end - start);
	out[end - start] = '\0';
	return 0;
}

static size_t
gem_skip_ws(const char *b, size_t len, size_t i)
{
	while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' ||
	    b[i] == '\n'))
		i++;
	return i;
}

/* Past the string that starts at b[i] == '"'; len when it never ends. */
static size_t
gem_skip_string(const char *b, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (b[i] == '\\')
			i++;
		else if (b[i] == '"')
			return i + 1;
	}
	return len;
}

/* Past the JSON value at b[i]; len when it never ends. */
static size_t
gem_skip_value(const char *b, size_t len, size_t i)
{
	size_t	 depth = 0;

	if (i < len && b[i] == '"')
		return gem_skip_string(b, len, i);
	if (i < len && b[i] != '{' && b[i] != '[') {
		while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' &&
		    b[i] != ' ' && b[i] != '\t' && b[i] != '\r' && b[i] != '\n')
			i++;
		return i;
	}
	while (i < len) {
		if (b[i] == '"') {
			i = gem_skip_string(b, len, i);
			continue;
		}
		if (b[i] == '{' || b[i] == '[')
			depth++;
		else if ((b[i] == '}' || b[i] == ']') && --depth == 0)
			return i + 1;
		i++;
	}
	return len;
}

/*
 * The "model" member of a JSON request body (the OpenAI-compatible
 * endpoints name the model there, not in the path), without a leading
 * "models/".  Only the top-level object's members are looked at, and the
 * body is walked, not parsed: it may be megabytes of inline data.  Returns
 * 0 and the name in out, or -1.
 */
int
gem_model_from_body(const char *body, size_t len, char *out, size_t outlen)
{
	static const char	 mpre[] = "models/";
	size_t			 i, ks, ke, o;
	char			 c;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	i = gem_skip_ws(body, len, 0);
	if (i == len || body[i] != '{')
		return -1;
	for (i++;;) {
		i = gem_skip_ws(body, len, i);
		if (i == len || body[i] != '"')
			return -1;
		ks = i + 1;
		i = gem_skip_string(body, len, i);
		if (i == len)
			return -1;
		ke = i - 1;
		i = gem_skip_ws(body, len, i);
		if (i == len || body[i] != ':')
			return -1;
		i = gem_skip_ws(body, len, i + 1);
		if (ke - ks == 5 && memcmp(body + ks, "model", 5) == 0)
			break;
		i = gem_skip_ws(body, len, gem_skip_value(body, len, i));
		if (i == len || body[i] != ',')
			return -1;
		i++;
	}
	if (i == len || body[i] != '"')
		return -1;
	for (i++, o = 0; i < len && body[i] != '"'; i++) {
		c = body[i];
		if (c == '\\') {
			/* Only "\/" can be in a name we accept. */
			if (i + 1 == len || body[i + 1] != '/')
				return -1;
			c = body[++i];
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = c;
	}
	if (i == len)
		return -1;
	out[o] = '\0';
	if (strncmp(out, mpre, sizeof(mpre) - 1) == 0) {
		o -= sizeof(mpre) - 1;
		memmove(out, out + sizeof(mpre) - 1, o + 1);
	}
	if (!gem_model_ok(out, o)) {
		out[0] = '\0';
		return -1;
	}
	return 0;
}

/*
 * Input tokens a request may count for, from its body size: bytes / 4,
 * rounded up, at least 1.  The estimate is reserved against the per-minute
 * and per-day token limits before the request is sent and replaced by the
 * real promptTokenCount when the answer arrives.  It errs high on purpose:
 * text runs about 4 bytes a token and JSON framing only adds bytes, so a
 * reservation too high turns a request away a little early, while one too
 * low lets requests through that the upstream answers with a 429, and that
 * cools the key for a minute.  Inline base64 media inflates it a lot; the
 * caller should clamp it to the model's limit.
 */
int64_t
gem_estimate_tokens(size_t body_len)
{
	int64_t	 t;

	t = (int64_t)(body_len / 4 + (body_len % 4 != 0));
	return t < 1 ? 1 : t;
}
