/*
 * The daily reset: the next instant across DST changes (system zoneinfo),
 * parsing and formatting next_quota_reset_datetime, the start-up plan, and
 * writing the value back into config.json without touching anything else.
 */
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_suites.h"
#include "fileio.h"
#include "persist.h"
#include "reset.h"

#define LA	"America/Los_Angeles"
#define HOUR	(3600LL * 1000)
#define DAY	(24 * HOUR)

/* ms since the epoch of a UTC date and time. */
static int64_t
utc(int y, int mo, int d, int h, int mi)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	return (int64_t)timegm(&tm) * 1000;
}

#define NEXT(tz, h, m, after)	reset_next((tz), (h), (m), (after))

START_TEST(test_la_spring_forward)
{
	/* 2026-03-08: 02:00 PST becomes 03:00 PDT at 10:00Z. */
	int64_t	 midnight = utc(2026, 3, 8, 8, 0);	/* 00:00 PST */

	/* 02:30 does not exist that day: the first instant after the gap. */
	ck_assert_int_eq(NEXT(LA, 2, 30, midnight), utc(2026, 3, 8, 10, 0));
	/* And only that once: next day it is 02:30 PDT. */
	ck_assert_int_eq(NEXT(LA, 2, 30, utc(2026, 3, 8, 10, 0)),
	    utc(2026, 3, 9, 9, 30));
	/* 01:30 still PST; the day after, PDT. */
	ck_assert_int_eq(NEXT(LA, 1, 30, midnight), utc(2026, 3, 8, 9, 30));
	ck_assert_int_eq(NEXT(LA, 1, 30, utc(2026, 3, 8, 9, 30)),
	    utc(2026, 3, 9, 8, 30));
	/* Midnight: PST on the day, PDT after. */
	ck_assert_int_eq(NEXT(LA, 0, 0, utc(2026, 3, 7, 20, 0)), midnight);
	ck_assert_int_eq(NEXT(LA, 0, 0, midnight), utc(2026, 3, 9, 7, 0));
	/* A day is 23 hours long there. */
	ck_assert_int_eq(NEXT(LA, 0, 0, midnight) - midnight, 23 * HOUR);
}
END_TEST

START_TEST(test_la_fall_back)
{
	/* 2026-11-01: 02:00 PDT becomes 01:00 PST at 09:00Z. */
	int64_t	 midnight = utc(2026, 11, 1, 7, 0);	/* 00:00 PDT */

	/* 01:30 happens twice: the first (PDT), and not again that day. */
	ck_assert_int_eq(NEXT(LA, 1, 30, midnight), utc(2026, 11, 1, 8, 30));
	ck_assert_int_eq(NEXT(LA, 1, 30, utc(2026, 11, 1, 8, 30)),
	    utc(2026, 11, 2, 9, 30));
	ck_assert_int_eq(NEXT(LA, 1, 30, utc(2026, 11, 1, 9, 0)),
	    utc(2026, 11, 2, 9, 30));
	/* 02:30 happens once, in PST. */
	ck_assert_int_eq(NEXT(LA, 2, 30, midnight), utc(2026, 11, 1, 10, 30));
	/* Midnight: PDT on the day, PST after: a 25-hour day. */
	ck_assert_int_eq(NEXT(LA, 0, 0, utc(2026, 10, 31, 19, 0)), midnight);
	ck_assert_int_eq(NEXT(LA, 0, 0, midnight), utc(2026, 11, 2, 8, 0));
	ck_assert_int_eq(NEXT(LA, 0, 0, midnight) - midnight, 25 * HOUR);
}
END_TEST

START_TEST(test_london)
{
	/* 2026-03-29: 01:00 GMT becomes 02:00 BST.  01:30 is in the gap. */
	ck_assert_int_eq(NEXT("Europe/London", 1, 30, utc(2026, 3, 29, 0, 0)),
	    utc(2026, 3, 29, 1, 0));
	/* 2026-10-25: 02:00 BST becomes 01:00 GMT: 01:30 BST first. */
	ck_assert_int_eq(NEXT("Europe/London", 1, 30,
	    utc(2026, 10, 24, 23, 0)), utc(2026, 10, 25, 0, 30));
	ck_assert_int_eq(NEXT("Europe/London", 1, 30,
	    utc(2026, 10, 25, 0, 30)), utc(2026, 10, 26, 1, 30));
	/* Summer midnight is 23:00Z the day before. */
	ck_assert_int_eq(NEXT("Europe/London", 0, 0, utc(2026, 6, 14, 12, 0)),
	    utc(2026, 6, 14, 23, 0));
	/* Winter midnight is midnight UTC. */
	ck_assert_int_eq(NEXT("Europe/London", 0, 0, utc(2026, 1, 14, 12, 0)),
	    utc(2026, 1, 15, 0, 0));
}
END_TEST

START_TEST(test_shanghai_and_utc)
{
	/* UTC+8 all year. */
	ck_assert_int_eq(NEXT("Asia/Shanghai", 0, 0, utc(2026, 6, 15, 12, 0)),
	    utc(2026, 6, 15, 16, 0));
	ck_assert_int_eq(NEXT("Asia/Shanghai", 0, 0, utc(2026, 6, 15, 16, 0)),
	    utc(2026, 6, 16, 16, 0));
	ck_assert_int_eq(NEXT("Asia/Shanghai", 9, 15, utc(2026, 3, 8, 0, 0)),
	    utc(2026, 3, 8, 1, 15));
	ck_assert_int_eq(NEXT("UTC", 0, 0, utc(2026, 6, 15, 12, 0)),
	    utc(2026, 6, 16, 0, 0));
	ck_assert_int_eq(NEXT("UTC", 13, 5, utc(2026, 6, 15, 12, 0)),
	    utc(2026, 6, 15, 13, 5));
	/* Strictly after: at the instant itself, the next day's. */
	ck_assert_int_eq(NEXT("UTC", 0, 0, utc(2026, 6, 16, 0, 0)),
	    utc(2026, 6, 17, 0, 0));
	ck_assert_int_eq(NEXT("UTC", 0, 0, utc(2026, 6, 16, 0, 0) - 1),
	    utc(2026, 6, 16, 0, 0));
	/* No zone is UTC; the year turns over. */
	ck_assert_int_eq(NEXT(NULL, 0, 0, utc(2026, 12, 31, 12, 0)),
	    utc(2027, 1, 1, 0, 0));
	ck_assert_int_eq(NEXT("", 23, 59, utc(2028, 2, 28, 23, 59)),
	    utc(2028, 2, 29, 23, 59));
	/* Bad times. */
	ck_assert_int_eq(NEXT("UTC", 24, 0, 0), -1);
	ck_assert_int_eq(NEXT("UTC", 0, 60, 0), -1);
}
END_TEST

START_TEST(test_tz_restored)
{
	char	 buf[32];

	setenv("TZ", "Asia/Tokyo", 1);
	tzset();
	(void)NEXT(LA, 0, 0, utc(2026, 3, 8, 0, 0));
	(void)reset_format(LA, 0, buf, sizeof(buf));
	ck_assert_str_eq(getenv("TZ"), "Asia/Tokyo");
	unsetenv("TZ");
	(void)NEXT(LA, 0, 0, utc(2026, 3, 8, 0, 0));
	ck_assert_ptr_null(getenv("TZ"));
}
END_TEST

START_TEST(test_parse_format)
{
	char	 buf[32];
	int64_t	 t;

	ck_assert_int_eq(reset_parse(LA, "2026-11-01 01:30", &t), 0);
	ck_assert_int_eq(t, utc(2026, 11, 1, 8, 30));
	ck_assert_int_eq(reset_parse(LA, "2026-03-08 02:30", &t), 0);
	ck_assert_int_eq(t, utc(2026, 3, 8, 10, 0));
	ck_assert_int_eq(reset_format(LA, t, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "2026-03-08 03:00");
	ck_assert_int_eq(reset_parse("Asia/Shanghai", "2026-06-16 00:00", &t),
	    0);
	ck_assert_int_eq(t, utc(2026, 6, 15, 16, 0));
	ck_assert_int_eq(reset_format("Asia/Shanghai", t, buf, sizeof(buf)),
	    0);
	ck_assert_str_eq(buf, "2026-06-16 00:00");
	ck_assert_int_eq(reset_parse("UTC", "2028-02-29 23:59", &t), 0);
	ck_assert_int_eq(t, utc(2028, 2, 29, 23, 59));
	ck_assert_int_eq(reset_parse("UTC", "2026-02-29 00:00", &t), -1);
	ck_assert_int_eq(reset_parse("UTC", "2026-2-01 00:00", &t), -1);
	ck_assert_int_eq(reset_parse("UTC", "2026-02-01T00:00", &t), -1);
	ck_assert_int_eq(reset_parse("UTC", "2026-02-01 00:00x", &t), -1);
	ck_assert_int_eq(reset_parse("UTC", "", &t), -1);
	ck_assert_int_eq(reset_format("UTC", utc(2026, 1, 2, 3, 4), buf, 5),
	    -1);
}
END_TEST

START_TEST(test_plan)
{
	struct reset_in	 in;
	int64_t		 now = utc(2026, 6, 15, 12, 0), next;
	int64_t		 tomorrow = utc(2026, 6, 16, 0, 0);

	memset(&in, 0, sizeof(in));
	in.tz = "UTC";
	in.now = now;
	/* Nothing known: computed, nothing due. */
	ck_assert_int_eq(reset_plan(&in, &next), 0);
	ck_assert_int_eq(next, tomorrow);
	/* The config names a past reset that did not happen: due. */
	in.cfg_next = utc(2026, 6, 15, 0, 0);
	in.last_reset = utc(2026, 6, 14, 0, 0);
	ck_assert_int_eq(reset_plan(&in, &next), 1);
	ck_assert_int_eq(next, tomorrow);
	/* ... that did happen (writing the config back failed): not due. */
	in.last_reset = utc(2026, 6, 15, 0, 0) + 300;
	in.file_next = tomorrow;
	ck_assert_int_eq(reset_plan(&in, &next), 0);
	ck_assert_int_eq(next, tomorrow);
	/* The usage file's next reset passed while we were down: due. */
	in.cfg_next = 0;
	in.file_next = utc(2026, 6, 15, 0, 0) + DAY / 2;
	in.last_reset = utc(2026, 6, 14, 12, 0);
	ck_assert_int_eq(reset_plan(&in, &next), 1);
	ck_assert_int_eq(next, tomorrow);
	/* A future value in the config is the user's: taken. */
	in.cfg_next = utc(2026, 6, 15, 18, 0);
	in.file_next = tomorrow;
	in.last_reset = utc(2026, 6, 15, 0, 0);
	ck_assert_int_eq(reset_plan(&in, &next), 0);
	ck_assert_int_eq(next, utc(2026, 6, 15, 18, 0));
	/* The schedule changed while down, config holds our old value. */
	in.hour = 13;
	in.cfg_next = tomorrow;
	in.file_next = tomorrow;
	in.schedule_changed = 1;
	ck_assert_int_eq(reset_plan(&in, &next), 0);
	ck_assert_int_eq(next, utc(2026, 6, 15, 13, 0));
}
END_TEST

/* ---- Editing config.json. ---- */

static char *
edit(const char *in, const char *value)
{
	char	*out = NULL;
	size_t	 n;

	if (reset_edit(in, strlen(in), value, &out, &n) == -1)
		return NULL;
	ck_assert_uint_eq(strlen(out), n);
	return out;
}

START_TEST(test_edit_replace)
{
	const char *in =
	    "{\n"
	    "    \"priority_keys\": [\"a\", \"b\"],\n"
	    "    \"models\": {\"m\": {\"next_quota_reset_datetime\": 1}},\n"
	    "    \"reset_after\":\"01:00\",\n"
	    "    \"next_quota_reset_datetime\"  :   null ,\n"
	    "    \"timezone\": \"UTC\", \"z\": [1.50, 1e3, true]\n"
	    "}\n";
	const char *want =
	    "{\n"
	    "    \"priority_keys\": [\"a\", \"b\"],\n"
	    "    \"models\": {\"m\": {\"next_quota_reset_datetime\": 1}},\n"
	    "    \"reset_after\":\"01:00\",\n"
	    "    \"next_quota_reset_datetime\"  :   \"2026-11-27 01:00\" ,\n"
	    "    \"timezone\": \"UTC\", \"z\": [1.50, 1e3, true]\n"
	    "}\n";
	char	*out;

	out = edit(in, "2026-11-27 01:00");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, want);
	free(out);
	/* An old value, with a string holding brackets and escapes before. */
	in = "{\"x\": \"}{\\\"]\", \"next_quota_reset_datetime\": "
	    "\"2020-01-01 00:00\"}";
	out = edit(in, "2026-01-02 03:04");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "{\"x\": \"}{\\\"]\", "
	    "\"next_quota_reset_datetime\": \"2026-01-02 03:04\"}");
	free(out);
}
END_TEST

START_TEST(test_edit_insert)
{
	const char *in =
	    "{\n"
	    "\t\"models\": {\"reset_after\": \"x\"},\n"
	    "\t\"reset_after\" : \"00:00\",\n"
	    "\t\"timezone\": \"America/Los_Angeles\"\n"
	    "}";
	const char *want =
	    "{\n"
	    "\t\"models\": {\"reset_after\": \"x\"},\n"
	    "\t\"reset_after\" : \"00:00\",\n"
	    "\t\"next_quota_reset_datetime\" : \"2026-11-27 00:00\",\n"
	    "\t\"timezone\": \"America/Los_Angeles\"\n"
	    "}";
	char	*out;

	out = edit(in, "2026-11-27 00:00");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, want);
	free(out);

	/* reset_after last, CRLF lines. */
	out = edit("{\r\n  \"a\": 1,\r\n  \"reset_after\": \"00:00\"\r\n}\r\n",
	    "2026-11-27 00:00");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "{\r\n  \"a\": 1,\r\n  \"reset_after\": "
	    "\"00:00\",\r\n  \"next_quota_reset_datetime\": "
	    "\"2026-11-27 00:00\"\r\n}\r\n");
	free(out);

	/* One line. */
	out = edit("{\"a\":1,\"reset_after\":\"00:00\",\"b\":2}", "X");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "{\"a\":1,\"reset_after\":\"00:00\", "
	    "\"next_quota_reset_datetime\":\"X\",\"b\":2}");
	free(out);

	/* No reset_after: first member, in the first member's style. */
	out = edit("{\n  \"a\": 1\n}\n", "X");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "{\n  \"next_quota_reset_datetime\": \"X\",\n"
	    "  \"a\": 1\n}\n");
	free(out);
	out = edit("{}", "X");
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(out, "{\"next_quota_reset_datetime\": \"X\"}");
	free(out);

	/* Not JSON, or not an object: refused. */
	ck_assert_ptr_null(edit("{\"a\": 1,}", "X"));
	ck_assert_ptr_null(edit("[1, 2]", "X"));
	ck_assert_ptr_null(edit("", "X"));
	ck_assert_ptr_null(edit("{\"a\": 1} {", "X"));
}
END_TEST

static char *
slurp(const char *path)
{
	FILE	*f = fopen(path, "r");
	char	*buf;
	long	 n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, n + 1);
	ck_assert_int_eq(fread(buf, 1, n, f), n);
	fclose(f);
	return buf;
}

static void
spit(const char *path, const char *text, mode_t mode)
{
	FILE	*f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

START_TEST(test_writeback_file)
{
	char		 dir[] = "/tmp/check_reset.XXXXXX", path[PATH_MAX];
	char		 link[PATH_MAX], tmp[PATH_MAX], err[512], *got;
	struct stat	 st, lst;
	const char	*text = "{\n  \"priority_keys\": [\"k\"],\n"
	    "  \"reset_after\": \"00:00\",\n  \"timezone\": \"UTC\"\n}\n";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/config.json", dir);
	snprintf(link, sizeof(link), "%s/link.json", dir);
	snprintf(tmp, sizeof(tmp), "%s/.config.json.tmp", dir);
	spit(path, text, 0640);
	ck_assert_int_eq(symlink("config.json", link), 0);

	/* Through the link: the file is replaced, the link stays. */
	ck_assert_int_eq(reset_writeback(link, "2026-11-27 00:00", err,
	    sizeof(err)), 0);
	got = slurp(path);
	ck_assert_str_eq(got, "{\n  \"priority_keys\": [\"k\"],\n"
	    "  \"reset_after\": \"00:00\",\n"
	    "  \"next_quota_reset_datetime\": \"2026-11-27 00:00\",\n"
	    "  \"timezone\": \"UTC\"\n}\n");
	free(got);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0640);
	ck_assert_int_eq(lstat(link, &lst), 0);
	ck_assert(S_ISLNK(lst.st_mode));
	ck_assert_int_eq(access(tmp, F_OK), -1);

	/* Again, another value: only the value changes. */
	ck_assert_int_eq(reset_writeback(path, "2026-11-28 00:00", err,
	    sizeof(err)), 0);
	got = slurp(path);
	ck_assert_ptr_nonnull(strstr(got, "\"2026-11-28 00:00\",\n"));
	ck_assert_ptr_null(strstr(got, "2026-11-27"));
	free(got);

	/* A temp file that cannot be made: the config stays as it was. */
	ck_assert_int_eq(mkdir(tmp, 0700), 0);
	ck_assert_int_eq(reset_writeback(path, "2026-11-29 00:00", err,
	    sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, ".config.json.tmp"));
	got = slurp(path);
	ck_assert_ptr_nonnull(strstr(got, "\"2026-11-28 00:00\""));
	free(got);
	rmdir(tmp);

	/* The user saved the file after it was read: theirs stays. */
	ck_assert_int_eq(stat(path, &st), 0);
	spit(path, "{\"theirs\": 1}\n", 0640);
	ck_assert_int_eq(fileio_write(path, "{}\n", 3, 0640, &st, err,
	    sizeof(err)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_ptr_nonnull(strstr(err, "changed while"));
	got = slurp(path);
	ck_assert_str_eq(got, "{\"theirs\": 1}\n");
	free(got);
	ck_assert_int_eq(access(tmp, F_OK), -1);

	/* A broken config is left alone. */
	spit(path, "{\"reset_after\": \"00:00\",", 0600);
	ck_assert_int_eq(reset_writeback(path, "2026-11-29 00:00", err,
	    sizeof(err)), -1);
	got = slurp(path);
	ck_assert_str_eq(got, "{\"reset_after\": \"00:00\",");
	free(got);

	unlink(link);
	unlink(path);
	rmdir(dir);
}
END_TEST

Suite *
reset_suite(void)
{
	Suite	*s = suite_create("reset");
	TCase	*tc = tcase_create("next");
	TCase	*te = tcase_create("edit");

	tcase_add_test(tc, test_la_spring_forward);
	tcase_add_test(tc, test_la_fall_back);
	tcase_add_test(tc, test_london);
	tcase_add_test(tc, test_shanghai_and_utc);
	tcase_add_test(tc, test_tz_restored);
	tcase_add_test(tc, test_parse_format);
	tcase_add_test(tc, test_plan);
	suite_add_tcase(s, tc);
	tcase_add_test(te, test_edit_replace);
	tcase_add_test(te, test_edit_insert);
	tcase_add_test(te, test_writeback_file);
	suite_add_tcase(s, te);
	return s;
}
