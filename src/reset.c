/*
 * The daily quota reset: when it is due, doing it, and telling the user.
 *
 * Gemini clears per-day quotas once a day at a wall-clock time in some zone
 * (midnight Pacific).  The config names that time (reset_after, "HH:MM")
 * and the zone (timezone, an IANA name).  The master computes the next
 * instant from the system zoneinfo and publishes it as hdr->next_reset
 * (workers read it for the 429's Retry-After, the dashboard shows it); its
 * once-a-second tick clears every key's daily counters and per-day
 * exhaustion at once (shm_daily_reset) when the instant has passed, writes
 * the usage file, and writes the new next time back into config.json as
 * next_quota_reset_datetime, editing the text in place so that the user's
 * file keeps its fields, values, order and layout.
 *
 * Time zone rules, for a reset_after of HH:MM on a given local day:
 *  - a time that does not exist that day (spring forward: 02:30 in
 *    America/Los_Angeles on 2026-03-08) means the first instant after the
 *    gap (03:00 PDT, the moment the clocks jump);
 *  - a time that happens twice (fall back: 01:30 on 2026-11-01) means its
 *    first occurrence (01:30 PDT); there is no second reset that day.
 *
 * The C library converts only in the zone TZ names, so TZ is set around
 * each conversion and put back (tz_enter/tz_leave).  That is process-wide
 * state: these functions are for single-threaded processes (the master;
 * a worker, for display).  Locks: none of its own; shm/events.c takes
 * hdr->lock to publish next_reset and for the daily reset.  All file I/O
 * happens with no lock held.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fileio.h"
#include "jsontext.h"
#include "log.h"
#include "persist.h"
#include "reset.h"
#include "shm.h"

#define RESET_FIELD	"next_quota_reset_datetime"
#define RESET_AFTER	"reset_after"
#define DAY_MS		(86400LL * 1000)
#define CFG_TEXT_MAX	(64 * 1024 * 1024)	/* as config.c */

struct tz_saved {
	char	 old[256];
	int	 had;
};

/* Make tz the zone of localtime_r() until tz_leave(). */
static int
tz_enter(const char *tz, struct tz_saved *s)
{
	const char	*old;

	s->had = 0;
	if ((old = getenv("TZ")) != NULL &&
	    strlcpy(s->old, old, sizeof(s->old)) < sizeof(s->old))
		s->had = 1;
	if (setenv("TZ", tz != NULL && tz[0] != '\0' ? tz : "UTC", 1) == -1)
		return -1;
	/* glibc's localtime_r() does not look at TZ again by itself. */
	tzset();
	return 0;
}

static void
tz_leave(struct tz_saved *s)
{
	if (s->had)
		(void)setenv("TZ", s->old, 1);
	else
		(void)unsetenv("TZ");
	tzset();
}

/* UTC offset (seconds east) in effect at instant t, in the current TZ. */
static int
offset_at(time_t t, long *off)
{
	struct tm	 tm;

	if (localtime_r(&t, &tm) == NULL)
		return -1;
	*off = tm.tm_gmtoff;
	return 0;
}

/*
 * The instant whose local time is wall, a broken-down local time encoded
 * as if it were UTC (timegm of the fields): a local time t happens at
 * t - offset for any offset in effect at that instant.  The zone's offsets
 * around wall are collected (two days either side covers every real
 * transition, Samoa's skipped day included); each candidate that really
 * has its offset is an occurrence, and the earliest wins.  With none, wall
 * fell into a gap: the first whole minute after it that exists is the end
 * of the gap.  Returns 0 with *out, or -1.
 */
static int
local_to_instant(time_t wall, time_t *out)
{
	long	 offs[64], o;
	int	 noffs = 0, i, j, step, found;
	time_t	 t, best = 0;

	for (i = -48; i <= 48; i++) {
		if (offset_at(wall + (time_t)i * 3600, &o) == -1)
			return -1;
		for (j = 0; j < noffs && offs[j] != o; j++)
			;
		if (j == noffs && noffs < (int)(sizeof(offs) / sizeof(offs[0])))
			offs[noffs++] = o;
	}
	for (step = 0; step <= 26 * 60; step++) {
		found = 0;
		for (j = 0; j < noffs; j++) {
			t = wall + (time_t)step * 60 - offs[j];
			if (offset_at(t, &o) == -1)
				return -1;
			if (o == offs[j] && (!found || t < best)) {
				best = t;
				found = 1;
			}
		}
		if (found) {
			*out = best;
			return 0;
		}
	}
	return -1;
}

/*
 * The first reset strictly after after_ms: hour:min local time in zone tz
 * (NULL or "" for UTC), with the gap and overlap rules above.  Returns ms
 * since the epoch, or -1.
 */
int64_t
reset_next(const char *tz, int hour, int min, int64_t after_ms)
{
	struct tz_saved	 saved;
	struct tm	 tm;
	time_t		 after = (time_t)(after_ms / 1000), wall, t;
	int64_t		 rv = -1;
	int		 i;

	if (hour < 0 || hour > 23 || min < 0 || min > 59)
		return -1;
	if (after_ms < 0)
		after = 0;
	if (tz_enter(tz, &saved) == -1)
		return -1;
	if (localtime_r(&after, &tm) == NULL)
		goto out;
	/* Yesterday's reset may still lie ahead of a zone's offset jump. */
	for (i = -1; i <= 3; i++) {
		struct tm	 day;

		memset(&day, 0, sizeof(day));
		day.tm_year = tm.tm_year;
		day.tm_mon = tm.tm_mon;
		day.tm_mday = tm.tm_mday + i;
		day.tm_hour = hour;
		day.tm_min = min;
		if ((wall = timegm(&day)) == (time_t)-1)
			goto out;
		if (local_to_instant(wall, &t) == -1)
			goto out;
		if ((int64_t)t * 1000 > after_ms) {
			rv = (int64_t)t * 1000;
			break;
		}
	}
out:
	tz_leave(&saved);
	return rv;
}

/*
 * "YYYY-MM-DD HH:MM" in zone tz to ms since the epoch, by the same rules
 * (a time in a gap is the end of the gap, a repeated time its first
 * occurrence).  Returns 0, or -1 when s is not such a date.
 */
int
reset_parse(const char *tz, const char *s, int64_t *ms)
{
	struct tz_saved	 saved;
	struct tm	 tm;
	time_t		 wall, t;
	int		 y, mo, d, h, mi, n = 0, rv;

	if (s == NULL || strlen(s) != 16 ||
	    sscanf(s, "%4d-%2d-%2d %2d:%2d%n", &y, &mo, &d, &h, &mi, &n) != 5 ||
	    n != 16 || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
	    h < 0 || h > 23 || mi < 0 || mi > 59)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	if ((wall = timegm(&tm)) == (time_t)-1)
		return -1;
	/* timegm() normalises 02-30 to 03-02: that is not a date. */
	{
		struct tm	 chk;

		if (gmtime_r(&wall, &chk) == NULL || chk.tm_mday != d ||
		    chk.tm_mon != mo - 1)
			return -1;
	}
	if (tz_enter(tz, &saved) == -1)
		return -1;
	rv = local_to_instant(wall, &t);
	tz_leave(&saved);
	if (rv == -1)
		return -1;
	*ms = (int64_t)t * 1000;
	return 0;
}

/* ms since the epoch as "YYYY-MM-DD HH:MM" in zone tz.  0, or -1. */
int
reset_format(const char *tz, int64_t ms, char *buf, size_t len)
{
	struct tz_saved	 saved;
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);
	int		 ok;

	if (len == 0)
		return -1;
	buf[0] = '\0';
	if (tz_enter(tz, &saved) == -1)
		return -1;
	ok = localtime_r(&t, &tm) != NULL;
	tz_leave(&saved);
	if (!ok || strftime(buf, len, "%Y-%m-%d %H:%M", &tm) == 0) {
		buf[0] = '\0';
		return -1;
	}
	return 0;
}

/*
 * When is the next reset, and is one due right now?  Pure, for start-up
 * and its tests.
 *
 * A reset instant X that has passed (X <= now) was missed (the daemon was
 * down) unless the usage file's last_reset is at or after it; either the
 * config's next_quota_reset_datetime or the usage file's next_reset may
 * name it (the config's may be stale if writing it back failed: last_reset
 * tells).  The next instant is the config's when it lies ahead (the user
 * may set it), except when the schedule (reset_after, timezone) changed
 * while we were down and the config still holds the value we wrote for the
 * old one; then the usage file's when it lies ahead and was computed for
 * this schedule; else computed from now.
 */
int
reset_plan(const struct reset_in *in, int64_t *next)
{
	int64_t	 c = in->cfg_next, u = in->file_next, now = in->now;
	int	 due = 0;

	if (u > 0 && u <= now && u > in->last_reset)
		due = 1;
	if (c > 0 && c <= now && c > in->last_reset)
		due = 1;
	if (in->schedule_changed && (c == 0 || c == u))
		c = 0;
	if (c > now)
		*next = c;
	else if (!due && u > now && !in->schedule_changed)
		*next = u;
	else
		*next = reset_next(in->tz, in->hour, in->min, now);
	if (*next == -1)
		*next = now + DAY_MS;	/* never: a day is a sane guess */
	return due;
}

/* ---- Editing config.json in place. ---- */

static int
key_is(const char *kstart, const char *kend, const char *name)
{
	size_t	 n = strlen(name);

	return (size_t)(kend - kstart) == n + 2 &&
	    memcmp(kstart + 1, name, n) == 0;
}

/*
 * Is the field value in the text (as cJSON reads it: the first of
 * duplicates)?  1 or 0; -1 when text is not JSON, strictly, as config.c
 * reads it: nothing but blanks after the value.  text[len] must be NUL.
 */
static int
json_field_is(const char *text, size_t len, const char *value)
{
	cJSON		*root, *v;
	int		 ok;

	if ((root = cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1)) == NULL)
		return -1;
	v = cJSON_GetObjectItemCaseSensitive(root, RESET_FIELD);
	ok = cJSON_IsObject(root) && cJSON_IsString(v) &&
	    strcmp(v->valuestring, value) == 0;
	cJSON_Delete(root);
	return ok;
}

/* Where the members of a config's top-level object lie. */
struct edit_scan {
	const char	*first_k;	/* the first member's key */
	const char	*ra_k;		/* reset_after's key and value's end */
	const char	*ra_ve;
	const char	*rep_v;		/* next_quota_reset_datetime's value */
	const char	*rep_ve;
	const char	*close;		/* the object's closing brace */
};

/* Walk the top-level object of in[0..end).  0, or -1 when it is none. */
static int
edit_scan(const char *in, const char *end, struct edit_scan *e)
{
	const char	*p = in, *k, *ke, *colon, *v, *ve;

	memset(e, 0, sizeof(*e));
	if (end - in >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	p = jt_ws(p, end);
	if (p >= end || *p != '{')
		return -1;
	for (p = jt_ws(p + 1, end); p < end && *p != '}';) {
		if (*p != '"' || (ke = jt_string(k = p, end)) == NULL)
			return -1;
		colon = jt_ws(ke, end);
		if (colon >= end || *colon != ':')
			return -1;
		v = jt_ws(colon + 1, end);
		if ((ve = jt_value(v, end)) == NULL)
			return -1;
		if (e->first_k == NULL)
			e->first_k = k;
		if (e->rep_v == NULL && key_is(k, ke, RESET_FIELD)) {
			e->rep_v = v;
			e->rep_ve = ve;
		}
		if (e->ra_k == NULL && key_is(k, ke, RESET_AFTER)) {
			e->ra_k = k;
			e->ra_ve = ve;
		}
		p = jt_ws(ve, end);
		if (p < end && *p == ',')
			p = jt_ws(p + 1, end);
		else if (p >= end || *p != '}')
			return -1;
	}
	if (p >= end || jt_ws(p + 1, end) != end)
		return -1;
	e->close = p;
	return 0;
}

/* How a member is written next to nk: separator, indent, line break. */
struct edit_style {
	char	 sep[32];
	char	 indent[128];
	char	 nl[3];
};

static void
edit_style(const char *in, const char *end, const char *nk,
    struct edit_style *st)
{
	const char	*ke, *v, *ls;
	size_t		 n;

	(void)strlcpy(st->sep, ": ", sizeof(st->sep));
	st->indent[0] = st->nl[0] = '\0';
	if (nk == NULL)
		return;
	/* Its separator, from the key's closing quote to the value. */
	ke = jt_string(nk, end);
	v = jt_ws(jt_ws(ke, end) + 1, end);
	n = (size_t)(v - ke);
	if (n < sizeof(st->sep) && memchr(ke, '\n', n) == NULL) {
		memcpy(st->sep, ke, n);
		st->sep[n] = '\0';
	}
	/* Its indent, when it starts a line of its own. */
	for (ls = nk; ls > in && (ls[-1] == ' ' || ls[-1] == '\t'); ls--)
		;
	if (ls > in && ls[-1] == '\n' &&
	    (size_t)(nk - ls) < sizeof(st->indent)) {
		memcpy(st->indent, ls, nk - ls);
		st->indent[nk - ls] = '\0';
		(void)strlcpy(st->nl, ls - 1 > in && ls[-2] == '\r' ?
		    "\r\n" : "\n", sizeof(st->nl));
	}
}

/*
 * What to write, and the span [*at, *ve) of in it replaces.  The length,
 * or -1 when it does not fit.
 */
static int
edit_insert(const struct edit_scan *e, const char *in, const char *end,
    const char *value, char *ins, size_t inslen, const char **at,
    const char **ve)
{
	struct edit_style	 st;
	const char		*brk;
	int			 m;

	edit_style(in, end, e->ra_k != NULL ? e->ra_k : e->first_k, &st);
	brk = st.nl[0] != '\0' ? st.nl : " ";
	if (e->rep_v != NULL) {
		m = snprintf(ins, inslen, "\"%s\"", value);
		*at = e->rep_v;
		*ve = e->rep_ve;
	} else if (e->ra_k != NULL) {
		/* After reset_after's value: ",<nl><indent>member". */
		m = snprintf(ins, inslen, ",%s%s\"%s\"%s\"%s\"", brk,
		    st.indent, RESET_FIELD, st.sep, value);
		*at = *ve = e->ra_ve;
	} else if (e->first_k != NULL) {
		/* Before the first member: "member,<nl><indent>". */
		m = snprintf(ins, inslen, "\"%s\"%s\"%s\",%s%s",
		    RESET_FIELD, st.sep, value, brk, st.indent);
		*at = *ve = e->first_k;
	} else {
		/* An empty object. */
		m = snprintf(ins, inslen, "\"%s\"%s\"%s\"", RESET_FIELD,
		    st.sep, value);
		*at = *ve = e->close;
	}
	return m < 0 || (size_t)m >= inslen ? -1 : m;
}

/*
 * Set the top-level next_quota_reset_datetime of a JSON text to value,
 * touching no other byte: an existing member's value is replaced; a
 * missing member is inserted after reset_after (or as the first member)
 * in the style of its neighbour (same indent and separator, or inline in a
 * one-line file).  The result is checked with cJSON.  in[len] must be
 * NUL.  Returns 0 with a malloc'd *out (NUL-terminated), or -1 when the
 * text is not a JSON object.
 */
int
reset_edit(const char *in, size_t len, const char *value, char **out,
    size_t *outlen)
{
	struct edit_scan	 e;
	const char		*end = in + len, *at, *ve;
	char			 ins[512], *o;
	size_t			 n;
	int			 ilen;

	*out = NULL;
	if (json_field_is(in, len, value) == -1)
		return -1;	/* not JSON: leave it alone */
	if (edit_scan(in, end, &e) == -1 ||
	    (ilen = edit_insert(&e, in, end, value, ins, sizeof(ins), &at,
	    &ve)) == -1)
		return -1;
	n = (size_t)(at - in) + (size_t)ilen + (size_t)(end - ve);
	if ((o = malloc(n + 1)) == NULL)
		return -1;
	memcpy(o, in, at - in);
	memcpy(o + (at - in), ins, ilen);
	memcpy(o + (at - in) + ilen, ve, end - ve);
	o[n] = '\0';
	if (json_field_is(o, n, value) != 1) {
		free(o);
		return -1;
	}
	*out = o;
	*outlen = n;
	return 0;
}

/*
 * Write value into the config file at path as next_quota_reset_datetime,
 * atomically (fileio_write: temp, fsync, rename, fsync the
 * directory) and keeping the file's mode and owner; never over a version
 * the user saved after we read it.  A symlink is followed: the file it
 * names is replaced, the link stays.  Returns 0 (also when the value was
 * there already), or -1 with err.
 */
int
reset_writeback(const char *path, const char *value, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		 real[PATH_MAX], *text = NULL, *out = NULL;
	size_t		 len = 0, outlen;
	int		 rv = -1;

	if (realpath(path, real) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((text = fileio_read(real, CFG_TEXT_MAX, FILEIO_REGULAR, &len,
	    &st)) == NULL) {
		snprintf(err, errlen, "%s: %s", real, errno == EINVAL ?
		    "not a regular file" : strerror(errno));
		goto done;
	}
	if (reset_edit(text, len, value, &out, &outlen) == -1) {
		snprintf(err, errlen, "%s: not a JSON object that can be "
		    "edited (left as it is)", real);
		goto done;
	}
	if (outlen == len && memcmp(out, text, len) == 0) {
		rv = 0;
		goto done;
	}
	rv = fileio_write(real, out, outlen, st.st_mode & 07777, &st, err,
	    errlen);
done:
	free(text);
	free(out);
	return rv;
}

/* Publish next in shm and in config.json; log what happened. */
static void
reset_publish(struct shm_header *h, struct config *cfg, int64_t next)
{
	char	 when[32], err[PATH_MAX + 256];

	shm_set_next_reset(h, next);
	if (reset_format(cfg->timezone, next, when, sizeof(when)) == -1) {
		log_errx("daily reset: cannot format the next reset time");
		return;
	}
	if (strcmp(cfg->next_reset, when) == 0)
		return;
	if (reset_writeback(cfg->path, when, err, sizeof(err)) == -1) {
		log_errx("daily reset: %s not updated with %s=\"%s\": %s",
		    cfg->path, RESET_FIELD, when, err);
		return;
	}
	(void)strlcpy(cfg->next_reset, when, sizeof(cfg->next_reset));
}

static int64_t
next_from(const struct config *cfg, int64_t now)
{
	int64_t	 next;

	next = reset_next(cfg->timezone, cfg->reset_hour, cfg->reset_min, now);
	if (next == -1) {
		log_errx("daily reset: cannot compute the next %s in %s; "
		    "trying again in a day", cfg->reset_after, cfg->timezone);
		next = now + DAY_MS;
	}
	return next;
}

/*
 * At start, after the usage file was loaded (pi) and before the workers
 * fork: decide the next reset, and reset now if one was missed.
 */
void
reset_init(struct shm_header *h, struct config *cfg,
    const struct persist_info *pi, int64_t now)
{
	struct reset_in	 in;
	int64_t		 next, c = 0;
	char		 was[32];

	memset(&in, 0, sizeof(in));
	if (cfg->next_reset[0] != '\0' &&
	    reset_parse(cfg->timezone, cfg->next_reset, &c) == -1)
		c = 0;
	in.tz = cfg->timezone;
	in.hour = cfg->reset_hour;
	in.min = cfg->reset_min;
	in.cfg_next = c;
	in.now = now;
	if (pi != NULL && pi->loaded) {
		in.file_next = pi->next_reset;
		in.last_reset = pi->last_reset;
		in.schedule_changed = pi->reset_after[0] != '\0' &&
		    (strcmp(pi->reset_after, cfg->reset_after) != 0 ||
		    strcmp(pi->timezone, cfg->timezone) != 0);
	}
	if (reset_plan(&in, &next)) {
		was[0] = '\0';
		(void)reset_format(cfg->timezone, in.file_next > 0 &&
		    in.file_next <= now ? in.file_next : c, was, sizeof(was));
		log_info("daily reset: the one due at %s %s was missed while "
		    "the daemon was down: resetting now", was, cfg->timezone);
		shm_daily_reset(h, now, next);
		(void)persist_save(h, cfg, 1, now);
	}
	reset_publish(h, cfg, next);
	(void)reset_format(cfg->timezone, next, was, sizeof(was));
	log_info("daily reset: next at %s %s", was, cfg->timezone);
}

/* The master's tick: reset when due.  Returns 1 when it reset. */
int
reset_tick(struct shm_header *h, struct config *cfg, int64_t now)
{
	int64_t	 due, next;
	char	 when[32];

	due = __atomic_load_n(&h->next_reset, __ATOMIC_RELAXED);
	if (due <= 0 || now < due)
		return 0;
	next = next_from(cfg, now);
	shm_daily_reset(h, now, next);
	(void)reset_format(cfg->timezone, next, when, sizeof(when));
	log_info("daily reset: daily counters and exhaustion cleared; next "
	    "at %s %s", when, cfg->timezone);
	(void)persist_save(h, cfg, 1, now);
	reset_publish(h, cfg, next);
	return 1;
}

/*
 * SIGHUP: ncfg replaces ocfg.  A changed reset_after or timezone means a
 * new schedule, computed from now.  Otherwise a next_quota_reset_datetime
 * the user edited is taken when it lies ahead, or when it names a reset
 * that has not happened (the tick then resets at once); a stale or absent
 * one is written back with the running value.
 */
void
reset_reload(struct shm_header *h, const struct config *ocfg,
    struct config *ncfg, int64_t now)
{
	int64_t	 cur, c = 0, last, next;

	shm_resets(h, &last, &cur);
	if (strcmp(ocfg->reset_after, ncfg->reset_after) != 0 ||
	    strcmp(ocfg->timezone, ncfg->timezone) != 0) {
		next = next_from(ncfg, now);
		log_info("daily reset: schedule is now %s %s",
		    ncfg->reset_after, ncfg->timezone);
	} else if (ncfg->next_reset[0] != '\0' &&
	    reset_parse(ncfg->timezone, ncfg->next_reset, &c) == 0 &&
	    c != cur && (c > now || c > last))
		next = c;
	else
		next = cur > 0 ? cur : next_from(ncfg, now);
	reset_publish(h, ncfg, next);
}
