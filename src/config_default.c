/*
 * The config file made on first run, when the one -c names (config.json
 * by default) does not exist yet (main.c), and its placeholder keys,
 * recognised at every load so that the program can warn that no real key
 * is configured.
 *
 * No global state, no locks.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "config_int.h"

/* The default file's keys, recognised so the program can warn about them. */
#define CFG_PH_PRIORITY_1	"YOUR_PRIORITY_GEMINI_API_KEY_1"
#define CFG_PH_PRIORITY_2	"YOUR_PRIORITY_GEMINI_API_KEY_2"
#define CFG_PH_SECONDARY_1	"YOUR_SECONDARY_GEMINI_API_KEY_1"

static const char *const cfg_placeholders[] = {
	CFG_PH_PRIORITY_1,
	CFG_PH_PRIORITY_2,
	CFG_PH_SECONDARY_1,
};

/*
 * What cfg_create_default() writes: the seed's shape, placeholder keys,
 * today's Flash models with their free-tier limits (checked 2026-12-02;
 * see the README: Google shows them per project in AI Studio), and Pacific
 * time because that is when Gemini resets its daily quotas.  The fields
 * that have a default (config_int.h) are written with it.  A literal
 * rather than cJSON_Print() so the file reads like the seed's example
 * (four-space indent) and so that writing it cannot fail half-way through
 * an allocation.
 */
static const char cfg_default_json[] =
    "{\n"
    "    \"priority_keys\": [\n"
    "        \"" CFG_PH_PRIORITY_1 "\",\n"
    "        \"" CFG_PH_PRIORITY_2 "\"\n"
    "    ],\n"
    "    \"secondary_keys\": [\n"
    "        \"" CFG_PH_SECONDARY_1 "\"\n"
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
    "    \"reset_after\": \"" CFG_DEF_RESET_AFTER "\",\n"
    "    \"next_quota_reset_datetime\": null,\n"
    "    \"timezone\": \"America/Los_Angeles\",\n"
    "    \"default_model\": \"gemini-3.8-flash\",\n"
    "    \"listen\": \"" CFG_DEF_LISTEN "\",\n"
    "    \"upstream\": \"" CFG_DEF_UPSTREAM "\",\n"
    "    \"usage_file\": \"" CFG_DEF_USAGE_FILE "\",\n"
    "    \"pidfile\": \"" CFG_DEF_PIDFILE "\"\n"
    "}\n";

/* Whether key is one of the default file's placeholders. */
int
cfg_placeholder(const char *key)
{
	size_t	 i;

	for (i = 0; i < sizeof(cfg_placeholders) /
	    sizeof(cfg_placeholders[0]); i++)
		if (strcmp(key, cfg_placeholders[i]) == 0)
			return 1;
	return 0;
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
