/*
 * config.json: read it, check every field, and build a new struct config.
 *
 * main.c calls cfg_load() at start-up and for -t, and cfg_create_default()
 * when the file does not exist yet; master.c calls cfg_load() again on
 * SIGHUP.  Nothing here touches global state: a config is built whole in a
 * fresh allocation and handed back only once every field is valid, so a
 * reload that fails leaves the running config as it was (relayd purges the
 * old config first; we must not).  No locks are taken.
 *
 * Every failure is one line, "<path>: <field>: <problem>", good for -t and
 * for the log alike.  API keys and access tokens are secrets: a message
 * names them by their place in a list ("priority_keys[2]"), never by value.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "config.h"
#include "fileio.h"
#include "log.h"
#include "looper.h"
#include "scrub.h"

#define CFG_FILE_MAX	(64 * 1024 * 1024)	/* larger is a mistake */
#define CFG_INT_MAX	9007199254740992LL	/* 2^53: exact as a double */
#define CFG_SECS_MAX	86400			/* a day, for every *_s */
#define CFG_WORKERS_MAX	4096
#define CFG_ZONEINFO	"/usr/share/zoneinfo"

#define CFG_DEF_LISTEN		"127.0.0.1:48888"
#define CFG_DEF_UPSTREAM	"https://generativelanguage.googleapis.com"
#define CFG_DEF_USAGE_FILE	"key_usage.json"
#define CFG_DEF_PIDFILE		"gemini-looper.pid"
#define CFG_DEF_RESET_AFTER	"00:00"
#define CFG_DEF_TIMEZONE	"UTC"

/*
 * What cfg_create_default() writes: the seed's shape, placeholder keys,
 * today's Flash models with their free-tier limits (checked 2026-12-02;
 * see the README: Google shows them per project in AI Studio), and Pacific
 * time because that is when Gemini resets its daily quotas.  A literal
 * rather than cJSON_Print() so the file reads like the seed's example
 * (four-space indent) and so that writing it cannot fail half-way through
 * an allocation.
 */
static const char cfg_default_json[] =
    "{\n"
    "    \"priority_keys\": [\n"
    "        \"YOUR_PRIORITY_GEMINI_API_KEY_1\",\n"
    "        \"YOUR_PRIORITY_GEMINI_API_KEY_2\"\n"
    "    ],\n"
    "    \"secondary_keys\": [\n"
    "        \"YOUR_SECONDARY_GEMINI_API_KEY_1\"\n"
    "    ],\n"
    "    \"models\": {\n"
    "        \"gemini-3.8-flash\": {\n"
    "            \"tpm_limit\": 250000,\n"
    "            \"tpd_limit\": null,\n"
    "            \"rpm_limit\": 5,\n"
    "            \"rpd_limit\": 20\n"
    "        },\n"
    "        \"gemini-3.5-flash-lite\": {\n"
    "            \"tpm_limit\": 250000,\n"
    "            \"tpd_limit\": null,\n"
    "            \"rpm_limit\": 15,\n"
    "            \"rpd_limit\": 500\n"
    "        }\n"
    "    },\n"
    "    \"reset_after\": \"00:00\",\n"
    "    \"next_quota_reset_datetime\": null,\n"
    "    \"timezone\": \"America/Los_Angeles\",\n"
    "    \"default_model\": \"gemini-3.8-flash\",\n"
    "    \"listen\": \"127.0.0.1:48888\",\n"
    "    \"upstream\": \"https://generativelanguage.googleapis.com\",\n"
    "    \"usage_file\": \"key_usage.json\",\n"
    "    \"pidfile\": \"gemini-looper.pid\"\n"
    "}\n";

/* The default file's keys, recognised so the program can warn about them. */
static const char *const cfg_placeholders[] = {
	"YOUR_PRIORITY_GEMINI_API_KEY_1",
	"YOUR_PRIORITY_GEMINI_API_KEY_2",
	"YOUR_SECONDARY_GEMINI_API_KEY_1",
};

/* Top-level fields, in the order they are checked. */
enum cfg_field {
	F_PRIORITY_KEYS,
	F_SECONDARY_KEYS,
	F_MODELS,
	F_DEFAULT_MODEL,
	F_RESET_AFTER,
	F_NEXT_RESET,
	F_TIMEZONE,
	F_LISTEN,
	F_UPSTREAM,
	F_UPSTREAM_CA_FILE,
	F_WORKERS,
	F_USAGE_FILE,
	F_PIDFILE,
	F_LOG_FILE,
	F_LOG_LEVEL,
	F_USER,
	F_ACCESS_TOKENS,
	F_ADMIN_TOKEN,
	F_MAX_BODY_BYTES,
	F_MAX_WAIT_S,
	F_PERSIST_INTERVAL_S,
	F_SHUTDOWN_TIMEOUT_S,
	F_CLIENT_TIMEOUT_S,
	F_KEEPALIVE_TIMEOUT_S,
	F_UPSTREAM_TIMEOUT_S,
	F_MAX_ATTEMPTS,
	F_RESOLVER_VALID_S,
	F_NFIELDS
};

static const char *const cfg_fields[F_NFIELDS] = {
	"priority_keys",
	"secondary_keys",
	"models",
	"default_model",
	"reset_after",
	"next_quota_reset_datetime",
	"timezone",
	"listen",
	"upstream",
	"upstream_ca_file",
	"workers",
	"usage_file",
	"pidfile",
	"log_file",
	"log_level",
	"user",
	"access_tokens",
	"admin_token",
	"max_body_bytes",
	"max_wait_s",
	"persist_interval_s",
	"shutdown_timeout_s",
	"client_timeout_s",
	"keepalive_timeout_s",
	"upstream_timeout_s",
	"max_attempts",
	"resolver_valid_s",
};

enum {
	M_TPM,
	M_TPD,
	M_RPM,
	M_RPD,
	M_NFIELDS
};

static const char *const cfg_model_fields[M_NFIELDS] = {
	"tpm_limit",
	"tpd_limit",
	"rpm_limit",
	"rpd_limit",
};

enum {
	W_START,
	W_MIN_SPARE,
	W_MAX_SPARE,
	W_MAX,
	W_NFIELDS
};

static const char *const cfg_worker_fields[W_NFIELDS] = {
	"start",
	"min_spare",
	"max_spare",
	"max",
};

/* One cfg_load() call: where messages go and what they are about. */
struct cfg_parse {
	const char	*path;		/* as the caller wrote it */
	char		*err;
	size_t		 errlen;
	struct config	*cfg;
};

/* Sorting record for duplicate detection (qsort has no context pointer). */
struct cfg_dup {
	const char	*s;
	size_t		 i;
};

static int	 cfg_err(struct cfg_parse *, const char *, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
static const char *cfg_what(const cJSON *, char *, size_t);
static const char *cfg_quote(const char *, char *, size_t);
static void	 cfg_clean(const char *, char *, size_t);
static char	*cfg_read(struct cfg_parse *, size_t *);
static int	 cfg_syntax(struct cfg_parse *, const char *, size_t,
		    const char *);
static int	 cfg_where(struct cfg_parse *);
static int	 cfg_members(struct cfg_parse *, const cJSON *, const char *,
		    const char *const *, size_t, const cJSON **);
static int	 cfg_int(struct cfg_parse *, const cJSON *, const char *,
		    int64_t, int64_t, int, int64_t *);
static int	 cfg_int_field(struct cfg_parse *, const cJSON *, const char *,
		    int64_t, int64_t, int64_t, int *);
static int	 cfg_str(struct cfg_parse *, const cJSON *, const char *, int,
		    char *, size_t);
static int	 cfg_secret(struct cfg_parse *, const cJSON *, const char *,
		    size_t);
static int	 cfg_abspath(struct cfg_parse *, const char *, const char *,
		    char *, size_t);
static int	 cfg_dup_cmp(const void *, const void *);
static void	 cfg_key_field(const struct config *, size_t, char *, size_t);
static int	 cfg_keys(struct cfg_parse *, const cJSON *, const cJSON *);
static int	 cfg_models(struct cfg_parse *, const cJSON *);
static int	 cfg_model_name_ok(const char *);
static int	 cfg_reset_after(struct cfg_parse *, const cJSON *);
static int	 cfg_next_reset(struct cfg_parse *, const cJSON *);
static int	 cfg_timezone(struct cfg_parse *, const cJSON *);
static int	 cfg_port(const char *, char *, size_t);
static int	 cfg_hostname_ok(const char *);
static int	 cfg_v6_ok(const char *);
static int	 cfg_listen(struct cfg_parse *, const cJSON *);
static int	 cfg_upstream(struct cfg_parse *, const cJSON *);
static int	 cfg_ca_file(struct cfg_parse *, const cJSON *);
static int	 cfg_workers(struct cfg_parse *, const cJSON *);
static int	 cfg_log_level(struct cfg_parse *, const cJSON *);
static int	 cfg_user(struct cfg_parse *, const cJSON *);
static int	 cfg_tokens(struct cfg_parse *, const cJSON *, const cJSON *);
static int	 cfg_build(struct cfg_parse *, const cJSON *);

/*
 * Write "<path>: <field>: <problem>" (or "<path>: <problem>" when field is
 * NULL) into the caller's buffer.  Always returns -1, so that checks read
 * "return cfg_err(...)".
 */
static int
cfg_err(struct cfg_parse *p, const char *field, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (p->err == NULL || p->errlen == 0)
		return -1;
	if (field != NULL)
		n = snprintf(p->err, p->errlen, "%s: %s: ", p->path, field);
	else
		n = snprintf(p->err, p->errlen, "%s: ", p->path);
	if (n < 0 || (size_t)n >= p->errlen)
		return -1;	/* truncated: the path alone fills it */
	va_start(ap, fmt);
	(void)vsnprintf(p->err + n, p->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Describe a JSON value for "(got ...)" without ever echoing a string's
 * text: the string may be a key pasted into the wrong field.
 */
static const char *
cfg_what(const cJSON *v, char *buf, size_t len)
{
	if (v == NULL)
		return "nothing";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsTrue(v))
		return "true";
	if (cJSON_IsFalse(v))
		return "false";
	if (cJSON_IsNumber(v)) {
		(void)snprintf(buf, len, "%.15g", v->valuedouble);
		return buf;
	}
	if (cJSON_IsString(v))
		return v->valuestring[0] == '\0' ? "an empty string" :
		    "a string";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsObject(v))
		return "an object";
	return "an unknown value";
}

/*
 * Quote a string that is not a secret (a time, a zone, an address) for a
 * message: control characters, quotes and backslashes escaped, at most 64
 * bytes shown, so that a message stays one line.
 */
static const char *
cfg_quote(const char *s, char *buf, size_t len)
{
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 o = 0, shown = 0;
	int			 n;

	if (len < 8) {
		if (len > 0)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (; *u != '\0'; u++, shown++) {
		if (shown == 64 || o + 8 >= len) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (*u < 0x20 || *u == 0x7f || *u == '"' || *u == '\\') {
			n = snprintf(buf + o, len - o, "\\x%02x", *u);
			if (n < 0)
				break;
			o += n;
		} else
			buf[o++] = *u;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* A JSON member name fit for a log line: non-printables as '?', short. */
static void
cfg_clean(const char *s, char *buf, size_t len)
{
	size_t	 i;

	for (i = 0; s[i] != '\0' && i + 4 < len && i < 64; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' :
		    s[i];
	if (s[i] != '\0' && i + 3 < len) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
}

/* Read the whole file into a NUL-terminated buffer. */
static char *
cfg_read(struct cfg_parse *p, size_t *lenp)
{
	char	*buf;

	if ((buf = fileio_read(p->path, CFG_FILE_MAX, 0, lenp, NULL)) ==
	    NULL) {
		if (errno == EFBIG)
			cfg_err(p, NULL, "file too large (over %d bytes)",
			    CFG_FILE_MAX);
		else
			cfg_err(p, NULL, "%s", strerror(errno));
	}
	return buf;
}

/*
 * "<path>:<line>:<column>: JSON syntax error", the way compilers and
 * editors count: lines and columns from 1, columns in characters (a UTF-8
 * sequence is one), so that "vi +line" and the column land on the spot.
 */
static int
cfg_syntax(struct cfg_parse *p, const char *buf, size_t len, const char *at)
{
	size_t	 off, i, line = 1, col = 1;

	off = (at != NULL && at >= buf && at <= buf + len) ?
	    (size_t)(at - buf) : len;
	/*
	 * cJSON reports a member name that does not start with '"' one
	 * character late (parse_string has stepped over the quote it
	 * expected), so "{"a": 1,}" would point past the '}'.  Such a name
	 * directly follows '{' or ',' (blanks aside); a failed value never
	 * does, and never ends in '[', '{' or '"' just before the offset.
	 */
	if (off >= 2 && strchr(" \t\r\n[{\"", buf[off - 1]) == NULL) {
		i = off - 1;
		while (i > 0 && strchr(" \t\r\n", buf[i - 1]) != NULL)
			i--;
		if (i > 0 && (buf[i - 1] == '{' || buf[i - 1] == ','))
			off--;
	}
	for (i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80)
			col++;
	}
	if (p->err != NULL && p->errlen > 0)
		(void)snprintf(p->err, p->errlen, "%s:%zu:%zu: JSON syntax error",
		    p->path, line, col);
	return -1;
}

/*
 * cfg->path and cfg->dir: the file's directory made absolute (symbolic
 * links in it resolved) and the file's own name kept, so a reload after
 * daemon(3)'s chdir("/") finds the same file and relative paths inside it.
 */
static int
cfg_where(struct cfg_parse *p)
{
	struct config	*cfg = p->cfg;
	char		 dir[PATH_MAX];
	const char	*slash, *base;
	size_t		 dlen;
	int		 n;

	if ((slash = strrchr(p->path, '/')) == NULL) {
		(void)strlcpy(dir, ".", sizeof(dir));
		base = p->path;
	} else {
		dlen = slash == p->path ? 1 : (size_t)(slash - p->path);
		if (dlen >= sizeof(dir))
			return cfg_err(p, NULL, "%s", strerror(ENAMETOOLONG));
		memcpy(dir, p->path, dlen);
		dir[dlen] = '\0';
		base = slash + 1;
	}
	if (realpath(dir, cfg->dir) == NULL)
		return cfg_err(p, NULL, "%s", strerror(errno));
	n = snprintf(cfg->path, sizeof(cfg->path), "%s/%s",
	    strcmp(cfg->dir, "/") == 0 ? "" : cfg->dir, base);
	if (n < 0 || (size_t)n >= sizeof(cfg->path))
		return cfg_err(p, NULL, "%s", strerror(ENAMETOOLONG));
	return 0;
}

/*
 * Sort the members of an object into found[] by name.  A name given twice
 * is an error (cJSON keeps both and would silently use the first); a name
 * we do not know is only warned about, so that a config written for a
 * newer version still loads.  prefix is "" or "models.x." for messages.
 */
static int
cfg_members(struct cfg_parse *p, const cJSON *obj, const char *prefix,
    const char *const *names, size_t nnames, const cJSON **found)
{
	const cJSON	*m;
	char		 field[CFG_NAME_MAX + 128], clean[80];
	size_t		 i;

	for (i = 0; i < nnames; i++)
		found[i] = NULL;
	cJSON_ArrayForEach(m, obj) {
		for (i = 0; i < nnames; i++)
			if (strcmp(m->string, names[i]) == 0)
				break;
		if (i == nnames) {
			cfg_clean(m->string, clean, sizeof(clean));
			log_warnx("%s: %s%s: unknown field, ignored", p->path,
			    prefix, clean);
			continue;
		}
		if (found[i] != NULL) {
			(void)snprintf(field, sizeof(field), "%s%s", prefix,
			    names[i]);
			return cfg_err(p, field, "given more than once");
		}
		found[i] = m;
	}
	return 0;
}

/*
 * A JSON integer in [min, max] into *out; null (as CFG_NOLIMIT) only when
 * nullok.  cJSON keeps every number as a double, so fractions, huge values
 * and infinities are caught here before any cast, which for an
 * out-of-range double would be undefined.  1.0 and 1e3 are integers.
 */
static int
cfg_int(struct cfg_parse *p, const cJSON *v, const char *field, int64_t min,
    int64_t max, int nullok, int64_t *out)
{
	char		 got[64];
	const char	*want;
	double		 d;

	if (nullok && cJSON_IsNull(v)) {
		*out = CFG_NOLIMIT;
		return 0;
	}
	want = min >= 1 ? "a positive integer" : "a non-negative integer";
	if (!cJSON_IsNumber(v))
		goto bad;
	d = v->valuedouble;
	if (!(d >= (double)min && d <= (double)CFG_INT_MAX) ||
	    (double)(int64_t)d != d)
		goto bad;
	if ((int64_t)d > max)
		return cfg_err(p, field, "must be at most %lld (got %s)",
		    (long long)max, cfg_what(v, got, sizeof(got)));
	*out = (int64_t)d;
	return 0;
bad:
	return cfg_err(p, field, "must be %s%s (got %s)", want,
	    nullok ? " or null" : "", cfg_what(v, got, sizeof(got)));
}

/* An optional int field: def when absent. */
static int
cfg_int_field(struct cfg_parse *p, const cJSON *v, const char *field,
    int64_t def, int64_t min, int64_t max, int *out)
{
	int64_t	 n = def;

	if (v != NULL && cfg_int(p, v, field, min, max, 0, &n) == -1)
		return -1;
	*out = (int)n;
	return 0;
}

/*
 * A non-empty string into dst, or "" for null when nullok.  Not for
 * secrets (see cfg_secret): the value is not echoed, but its length is.
 */
static int
cfg_str(struct cfg_parse *p, const cJSON *v, const char *field, int nullok,
    char *dst, size_t dstlen)
{
	char	 got[64];

	if (nullok && cJSON_IsNull(v)) {
		dst[0] = '\0';
		return 0;
	}
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
		return cfg_err(p, field, "must be a non-empty string%s (got %s)",
		    nullok ? " or null" : "", cfg_what(v, got, sizeof(got)));
	if (strlcpy(dst, v->valuestring, dstlen) >= dstlen)
		return cfg_err(p, field, "too long (%zu bytes, at most %zu)",
		    strlen(v->valuestring), dstlen - 1);
	return 0;
}

/*
 * Check a key or token: non-empty, shorter than max, printable ASCII and no
 * spaces (it travels in a header line).  Messages never show the value.
 */
static int
cfg_secret(struct cfg_parse *p, const cJSON *v, const char *field,
    size_t max)
{
	const unsigned char	*u;
	char			 got[64];
	size_t			 len;

	if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
		return cfg_err(p, field, "must be a non-empty string (got %s)",
		    cfg_what(v, got, sizeof(got)));
	if ((len = strlen(v->valuestring)) >= max)
		return cfg_err(p, field,
		    "too long (%zu characters, at most %zu)", len, max - 1);
	for (u = (const unsigned char *)v->valuestring; *u != '\0'; u++)
		if (*u <= ' ' || *u >= 0x7f)
			return cfg_err(p, field, "must be printable ASCII "
			    "without spaces (character %zu is not)",
			    (size_t)(u - (const unsigned char *)v->valuestring) +
			    1);
	return 0;
}

/* value made absolute against the config's directory, into dst. */
static int
cfg_abspath(struct cfg_parse *p, const char *field, const char *value,
    char *dst, size_t dstlen)
{
	int	 n;

	if (value[0] == '/')
		n = snprintf(dst, dstlen, "%s", value);
	else
		n = snprintf(dst, dstlen, "%s/%s",
		    strcmp(p->cfg->dir, "/") == 0 ? "" : p->cfg->dir, value);
	if (n < 0 || (size_t)n >= dstlen)
		return cfg_err(p, field, "path too long (at most %zu bytes once "
		    "made absolute)", dstlen - 1);
	return 0;
}

/* By string, then by position, so the first of equals comes first. */
static int
cfg_dup_cmp(const void *a, const void *b)
{
	const struct cfg_dup	*x = a, *y = b;
	int			 c;

	if ((c = strcmp(x->s, y->s)) != 0)
		return c;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* "priority_keys[2]" or "secondary_keys[0]" for cfg->keys[k]. */
static void
cfg_key_field(const struct config *cfg, size_t k, char *buf, size_t len)
{
	if (k < cfg->npriority)
		(void)snprintf(buf, len, "priority_keys[%zu]", k);
	else
		(void)snprintf(buf, len, "secondary_keys[%zu]",
		    k - cfg->npriority);
}

/*
 * priority_keys then secondary_keys into cfg->keys.  Duplicates are found
 * by sorting (n log n): a pool of thousands of keys must load at once.
 */
static int
cfg_keys(struct cfg_parse *p, const cJSON *pri, const cJSON *sec)
{
	struct config	*cfg = p->cfg;
	const cJSON	*lists[2] = { pri, sec }, *v;
	struct cfg_dup	*d;
	char		 field[64], first[64], got[64];
	size_t		 n = 0, i, k, start, dup, orig;
	int		 t;

	for (t = 0; t < 2; t++) {
		if (lists[t] == NULL || cJSON_IsNull(lists[t]))
			continue;
		if (!cJSON_IsArray(lists[t]))
			return cfg_err(p, cfg_fields[t == 0 ? F_PRIORITY_KEYS :
			    F_SECONDARY_KEYS], "must be an array of strings "
			    "(got %s)", cfg_what(lists[t], got, sizeof(got)));
		cJSON_ArrayForEach(v, lists[t])
			n++;
	}
	if (n == 0)
		return cfg_err(p, "priority_keys", "no API keys: at least one "
		    "is needed in priority_keys or secondary_keys");
	if ((cfg->keys = calloc(n, sizeof(*cfg->keys))) == NULL)
		return cfg_err(p, "priority_keys", "%s", strerror(errno));

	k = 0;
	for (t = 0; t < 2; t++) {
		if (lists[t] == NULL || !cJSON_IsArray(lists[t]))
			continue;
		i = 0;
		cJSON_ArrayForEach(v, lists[t]) {
			(void)snprintf(field, sizeof(field), "%s[%zu]",
			    t == 0 ? "priority_keys" : "secondary_keys", i++);
			if (cfg_secret(p, v, field, CFG_KEY_MAX) == -1)
				return -1;
			(void)strlcpy(cfg->keys[k].key, v->valuestring,
			    sizeof(cfg->keys[k].key));
			cfg_key_id(v->valuestring, cfg->keys[k].id);
			cfg_key_mask(v->valuestring, cfg->keys[k].masked);
			cfg->keys[k].tier = t == 0 ? CFG_TIER_PRIORITY :
			    CFG_TIER_SECONDARY;
			k++;
		}
		if (t == 0)
			cfg->npriority = k;
	}
	cfg->nkeys = k;

	for (k = 0; k < cfg->nkeys; k++)
		for (i = 0; i < sizeof(cfg_placeholders) /
		    sizeof(cfg_placeholders[0]); i++)
			if (strcmp(cfg->keys[k].key, cfg_placeholders[i]) == 0)
				cfg->placeholder_keys = 1;

	if ((d = calloc(cfg->nkeys, sizeof(*d))) == NULL)
		return cfg_err(p, "priority_keys", "%s", strerror(errno));
	for (k = 0; k < cfg->nkeys; k++) {
		d[k].s = cfg->keys[k].key;
		d[k].i = k;
	}
	qsort(d, cfg->nkeys, sizeof(*d), cfg_dup_cmp);
	/* Report the earliest repeat in file order, as a reader scans. */
	dup = orig = SIZE_MAX;
	for (start = 0, k = 1; k < cfg->nkeys; k++) {
		if (strcmp(d[k].s, d[start].s) != 0) {
			start = k;
			continue;
		}
		if (d[k].i < dup) {
			dup = d[k].i;
			orig = d[start].i;
		}
	}
	free(d);
	if (dup != SIZE_MAX) {
		cfg_key_field(cfg, dup, field, sizeof(field));
		cfg_key_field(cfg, orig, first, sizeof(first));
		return cfg_err(p, field, "duplicate of %s", first);
	}
	return 0;
}

/*
 * A model name ends up in URL paths ("models/<name>:generateContent"),
 * metric labels and the usage file, so it is kept to what a model id can
 * be: printable ASCII without spaces and without / : ? # % " \.
 */
static int
cfg_model_name_ok(const char *s)
{
	const unsigned char	*u;

	for (u = (const unsigned char *)s; *u != '\0'; u++)
		if (*u <= ' ' || *u >= 0x7f || strchr("/:?#%\"\\", *u) != NULL)
			return 0;
	return 1;
}

static int
cfg_models(struct cfg_parse *p, const cJSON *obj)
{
	struct config		*cfg = p->cfg;
	struct cfg_model	*m;
	struct cfg_dup		*d;
	const cJSON		*v, *f[M_NFIELDS];
	int64_t			*lim[M_NFIELDS];
	char			 field[CFG_NAME_MAX + 64], prefix[CFG_NAME_MAX + 16];
	char			 got[96];
	size_t			 n = 0, i, k;

	if (obj == NULL)
		return cfg_err(p, "models", "missing (an object that maps "
		    "model names to their limits)");
	if (!cJSON_IsObject(obj))
		return cfg_err(p, "models", "must be an object (got %s)",
		    cfg_what(obj, got, sizeof(got)));
	cJSON_ArrayForEach(v, obj)
		n++;
	if (n == 0)
		return cfg_err(p, "models", "must name at least one model");
	if ((cfg->models = calloc(n, sizeof(*cfg->models))) == NULL)
		return cfg_err(p, "models", "%s", strerror(errno));

	cJSON_ArrayForEach(v, obj) {
		m = &cfg->models[cfg->nmodels];
		if (v->string[0] == '\0')
			return cfg_err(p, "models", "a model name must not be "
			    "empty");
		if (strlen(v->string) >= sizeof(m->name))
			return cfg_err(p, "models", "model name %s is too long "
			    "(at most %zu characters)", cfg_quote(v->string,
			    got, sizeof(got)), sizeof(m->name) - 1);
		if (!cfg_model_name_ok(v->string))
			return cfg_err(p, "models", "model name %s must be "
			    "printable ASCII without spaces or any of "
			    "/ : ? # %% \" \\",
			    cfg_quote(v->string, got, sizeof(got)));
		(void)strlcpy(m->name, v->string, sizeof(m->name));
		(void)snprintf(prefix, sizeof(prefix), "models.%s", m->name);
		if (!cJSON_IsObject(v))
			return cfg_err(p, prefix, "must be an object of limits "
			    "(got %s)", cfg_what(v, got, sizeof(got)));
		(void)strlcat(prefix, ".", sizeof(prefix));
		if (cfg_members(p, v, prefix, cfg_model_fields, M_NFIELDS,
		    f) == -1)
			return -1;
		lim[M_TPM] = &m->tpm_limit;
		lim[M_TPD] = &m->tpd_limit;
		lim[M_RPM] = &m->rpm_limit;
		lim[M_RPD] = &m->rpd_limit;
		for (i = 0; i < M_NFIELDS; i++) {
			*lim[i] = CFG_NOLIMIT;
			(void)snprintf(field, sizeof(field), "%s%s", prefix,
			    cfg_model_fields[i]);
			if (f[i] != NULL && cfg_int(p, f[i], field, 1,
			    CFG_INT_MAX, 1, lim[i]) == -1)
				return -1;
		}
		cfg->nmodels++;
	}

	if ((d = calloc(cfg->nmodels, sizeof(*d))) == NULL)
		return cfg_err(p, "models", "%s", strerror(errno));
	for (k = 0; k < cfg->nmodels; k++) {
		d[k].s = cfg->models[k].name;
		d[k].i = k;
	}
	qsort(d, cfg->nmodels, sizeof(*d), cfg_dup_cmp);
	for (k = 1; k < cfg->nmodels; k++)
		if (strcmp(d[k].s, d[k - 1].s) == 0)
			break;
	if (k < cfg->nmodels) {
		(void)snprintf(prefix, sizeof(prefix), "models.%s", d[k].s);
		free(d);
		return cfg_err(p, prefix, "model given more than once");
	}
	free(d);
	return 0;
}

/* Two decimal digits at s, or -1. */
static int
cfg_2digits(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "HH:MM", 00:00 to 23:59, exactly five characters. */
static int
cfg_reset_after(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*s = CFG_DEF_RESET_AFTER;
	char		 got[96];
	int		 h, m;

	if (v != NULL) {
		if (!cJSON_IsString(v))
			return cfg_err(p, "reset_after", "must be \"HH:MM\" "
			    "(got %s)", cfg_what(v, got, sizeof(got)));
		s = v->valuestring;
	}
	if (strlen(s) != 5 || s[2] != ':' || (h = cfg_2digits(s)) == -1 ||
	    (m = cfg_2digits(s + 3)) == -1 || h > 23 || m > 59)
		return cfg_err(p, "reset_after", "must be \"HH:MM\" (got %s)",
		    cfg_quote(s, got, sizeof(got)));
	cfg->reset_hour = h;
	cfg->reset_min = m;
	(void)strlcpy(cfg->reset_after, s, sizeof(cfg->reset_after));
	return 0;
}

/*
 * "YYYY-MM-DD HH:MM", a real calendar date, or null.  "" is taken as null
 * too: it is what an emptied field looks like.
 */
static int
cfg_next_reset(struct cfg_parse *p, const cJSON *v)
{
	static const int	 mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31,
				    30, 31, 30, 31 };
	const char		*s;
	char			 got[96];
	int			 y, mo, d, h, mi, leap, ok = 0;

	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsString(v))
		return cfg_err(p, "next_quota_reset_datetime", "must be "
		    "\"YYYY-MM-DD HH:MM\" or null (got %s)",
		    cfg_what(v, got, sizeof(got)));
	s = v->valuestring;
	if (s[0] == '\0')
		return 0;
	if (strlen(s) == 16 && s[4] == '-' && s[7] == '-' && s[10] == ' ' &&
	    s[13] == ':' && cfg_2digits(s) != -1 && cfg_2digits(s + 2) != -1 &&
	    (mo = cfg_2digits(s + 5)) != -1 && (d = cfg_2digits(s + 8)) != -1 &&
	    (h = cfg_2digits(s + 11)) != -1 &&
	    (mi = cfg_2digits(s + 14)) != -1) {
		y = cfg_2digits(s) * 100 + cfg_2digits(s + 2);
		leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
		ok = y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 &&
		    d <= mdays[mo - 1] + (mo == 2 && leap) && h <= 23 &&
		    mi <= 59;
	}
	if (!ok)
		return cfg_err(p, "next_quota_reset_datetime", "must be a date "
		    "and time \"YYYY-MM-DD HH:MM\" or null (got %s)",
		    cfg_quote(s, got, sizeof(got)));
	(void)strlcpy(p->cfg->next_reset, s, sizeof(p->cfg->next_reset));
	return 0;
}

/*
 * An IANA zone name that exists as a TZif file under $TZDIR (or the system
 * zoneinfo).  Absolute paths and ".." are refused: TZ must not become a
 * way to read an arbitrary file.  "UTC" is always accepted, because the C
 * library knows it even where tzdata is not installed.
 */
static int
cfg_timezone(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	struct stat	 st;
	const char	*tz = CFG_DEF_TIMEZONE, *dir = CFG_ZONEINFO, *c;
	char		 path[PATH_MAX], magic[4], got[96];
	ssize_t		 n;
	int		 fd, n2;

	if (v != NULL) {
		if (!cJSON_IsString(v))
			return cfg_err(p, "timezone", "must be an IANA time zone "
			    "name such as \"America/Los_Angeles\" (got %s)",
			    cfg_what(v, got, sizeof(got)));
		tz = v->valuestring;
	}
	if (strlen(tz) >= sizeof(cfg->timezone))
		return cfg_err(p, "timezone", "too long (at most %zu "
		    "characters)", sizeof(cfg->timezone) - 1);
	if (strcmp(tz, "UTC") == 0)
		goto ok;
	for (c = tz; *c != '\0'; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || strchr("/_-+.", *c) != NULL))
			break;
	if (tz[0] == '\0' || tz[0] == '/' || *c != '\0' ||
	    strstr(tz, "..") != NULL)
		return cfg_err(p, "timezone", "must be an IANA time zone name "
		    "such as \"America/Los_Angeles\" (got %s)",
		    cfg_quote(tz, got, sizeof(got)));
	if ((dir = getenv("TZDIR")) == NULL || dir[0] == '\0')
		dir = CFG_ZONEINFO;
	n2 = snprintf(path, sizeof(path), "%s/%s", dir, tz);
	if (n2 < 0 || (size_t)n2 >= sizeof(path))
		goto unknown;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		goto unknown;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		goto unknown;
	}
	n = read(fd, magic, sizeof(magic));
	close(fd);
	if (n != (ssize_t)sizeof(magic) || memcmp(magic, "TZif", 4) != 0)
		goto unknown;
ok:
	(void)strlcpy(cfg->timezone, tz, sizeof(cfg->timezone));
	return 0;
unknown:
	return cfg_err(p, "timezone", "unknown time zone %s (no such zone "
	    "file in %s)", cfg_quote(tz, got, sizeof(got)), dir);
}

/* A decimal port 1-65535, written back without leading zeros. */
static int
cfg_port(const char *s, char *out, size_t outlen)
{
	long	 n = 0;
	size_t	 i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5)
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	if (i == 0 || n < 1 || n > 65535)
		return -1;
	(void)snprintf(out, outlen, "%ld", n);
	return 0;
}

/* A host name or IPv4 address: letters, digits, '.', '-', '_'. */
static int
cfg_hostname_ok(const char *s)
{
	const char	*c;

	if (s[0] == '\0' || strlen(s) > 253)
		return 0;
	for (c = s; *c != '\0'; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' ||
		    *c == '_'))
			return 0;
	return 1;
}

/* An IPv6 address, with an optional "%zone". */
static int
cfg_v6_ok(const char *s)
{
	struct in6_addr	 a;
	char		 buf[INET6_ADDRSTRLEN + 1];
	size_t		 len;

	len = strcspn(s, "%");
	if (len == 0 || len >= sizeof(buf) || (s[len] == '%' &&
	    (s[len + 1] == '\0' || !cfg_hostname_ok(s + len + 1))))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/*
 * "host:port", "[v6]:port", "*:port" or ":port" (the last two: every
 * address, listen_host "*").  Names are resolved when binding, not here.
 */
static int
cfg_listen(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*s = CFG_DEF_LISTEN, *colon, *rb;
	char		 host[256], got[96];
	size_t		 hlen;

	if (v != NULL) {
		if (!cJSON_IsString(v))
			return cfg_err(p, "listen", "must be a string "
			    "\"host:port\" (got %s)",
			    cfg_what(v, got, sizeof(got)));
		s = v->valuestring;
	}
	if (strlcpy(cfg->listen, s, sizeof(cfg->listen)) >=
	    sizeof(cfg->listen))
		return cfg_err(p, "listen", "too long");
	if (s[0] == '[') {
		if ((rb = strchr(s, ']')) == NULL || rb[1] != ':')
			goto bad;
		hlen = rb - s - 1;
		colon = rb + 1;
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, hlen);
		host[hlen] = '\0';
		if (!cfg_v6_ok(host))
			return cfg_err(p, "listen", "%s is not an IPv6 address",
			    cfg_quote(host, got, sizeof(got)));
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			goto bad;
		hlen = colon - s;
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		if (strchr(host, ':') != NULL)
			return cfg_err(p, "listen", "an IPv6 address must be "
			    "in brackets, as in \"[::1]:48888\" (got %s)",
			    cfg_quote(s, got, sizeof(got)));
		if (host[0] == '\0')
			(void)strlcpy(host, "*", sizeof(host));
		else if (strcmp(host, "*") != 0 && !cfg_hostname_ok(host))
			goto bad;
	}
	if (cfg_port(colon + 1, cfg->listen_port,
	    sizeof(cfg->listen_port)) == -1)
		return cfg_err(p, "listen", "port must be a number from 1 to "
		    "65535 (got %s)", cfg_quote(s, got, sizeof(got)));
	(void)strlcpy(cfg->listen_host, host, sizeof(cfg->listen_host));
	return 0;
bad:
	return cfg_err(p, "listen", "must be \"host:port\", \"[v6addr]:port\", "
	    "\"*:port\" or \":port\" (got %s)", cfg_quote(s, got, sizeof(got)));
}

/*
 * "https://host[:port][/prefix]".  Plain http is refused: the keys would
 * cross the network in clear.  upstream_host holds an IPv6 address without
 * its brackets, ready for getaddrinfo(); user information is refused and
 * never echoed, since it would be a credential.
 */
static int
cfg_upstream(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*s = CFG_DEF_UPSTREAM, *a, *slash, *pc;
	char		 auth[300], got[96], *rb;
	size_t		 alen, plen;

	if (v != NULL) {
		if (!cJSON_IsString(v))
			return cfg_err(p, "upstream", "must be an https URL "
			    "(got %s)", cfg_what(v, got, sizeof(got)));
		s = v->valuestring;
	}
	if (strncasecmp(s, "https://", 8) != 0)
		return cfg_err(p, "upstream", "must be an https URL (got %s)",
		    strchr(s, '@') != NULL ? "a URL with user information" :
		    cfg_quote(s, got, sizeof(got)));
	a = s + 8;
	alen = strcspn(a, "/?#");
	if (memchr(a, '@', alen) != NULL)
		return cfg_err(p, "upstream", "must not hold user information");
	if (strpbrk(a, "?#") != NULL)
		return cfg_err(p, "upstream", "must not have a query or a "
		    "fragment (got %s)", cfg_quote(s, got, sizeof(got)));
	if (alen == 0 || alen >= sizeof(auth))
		goto bad;
	memcpy(auth, a, alen);
	auth[alen] = '\0';
	slash = a + alen;

	(void)strlcpy(cfg->upstream_port, "443", sizeof(cfg->upstream_port));
	if (auth[0] == '[') {
		if ((rb = strchr(auth, ']')) == NULL)
			goto bad;
		if (rb[1] == ':') {
			if (cfg_port(rb + 2, cfg->upstream_port,
			    sizeof(cfg->upstream_port)) == -1)
				goto badport;
		} else if (rb[1] != '\0')
			goto bad;
		*rb = '\0';
		if (!cfg_v6_ok(auth + 1))
			goto bad;
		(void)strlcpy(cfg->upstream_host, auth + 1,
		    sizeof(cfg->upstream_host));
	} else {
		if ((pc = strchr(auth, ':')) != NULL) {
			if (cfg_port(pc + 1, cfg->upstream_port,
			    sizeof(cfg->upstream_port)) == -1)
				goto badport;
			auth[pc - auth] = '\0';
		}
		if (!cfg_hostname_ok(auth))
			goto bad;
		(void)strlcpy(cfg->upstream_host, auth,
		    sizeof(cfg->upstream_host));
	}

	/* The prefix, without trailing slashes: paths are appended to it. */
	plen = strlen(slash);
	while (plen > 0 && slash[plen - 1] == '/')
		plen--;
	if (plen >= sizeof(cfg->upstream_prefix))
		return cfg_err(p, "upstream", "path prefix too long (at most "
		    "%zu bytes)", sizeof(cfg->upstream_prefix) - 1);
	for (pc = slash; pc < slash + plen; pc++)
		if ((unsigned char)*pc <= ' ' || (unsigned char)*pc >= 0x7f)
			goto bad;
	memcpy(cfg->upstream_prefix, slash, plen);
	cfg->upstream_prefix[plen] = '\0';
	if ((size_t)(slash - s) + plen >= sizeof(cfg->upstream))
		return cfg_err(p, "upstream", "too long");
	memcpy(cfg->upstream, s, (slash - s) + plen);
	cfg->upstream[(slash - s) + plen] = '\0';
	return 0;
badport:
	return cfg_err(p, "upstream", "port must be a number from 1 to 65535 "
	    "(got %s)", cfg_quote(s, got, sizeof(got)));
bad:
	return cfg_err(p, "upstream", "must be \"https://host[:port][/prefix]\" "
	    "(got %s)", cfg_quote(s, got, sizeof(got)));
}

/*
 * Checked now, so that -t and a reload catch a missing file early.  Opened
 * without blocking: a FIFO named here would otherwise hang -t, or the
 * master in a reload, until someone writes to it.
 */
static int
cfg_ca_file(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	struct stat	 st;
	char		 rel[PATH_MAX];
	int		 fd;

	if (v == NULL)
		return 0;
	if (cfg_str(p, v, "upstream_ca_file", 1, rel, sizeof(rel)) == -1)
		return -1;
	if (rel[0] == '\0')
		return 0;
	if (cfg_abspath(p, "upstream_ca_file", rel, cfg->upstream_ca_file,
	    sizeof(cfg->upstream_ca_file)) == -1)
		return -1;
	if ((fd = open(cfg->upstream_ca_file,
	    O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1)
		return cfg_err(p, "upstream_ca_file", "%s: %s",
		    cfg->upstream_ca_file, strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cfg_err(p, "upstream_ca_file", "%s: not a regular file",
		    cfg->upstream_ca_file);
	}
	close(fd);
	return 0;
}

/*
 * The prefork pool.  A number N is a fixed pool of N (start = max =
 * max_spare = N, so it never grows or shrinks).  In the object form, a
 * bound left out is fitted to the ones given (max: 4 makes start 4 and
 * max_spare 4, not an error about the default 8), so only what the user
 * wrote can contradict itself.
 */
static int
cfg_workers(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const cJSON	*f[W_NFIELDS];
	int64_t		 val[W_NFIELDS] = { 4, 2, 8, 256 };
	char		 field[32], got[64];
	int		 i;

	if (v == NULL)
		goto done;
	if (cJSON_IsNumber(v)) {
		if (cfg_int(p, v, "workers", 1, CFG_WORKERS_MAX, 0,
		    &val[W_START]) == -1)
			return -1;
		val[W_MAX] = val[W_MAX_SPARE] = val[W_START];
		val[W_MIN_SPARE] = 1;
		goto done;
	}
	if (!cJSON_IsObject(v))
		return cfg_err(p, "workers", "must be a number of workers or an "
		    "object {\"start\", \"min_spare\", \"max_spare\", \"max\"} "
		    "(got %s)", cfg_what(v, got, sizeof(got)));
	if (cfg_members(p, v, "workers.", cfg_worker_fields, W_NFIELDS,
	    f) == -1)
		return -1;
	for (i = 0; i < W_NFIELDS; i++) {
		(void)snprintf(field, sizeof(field), "workers.%s",
		    cfg_worker_fields[i]);
		if (f[i] != NULL && cfg_int(p, f[i], field, 1,
		    CFG_WORKERS_MAX, 0, &val[i]) == -1)
			return -1;
	}
	if (f[W_MAX] == NULL)
		for (i = 0; i < W_MAX; i++)
			if (f[i] != NULL && val[i] > val[W_MAX])
				val[W_MAX] = val[i];
	if (f[W_MAX_SPARE] == NULL) {
		if (val[W_MAX_SPARE] > val[W_MAX])
			val[W_MAX_SPARE] = val[W_MAX];
		if (f[W_MIN_SPARE] != NULL &&
		    val[W_MIN_SPARE] > val[W_MAX_SPARE])
			val[W_MAX_SPARE] = val[W_MIN_SPARE];
	}
	if (f[W_MIN_SPARE] == NULL && val[W_MIN_SPARE] > val[W_MAX_SPARE])
		val[W_MIN_SPARE] = val[W_MAX_SPARE];
	if (f[W_START] == NULL && val[W_START] > val[W_MAX])
		val[W_START] = val[W_MAX];

	if (val[W_MIN_SPARE] > val[W_MAX_SPARE])
		return cfg_err(p, "workers.min_spare", "must not exceed "
		    "workers.max_spare (%lld > %lld)",
		    (long long)val[W_MIN_SPARE], (long long)val[W_MAX_SPARE]);
	if (val[W_MAX_SPARE] > val[W_MAX])
		return cfg_err(p, "workers.max_spare", "must not exceed "
		    "workers.max (%lld > %lld)",
		    (long long)val[W_MAX_SPARE], (long long)val[W_MAX]);
	if (val[W_START] > val[W_MAX])
		return cfg_err(p, "workers.start", "must not exceed "
		    "workers.max (%lld > %lld)",
		    (long long)val[W_START], (long long)val[W_MAX]);
done:
	cfg->start_workers = (int)val[W_START];
	cfg->min_spare = (int)val[W_MIN_SPARE];
	cfg->max_spare = (int)val[W_MAX_SPARE];
	cfg->max_workers = (int)val[W_MAX];
	return 0;
}

static int
cfg_log_level(struct cfg_parse *p, const cJSON *v)
{
	static const struct {
		const char	*name;
		int		 level;
	} levels[] = {
		{ "error",	LOG_ERR },
		{ "warn",	LOG_WARNING },
		{ "notice",	LOG_NOTICE },
		{ "info",	LOG_INFO },
		{ "debug",	LOG_DEBUG },
	};
	char	 got[96];
	size_t	 i;

	p->cfg->log_level = LOG_INFO;
	if (v == NULL)
		return 0;
	if (cJSON_IsString(v))
		for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
			if (strcmp(v->valuestring, levels[i].name) == 0) {
				p->cfg->log_level = levels[i].level;
				return 0;
			}
	return cfg_err(p, "log_level", "must be one of \"error\", \"warn\", "
	    "\"notice\", \"info\", \"debug\" (got %s)", cJSON_IsString(v) ?
	    cfg_quote(v->valuestring, got, sizeof(got)) :
	    cfg_what(v, got, sizeof(got)));
}

/*
 * user: the account the workers run as when started as root (priv.c).
 * Looked up here, at every load, so that -t reports an unknown user and a
 * reload that names one keeps the running config.  uid 0 is refused: a
 * worker could not prove that it dropped anything.
 */
static int
cfg_user(struct cfg_parse *p, const cJSON *v)
{
	struct passwd	*pw;
	char		 q[96];

	p->cfg->user[0] = '\0';
	p->cfg->user_uid = (uid_t)-1;
	p->cfg->user_gid = (gid_t)-1;
	if (v == NULL || cJSON_IsNull(v))
		return 0;
	if (cfg_str(p, v, "user", 1, p->cfg->user,
	    sizeof(p->cfg->user)) == -1)
		return -1;
	if (p->cfg->user[0] == '\0')
		return 0;
	errno = 0;
	if ((pw = getpwnam(p->cfg->user)) == NULL) {
		if (errno == 0 || errno == ENOENT || errno == ESRCH ||
		    errno == EBADF || errno == EPERM)
			return cfg_err(p, "user", "no such user %s",
			    cfg_quote(p->cfg->user, q, sizeof(q)));
		return cfg_err(p, "user", "cannot look up %s: %s",
		    cfg_quote(p->cfg->user, q, sizeof(q)), strerror(errno));
	}
	if (pw->pw_uid == 0)
		return cfg_err(p, "user", "%s is uid 0: name an unprivileged "
		    "user, or leave user null to keep running as root",
		    cfg_quote(p->cfg->user, q, sizeof(q)));
	p->cfg->user_uid = pw->pw_uid;
	p->cfg->user_gid = pw->pw_gid;
	return 0;
}

static int
cfg_tokens(struct cfg_parse *p, const cJSON *list, const cJSON *admin)
{
	struct config	*cfg = p->cfg;
	const cJSON	*v;
	char		 field[64], got[64];
	size_t		 n = 0;

	if (list != NULL && !cJSON_IsNull(list)) {
		if (!cJSON_IsArray(list))
			return cfg_err(p, "access_tokens", "must be an array "
			    "of strings (got %s)", cfg_what(list, got,
			    sizeof(got)));
		cJSON_ArrayForEach(v, list)
			n++;
	}
	if (n > 0) {
		if ((cfg->access_tokens = calloc(n,
		    sizeof(*cfg->access_tokens))) == NULL)
			return cfg_err(p, "access_tokens", "%s",
			    strerror(errno));
		cJSON_ArrayForEach(v, list) {
			(void)snprintf(field, sizeof(field),
			    "access_tokens[%zu]", cfg->naccess_tokens);
			if (cfg_secret(p, v, field, CFG_TOKEN_MAX) == -1)
				return -1;
			if ((cfg->access_tokens[cfg->naccess_tokens] =
			    strdup(v->valuestring)) == NULL)
				return cfg_err(p, field, "%s", strerror(errno));
			cfg->naccess_tokens++;
		}
	}
	if (admin == NULL || cJSON_IsNull(admin))
		return 0;
	if (!cJSON_IsString(admin))
		return cfg_err(p, "admin_token", "must be a non-empty string or "
		    "null (got %s)", cfg_what(admin, got, sizeof(got)));
	if (cfg_secret(p, admin, "admin_token", CFG_TOKEN_MAX) == -1)
		return -1;
	(void)strlcpy(cfg->admin_token, admin->valuestring,
	    sizeof(cfg->admin_token));
	return 0;
}

/* Every field of the parsed document into p->cfg, in cfg_fields order. */
static int
cfg_build(struct cfg_parse *p, const cJSON *root)
{
	struct config	*cfg = p->cfg;
	const cJSON	*f[F_NFIELDS];
	char		 rel[PATH_MAX], got[96];
	int64_t		 n;

	if (!cJSON_IsObject(root))
		return cfg_err(p, NULL, "must hold a JSON object (got %s)",
		    cfg_what(root, got, sizeof(got)));
	if (cfg_members(p, root, "", cfg_fields, F_NFIELDS, f) == -1)
		return -1;

	if (cfg_keys(p, f[F_PRIORITY_KEYS], f[F_SECONDARY_KEYS]) == -1 ||
	    cfg_models(p, f[F_MODELS]) == -1)
		return -1;

	if (f[F_DEFAULT_MODEL] == NULL)
		(void)strlcpy(cfg->default_model, cfg->models[0].name,
		    sizeof(cfg->default_model));
	else {
		if (cfg_str(p, f[F_DEFAULT_MODEL], "default_model", 0,
		    cfg->default_model, sizeof(cfg->default_model)) == -1)
			return -1;
		if (cfg_model(cfg, cfg->default_model) == NULL)
			return cfg_err(p, "default_model", "%s is not one of "
			    "the models", cfg_quote(cfg->default_model, got,
			    sizeof(got)));
	}

	if (cfg_reset_after(p, f[F_RESET_AFTER]) == -1 ||
	    cfg_next_reset(p, f[F_NEXT_RESET]) == -1 ||
	    cfg_timezone(p, f[F_TIMEZONE]) == -1 ||
	    cfg_listen(p, f[F_LISTEN]) == -1 ||
	    cfg_upstream(p, f[F_UPSTREAM]) == -1 ||
	    cfg_ca_file(p, f[F_UPSTREAM_CA_FILE]) == -1 ||
	    cfg_workers(p, f[F_WORKERS]) == -1)
		return -1;

	(void)strlcpy(rel, CFG_DEF_USAGE_FILE, sizeof(rel));
	if ((f[F_USAGE_FILE] != NULL && cfg_str(p, f[F_USAGE_FILE],
	    "usage_file", 0, rel, sizeof(rel)) == -1) ||
	    cfg_abspath(p, "usage_file", rel, cfg->usage_file,
	    sizeof(cfg->usage_file)) == -1)
		return -1;
	(void)strlcpy(rel, CFG_DEF_PIDFILE, sizeof(rel));
	if ((f[F_PIDFILE] != NULL && cfg_str(p, f[F_PIDFILE], "pidfile", 0,
	    rel, sizeof(rel)) == -1) || cfg_abspath(p, "pidfile", rel,
	    cfg->pidfile, sizeof(cfg->pidfile)) == -1)
		return -1;
	rel[0] = '\0';
	if (f[F_LOG_FILE] != NULL && cfg_str(p, f[F_LOG_FILE], "log_file", 1,
	    rel, sizeof(rel)) == -1)
		return -1;
	if (rel[0] != '\0' && cfg_abspath(p, "log_file", rel, cfg->log_file,
	    sizeof(cfg->log_file)) == -1)
		return -1;

	if (cfg_log_level(p, f[F_LOG_LEVEL]) == -1)
		return -1;
	if (cfg_user(p, f[F_USER]) == -1)
		return -1;
	if (cfg_tokens(p, f[F_ACCESS_TOKENS], f[F_ADMIN_TOKEN]) == -1)
		return -1;

	n = 33554432;
	if (f[F_MAX_BODY_BYTES] != NULL && cfg_int(p, f[F_MAX_BODY_BYTES],
	    "max_body_bytes", 1, CFG_INT_MAX, 0, &n) == -1)
		return -1;
	cfg->max_body_bytes = n;
	if (cfg_int_field(p, f[F_MAX_WAIT_S], "max_wait_s", 5, 0,
	    CFG_SECS_MAX, &cfg->max_wait_s) == -1 ||
	    cfg_int_field(p, f[F_PERSIST_INTERVAL_S], "persist_interval_s", 5,
	    1, CFG_SECS_MAX, &cfg->persist_interval_s) == -1 ||
	    cfg_int_field(p, f[F_SHUTDOWN_TIMEOUT_S], "shutdown_timeout_s", 30,
	    0, CFG_SECS_MAX, &cfg->shutdown_timeout_s) == -1 ||
	    cfg_int_field(p, f[F_CLIENT_TIMEOUT_S], "client_timeout_s", 30,
	    1, CFG_SECS_MAX, &cfg->client_timeout_s) == -1 ||
	    cfg_int_field(p, f[F_KEEPALIVE_TIMEOUT_S], "keepalive_timeout_s", 5,
	    0, CFG_SECS_MAX, &cfg->keepalive_timeout_s) == -1 ||
	    cfg_int_field(p, f[F_UPSTREAM_TIMEOUT_S], "upstream_timeout_s", 300,
	    1, CFG_SECS_MAX, &cfg->upstream_timeout_s) == -1 ||
	    cfg_int_field(p, f[F_MAX_ATTEMPTS], "max_attempts", 4, 1,
	    CFG_ATTEMPTS_MAX, &cfg->max_attempts) == -1 ||
	    cfg_int_field(p, f[F_RESOLVER_VALID_S], "resolver_valid_s", 30, 0,
	    CFG_SECS_MAX, &cfg->resolver_valid_s) == -1)
		return -1;
	return 0;
}

/*
 * Every secret of the config, for masking wherever text leaves the
 * process: pool keys, access tokens and the admin token.  Built once here
 * (in the master) so that workers share it read-only.
 */
static int
cfg_secrets(struct cfg_parse *p)
{
	struct config	 *cfg = p->cfg;
	const char	**all;
	size_t		  i, n = 0;

	if ((all = calloc(cfg->nkeys + cfg->naccess_tokens + 2,
	    sizeof(*all))) == NULL)
		return cfg_err(p, NULL, "%s", strerror(errno));
	for (i = 0; i < cfg->nkeys; i++)
		all[n++] = cfg->keys[i].key;
	for (i = 0; i < cfg->naccess_tokens; i++)
		all[n++] = cfg->access_tokens[i];
	if (cfg->admin_token[0] != '\0')
		all[n++] = cfg->admin_token;
	cfg->scrub = scrub_new(all, n);
	free(all);
	if (cfg->scrub == NULL)
		return cfg_err(p, NULL, "%s", strerror(errno));
	return 0;
}

/*
 * Read, parse and check the config file at path.  Returns a new config, or
 * NULL with one line in err ("<path>: <field>: <problem>").
 */
struct config *
cfg_load(const char *path, char *err, size_t errlen)
{
	struct cfg_parse	 p;
	cJSON			*root;
	char			*buf;
	const char		*end = NULL;
	size_t			 len;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	if (err != NULL && errlen > 0)
		err[0] = '\0';

	if ((buf = cfg_read(&p, &len)) == NULL)
		return NULL;
	/*
	 * The length given includes our NUL so that, with
	 * require_null_terminated, cJSON refuses trailing garbage; a NUL
	 * inside the file is an error of its own.
	 */
	if (memchr(buf, '\0', len) != NULL) {
		cfg_syntax(&p, buf, len, memchr(buf, '\0', len));
		free(buf);
		return NULL;
	}
	if ((root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1)) ==
	    NULL) {
		cfg_syntax(&p, buf, len, end);
		free(buf);
		return NULL;
	}
	free(buf);

	if ((p.cfg = calloc(1, sizeof(*p.cfg))) == NULL) {
		cfg_err(&p, NULL, "%s", strerror(errno));
		cJSON_Delete(root);
		return NULL;
	}
	if (cfg_where(&p) == -1 || cfg_build(&p, root) == -1 ||
	    cfg_secrets(&p) == -1) {
		cJSON_Delete(root);
		cfg_free(p.cfg);
		return NULL;
	}
	cJSON_Delete(root);
	return p.cfg;
}

/*
 * Create path holding the default config.  O_EXCL: never overwrite a file
 * someone else just made.  fchmod() because the umask could otherwise
 * loosen or tighten 0600, and the file is going to hold API keys.
 */
int
cfg_create_default(const char *path, char *err, size_t errlen)
{
	struct cfg_parse	 p;
	const char		*what = NULL;
	size_t			 off = 0, len = sizeof(cfg_default_json) - 1;
	ssize_t			 n;
	int			 fd, saved;

	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errlen = errlen;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		return cfg_err(&p, NULL, "%s", strerror(errno));
	if (fchmod(fd, 0600) == -1) {
		what = "fchmod";
		goto fail;
	}
	while (off < len) {
		n = write(fd, cfg_default_json + off, len - off);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			what = "write";
			goto fail;
		}
		off += n;
	}
	if (fsync(fd) == -1) {
		what = "fsync";
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		what = "close";
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	(void)unlink(path);
	return cfg_err(&p, NULL, "%s: %s", what, strerror(saved));
}

void
cfg_free(struct config *cfg)
{
	size_t	 i;

	if (cfg == NULL)
		return;
	scrub_free(cfg->scrub);
	/* Keys are secrets: do not leave them in freed memory. */
	if (cfg->keys != NULL)
		explicit_bzero(cfg->keys, cfg->nkeys * sizeof(*cfg->keys));
	free(cfg->keys);
	free(cfg->models);
	for (i = 0; i < cfg->naccess_tokens; i++) {
		explicit_bzero(cfg->access_tokens[i],
		    strlen(cfg->access_tokens[i]));
		free(cfg->access_tokens[i]);
	}
	free(cfg->access_tokens);
	explicit_bzero(cfg->admin_token, sizeof(cfg->admin_token));
	free(cfg);
}

const struct cfg_model *
cfg_model(const struct config *cfg, const char *name)
{
	size_t	 i;

	for (i = 0; i < cfg->nmodels; i++)
		if (strcmp(cfg->models[i].name, name) == 0)
			return &cfg->models[i];
	return NULL;
}

/* The key's fingerprint: first 8 hex digits of its SHA-256. */
void
cfg_key_id(const char *key, char id[9])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	int			 i;

	if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < 4) {
		/* Cannot happen with a working libcrypto; never show the key. */
		(void)strlcpy(id, "????????", 9);
		return;
	}
	for (i = 0; i < 4; i++) {
		id[i * 2] = hex[md[i] >> 4];
		id[i * 2 + 1] = hex[md[i] & 0xf];
	}
	id[8] = '\0';
}

/*
 * "AIza…wxyz": enough for a person to tell keys apart.  A key shorter than
 * 12 would be two thirds shown, and anything but printable ASCII might cut
 * a character in half, so those show only "…".
 */
void
cfg_key_mask(const char *key, char out[16])
{
	const unsigned char	*u = (const unsigned char *)key;
	size_t			 len = strlen(key), i;

	if (len >= 12) {
		for (i = 0; i < 4; i++)
			if (u[i] <= ' ' || u[i] >= 0x7f ||
			    u[len - 4 + i] <= ' ' || u[len - 4 + i] >= 0x7f)
				break;
		if (i == 4) {
			memcpy(out, key, 4);
			memcpy(out + 4, "\xe2\x80\xa6", 3);
			memcpy(out + 7, key + len - 4, 4);
			out[11] = '\0';
			return;
		}
	}
	(void)strlcpy(out, "\xe2\x80\xa6", 16);
}
