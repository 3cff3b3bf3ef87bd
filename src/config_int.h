/*
 * What the config*.c files share with one another and nobody else needs:
 * the load in progress, the top-level fields, the bounds and defaults,
 * and each file's checks.  The rest of the program includes config.h.
 */
#ifndef CONFIG_INT_H
#define CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include <cjson/cJSON.h>

struct config;

/* Bounds of numbers in the file (config.h has those others need too). */
#define CFG_INT_MAX	9007199254740992LL	/* 2^53: exact as a double */
#define CFG_SECS_MAX	86400			/* a day, for every *_s */
#define CFG_WORKERS_MAX	4096			/* workers and its members */

/*
 * What a field left out of the file means, every default in one place.
 * README's table of fields and gemini-looper(8) list them too: change them
 * together.  The file made on first run (config_default.c) writes some of
 * them out from these same macros.  Not values, so not here: a left-out
 * default_model is the first model, a left-out model limit is CFG_NOLIMIT,
 * and an optional string left out is "".
 */
#define CFG_DEF_RESET_AFTER	"00:00"
#define CFG_DEF_TIMEZONE	"UTC"
#define CFG_DEF_LISTEN		"127.0.0.1:48888"
#define CFG_DEF_UPSTREAM	"https://generativelanguage.googleapis.com"
#define CFG_DEF_UPSTREAM_PORT	"443"	/* when upstream names none */
#define CFG_DEF_USAGE_FILE	"key_usage.json"
#define CFG_DEF_PIDFILE		"gemini-looper.pid"

#define CFG_DEF_START			4	/* workers.start */
#define CFG_DEF_MIN_SPARE		2	/* workers.min_spare */
#define CFG_DEF_MAX_SPARE		8	/* workers.max_spare */
#define CFG_DEF_MAX_WORKERS		256	/* workers.max */
#define CFG_DEF_FIXED_MIN_SPARE		1	/* "workers": N */
#define CFG_DEF_LOG_LEVEL		LOG_INFO
#define CFG_DEF_MAX_BODY_BYTES		(32 * 1024 * 1024)
#define CFG_DEF_MAX_WAIT_S		5
#define CFG_DEF_PERSIST_INTERVAL_S	5
#define CFG_DEF_SHUTDOWN_TIMEOUT_S	30
#define CFG_DEF_CLIENT_TIMEOUT_S	30
#define CFG_DEF_KEEPALIVE_TIMEOUT_S	5
#define CFG_DEF_UPSTREAM_TIMEOUT_S	300
#define CFG_DEF_MAX_ATTEMPTS		4
#define CFG_DEF_RESOLVER_VALID_S	30
#define CFG_DEF_STORM_KEYS		3	/* storm.keys; 0: off */
#define CFG_DEF_STORM_WINDOW_S		10	/* storm.window_s */
#define CFG_DEF_PROBE_FIRST_S		60	/* key_probe.first_s */
#define CFG_DEF_PROBE_MAX_S		3600	/* key_probe.max_s */
#define CFG_DEF_PROBE_PER_S		5	/* key_probe.per_s */
#define CFG_PROBE_PER_S_MAX		100
#define CFG_DEF_LIVE_MAX_MESSAGE	(16 * 1024 * 1024)	/* live.max_message_bytes */
#define CFG_DEF_LIVE_PING_S		20	/* live.ping_s; 0: no pings */

/*
 * The top-level fields, in the order they are checked, each written once:
 * its enum cfg_field and its name in the file (config.c's cfg_fields[]).
 */
#define CFG_FIELDS(X)							\
	X(F_PRIORITY_KEYS,		"priority_keys")		\
	X(F_SECONDARY_KEYS,		"secondary_keys")		\
	X(F_MODELS,			"models")			\
	X(F_DEFAULT_MODEL,		"default_model")		\
	X(F_RESET_AFTER,		"reset_after")			\
	X(F_NEXT_RESET,			"next_quota_reset_datetime")	\
	X(F_TIMEZONE,			"timezone")			\
	X(F_LISTEN,			"listen")			\
	X(F_UPSTREAM,			"upstream")			\
	X(F_UPSTREAM_CA_FILE,		"upstream_ca_file")		\
	X(F_WORKERS,			"workers")			\
	X(F_USAGE_FILE,			"usage_file")			\
	X(F_PIDFILE,			"pidfile")			\
	X(F_LOG_FILE,			"log_file")			\
	X(F_LOG_LEVEL,			"log_level")			\
	X(F_USER,			"user")				\
	X(F_ACCESS_TOKENS,		"access_tokens")		\
	X(F_ADMIN_TOKEN,		"admin_token")			\
	X(F_MAX_BODY_BYTES,		"max_body_bytes")		\
	X(F_MAX_WAIT_S,			"max_wait_s")			\
	X(F_PERSIST_INTERVAL_S,		"persist_interval_s")		\
	X(F_SHUTDOWN_TIMEOUT_S,		"shutdown_timeout_s")		\
	X(F_CLIENT_TIMEOUT_S,		"client_timeout_s")		\
	X(F_KEEPALIVE_TIMEOUT_S,	"keepalive_timeout_s")		\
	X(F_UPSTREAM_TIMEOUT_S,		"upstream_timeout_s")		\
	X(F_MAX_ATTEMPTS,		"max_attempts")			\
	X(F_RESOLVER_VALID_S,		"resolver_valid_s")		\
	X(F_STORM,			"storm")			\
	X(F_KEY_PROBE,			"key_probe")			\
	X(F_LIVE,			"live")

enum cfg_field {
#define CFG_FIELD_ID(id, name)	id,
	CFG_FIELDS(CFG_FIELD_ID)
#undef CFG_FIELD_ID
	F_NFIELDS
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

/* config.c */
extern const char *const cfg_fields[F_NFIELDS];

/* config_check.c */
int		 cfg_err(struct cfg_parse *, const char *, const char *, ...)
		    __attribute__((__format__ (printf, 3, 4)));
const char	*cfg_what(const cJSON *, char *, size_t);
const char	*cfg_quote(const char *, char *, size_t);
int		 cfg_members(struct cfg_parse *, const cJSON *, const char *,
		    const char *const *, size_t, const cJSON **);
int		 cfg_int(struct cfg_parse *, const cJSON *, const char *,
		    int64_t, int64_t, int, int64_t *);
const char	*cfg_string(struct cfg_parse *, const cJSON *, const char *,
		    const char *, const char *);
int		 cfg_str(struct cfg_parse *, const cJSON *, const char *, int,
		    char *, size_t);
int		 cfg_secret(struct cfg_parse *, const cJSON *, const char *,
		    size_t);
int		 cfg_path(struct cfg_parse *, const cJSON *, const char *,
		    const char *, char *, size_t);
struct cfg_dup	*cfg_dup_sort(const char *, size_t, size_t);
void		 cfg_names_add(char *, size_t, const char *);

/* config_keys.c */
int		 cfg_keys(struct cfg_parse *, const cJSON *, const cJSON *);
int		 cfg_tokens(struct cfg_parse *, const cJSON *, const cJSON *);
int		 cfg_secrets(struct cfg_parse *);

/* config_models.c */
int		 cfg_models(struct cfg_parse *, const cJSON *);
int		 cfg_default_model(struct cfg_parse *, const cJSON *);

/* config_time.c */
int		 cfg_reset_after(struct cfg_parse *, const cJSON *);
int		 cfg_next_reset(struct cfg_parse *, const cJSON *);
int		 cfg_timezone(struct cfg_parse *, const cJSON *);

/* config_net.c */
int		 cfg_listen(struct cfg_parse *, const cJSON *);
int		 cfg_upstream(struct cfg_parse *, const cJSON *);
int		 cfg_ca_file(struct cfg_parse *, const cJSON *);

/* config_daemon.c */
int		 cfg_workers(struct cfg_parse *, const cJSON *);
int		 cfg_log_level(struct cfg_parse *, const cJSON *);
int		 cfg_user(struct cfg_parse *, const cJSON *);
int		 cfg_numbers(struct cfg_parse *, const cJSON *const *);
int		 cfg_key_probe(struct cfg_parse *, const cJSON *);

/* config_default.c */
int		 cfg_placeholder(const char *);

/* config_storm.c */
int		 cfg_storm(struct cfg_parse *, const cJSON *);

/* config_live.c */
int		 cfg_live(struct cfg_parse *, const cJSON *);

#endif /* CONFIG_INT_H */
