/*
 * When the daily quotas reset: reset_after ("HH:MM") and
 * next_quota_reset_datetime ("YYYY-MM-DD HH:MM"), both in timezone, which
 * must name a zone file of the system's zoneinfo (or of $TZDIR).
 *
 * Called by config.c's cfg_build(); reset.c does the arithmetic with what
 * is checked here.  No global state, no locks.
 */
#include <sys/stat.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"

#define CFG_ZONEINFO	"/usr/share/zoneinfo"
#define CFG_TZIF	"TZif"		/* how a zone file starts */
#define CFG_TZ_WANT	"an IANA time zone name such as \"America/Los_Angeles\""

static int	 cfg_2digits(const char *);
static int	 cfg_tz_name_ok(const char *);
static int	 cfg_tz_file(const char *, const char *);

/* Two decimal digits at s, or -1. */
static int
cfg_2digits(const char *s)
{
	if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
		return -1;
	return (s[0] - '0') * 10 + (s[1] - '0');
}

/* "HH:MM", 00:00 to 23:59, exactly five characters. */
int
cfg_reset_after(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*s;
	char		 got[96];
	int		 h, m;

	if ((s = cfg_string(p, v, "reset_after", CFG_DEF_RESET_AFTER,
	    "\"HH:MM\"")) == NULL)
		return -1;
	if (strlen(s) != sizeof("HH:MM") - 1 || s[2] != ':' ||
	    (h = cfg_2digits(s)) == -1 || (m = cfg_2digits(s + 3)) == -1 ||
	    h > 23 || m > 59)
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
int
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
	if (strlen(s) == sizeof("YYYY-MM-DD HH:MM") - 1 && s[4] == '-' &&
	    s[7] == '-' && s[10] == ' ' && s[13] == ':' &&
	    cfg_2digits(s) != -1 && cfg_2digits(s + 2) != -1 &&
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
int
cfg_timezone(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	const char	*tz, *dir;
	char		 got[96];

	if ((tz = cfg_string(p, v, "timezone", CFG_DEF_TIMEZONE,
	    CFG_TZ_WANT)) == NULL)
		return -1;
	if (strlen(tz) >= sizeof(cfg->timezone))
		return cfg_err(p, "timezone", "too long (at most %zu "
		    "characters)", sizeof(cfg->timezone) - 1);
	if (strcmp(tz, "UTC") != 0) {
		if (!cfg_tz_name_ok(tz))
			return cfg_err(p, "timezone", "must be %s (got %s)",
			    CFG_TZ_WANT, cfg_quote(tz, got, sizeof(got)));
		if ((dir = getenv("TZDIR")) == NULL || dir[0] == '\0')
			dir = CFG_ZONEINFO;
		if (!cfg_tz_file(dir, tz))
			return cfg_err(p, "timezone", "unknown time zone %s "
			    "(no such zone file in %s)", cfg_quote(tz, got,
			    sizeof(got)), dir);
	}
	(void)strlcpy(cfg->timezone, tz, sizeof(cfg->timezone));
	return 0;
}

/* Letters, digits and "/_-+.", relative, and never "..". */
static int
cfg_tz_name_ok(const char *tz)
{
	const char	*c;

	for (c = tz; *c != '\0'; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || strchr("/_-+.", *c) != NULL))
			return 0;
	return tz[0] != '\0' && tz[0] != '/' && strstr(tz, "..") == NULL;
}

/* Whether dir/tz is a regular file that starts as a TZif file does. */
static int
cfg_tz_file(const char *dir, const char *tz)
{
	struct stat	 st;
	char		 path[PATH_MAX], magic[sizeof(CFG_TZIF) - 1];
	ssize_t		 n;
	int		 fd, len;

	len = snprintf(path, sizeof(path), "%s/%s", dir, tz);
	if (len < 0 || (size_t)len >= sizeof(path))
		return 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
	n = read(fd, magic, sizeof(magic));
	close(fd);
	return n == (ssize_t)sizeof(magic) &&
	    memcmp(magic, CFG_TZIF, sizeof(magic)) == 0;
}
