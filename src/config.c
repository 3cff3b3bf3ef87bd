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
 * This file reads the file, parses its JSON and checks the fields in
 * order, each by the file of its concern: config_keys.c, config_models.c,
 * config_time.c, config_net.c, config_daemon.c, all built from
 * config_check.c's checks; config_default.c writes the first file.
 *
 * Every failure is one line, "<path>: <field>: <problem>", good for -t and
 * for the log alike.  API keys and access tokens are secrets: a message
 * names them by their place in a list ("priority_keys[2]"), never by value.
 */
#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"
#include "fileio.h"
#include "scrub.h"
#include "shm.h"

#define CFG_FILE_MAX	(64 * 1024 * 1024)	/* larger is a mistake */

/*
 * master_publish() hands a config's keys and models to shm/keys.c, which
 * copies them into cells of fixed size; the usage file and /status match
 * keys and models by those cells' sizes too.  What a config accepts must
 * fit there whole, so the two sides' sizes are one.
 */
_Static_assert(CFG_KEY_MAX == SHM_KEY_MAX, "CFG_KEY_MAX is SHM_KEY_MAX");
_Static_assert(CFG_NAME_MAX == SHM_NAME_MAX, "CFG_NAME_MAX is SHM_NAME_MAX");
_Static_assert(CFG_PROJECT_MAX == SHM_PROJECT_MAX, "CFG_PROJECT_MAX is SHM_PROJECT_MAX");
_Static_assert(CFG_LABEL_MAX == SHM_LABEL_MAX, "CFG_LABEL_MAX is SHM_LABEL_MAX");
_Static_assert(sizeof(((struct cfg_key *)0)->id) <=
    sizeof(((struct shm_key *)0)->id), "a key's id fits a shm_key");
_Static_assert(sizeof(((struct cfg_key *)0)->masked) <=
    sizeof(((struct shm_key *)0)->masked), "a masked key fits a shm_key");

/* The top-level fields' names, indexed by enum cfg_field. */
const char *const cfg_fields[F_NFIELDS] = {
#define CFG_FIELD_NAME(id, name)	name,
	CFG_FIELDS(CFG_FIELD_NAME)
#undef CFG_FIELD_NAME
};

static char	*cfg_read(struct cfg_parse *, size_t *);
static int	 cfg_syntax(struct cfg_parse *, const char *, size_t,
		    const char *);
static int	 cfg_where(struct cfg_parse *);
static int	 cfg_build(struct cfg_parse *, const cJSON *);

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
		(void)strlcpy(dir, p->path, dlen + 1);
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

/* Every field of the parsed document into p->cfg, in cfg_fields order. */
static int
cfg_build(struct cfg_parse *p, const cJSON *root)
{
	struct config	*cfg = p->cfg;
	const cJSON	*f[F_NFIELDS];
	char		 got[96];

	if (!cJSON_IsObject(root))
		return cfg_err(p, NULL, "must hold a JSON object (got %s)",
		    cfg_what(root, got, sizeof(got)));
	if (cfg_members(p, root, "", cfg_fields, F_NFIELDS, f) == -1)
		return -1;
	if (cfg_keys(p, f[F_PRIORITY_KEYS], f[F_SECONDARY_KEYS]) == -1 ||
	    cfg_models(p, f[F_MODELS]) == -1 ||
	    cfg_default_model(p, f[F_DEFAULT_MODEL]) == -1 ||
	    cfg_reset_after(p, f[F_RESET_AFTER]) == -1 ||
	    cfg_next_reset(p, f[F_NEXT_RESET]) == -1 ||
	    cfg_timezone(p, f[F_TIMEZONE]) == -1 ||
	    cfg_listen(p, f[F_LISTEN]) == -1 ||
	    cfg_upstream(p, f[F_UPSTREAM]) == -1 ||
	    cfg_ca_file(p, f[F_UPSTREAM_CA_FILE]) == -1 ||
	    cfg_workers(p, f[F_WORKERS]) == -1)
		return -1;
	if (cfg_path(p, f[F_USAGE_FILE], "usage_file", CFG_DEF_USAGE_FILE,
	    cfg->usage_file, sizeof(cfg->usage_file)) == -1 ||
	    cfg_path(p, f[F_PIDFILE], "pidfile", CFG_DEF_PIDFILE,
	    cfg->pidfile, sizeof(cfg->pidfile)) == -1 ||
	    cfg_path(p, f[F_LOG_FILE], "log_file", "",
	    cfg->log_file, sizeof(cfg->log_file)) == -1)
		return -1;
	if (cfg_log_level(p, f[F_LOG_LEVEL]) == -1 ||
	    cfg_user(p, f[F_USER]) == -1 ||
	    cfg_tokens(p, f[F_ACCESS_TOKENS], f[F_ADMIN_TOKEN]) == -1 ||
	    cfg_numbers(p, f) == -1 ||
	    cfg_storm(p, f[F_STORM]) == -1 ||
	    cfg_key_probe(p, f[F_KEY_PROBE]) == -1 ||
	    cfg_live(p, f[F_LIVE]) == -1)
		return -1;
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
