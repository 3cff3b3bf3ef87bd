/*
 * How the daemon itself runs: the prefork pool (workers), the log level,
 * the user the workers run as, and its numbers: the body limit, the
 * timeouts, the attempts per request.
 *
 * Called by config.c's cfg_build().  cfg_user() looks the user up in the
 * password database; nothing else here leaves the process.  No global
 * state, no locks.
 */
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"

/* The members of "workers": {...}, each written once. */
#define CFG_WORKER_FIELDS(X)			\
	X(W_START,		"start")	\
	X(W_MIN_SPARE,		"min_spare")	\
	X(W_MAX_SPARE,		"max_spare")	\
	X(W_MAX,		"max")

enum {
#define CFG_WORKER_ID(id, name)	id,
	CFG_WORKER_FIELDS(CFG_WORKER_ID)
#undef CFG_WORKER_ID
	W_NFIELDS
};

static const char *const cfg_worker_fields[W_NFIELDS] = {
#define CFG_WORKER_NAME(id, name)	name,
	CFG_WORKER_FIELDS(CFG_WORKER_NAME)
#undef CFG_WORKER_NAME
};

static int	 cfg_workers_object(struct cfg_parse *, const cJSON *,
		    int64_t *);
static void	 cfg_workers_fit(const cJSON *const *, int64_t *);

/*
 * The numeric fields from max_body_bytes on, in the order they are
 * checked: each with its bounds, its default (CFG_DEF_<field>) and the
 * member of struct config it goes to (an int, or an int64_t).
 */
#define CFG_NUMBER(field, member, min, max)				\
	{ F_##field, offsetof(struct config, member),			\
	    sizeof(((struct config *)0)->member), CFG_DEF_##field, min, max }

static const struct cfg_number {
	enum cfg_field	 id;
	size_t		 off;
	size_t		 size;
	int64_t		 def;
	int64_t		 min;
	int64_t		 max;
} cfg_number_fields[] = {
	CFG_NUMBER(MAX_BODY_BYTES, max_body_bytes, 1, CFG_INT_MAX),
	CFG_NUMBER(MAX_WAIT_S, max_wait_s, 0, CFG_SECS_MAX),
	CFG_NUMBER(PERSIST_INTERVAL_S, persist_interval_s, 1, CFG_SECS_MAX),
	CFG_NUMBER(SHUTDOWN_TIMEOUT_S, shutdown_timeout_s, 0, CFG_SECS_MAX),
	CFG_NUMBER(CLIENT_TIMEOUT_S, client_timeout_s, 1, CFG_SECS_MAX),
	CFG_NUMBER(KEEPALIVE_TIMEOUT_S, keepalive_timeout_s, 0, CFG_SECS_MAX),
	CFG_NUMBER(UPSTREAM_TIMEOUT_S, upstream_timeout_s, 1, CFG_SECS_MAX),
	CFG_NUMBER(MAX_ATTEMPTS, max_attempts, 1, CFG_ATTEMPTS_MAX),
	CFG_NUMBER(RESOLVER_VALID_S, resolver_valid_s, 0, CFG_SECS_MAX),
};

/*
 * The prefork pool.  A number N is a fixed pool of N (start = max =
 * max_spare = N, so it never grows or shrinks).  In the object form, a
 * bound left out is fitted to the ones given (max: 4 makes start 4 and
 * max_spare 4, not an error about the default 8), so only what the user
 * wrote can contradict itself.
 */
int
cfg_workers(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	int64_t		 val[W_NFIELDS] = {
		[W_START] = CFG_DEF_START,
		[W_MIN_SPARE] = CFG_DEF_MIN_SPARE,
		[W_MAX_SPARE] = CFG_DEF_MAX_SPARE,
		[W_MAX] = CFG_DEF_MAX_WORKERS
	};
	char		 got[64], names[64] = "";
	int		 i;

	if (v != NULL && cJSON_IsNumber(v)) {
		if (cfg_int(p, v, "workers", 1, CFG_WORKERS_MAX, 0,
		    &val[W_START]) == -1)
			return -1;
		val[W_MAX] = val[W_MAX_SPARE] = val[W_START];
		val[W_MIN_SPARE] = CFG_DEF_FIXED_MIN_SPARE;
	} else if (v != NULL && cJSON_IsObject(v)) {
		if (cfg_workers_object(p, v, val) == -1)
			return -1;
	} else if (v != NULL) {
		for (i = 0; i < W_NFIELDS; i++)
			cfg_names_add(names, sizeof(names),
			    cfg_worker_fields[i]);
		return cfg_err(p, "workers", "must be a number of workers or an "
		    "object {%s} (got %s)", names, cfg_what(v, got,
		    sizeof(got)));
	}
	cfg->start_workers = (int)val[W_START];
	cfg->min_spare = (int)val[W_MIN_SPARE];
	cfg->max_spare = (int)val[W_MAX_SPARE];
	cfg->max_workers = (int)val[W_MAX];
	return 0;
}

/* The object form into val, which holds the defaults. */
static int
cfg_workers_object(struct cfg_parse *p, const cJSON *v, int64_t *val)
{
	/* Each bound must not exceed the one it names. */
	static const int order[][2] = {
		{ W_MIN_SPARE, W_MAX_SPARE },
		{ W_MAX_SPARE, W_MAX },
		{ W_START, W_MAX },
	};
	const cJSON	*f[W_NFIELDS];
	char		 field[32];
	size_t		 i;
	int		 a, b;

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
	cfg_workers_fit(f, val);
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		a = order[i][0];
		b = order[i][1];
		if (val[a] <= val[b])
			continue;
		(void)snprintf(field, sizeof(field), "workers.%s",
		    cfg_worker_fields[a]);
		return cfg_err(p, field, "must not exceed workers.%s "
		    "(%lld > %lld)", cfg_worker_fields[b], (long long)val[a],
		    (long long)val[b]);
	}
	return 0;
}

/* The bounds left out (f[i] NULL) fitted to the ones given. */
static void
cfg_workers_fit(const cJSON *const *f, int64_t *val)
{
	int	 i;

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
}

int
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
	char	 got[96], names[64] = "";
	size_t	 i;

	p->cfg->log_level = CFG_DEF_LOG_LEVEL;
	if (v == NULL)
		return 0;
	if (cJSON_IsString(v))
		for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
			if (strcmp(v->valuestring, levels[i].name) == 0) {
				p->cfg->log_level = levels[i].level;
				return 0;
			}
	for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		cfg_names_add(names, sizeof(names), levels[i].name);
	return cfg_err(p, "log_level", "must be one of %s (got %s)", names,
	    cJSON_IsString(v) ? cfg_quote(v->valuestring, got, sizeof(got)) :
	    cfg_what(v, got, sizeof(got)));
}

/*
 * user: the account the workers run as when started as root (priv.c).
 * Looked up here, at every load, so that -t reports an unknown user and a
 * reload that names one keeps the running config.  uid 0 is refused: a
 * worker could not prove that it dropped anything.
 */
int
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

/* cfg_number_fields into p->cfg; f is the document's fields by cfg_field. */
int
cfg_numbers(struct cfg_parse *p, const cJSON *const *f)
{
	const struct cfg_number	*t;
	char			*dst;
	int64_t			 n;
	size_t			 i;

	for (i = 0; i < sizeof(cfg_number_fields) /
	    sizeof(cfg_number_fields[0]); i++) {
		t = &cfg_number_fields[i];
		n = t->def;
		if (f[t->id] != NULL && cfg_int(p, f[t->id], cfg_fields[t->id],
		    t->min, t->max, 0, &n) == -1)
			return -1;
		dst = (char *)p->cfg + t->off;
		if (t->size == sizeof(int64_t))
			*(int64_t *)dst = n;
		else
			*(int *)dst = (int)n;
	}
	return 0;
}

/*
 * key_probe: {"first_s": 60, "max_s": 3600, "per_s": 5}, each member
 * optional.  first_s 0 turns probing off; otherwise max_s must not be
 * below it.  per_s caps the prober's probes per second (prober.c).
 */
int
cfg_key_probe(struct cfg_parse *p, const cJSON *v)
{
	static const char *const names[] = { "first_s", "max_s", "per_s" };
	static const int64_t	 def[] = { CFG_DEF_PROBE_FIRST_S,
				    CFG_DEF_PROBE_MAX_S, CFG_DEF_PROBE_PER_S };
	static const int64_t	 lo[] = { 0, 1, 1 };
	static const int64_t	 hi[] = { CFG_SECS_MAX, CFG_SECS_MAX,
				    CFG_PROBE_PER_S_MAX };
	const cJSON		*f[3];
	int64_t			 val[3];
	char			 field[32], got[64];
	size_t			 i;

	if (v != NULL && !cJSON_IsObject(v))
		return cfg_err(p, "key_probe", "must be an object {\"first_s\": "
		    "60, \"max_s\": 3600, \"per_s\": 5} (got %s)",
		    cfg_what(v, got, sizeof(got)));
	if (v != NULL && cfg_members(p, v, "key_probe.", names, 3, f) == -1)
		return -1;
	for (i = 0; i < 3; i++) {
		val[i] = def[i];
		(void)snprintf(field, sizeof(field), "key_probe.%s", names[i]);
		if (v != NULL && f[i] != NULL && cfg_int(p, f[i], field, lo[i],
		    hi[i], 0, &val[i]) == -1)
			return -1;
	}
	/* A first_s given alone above the default max_s raises max_s. */
	if (v != NULL && f[1] == NULL && val[0] > val[1])
		val[1] = val[0];
	if (val[0] > 0 && val[1] < val[0])
		return cfg_err(p, "key_probe.max_s", "must not be below "
		    "key_probe.first_s (%lld < %lld)", (long long)val[1],
		    (long long)val[0]);
	p->cfg->probe_first_s = (int)val[0];
	p->cfg->probe_max_s = (int)val[1];
	p->cfg->probe_per_s = (int)val[2];
	return 0;
}
