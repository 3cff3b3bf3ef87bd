/*
 * config.c and its config_*.c: config.json read, checked and built into a
 * struct config.  What only those files share is in config_int.h.
 */
#ifndef CONFIG_H
#define CONFIG_H

#include <sys/types.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct scrub;

#define CFG_KEY_MAX		128	/* longest API key accepted */
#define CFG_NAME_MAX		128	/* longest model name */
#define CFG_TOKEN_MAX		256	/* longest access/admin token */
#define CFG_NOLIMIT		(-1)	/* a limit given as null */
#define CFG_ATTEMPTS_MAX	64	/* largest max_attempts */
#define CFG_ID_SIZE		9	/* a key's fingerprint: 8 hex digits */
#define CFG_MASKED_SIZE		16	/* "AIza…wxyz", the … in 3 bytes */
#define CFG_PROJECT_MAX		64	/* longest project name, + NUL */
#define CFG_LABEL_MAX		64	/* longest key label, + NUL */

enum cfg_tier {
	CFG_TIER_PRIORITY = 0,
	CFG_TIER_SECONDARY = 1
};

struct cfg_key {
	char		 key[CFG_KEY_MAX];
	char		 id[CFG_ID_SIZE];	/* SHA-256's first 8 hex digits */
	char		 masked[CFG_MASKED_SIZE];	/* "AIza…wxyz" */
	char		 project[CFG_PROJECT_MAX];	/* "": its own */
	char		 label[CFG_LABEL_MAX];		/* "": none */
	enum cfg_tier	 tier;
};

struct cfg_model {
	char		 name[CFG_NAME_MAX];
	int64_t		 tpm_limit;	/* CFG_NOLIMIT for null */
	int64_t		 tpd_limit;
	int64_t		 rpm_limit;
	int64_t		 rpd_limit;
	int64_t		 sessions_limit;	/* Live sessions open at once,
						   per project */
};

/*
 * A parsed and validated config.json.  Built whole by cfg_load(); nothing
 * global is touched until it is valid, so a failed reload leaves the running
 * config alone.  Paths are already made absolute against the config file's
 * directory.  Strings are "" when the field is null or absent.
 */
struct config {
	char		  path[PATH_MAX];	/* absolute path of the file */
	char		  dir[PATH_MAX];	/* its directory */

	char		  listen[300];		/* as written: "127.0.0.1:48888" */
	char		  listen_host[256];	/* "127.0.0.1", "::1", "*" */
	char		  listen_port[16];

	char		  upstream[512];	/* "https://host[:port][/prefix]" */
	char		  upstream_host[256];
	char		  upstream_port[16];	/* "443" by default */
	char		  upstream_authority[276];	/* the Host header:
						   "[v6]", port unless 443 */
	char		  upstream_prefix[256];	/* "" or "/prefix" without trailing / */
	char		  upstream_ca_file[PATH_MAX];

	int		  start_workers;
	int		  min_spare;
	int		  max_spare;
	int		  max_workers;

	char		  usage_file[PATH_MAX];
	char		  pidfile[PATH_MAX];
	char		  log_file[PATH_MAX];
	int		  log_level;		/* LOG_ERR .. LOG_DEBUG */
	char		  user[64];		/* "" for null */
	uid_t		  user_uid;		/* user's, from getpwnam() */
	gid_t		  user_gid;		/* its primary group */

	char		**access_tokens;
	size_t		  naccess_tokens;
	char		  admin_token[CFG_TOKEN_MAX];

	struct cfg_key	 *keys;		/* priority keys first, then secondary */
	size_t		  nkeys;
	size_t		  npriority;
	size_t		  nprojects;	/* distinct named projects */
	struct cfg_model *models;
	size_t		  nmodels;
	char		  default_model[CFG_NAME_MAX];

	int		  reset_hour;
	int		  reset_min;
	char		  reset_after[8];	/* "HH:MM" as written */
	char		  next_reset[32];	/* "YYYY-MM-DD HH:MM" or "" */
	char		  timezone[64];

	int64_t		  max_body_bytes;
	int		  max_wait_s;
	int		  persist_interval_s;
	int		  shutdown_timeout_s;
	int		  client_timeout_s;	/* to receive a whole request */
	int		  keepalive_timeout_s;	/* idle between requests */
	int		  upstream_timeout_s;	/* until the answer starts */
	int		  max_attempts;		/* upstream sends per request */
	int		  resolver_valid_s;	/* keep a name lookup this long */
	int		  storm_keys;		/* projects whose 429s pause a
						   model; 0: storms off */
	int		  storm_window_s;	/* ... within this many seconds */
	int		  probe_first_s;	/* key_probe: 0 turns it off */
	int		  probe_max_s;
	int		  probe_per_s;		/* probes per second, at most */
	size_t		  live_max_message;	/* live.max_message_bytes */
	int		  live_ping_s;		/* live.ping_s; 0: no pings */

	int		  placeholder_keys;	/* keys are the defaults' placeholders */

	struct scrub	 *scrub;	/* keys and tokens, to mask (scrub.c) */
};

/* config.c */
struct config	*cfg_load(const char *, char *, size_t);
void		 cfg_free(struct config *);

/* config_default.c */
int		 cfg_create_default(const char *, char *, size_t);

/* config_models.c */
const struct cfg_model *cfg_model(const struct config *, const char *);

/* config_keys.c */
void		 cfg_key_id(const char *, char [CFG_ID_SIZE]);
void		 cfg_key_mask(const char *, char [CFG_MASKED_SIZE]);

#endif /* CONFIG_H */
