/*
 * Unit tests for src/config.c: every field of a good config lands where it
 * should, defaults fill a minimal one, the default file is created 0600 and
 * loads, every kind of bad input is refused with one line naming the file
 * and the field, and no key or token ever shows in a message.
 *
 * Each test works in its own mkdtemp directory, with TZDIR pointed at a
 * small fake zoneinfo there, so the suite does not depend on tzdata.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "check_suites.h"
#include "config.h"
#include "log.h"
#include "looper.h"

/* Every key holds "TESTKEY" and every token "TESTTOKEN": grep-able. */
#define K1	"AIzaSyTESTKEY00000000000000000000000001"
#define K2	"AIzaSyTESTKEY00000000000000000000000002"
#define K3	"AIzaSyTESTKEY00000000000000000000000003"
#define K4	"AQ.TESTKEY-newer-format-key-000000004"

#define KEYS	"\"priority_keys\": [\"" K1 "\", \"" K2 "\"], " \
		"\"secondary_keys\": [\"" K3 "\"]"
#define MODELS	"\"models\": {\"gemini-2.5-pro\": {\"tpm_limit\": 250000}, " \
		"\"gemini-2.5-flash\": {}}"
#define WITH(x)		"{" KEYS ", " MODELS ", " x "}"
#define MODEL(x)	"{" KEYS ", \"models\": {\"gemini-2.5-pro\": " x "}}"
#define KEYLIST(x)	"{" x ", " MODELS "}"

static char	 tmpdir[256];	/* as made by mkdtemp */
static char	 realdir[PATH_MAX];	/* the same, symbolic links resolved */
static char	 cfgpath[300];	/* tmpdir/config.json */
static char	 err[1024];

static void	 put(const char *, const char *);
static struct config *load(const char *);
static void	 assert_clean(const char *);
static int	 rm_one(const char *, const struct stat *, int, struct FTW *);
static void	 setup(void);
static void	 teardown(void);

static void
put(const char *name, const char *text)
{
	char	 path[PATH_MAX];
	FILE	*f;

	ck_assert_int_lt(snprintf(path, sizeof(path), "%s/%s", tmpdir, name),
	    (int)sizeof(path));
	f = fopen(path, "w");
	ck_assert_msg(f != NULL, "fopen %s: %s", path, strerror(errno));
	ck_assert_int_eq(fputs(text, f) >= 0, 1);
	ck_assert_int_eq(fclose(f), 0);
}

/* Write text as tmpdir/config.json and load it. */
static struct config *
load(const char *text)
{
	put("config.json", text);
	memset(err, 'X', sizeof(err));
	err[sizeof(err) - 1] = '\0';
	return cfg_load(cfgpath, err, sizeof(err));
}

/* A message must not show any key or token, and must be one line. */
static void
assert_clean(const char *msg)
{
	ck_assert_msg(strstr(msg, "TESTKEY") == NULL, "key in: %s", msg);
	ck_assert_msg(strstr(msg, "TESTTOKEN") == NULL, "token in: %s", msg);
	ck_assert_msg(strchr(msg, '\n') == NULL, "newline in: %s", msg);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
setup(void)
{
	char	 zdir[PATH_MAX + 32];

	(void)snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_ptr_nonnull(realpath(tmpdir, realdir));
	(void)snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", tmpdir);

	/* A fake zoneinfo: a zone is a file that starts with "TZif". */
	(void)snprintf(zdir, sizeof(zdir), "%s/zoneinfo", tmpdir);
	ck_assert_int_eq(mkdir(zdir, 0755), 0);
	(void)snprintf(zdir, sizeof(zdir), "%s/zoneinfo/America", tmpdir);
	ck_assert_int_eq(mkdir(zdir, 0755), 0);
	(void)snprintf(zdir, sizeof(zdir), "%s/zoneinfo/Europe", tmpdir);
	ck_assert_int_eq(mkdir(zdir, 0755), 0);
	put("zoneinfo/America/Los_Angeles", "TZif2 fake zone data\n");
	put("zoneinfo/Europe/Berlin", "TZif2 fake zone data\n");
	put("zoneinfo/Europe/NotAZone", "this is not a zone file\n");
	(void)snprintf(zdir, sizeof(zdir), "%s/zoneinfo", tmpdir);
	ck_assert_int_eq(setenv("TZDIR", zdir, 1), 0);

	log_init(1, NULL, LOG_DEBUG);
}

static void
teardown(void)
{
	(void)unsetenv("TZDIR");
	(void)nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

START_TEST(test_full)
{
	struct config		*cfg;
	const struct cfg_model	*m;
	char			 want[PATH_MAX + 64], id[9], masked[16];

	put("ca.pem", "-----BEGIN CERTIFICATE-----\n");
	cfg = load("{\n"
	    "  \"priority_keys\": [\"" K1 "\", \"" K2 "\"],\n"
	    "  \"secondary_keys\": [\"" K3 "\", \"" K4 "\"],\n"
	    "  \"models\": {\n"
	    "    \"gemini-2.5-pro\": {\"tpm_limit\": 250000, "
	    "\"tpd_limit\": 6000000, \"rpm_limit\": 5, \"rpd_limit\": 100, "
	    "\"sessions_limit\": 3},\n"
	    "    \"gemini-2.5-flash\": {\"tpm_limit\": 1e6, "
	    "\"tpd_limit\": null, \"sessions_limit\": null}\n"
	    "  },\n"
	    "  \"reset_after\": \"01:30\",\n"
	    "  \"next_quota_reset_datetime\": \"2028-02-29 01:30\",\n"
	    "  \"timezone\": \"Europe/Berlin\",\n"
	    "  \"default_model\": \"gemini-2.5-flash\",\n"
	    "  \"listen\": \"[::1]:08080\",\n"
	    "  \"upstream\": \"https://example.test:8443/gemini/v/\",\n"
	    "  \"upstream_ca_file\": \"ca.pem\",\n"
	    "  \"workers\": {\"start\": 3, \"min_spare\": 1, "
	    "\"max_spare\": 5, \"max\": 10},\n"
	    "  \"usage_file\": \"state/usage.json\",\n"
	    "  \"pidfile\": \"/run/looper-test.pid\",\n"
	    "  \"log_file\": \"logs/looper.log\",\n"
	    "  \"log_level\": \"debug\",\n"
	    "  \"user\": \"nobody\",\n"
	    "  \"access_tokens\": [\"TESTTOKEN-a\", \"TESTTOKEN-b\"],\n"
	    "  \"admin_token\": \"TESTTOKEN-admin\",\n"
	    "  \"max_body_bytes\": 1048576,\n"
	    "  \"max_wait_s\": 0,\n"
	    "  \"persist_interval_s\": 10,\n"
	    "  \"shutdown_timeout_s\": 0,\n"
	    "  \"client_timeout_s\": 15,\n"
	    "  \"keepalive_timeout_s\": 0,\n"
	    "  \"upstream_timeout_s\": 600,\n"
	    "  \"max_attempts\": 7,\n"
	    "  \"resolver_valid_s\": 0,\n"
	    "  \"storm\": {\"keys\": 0, \"window_s\": 30},\n"
	    "  \"key_probe\": {\"first_s\": 30, \"max_s\": 900, \"per_s\": 2},\n"
	    "  \"live\": {\"max_message_bytes\": 1024, \"ping_s\": 0}\n"
	    "}\n");
	ck_assert_msg(cfg != NULL, "%s", err);

	(void)snprintf(want, sizeof(want), "%s/config.json", realdir);
	ck_assert_str_eq(cfg->path, want);
	ck_assert_str_eq(cfg->dir, realdir);

	ck_assert_uint_eq(cfg->nkeys, 4);
	ck_assert_uint_eq(cfg->npriority, 2);
	ck_assert_str_eq(cfg->keys[0].key, K1);
	ck_assert_str_eq(cfg->keys[1].key, K2);
	ck_assert_str_eq(cfg->keys[2].key, K3);
	ck_assert_str_eq(cfg->keys[3].key, K4);
	ck_assert_int_eq(cfg->keys[0].tier, CFG_TIER_PRIORITY);
	ck_assert_int_eq(cfg->keys[1].tier, CFG_TIER_PRIORITY);
	ck_assert_int_eq(cfg->keys[2].tier, CFG_TIER_SECONDARY);
	ck_assert_int_eq(cfg->keys[3].tier, CFG_TIER_SECONDARY);
	cfg_key_id(K3, id);
	ck_assert_str_eq(cfg->keys[2].id, id);
	cfg_key_mask(K3, masked);
	ck_assert_str_eq(cfg->keys[2].masked, masked);
	ck_assert_str_eq(cfg->keys[2].masked, "AIza\xe2\x80\xa6" "0003");
	ck_assert_str_eq(cfg->keys[3].masked, "AQ.T\xe2\x80\xa6" "0004");
	ck_assert_int_eq(cfg->placeholder_keys, 0);

	ck_assert_uint_eq(cfg->nmodels, 2);
	ck_assert_str_eq(cfg->models[0].name, "gemini-2.5-pro");
	ck_assert_str_eq(cfg->models[1].name, "gemini-2.5-flash");
	m = cfg_model(cfg, "gemini-2.5-pro");
	ck_assert_ptr_eq(m, &cfg->models[0]);
	ck_assert_int_eq(m->tpm_limit, 250000);
	ck_assert_int_eq(m->tpd_limit, 6000000);
	ck_assert_int_eq(m->rpm_limit, 5);
	ck_assert_int_eq(m->rpd_limit, 100);
	ck_assert_int_eq(m->sessions_limit, 3);
	m = cfg_model(cfg, "gemini-2.5-flash");
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->tpm_limit, 1000000);
	ck_assert_int_eq(m->tpd_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->rpm_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->rpd_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->sessions_limit, CFG_NOLIMIT);
	ck_assert_ptr_null(cfg_model(cfg, "gemini-1.0-nope"));
	ck_assert_str_eq(cfg->default_model, "gemini-2.5-flash");

	ck_assert_str_eq(cfg->reset_after, "01:30");
	ck_assert_int_eq(cfg->reset_hour, 1);
	ck_assert_int_eq(cfg->reset_min, 30);
	ck_assert_str_eq(cfg->next_reset, "2028-02-29 01:30");
	ck_assert_str_eq(cfg->timezone, "Europe/Berlin");

	ck_assert_str_eq(cfg->listen, "[::1]:08080");
	ck_assert_str_eq(cfg->listen_host, "::1");
	ck_assert_str_eq(cfg->listen_port, "8080");
	ck_assert_str_eq(cfg->upstream, "https://example.test:8443/gemini/v");
	ck_assert_str_eq(cfg->upstream_host, "example.test");
	ck_assert_str_eq(cfg->upstream_port, "8443");
	ck_assert_str_eq(cfg->upstream_prefix, "/gemini/v");
	(void)snprintf(want, sizeof(want), "%s/ca.pem", realdir);
	ck_assert_str_eq(cfg->upstream_ca_file, want);

	ck_assert_int_eq(cfg->start_workers, 3);
	ck_assert_int_eq(cfg->min_spare, 1);
	ck_assert_int_eq(cfg->max_spare, 5);
	ck_assert_int_eq(cfg->max_workers, 10);

	(void)snprintf(want, sizeof(want), "%s/state/usage.json", realdir);
	ck_assert_str_eq(cfg->usage_file, want);
	ck_assert_str_eq(cfg->pidfile, "/run/looper-test.pid");
	(void)snprintf(want, sizeof(want), "%s/logs/looper.log", realdir);
	ck_assert_str_eq(cfg->log_file, want);
	ck_assert_int_eq(cfg->log_level, LOG_DEBUG);
	ck_assert_str_eq(cfg->user, "nobody");
	ck_assert_int_ne(cfg->user_uid, (uid_t)-1);
	ck_assert_int_ne(cfg->user_uid, 0);

	ck_assert_uint_eq(cfg->naccess_tokens, 2);
	ck_assert_str_eq(cfg->access_tokens[0], "TESTTOKEN-a");
	ck_assert_str_eq(cfg->access_tokens[1], "TESTTOKEN-b");
	ck_assert_str_eq(cfg->admin_token, "TESTTOKEN-admin");

	ck_assert_int_eq(cfg->max_body_bytes, 1048576);
	ck_assert_int_eq(cfg->max_wait_s, 0);
	ck_assert_int_eq(cfg->persist_interval_s, 10);
	ck_assert_int_eq(cfg->shutdown_timeout_s, 0);
	ck_assert_int_eq(cfg->client_timeout_s, 15);
	ck_assert_int_eq(cfg->keepalive_timeout_s, 0);
	ck_assert_int_eq(cfg->upstream_timeout_s, 600);
	ck_assert_int_eq(cfg->max_attempts, 7);
	ck_assert_int_eq(cfg->resolver_valid_s, 0);
	ck_assert_int_eq(cfg->storm_keys, 0);
	ck_assert_int_eq(cfg->storm_window_s, 30);
	ck_assert_int_eq(cfg->probe_first_s, 30);
	ck_assert_int_eq(cfg->probe_max_s, 900);
	ck_assert_int_eq(cfg->probe_per_s, 2);
	ck_assert_uint_eq(cfg->live_max_message, 1024);
	ck_assert_int_eq(cfg->live_ping_s, 0);
	cfg_free(cfg);
}
END_TEST

/* Port 0 to listen on any free port; the Host header the upstream gets. */
START_TEST(test_listen_any_port_and_authority)
{
	static const struct {
		const char	*upstream;
		const char	*authority;
	} cases[] = {
		{ "https://[::1]:8443/v", "[::1]:8443" },
		{ "https://[::1]", "[::1]" },
		{ "https://host.example:443", "host.example" },
		{ "https://host.example:8443", "host.example:8443" },
	};
	struct config	*cfg;
	char		 text[512];
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "{\"priority_keys\": [\"" K1
		    "\"], \"models\": {\"m\": {}}, \"listen\": "
		    "\"127.0.0.1:0\", \"upstream\": \"%s\"}",
		    cases[i].upstream);
		cfg = load(text);
		ck_assert_msg(cfg != NULL, "%s", err);
		ck_assert_str_eq(cfg->listen_port, "0");
		ck_assert_str_eq(cfg->upstream_authority, cases[i].authority);
		cfg_free(cfg);
	}
}
END_TEST

START_TEST(test_defaults)
{
	struct config		*cfg;
	const struct cfg_model	*m;
	char			 want[PATH_MAX + 64];

	cfg = load("{\"priority_keys\": [\"" K1 "\"], "
	    "\"models\": {\"some-model\": {}}}");
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->nkeys, 1);
	ck_assert_uint_eq(cfg->npriority, 1);
	ck_assert_uint_eq(cfg->nmodels, 1);
	m = cfg_model(cfg, "some-model");
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->tpm_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->tpd_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->rpm_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->rpd_limit, CFG_NOLIMIT);
	ck_assert_int_eq(m->sessions_limit, CFG_NOLIMIT);
	ck_assert_str_eq(cfg->default_model, "some-model");
	ck_assert_str_eq(cfg->reset_after, "00:00");
	ck_assert_int_eq(cfg->reset_hour, 0);
	ck_assert_int_eq(cfg->reset_min, 0);
	ck_assert_str_eq(cfg->next_reset, "");
	ck_assert_str_eq(cfg->timezone, "UTC");
	ck_assert_str_eq(cfg->listen, "127.0.0.1:48888");
	ck_assert_str_eq(cfg->listen_host, "127.0.0.1");
	ck_assert_str_eq(cfg->listen_port, "48888");
	ck_assert_str_eq(cfg->upstream,
	    "https://generativelanguage.googleapis.com");
	ck_assert_str_eq(cfg->upstream_host,
	    "generativelanguage.googleapis.com");
	ck_assert_str_eq(cfg->upstream_port, "443");
	ck_assert_str_eq(cfg->upstream_prefix, "");
	ck_assert_str_eq(cfg->upstream_ca_file, "");
	ck_assert_int_eq(cfg->start_workers, 4);
	ck_assert_int_eq(cfg->min_spare, 2);
	ck_assert_int_eq(cfg->max_spare, 8);
	ck_assert_int_eq(cfg->max_workers, 256);
	(void)snprintf(want, sizeof(want), "%s/key_usage.json", realdir);
	ck_assert_str_eq(cfg->usage_file, want);
	(void)snprintf(want, sizeof(want), "%s/gemini-looper.pid", realdir);
	ck_assert_str_eq(cfg->pidfile, want);
	ck_assert_str_eq(cfg->log_file, "");
	ck_assert_int_eq(cfg->log_level, LOG_INFO);
	ck_assert_str_eq(cfg->user, "");
	ck_assert_uint_eq(cfg->naccess_tokens, 0);
	ck_assert_str_eq(cfg->admin_token, "");
	ck_assert_int_eq(cfg->max_body_bytes, 33554432);
	ck_assert_int_eq(cfg->max_wait_s, 5);
	ck_assert_int_eq(cfg->persist_interval_s, 5);
	ck_assert_int_eq(cfg->shutdown_timeout_s, 30);
	ck_assert_int_eq(cfg->client_timeout_s, 30);
	ck_assert_int_eq(cfg->keepalive_timeout_s, 5);
	ck_assert_int_eq(cfg->upstream_timeout_s, 300);
	ck_assert_int_eq(cfg->max_attempts, 4);
	ck_assert_int_eq(cfg->resolver_valid_s, 30);
	ck_assert_int_eq(cfg->storm_keys, 3);
	ck_assert_int_eq(cfg->storm_window_s, 10);
	ck_assert_int_eq(cfg->probe_first_s, 60);
	ck_assert_int_eq(cfg->probe_max_s, 3600);
	ck_assert_int_eq(cfg->probe_per_s, 5);
	ck_assert_uint_eq(cfg->live_max_message, 16777216);
	ck_assert_int_eq(cfg->live_ping_s, 20);
	ck_assert_int_eq(cfg->placeholder_keys, 0);
	cfg_free(cfg);

	/* Only secondary keys is enough; nulls mean "none". */
	cfg = load("{\"priority_keys\": null, \"secondary_keys\": [\"" K2
	    "\"], \"models\": {\"m\": {}}, \"access_tokens\": null, "
	    "\"admin_token\": null, \"log_file\": null, \"user\": null, "
	    "\"upstream_ca_file\": null, \"next_quota_reset_datetime\": null}");
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_uint_eq(cfg->nkeys, 1);
	ck_assert_uint_eq(cfg->npriority, 0);
	ck_assert_int_eq(cfg->keys[0].tier, CFG_TIER_SECONDARY);
	ck_assert_str_eq(cfg->log_file, "");
	cfg_free(cfg);

	cfg_free(NULL);
}
END_TEST

/* The seed's own example (minus its non-ASCII placeholder keys) loads. */
START_TEST(test_seed_shape)
{
	struct config	*cfg;

	cfg = load("{\n"
	    "    \"priority_keys\": [\"" K1 "\", \"" K2 "\"],\n"
	    "    \"secondary_keys\": [\"" K3 "\"],\n"
	    "    \"models\": {\n"
	    "        \"gemini-1.5-pro-latest\": {\n"
	    "            \"tpm_limit\": 250000,\n"
	    "            \"tpd_limit\": 6000000\n"
	    "        },\n"
	    "        \"gemini-1.5-flash-latest\": {\n"
	    "            \"tpm_limit\": 250000,\n"
	    "            \"tpd_limit\": null\n"
	    "        }\n"
	    "    },\n"
	    "    \"reset_after\": \"01:00\",\n"
	    "    \"next_quota_reset_datetime\": \"2025-07-19 01:00\",\n"
	    "    \"timezone\": \"UTC\",\n"
	    "    \"default_model\": \"gemini-1.5-pro-latest\"\n"
	    "}\n");
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->next_reset, "2025-07-19 01:00");
	ck_assert_str_eq(cfg->default_model, "gemini-1.5-pro-latest");
	ck_assert_int_eq(cfg->reset_hour, 1);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_create_default)
{
	struct config	*cfg;
	struct stat	 st;
	char		 path[PATH_MAX + 32], want[PATH_MAX + 64];
	mode_t		 old;

	/* 0600 whatever the umask: loosest and tightest. */
	old = umask(0);
	ck_assert_msg(cfg_create_default(cfgpath, err, sizeof(err)) == 0,
	    "%s", err);
	(void)snprintf(path, sizeof(path), "%s/other.json", tmpdir);
	(void)umask(0777);
	ck_assert_msg(cfg_create_default(path, err, sizeof(err)) == 0,
	    "%s", err);
	(void)umask(old);
	ck_assert_int_eq(stat(cfgpath, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);
	ck_assert_msg(S_ISREG(st.st_mode), "not a regular file");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0600);

	cfg = cfg_load(cfgpath, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->placeholder_keys, 1);
	ck_assert_uint_eq(cfg->nkeys, 3);
	ck_assert_uint_eq(cfg->npriority, 2);
	ck_assert_str_eq(cfg->keys[0].key, "YOUR_PRIORITY_GEMINI_API_KEY_1");
	ck_assert_str_eq(cfg->keys[2].key, "YOUR_SECONDARY_GEMINI_API_KEY_1");
	ck_assert_uint_eq(cfg->nmodels, 2);
	ck_assert_str_eq(cfg->models[0].name, "gemini-3.8-flash");
	ck_assert_int_eq(cfg->models[0].tpm_limit, 250000);
	ck_assert_int_eq(cfg->models[0].tpd_limit, CFG_NOLIMIT);
	ck_assert_int_eq(cfg->models[0].rpm_limit, 5);
	ck_assert_int_eq(cfg->models[0].rpd_limit, 20);
	ck_assert_str_eq(cfg->models[1].name, "gemini-3.5-flash-lite");
	ck_assert_int_eq(cfg->models[1].rpm_limit, 15);
	ck_assert_int_eq(cfg->models[1].rpd_limit, 500);
	ck_assert_str_eq(cfg->default_model, "gemini-3.8-flash");
	ck_assert_str_eq(cfg->reset_after, "00:00");
	ck_assert_str_eq(cfg->next_reset, "");
	ck_assert_str_eq(cfg->timezone, "America/Los_Angeles");
	ck_assert_str_eq(cfg->listen, "127.0.0.1:48888");
	ck_assert_str_eq(cfg->upstream_host,
	    "generativelanguage.googleapis.com");
	(void)snprintf(want, sizeof(want), "%s/key_usage.json", realdir);
	ck_assert_str_eq(cfg->usage_file, want);
	(void)snprintf(want, sizeof(want), "%s/gemini-looper.pid", realdir);
	ck_assert_str_eq(cfg->pidfile, want);
	cfg_free(cfg);

	/* Never over an existing file, which is left as it was. */
	ck_assert_int_eq(cfg_create_default(cfgpath, err, sizeof(err)), -1);
	(void)snprintf(want, sizeof(want), "%s: %s", cfgpath, strerror(EEXIST));
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(stat(cfgpath, &st), 0);
	ck_assert_int_gt(st.st_size, 100);

	(void)snprintf(path, sizeof(path), "%s/no/such/dir.json", tmpdir);
	ck_assert_int_eq(cfg_create_default(path, err, sizeof(err)), -1);
	(void)snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_missing_file)
{
	char	 path[PATH_MAX + 32], want[PATH_MAX + 128];

	(void)snprintf(path, sizeof(path), "%s/nope.json", tmpdir);
	ck_assert_ptr_null(cfg_load(path, err, sizeof(err)));
	(void)snprintf(want, sizeof(want), "%s: %s", path, strerror(ENOENT));
	ck_assert_str_eq(err, want);

	ck_assert_ptr_null(cfg_load(tmpdir, err, sizeof(err)));
	(void)snprintf(want, sizeof(want), "%s: %s", tmpdir, strerror(EISDIR));
	ck_assert_str_eq(err, want);
}
END_TEST

/* JSON syntax errors: line and column of the offending character. */
static const struct {
	const char	*text;
	const char	*where;
} syntax[] = {
	/* a missing comma: at the next member's opening quote */
	{ "{\n  \"listen\": \"x\"\n  \"upstream\": \"y\"\n}\n", ":3:3:" },
	/* a trailing comma: at the closing brace */
	{ "{\n\t\"listen\": \"x\",\n}\n", ":3:1:" },
	{ "{\"a\": 1,}", ":1:9:" },
	/* a name that is not a string: at its first character */
	{ "{\n  listen: 1\n}", ":2:3:" },
	{ "{\"a\": [1, {x}]}", ":1:12:" },
	{ "{:}", ":1:2:" },
	/* a bad value: at its first character */
	{ "{\"a\": [1,[x]]}", ":1:11:" },
	{ "{\"a\": [1,x]}", ":1:10:" },
	{ "{\"a\" 1}", ":1:6:" },
	/* garbage after the document */
	{ "{\"listen\": 1} junk\n", ":1:15:" },
	/* an empty file and a truncated one: at the end */
	{ "", ":1:1:" },
	{ "{\"listen\": ", ":1:12:" },
	{ "{\n\"a\": [1, 2,\n", ":3:1:" },
	/* columns count characters, not bytes: "é" is one */
	{ "{\"\xc3\xa9\": x}", ":1:7:" },
	/* a bare word */
	{ "{\n  \"max_wait_s\": five\n}", ":2:17:" },
	/* a NUL byte inside the file */
	{ "{\"a\": 1, \"b\0\": 2}", ":1:12:" },
};

START_TEST(test_syntax)
{
	char	 want[PATH_MAX + 128];
	size_t	 len;
	FILE	*f;

	len = strlen(syntax[_i].text);
	if (_i == (int)(sizeof(syntax) / sizeof(syntax[0])) - 1)
		len = 17;	/* the one with a NUL in it */
	f = fopen(cfgpath, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(syntax[_i].text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_ptr_null(cfg_load(cfgpath, err, sizeof(err)));
	(void)snprintf(want, sizeof(want), "%s%s JSON syntax error", cfgpath,
	    syntax[_i].where);
	ck_assert_str_eq(err, want);
}
END_TEST

/*
 * Bad input: text, and what the message must hold after "<path>: ".  The
 * message must start with the path and the field.
 */
static const struct {
	const char	*text;
	const char	*want;
} bad[] = {
	{ "[]", "must hold a JSON object (got an array)" },
	{ "42", "must hold a JSON object (got 42)" },
	{ WITH("\"listen\": \"a:1\", \"listen\": \"b:2\""),
	    "listen: given more than once" },

	/* keys */
	{ "{" MODELS "}",
	    "priority_keys: no API keys: at least one is needed" },
	{ KEYLIST("\"priority_keys\": [], \"secondary_keys\": []"),
	    "priority_keys: no API keys" },
	{ KEYLIST("\"priority_keys\": \"" K1 "\""),
	    "priority_keys: must be an array of key strings or objects (got a string)" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\"], \"secondary_keys\": {}"),
	    "secondary_keys: must be an array of key strings or objects (got an object)" },
	{ KEYLIST("\"priority_keys\": [5]"),
	    "priority_keys[0]: must be a non-empty string (got 5)" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\", \"\"]"),
	    "priority_keys[1]: must be a non-empty string (got an empty "
	    "string)" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\"], \"secondary_keys\": "
	    "[\"TESTKEY with space\"]"),
	    "secondary_keys[0]: must be printable ASCII without spaces "
	    "(character 8 is not)" },
	{ KEYLIST("\"priority_keys\": [\"TESTKEY\\u00e9\"]"),
	    "priority_keys[0]: must be printable ASCII without spaces" },
	{ KEYLIST("\"priority_keys\": [\"TESTKEY\\n\"]"),
	    "priority_keys[0]: must be printable ASCII without spaces" },
	{ KEYLIST("\"priority_keys\": [\"TESTKEY"
	    "0123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789"
	    "0\"]"),
	    "priority_keys[0]: too long (128 characters, at most 127)" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\", \"" K2 "\", \"" K1 "\"]"),
	    "priority_keys[2]: duplicate of priority_keys[0]" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\", \"" K2 "\", \"" K3 "\"], "
	    "\"secondary_keys\": [\"" K3 "\"]"),
	    "secondary_keys[0]: duplicate of priority_keys[2]" },
	{ KEYLIST("\"priority_keys\": [\"" K1 "\"], "
	    "\"secondary_keys\": [\"" K2 "\", \"" K3 "\", \"" K2 "\"]"),
	    "secondary_keys[2]: duplicate of secondary_keys[0]" },
	/* the earliest repeat is named, not the first in sort order */
	{ KEYLIST("\"priority_keys\": [\"" K2 "\", \"" K1 "\", \"" K1 "\", "
	    "\"" K2 "\"]"),
	    "priority_keys[2]: duplicate of priority_keys[1]" },

	/* models */
	{ "{" KEYS "}", "models: missing" },
	{ "{" KEYS ", \"models\": []}", "models: must be an object (got an "
	    "array)" },
	{ "{" KEYS ", \"models\": null}", "models: must be an object (got "
	    "null)" },
	{ "{" KEYS ", \"models\": {}}", "models: must name at least one "
	    "model" },
	{ MODEL("5"), "models.gemini-2.5-pro: must be an object of limits "
	    "(got 5)" },
	{ MODEL("null"), "models.gemini-2.5-pro: must be an object of limits "
	    "(got null)" },
	{ MODEL("{\"tpm_limit\": 0}"), "models.gemini-2.5-pro.tpm_limit: "
	    "must be a positive integer or null (got 0)" },
	{ MODEL("{\"tpm_limit\": -5}"), "models.gemini-2.5-pro.tpm_limit: "
	    "must be a positive integer or null (got -5)" },
	{ MODEL("{\"tpd_limit\": 1.5}"), "models.gemini-2.5-pro.tpd_limit: "
	    "must be a positive integer or null (got 1.5)" },
	{ MODEL("{\"rpm_limit\": \"100\"}"), "models.gemini-2.5-pro.rpm_limit: "
	    "must be a positive integer or null (got a string)" },
	{ MODEL("{\"rpd_limit\": true}"), "models.gemini-2.5-pro.rpd_limit: "
	    "must be a positive integer or null (got true)" },
	{ MODEL("{\"rpd_limit\": 1e300}"), "models.gemini-2.5-pro.rpd_limit: "
	    "must be a positive integer or null (got 1e+300)" },
	{ MODEL("{\"tpm_limit\": [1]}"), "models.gemini-2.5-pro.tpm_limit: "
	    "must be a positive integer or null (got an array)" },
	{ MODEL("{\"sessions_limit\": 0}"),
	    "models.gemini-2.5-pro.sessions_limit: must be a positive integer "
	    "or null (got 0)" },
	{ MODEL("{\"sessions_limit\": 2.5}"),
	    "models.gemini-2.5-pro.sessions_limit: must be a positive integer "
	    "or null (got 2.5)" },
	{ MODEL("{\"sessions_limit\": \"4\"}"),
	    "models.gemini-2.5-pro.sessions_limit: must be a positive integer "
	    "or null (got a string)" },
	{ MODEL("{\"tpm_limit\": 1, \"tpm_limit\": 2}"),
	    "models.gemini-2.5-pro.tpm_limit: given more than once" },
	{ "{" KEYS ", \"models\": {\"m\": {}, \"m\": {}}}",
	    "models.m: model given more than once" },
	{ "{" KEYS ", \"models\": {\"\": {}}}",
	    "models: a model name must not be empty" },
	{ "{" KEYS ", \"models\": {\"models/gemini\": {}}}",
	    "models: model name \"models/gemini\" must be printable ASCII "
	    "without spaces" },
	{ "{" KEYS ", \"models\": {\"gemini pro\": {}}}",
	    "models: model name \"gemini pro\" must be" },
	{ "{" KEYS ", \"models\": {\"gemini:pro\": {}}}",
	    "models: model name \"gemini:pro\" must be" },
	{ "{" KEYS ", \"models\": {\"a\\tb\": {}}}",
	    "models: model name \"a\\x09b\" must be" },
	{ WITH("\"default_model\": \"gemini-9\""),
	    "default_model: \"gemini-9\" is not one of the models" },
	{ WITH("\"default_model\": null"),
	    "default_model: must be a non-empty string (got null)" },

	/* reset times and zones */
	{ WITH("\"reset_after\": \"24:00\""),
	    "reset_after: must be \"HH:MM\" (got \"24:00\")" },
	{ WITH("\"reset_after\": \"25:00\""),
	    "reset_after: must be \"HH:MM\" (got \"25:00\")" },
	{ WITH("\"reset_after\": \"1:5\""),
	    "reset_after: must be \"HH:MM\" (got \"1:5\")" },
	{ WITH("\"reset_after\": \"ab:cd\""),
	    "reset_after: must be \"HH:MM\" (got \"ab:cd\")" },
	{ WITH("\"reset_after\": \"12:60\""),
	    "reset_after: must be \"HH:MM\" (got \"12:60\")" },
	{ WITH("\"reset_after\": \"01:00 \""),
	    "reset_after: must be \"HH:MM\" (got \"01:00 \")" },
	{ WITH("\"reset_after\": 100"),
	    "reset_after: must be \"HH:MM\" (got 100)" },
	{ WITH("\"next_quota_reset_datetime\": \"2025-02-29 01:00\""),
	    "next_quota_reset_datetime: must be a date and time "
	    "\"YYYY-MM-DD HH:MM\" or null (got \"2025-02-29 01:00\")" },
	{ WITH("\"next_quota_reset_datetime\": \"2025-07-19T01:00\""),
	    "next_quota_reset_datetime: must be a date and time" },
	{ WITH("\"next_quota_reset_datetime\": \"2025-07-19 24:00\""),
	    "next_quota_reset_datetime: must be a date and time" },
	{ WITH("\"next_quota_reset_datetime\": \"2025-13-01 00:00\""),
	    "next_quota_reset_datetime: must be a date and time" },
	{ WITH("\"next_quota_reset_datetime\": 20250719"),
	    "next_quota_reset_datetime: must be \"YYYY-MM-DD HH:MM\" or null "
	    "(got 20250719)" },
	{ WITH("\"timezone\": \"Mars/Olympus\""),
	    "timezone: unknown time zone \"Mars/Olympus\"" },
	{ WITH("\"timezone\": \"Europe/NotAZone\""),
	    "timezone: unknown time zone \"Europe/NotAZone\"" },
	{ WITH("\"timezone\": \"Europe\""),
	    "timezone: unknown time zone \"Europe\"" },
	{ WITH("\"timezone\": \"../etc/passwd\""),
	    "timezone: must be an IANA time zone name such as "
	    "\"America/Los_Angeles\" (got \"../etc/passwd\")" },
	{ WITH("\"timezone\": \"Europe/../../../etc/passwd\""),
	    "timezone: must be an IANA time zone name" },
	{ WITH("\"timezone\": \"/etc/localtime\""),
	    "timezone: must be an IANA time zone name" },
	{ WITH("\"timezone\": \"\""),
	    "timezone: must be an IANA time zone name" },
	{ WITH("\"timezone\": 1"),
	    "timezone: must be an IANA time zone name such as "
	    "\"America/Los_Angeles\" (got 1)" },

	/* addresses */
	{ WITH("\"listen\": \"localhost\""),
	    "listen: must be \"host:port\", \"[v6addr]:port\", \"*:port\" or "
	    "\":port\" (got \"localhost\")" },
	{ WITH("\"listen\": \"127.0.0.1:65536\""),
	    "listen: port must be a number from 1 to 65535, or 0 for any free "
	    "one (got \"127.0.0.1:65536\")" },
	{ WITH("\"listen\": \"127.0.0.1:http\""), "listen: port must be" },
	{ WITH("\"listen\": \"127.0.0.1:\""), "listen: port must be" },
	{ WITH("\"listen\": \"::1:80\""),
	    "listen: an IPv6 address must be in brackets" },
	{ WITH("\"listen\": \"[zz::1]:80\""),
	    "listen: \"zz::1\" is not an IPv6 address" },
	{ WITH("\"listen\": \"[::1]80\""), "listen: must be \"host:port\"" },
	{ WITH("\"listen\": \"bad host:80\""), "listen: must be \"host:port\"" },
	{ WITH("\"listen\": 48888"),
	    "listen: must be a string \"host:port\" (got 48888)" },
	{ WITH("\"upstream\": \"http://generativelanguage.googleapis.com\""),
	    "upstream: must be an https URL (got "
	    "\"http://generativelanguage.googleapis.com\")" },
	{ WITH("\"upstream\": \"generativelanguage.googleapis.com\""),
	    "upstream: must be an https URL" },
	{ WITH("\"upstream\": \"https://\""),
	    "upstream: must be \"https://host[:port][/prefix]\"" },
	{ WITH("\"upstream\": \"https://host:99999\""),
	    "upstream: port must be a number from 1 to 65535" },
	{ WITH("\"upstream\": \"https://host:\""), "upstream: port must be" },
	{ WITH("\"upstream\": \"https://host:0\""),
	    "upstream: port must be a number from 1 to 65535" },
	{ WITH("\"upstream\": \"https://TESTKEYuser:TESTKEYpw@host\""),
	    "upstream: must not hold user information" },
	{ WITH("\"upstream\": \"http://TESTKEYuser:TESTKEYpw@host\""),
	    "upstream: must be an https URL (got a URL with user "
	    "information)" },
	{ WITH("\"upstream\": \"https://host/v1beta?key=1\""),
	    "upstream: must not have a query or a fragment" },
	{ WITH("\"upstream\": \"https://[::1/x\""),
	    "upstream: must be \"https://host[:port][/prefix]\"" },
	{ WITH("\"upstream\": \"https://host/a b\""),
	    "upstream: must be \"https://host[:port][/prefix]\"" },
	{ WITH("\"upstream\": null"), "upstream: must be an https URL (got "
	    "null)" },
	{ WITH("\"upstream_ca_file\": \"missing.pem\""),
	    "/missing.pem: No such file or directory" },
	{ WITH("\"upstream_ca_file\": \"zoneinfo\""),
	    "/zoneinfo: not a regular file" },
	{ WITH("\"upstream_ca_file\": 1"),
	    "upstream_ca_file: must be a non-empty string or null (got 1)" },

	/* workers */
	{ WITH("\"workers\": {\"min_spare\": 5, \"max_spare\": 3}"),
	    "workers.min_spare: must not exceed workers.max_spare (5 > 3)" },
	{ WITH("\"workers\": {\"start\": 10, \"max\": 5}"),
	    "workers.start: must not exceed workers.max (10 > 5)" },
	{ WITH("\"workers\": {\"max_spare\": 10, \"max\": 5}"),
	    "workers.max_spare: must not exceed workers.max (10 > 5)" },
	{ WITH("\"workers\": {\"max\": 1.5}"),
	    "workers.max: must be a positive integer (got 1.5)" },
	{ WITH("\"workers\": {\"start\": 0}"),
	    "workers.start: must be a positive integer (got 0)" },
	{ WITH("\"workers\": {\"max\": 5000}"),
	    "workers.max: must be at most 4096 (got 5000)" },
	{ WITH("\"workers\": 0"), "workers: must be a positive integer "
	    "(got 0)" },
	{ WITH("\"workers\": 4097"), "workers: must be at most 4096 "
	    "(got 4097)" },
	{ WITH("\"workers\": \"4\""), "workers: must be a number of workers "
	    "or an object" },

	/* paths, logging, user, tokens */
	{ WITH("\"usage_file\": null"),
	    "usage_file: must be a non-empty string (got null)" },
	{ WITH("\"usage_file\": \"\""),
	    "usage_file: must be a non-empty string (got an empty string)" },
	{ WITH("\"pidfile\": 3"), "pidfile: must be a non-empty string "
	    "(got 3)" },
	{ WITH("\"log_file\": false"),
	    "log_file: must be a non-empty string or null (got false)" },
	{ WITH("\"log_level\": \"loud\""),
	    "log_level: must be one of \"error\", \"warn\", \"notice\", "
	    "\"info\", \"debug\" (got \"loud\")" },
	{ WITH("\"log_level\": 7"), "log_level: must be one of" },
	{ WITH("\"user\": \"\""),
	    "user: must be a non-empty string or null (got an empty string)" },
	{ WITH("\"user\": \"" "0123456789012345678901234567890123456789"
	    "0123456789012345678901234\""),
	    "user: too long (65 bytes, at most 63)" },
	{ WITH("\"user\": \"no-such-user-gl\""),
	    "user: no such user \"no-such-user-gl\"" },
	{ WITH("\"user\": \"root\""), "user: \"root\" is uid 0" },
	{ KEYLIST("\"priority_keys\": [{\"project\": \"p\"}]"),
	    "priority_keys[0].key: missing: an entry given as an object "
	    "needs its key" },
	{ KEYLIST("\"priority_keys\": [{\"key\": \"AIzaSECRET1\", "
	    "\"project\": 3}]"),
	    "priority_keys[0].project: must be a non-empty string or null "
	    "(got 3)" },
	{ KEYLIST("\"secondary_keys\": [\"AIzaSECRET0\", {\"key\": "
	    "\"AIzaSECRET1\", \"project\": \"a\\\"b\"}]"),
	    "secondary_keys[1].project: must not hold control characters, "
	    "quotes or backslashes (character 2 does)" },
	{ KEYLIST("\"priority_keys\": [{\"key\": \"AIzaSECRET1\", "
	    "\"label\": \"\"}]"),
	    "priority_keys[0].label: must be a non-empty string or null "
	    "(got an empty string)" },
	{ KEYLIST("\"priority_keys\": [{\"key\": \"AIza SECRET1\"}]"),
	    "priority_keys[0].key: must be printable ASCII without spaces" },
	{ KEYLIST("\"priority_keys\": [{\"key\": \"AIzaSECRET1\"}, "
	    "\"AIzaSECRET1\"]"),
	    "priority_keys[1]: duplicate of priority_keys[0]" },
	{ WITH("\"access_tokens\": \"TESTTOKEN\""),
	    "access_tokens: must be an array of strings (got a string)" },
	{ WITH("\"access_tokens\": [\"TESTTOKEN-1\", \"\"]"),
	    "access_tokens[1]: must be a non-empty string (got an empty "
	    "string)" },
	{ WITH("\"access_tokens\": [\"TESTTOKEN 1\"]"),
	    "access_tokens[0]: must be printable ASCII without spaces" },
	{ WITH("\"admin_token\": \"\""),
	    "admin_token: must be a non-empty string (got an empty string)" },
	{ WITH("\"admin_token\": \"TESTTOKEN\\r\\n\""),
	    "admin_token: must be printable ASCII without spaces" },
	{ WITH("\"admin_token\": 5"),
	    "admin_token: must be a non-empty string or null (got 5)" },

	/* integers */
	{ WITH("\"max_body_bytes\": 0"),
	    "max_body_bytes: must be a positive integer (got 0)" },
	{ WITH("\"max_body_bytes\": 1e20"),
	    "max_body_bytes: must be a positive integer (got 1e+20)" },
	{ WITH("\"max_wait_s\": -1"),
	    "max_wait_s: must be a non-negative integer (got -1)" },
	{ WITH("\"max_wait_s\": \"5\""),
	    "max_wait_s: must be a non-negative integer (got a string)" },
	{ WITH("\"max_attempts\": 0"),
	    "max_attempts: must be a positive integer (got 0)" },
	{ WITH("\"max_attempts\": 65"),
	    "max_attempts: must be at most 64 (got 65)" },
	{ WITH("\"key_probe\": 60"),
	    "key_probe: must be an object" },
	{ WITH("\"key_probe\": {\"first_s\": -1}"),
	    "key_probe.first_s: must be a non-negative integer (got -1)" },
	{ WITH("\"key_probe\": {\"first_s\": 600, \"max_s\": 60}"),
	    "key_probe.max_s: must not be below key_probe.first_s (60 < 600)" },
	{ WITH("\"key_probe\": {\"per_s\": 0}"),
	    "key_probe.per_s: must be a positive integer (got 0)" },
	{ WITH("\"key_probe\": {\"per_s\": 101}"),
	    "key_probe.per_s: must be at most 100 (got 101)" },
	{ WITH("\"resolver_valid_s\": -1"),
	    "resolver_valid_s: must be a non-negative integer (got -1)" },
	{ WITH("\"storm\": 3"),
	    "storm: must be an object {\"keys\": N, \"window_s\": N} "
	    "(got 3)" },
	{ WITH("\"storm\": {\"keys\": 17}"),
	    "storm.keys: must be at most 16 (got 17)" },
	{ WITH("\"storm\": {\"keys\": -1}"),
	    "storm.keys: must be a non-negative integer (got -1)" },
	{ WITH("\"storm\": {\"window_s\": 0}"),
	    "storm.window_s: must be a positive integer (got 0)" },
	{ WITH("\"storm\": {\"keys\": 2, \"keys\": 3}"),
	    "storm.keys: given more than once" },
	{ WITH("\"live\": 3"),
	    "live: must be an object {\"max_message_bytes\": N, "
	    "\"ping_s\": N} (got 3)" },
	{ WITH("\"live\": {\"max_message_bytes\": 1023}"),
	    "live.max_message_bytes: must be at least 1024 (got 1023)" },
	{ WITH("\"live\": {\"max_message_bytes\": 0}"),
	    "live.max_message_bytes: must be a positive integer (got 0)" },
	{ WITH("\"live\": {\"max_message_bytes\": 1073741825}"),
	    "live.max_message_bytes: must be at most 1073741824 "
	    "(got 1073741825)" },
	{ WITH("\"live\": {\"max_message_bytes\": null}"),
	    "live.max_message_bytes: must be a positive integer (got null)" },
	{ WITH("\"live\": {\"ping_s\": -1}"),
	    "live.ping_s: must be a non-negative integer (got -1)" },
	{ WITH("\"live\": {\"ping_s\": 3601}"),
	    "live.ping_s: must be at most 3600 (got 3601)" },
	{ WITH("\"live\": {\"ping_s\": 1, \"ping_s\": 2}"),
	    "live.ping_s: given more than once" },
	{ WITH("\"persist_interval_s\": 0"),
	    "persist_interval_s: must be a positive integer (got 0)" },
	{ WITH("\"shutdown_timeout_s\": 100000"),
	    "shutdown_timeout_s: must be at most 86400 (got 100000)" },
	{ WITH("\"client_timeout_s\": true"),
	    "client_timeout_s: must be a positive integer (got true)" },
	{ WITH("\"keepalive_timeout_s\": null"),
	    "keepalive_timeout_s: must be a non-negative integer (got null)" },
	{ WITH("\"upstream_timeout_s\": 2.5"),
	    "upstream_timeout_s: must be a positive integer (got 2.5)" },
};

START_TEST(test_bad)
{
	struct config	*cfg;
	char		 prefix[PATH_MAX + 8];

	cfg = load(bad[_i].text);
	ck_assert_msg(cfg == NULL, "loaded: %s", bad[_i].text);
	(void)snprintf(prefix, sizeof(prefix), "%s: ", cfgpath);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
	    "no path in: %s", err);
	ck_assert_msg(strstr(err + strlen(prefix), bad[_i].want) != NULL,
	    "wanted \"%s\" in: %s", bad[_i].want, err);
	assert_clean(err);
}
END_TEST

/* A FIFO as upstream_ca_file is refused, not waited on (a reload hung). */
START_TEST(test_ca_fifo)
{
	struct config	*cfg;
	char		 path[PATH_MAX];

	(void)snprintf(path, sizeof(path), "%s/ca.fifo", tmpdir);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	cfg = load(WITH("\"upstream_ca_file\": \"ca.fifo\""));
	ck_assert_ptr_null(cfg);
	ck_assert_msg(strstr(err, "/ca.fifo: not a regular file") != NULL,
	    "%s", err);
}
END_TEST

/* Good variants of the fields with several forms. */
/* Keys as objects: project and label; plain strings in the same list. */
START_TEST(test_key_objects)
{
	struct config	*cfg;

	cfg = load(KEYLIST("\"priority_keys\": [{\"key\": \"AIzaSECRET1\", "
	    "\"project\": \"team-a\", \"label\": \"alice's key\"}, "
	    "\"AIzaSECRET2\", {\"key\": \"AIzaSECRET3\", \"project\": "
	    "\"team-a\", \"label\": null}], \"secondary_keys\": "
	    "[{\"key\": \"AIzaSECRET4\", \"project\": \"team b\"}]"));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_int_eq(cfg->nkeys, 4);
	ck_assert_int_eq(cfg->npriority, 3);
	ck_assert_str_eq(cfg->keys[0].key, "AIzaSECRET1");
	ck_assert_str_eq(cfg->keys[0].project, "team-a");
	ck_assert_str_eq(cfg->keys[0].label, "alice's key");
	ck_assert_str_eq(cfg->keys[1].project, "");
	ck_assert_str_eq(cfg->keys[1].label, "");
	ck_assert_str_eq(cfg->keys[2].project, "team-a");
	ck_assert_str_eq(cfg->keys[2].label, "");
	ck_assert_str_eq(cfg->keys[3].project, "team b");
	ck_assert_int_eq(cfg->keys[3].tier, CFG_TIER_SECONDARY);
	ck_assert_int_eq(cfg->nprojects, 2);
	cfg_free(cfg);
}
END_TEST

START_TEST(test_forms)
{
	struct config	*cfg;

	cfg = load(WITH("\"listen\": \"*:80\", \"upstream\": "
	    "\"https://127.0.0.1:9443\", \"workers\": 6"));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->listen_host, "*");
	ck_assert_str_eq(cfg->listen_port, "80");
	ck_assert_str_eq(cfg->upstream_host, "127.0.0.1");
	ck_assert_str_eq(cfg->upstream_port, "9443");
	ck_assert_str_eq(cfg->upstream_prefix, "");
	ck_assert_int_eq(cfg->start_workers, 6);
	ck_assert_int_eq(cfg->min_spare, 1);
	ck_assert_int_eq(cfg->max_spare, 6);
	ck_assert_int_eq(cfg->max_workers, 6);
	cfg_free(cfg);

	cfg = load(WITH("\"listen\": \":65535\", \"upstream\": "
	    "\"HTTPS://[::1]:8443/a/b//\", \"workers\": {\"max\": 3}"));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->listen_host, "*");
	ck_assert_str_eq(cfg->listen_port, "65535");
	ck_assert_str_eq(cfg->upstream, "HTTPS://[::1]:8443/a/b");
	ck_assert_str_eq(cfg->upstream_host, "::1");
	ck_assert_str_eq(cfg->upstream_port, "8443");
	ck_assert_str_eq(cfg->upstream_prefix, "/a/b");
	ck_assert_int_eq(cfg->start_workers, 3);
	ck_assert_int_eq(cfg->min_spare, 2);
	ck_assert_int_eq(cfg->max_spare, 3);
	ck_assert_int_eq(cfg->max_workers, 3);
	cfg_free(cfg);

	cfg = load(WITH("\"listen\": \"localhost:1\", \"upstream\": "
	    "\"https://example.test/\", \"workers\": {\"min_spare\": 10}, "
	    "\"log_level\": \"warn\", \"next_quota_reset_datetime\": \"\""));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->listen_host, "localhost");
	ck_assert_str_eq(cfg->listen_port, "1");
	ck_assert_str_eq(cfg->upstream, "https://example.test");
	ck_assert_str_eq(cfg->upstream_port, "443");
	ck_assert_str_eq(cfg->upstream_prefix, "");
	ck_assert_int_eq(cfg->min_spare, 10);
	ck_assert_int_eq(cfg->max_spare, 10);
	ck_assert_int_eq(cfg->max_workers, 256);
	ck_assert_int_eq(cfg->log_level, LOG_WARNING);
	ck_assert_str_eq(cfg->next_reset, "");
	cfg_free(cfg);

	cfg = load(WITH("\"listen\": \"[fe80::1%lo]:8080\", "
	    "\"workers\": {\"max_spare\": 300}, \"log_level\": \"error\", "
	    "\"next_quota_reset_datetime\": \"2024-02-29 23:59\", "
	    "\"reset_after\": \"23:59\", \"max_body_bytes\": 9007199254740992"));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->listen_host, "fe80::1%lo");
	ck_assert_int_eq(cfg->max_spare, 300);
	ck_assert_int_eq(cfg->max_workers, 300);
	ck_assert_int_eq(cfg->log_level, LOG_ERR);
	ck_assert_int_eq(cfg->reset_hour, 23);
	ck_assert_int_eq(cfg->reset_min, 59);
	ck_assert_int_eq(cfg->max_body_bytes, 9007199254740992LL);
	cfg_free(cfg);

	/* "UTC" needs no zone file: tzdata may not be installed. */
	ck_assert_int_eq(setenv("TZDIR", "/nonexistent", 1), 0);
	cfg = load(WITH("\"timezone\": \"UTC\", \"log_level\": \"notice\""));
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_str_eq(cfg->timezone, "UTC");
	ck_assert_int_eq(cfg->log_level, LOG_NOTICE);
	cfg_free(cfg);
}
END_TEST

/* Without TZDIR, the system's zoneinfo is used (when tzdata is there). */
START_TEST(test_system_zoneinfo)
{
	struct config	*cfg;

	ck_assert_int_eq(unsetenv("TZDIR"), 0);
	if (access("/usr/share/zoneinfo/Europe/Berlin", R_OK) == 0) {
		cfg = load(WITH("\"timezone\": \"Europe/Berlin\""));
		ck_assert_msg(cfg != NULL, "%s", err);
		cfg_free(cfg);
	}
	ck_assert_ptr_null(load(WITH("\"timezone\": \"Mars/Olympus\"")));
	ck_assert_msg(strstr(err, "timezone: unknown time zone "
	    "\"Mars/Olympus\" (no such zone file in /usr/share/zoneinfo)") !=
	    NULL, "%s", err);
}
END_TEST

/* Unknown fields are warned about, by name, and ignored. */
START_TEST(test_unknown_field)
{
	struct config	*cfg;
	char		 logpath[PATH_MAX + 16], buf[4096], want[PATH_MAX + 128];
	ssize_t		 n;
	int		 fd, saved;

	(void)snprintf(logpath, sizeof(logpath), "%s/log.txt", tmpdir);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ne(fd, -1);
	saved = dup(STDERR_FILENO);
	ck_assert_int_ne(saved, -1);
	ck_assert_int_ne(dup2(fd, STDERR_FILENO), -1);
	cfg = load("{" KEYS ", \"models\": {\"m\": {\"colour\": \"red\"}}, "
	    "\"bogus_field\": [1, 2], \"workers\": {\"spare\": 1}, "
	    "\"live\": {\"pings\": 20}}");
	ck_assert_int_ne(dup2(saved, STDERR_FILENO), -1);
	close(saved);
	ck_assert_msg(cfg != NULL, "%s", err);
	cfg_free(cfg);

	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	n = read(fd, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	close(fd);
	(void)snprintf(want, sizeof(want),
	    "%s: bogus_field: unknown field, ignored\n", cfgpath);
	ck_assert_msg(strstr(buf, want) != NULL, "log: %s", buf);
	(void)snprintf(want, sizeof(want),
	    "%s: models.m.colour: unknown field, ignored\n", cfgpath);
	ck_assert_msg(strstr(buf, want) != NULL, "log: %s", buf);
	(void)snprintf(want, sizeof(want),
	    "%s: workers.spare: unknown field, ignored\n", cfgpath);
	ck_assert_msg(strstr(buf, want) != NULL, "log: %s", buf);
	(void)snprintf(want, sizeof(want),
	    "%s: live.pings: unknown field, ignored\n", cfgpath);
	ck_assert_msg(strstr(buf, want) != NULL, "log: %s", buf);
	ck_assert_ptr_null(strstr(buf, "TESTKEY"));
}
END_TEST

/* Messages name the file as given; paths are resolved from its dir. */
START_TEST(test_relative)
{
	struct config	*cfg;
	char		 cwd[PATH_MAX], want[PATH_MAX + 64], sub[PATH_MAX + 8];

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	(void)snprintf(sub, sizeof(sub), "%s/sub", tmpdir);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	put("sub/config.json", WITH("\"usage_file\": \"../u.json\", "
	    "\"log_file\": \"l.log\""));
	put("sub/bad.json", WITH("\"listen\": \"nowhere\""));
	ck_assert_int_eq(chdir(tmpdir), 0);

	cfg = cfg_load("sub/config.json", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	(void)snprintf(want, sizeof(want), "%s/sub/config.json", realdir);
	ck_assert_str_eq(cfg->path, want);
	(void)snprintf(want, sizeof(want), "%s/sub", realdir);
	ck_assert_str_eq(cfg->dir, want);
	(void)snprintf(want, sizeof(want), "%s/sub/../u.json", realdir);
	ck_assert_str_eq(cfg->usage_file, want);
	(void)snprintf(want, sizeof(want), "%s/sub/l.log", realdir);
	ck_assert_str_eq(cfg->log_file, want);
	cfg_free(cfg);

	ck_assert_ptr_null(cfg_load("sub/bad.json", err, sizeof(err)));
	ck_assert_msg(strncmp(err, "sub/bad.json: listen: ", 22) == 0, "%s",
	    err);

	ck_assert_int_eq(chdir("sub"), 0);
	cfg = cfg_load("config.json", err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	(void)snprintf(want, sizeof(want), "%s/sub/config.json", realdir);
	ck_assert_str_eq(cfg->path, want);
	cfg_free(cfg);

	ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

/* A small error buffer truncates, never overflows. */
START_TEST(test_small_err)
{
	char	 small[16];

	put("config.json", WITH("\"listen\": \"nowhere\""));
	memset(small, 'X', sizeof(small));
	ck_assert_ptr_null(cfg_load(cfgpath, small, sizeof(small)));
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_ptr_null(cfg_load(cfgpath, NULL, 0));
}
END_TEST

static double
elapsed(const struct timespec *a)
{
	struct timespec	 b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) + (b.tv_nsec - a->tv_nsec) / 1e9;
}

/*
 * 10,000 keys: 5,000 in each list.  dupat >= 0 makes the last secondary
 * key a copy of priority key dupat.  The tests' time bound (2 s, under
 * the sanitizers, on a busy machine) only catches a quadratic check: a
 * load takes tens of ms.
 */
static char *
many_keys(int dupat)
{
	char	*text, *o;
	size_t	 cap = 10000 * 64 + 4096;
	int	 i;

	text = malloc(cap);
	ck_assert_ptr_nonnull(text);
	o = text;
	o += sprintf(o, "{\"priority_keys\": [");
	for (i = 0; i < 5000; i++)
		o += sprintf(o, "%s\"AIzaTESTKEY%030d\"", i ? ", " : "", i);
	o += sprintf(o, "], \"secondary_keys\": [");
	for (i = 5000; i < 10000; i++)
		o += sprintf(o, "%s\"AIzaTESTKEY%030d\"", i > 5000 ? ", " : "",
		    i == 9999 && dupat >= 0 ? dupat : i);
	o += sprintf(o, "], " MODELS "}");
	return text;
}

START_TEST(test_many_keys)
{
	struct config	*cfg;
	struct timespec	 t0;
	char		*text;
	double		 s;
	size_t		 i;

	text = many_keys(-1);
	put("config.json", text);
	free(text);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cfg = cfg_load(cfgpath, err, sizeof(err));
	s = elapsed(&t0);
	ck_assert_msg(cfg != NULL, "%s", err);
	ck_assert_msg(s < 2.0, "10,000 keys took %.3f s", s);
	ck_assert_uint_eq(cfg->nkeys, 10000);
	ck_assert_uint_eq(cfg->npriority, 5000);
	for (i = 0; i < cfg->nkeys; i++)
		ck_assert_int_eq(cfg->keys[i].tier, i < 5000 ?
		    CFG_TIER_PRIORITY : CFG_TIER_SECONDARY);
	cfg_free(cfg);

	text = many_keys(17);
	put("config.json", text);
	free(text);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_ptr_null(cfg_load(cfgpath, err, sizeof(err)));
	s = elapsed(&t0);
	ck_assert_msg(s < 2.0, "10,000 keys took %.3f s", s);
	ck_assert_msg(strstr(err, ": secondary_keys[4999]: duplicate of "
	    "priority_keys[17]") != NULL, "%s", err);
	assert_clean(err);
}
END_TEST

START_TEST(test_key_id_mask)
{
	char	 id[9], m[16];

	/* echo -n abc | sha256sum; sha256sum < /dev/null */
	cfg_key_id("abc", id);
	ck_assert_str_eq(id, "ba7816bf");
	cfg_key_id("", id);
	ck_assert_str_eq(id, "e3b0c442");
	cfg_key_id(K1, id);
	ck_assert_uint_eq(strlen(id), 8);
	ck_assert_uint_eq(strspn(id, "0123456789abcdef"), 8);

	cfg_key_mask("AIzaSyABCDEFGHIJKLMNOPQRSTUVWXYZwxyz", m);
	ck_assert_str_eq(m, "AIza\xe2\x80\xa6wxyz");
	cfg_key_mask("abcdefghijkl", m);
	ck_assert_str_eq(m, "abcd\xe2\x80\xa6ijkl");
	cfg_key_mask("abcdefghijk", m);
	ck_assert_str_eq(m, "\xe2\x80\xa6");
	cfg_key_mask("", m);
	ck_assert_str_eq(m, "\xe2\x80\xa6");
	/* a multi-byte character at either end is not cut in half */
	cfg_key_mask("\xc3\xa9" "bcdefghijklmnop", m);
	ck_assert_str_eq(m, "\xe2\x80\xa6");
	cfg_key_mask(K1, m);
	ck_assert_ptr_null(strstr(m, "TESTKEY"));
}
END_TEST

Suite *
config_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("config");

	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_listen_any_port_and_authority);
	tcase_add_test(tc, test_seed_shape);
	tcase_add_test(tc, test_forms);
	tcase_add_test(tc, test_key_objects);
	tcase_add_test(tc, test_system_zoneinfo);
	tcase_add_test(tc, test_unknown_field);
	tcase_add_test(tc, test_relative);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_small_err);
	tcase_add_test(tc, test_ca_fifo);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_syntax, 0,
	    sizeof(syntax) / sizeof(syntax[0]));
	tcase_add_loop_test(tc, test_bad, 0, sizeof(bad) / sizeof(bad[0]));
	suite_add_tcase(s, tc);

	tc = tcase_create("default");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_create_default);
	suite_add_tcase(s, tc);

	tc = tcase_create("keys");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_many_keys);
	tcase_add_test(tc, test_key_id_mask);
	suite_add_tcase(s, tc);

	return s;
}
