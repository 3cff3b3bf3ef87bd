/*
 * The checks every config field is built from: a JSON value is an integer
 * in range, a non-empty string that fits, a secret fit for a header line,
 * a path made absolute; an object's members sorted into the fields we
 * know; names sorted to find the same one twice; and the one-line
 * messages about them ("<path>: <field>: <problem>"), which never echo a
 * secret.
 *
 * Used by the other config*.c files while cfg_load() builds a config.  No
 * global state, no locks.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"
#include "log.h"

#define CFG_SHOWN_MAX	64	/* bytes of a value or a name a message shows */

static void	 cfg_clean(const char *, char *, size_t);
static int	 cfg_abspath(struct cfg_parse *, const char *, const char *,
		    char *, size_t);
static int	 cfg_dup_cmp(const void *, const void *);

/*
 * Write "<path>: <field>: <problem>" (or "<path>: <problem>" when field is
 * NULL) into the caller's buffer.  Always returns -1, so that checks read
 * "return cfg_err(...)".
 */
int
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
const char *
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
const char *
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
		if (shown == CFG_SHOWN_MAX || o + 8 >= len) {
			/* Room is left for it, the quote and the NUL. */
			o += strlcpy(buf + o, "...", len - o);
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

	for (i = 0; s[i] != '\0' && i + sizeof("...") < len &&
	    i < CFG_SHOWN_MAX; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' :
		    s[i];
	buf[i] = '\0';
	if (s[i] != '\0' && i + sizeof("...") <= len)
		(void)strlcat(buf, "...", len);
}

/*
 * Sort the members of an object into found[] by name.  A name given twice
 * is an error (cJSON keeps both and would silently use the first); a name
 * we do not know is only warned about, so that a config written for a
 * newer version still loads.  prefix is "" or "models.x." for messages.
 */
int
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
int
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

/*
 * A string field's value, or def when it is left out; anything but a
 * string is refused as "must be <want> (got ...)" and gives NULL.  The
 * caller checks the text, and quotes it only if it is no secret.
 */
const char *
cfg_string(struct cfg_parse *p, const cJSON *v, const char *field,
    const char *def, const char *want)
{
	char	 got[64];

	if (v == NULL)
		return def;
	if (!cJSON_IsString(v)) {
		(void)cfg_err(p, field, "must be %s (got %s)", want,
		    cfg_what(v, got, sizeof(got)));
		return NULL;
	}
	return v->valuestring;
}

/*
 * A non-empty string into dst, or "" for null when nullok.  Not for
 * secrets (see cfg_secret): the value is not echoed, but its length is.
 */
int
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
int
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

/*
 * A path field, made absolute against the config's directory, into dst.
 * def is what a field left out means; when it is "", the field may be
 * null, and dst is left as it was for both.
 */
int
cfg_path(struct cfg_parse *p, const cJSON *v, const char *field,
    const char *def, char *dst, size_t dstlen)
{
	char	 rel[PATH_MAX];

	(void)strlcpy(rel, def, sizeof(rel));
	if (v != NULL && cfg_str(p, v, field, def[0] == '\0', rel,
	    sizeof(rel)) == -1)
		return -1;
	if (rel[0] == '\0')
		return 0;
	return cfg_abspath(p, field, rel, dst, dstlen);
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

/*
 * The n strings at base, base + stride, ... sorted, equal ones next to
 * each other in file order, for duplicate checks in n log n: a pool of
 * thousands of keys must load at once.  NULL when out of memory.
 */
struct cfg_dup *
cfg_dup_sort(const char *base, size_t n, size_t stride)
{
	struct cfg_dup	*d;
	size_t		 i;

	if ((d = calloc(n, sizeof(*d))) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		d[i].s = base + i * stride;
		d[i].i = i;
	}
	qsort(d, n, sizeof(*d), cfg_dup_cmp);
	return d;
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

/*
 * Append "name" to buf, after ", " when buf holds names already: the
 * choices a message lists, written from the table that decides them.
 */
void
cfg_names_add(char *buf, size_t len, const char *name)
{
	if (buf[0] != '\0')
		(void)strlcat(buf, ", ", len);
	(void)strlcat(buf, "\"", len);
	(void)strlcat(buf, name, len);
	(void)strlcat(buf, "\"", len);
}
