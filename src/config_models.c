/*
 * models: the table of model names and their per-minute and per-day
 * limits; default_model, one of them; and the lookup by name that the
 * rest of the program uses.
 *
 * cfg_models() and cfg_default_model() are called by config.c's
 * cfg_build(); cfg_model() is exported for the tests too.  No global
 * state, no locks.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "config_int.h"

/*
 * A model's limits, each written once: its name in the file is the name
 * of its member of struct cfg_model.
 */
#define CFG_LIMITS(X)		\
	X(tpm_limit)		\
	X(tpd_limit)		\
	X(rpm_limit)		\
	X(rpd_limit)		\
	X(sessions_limit)

static const char *const cfg_limit_names[] = {
#define CFG_LIMIT_NAME(member)	#member,
	CFG_LIMITS(CFG_LIMIT_NAME)
#undef CFG_LIMIT_NAME
};

static const size_t cfg_limit_offsets[] = {
#define CFG_LIMIT_OFFSET(member)	offsetof(struct cfg_model, member),
	CFG_LIMITS(CFG_LIMIT_OFFSET)
#undef CFG_LIMIT_OFFSET
};

#define CFG_NLIMITS	(sizeof(cfg_limit_names) / sizeof(cfg_limit_names[0]))

static int	 cfg_model_one(struct cfg_parse *, const cJSON *);
static int	 cfg_model_name(struct cfg_parse *, const char *);
static int	 cfg_model_name_ok(const char *);
static int	 cfg_model_dups(struct cfg_parse *);

/* models: an object of at least one model, by name, into cfg->models. */
int
cfg_models(struct cfg_parse *p, const cJSON *obj)
{
	struct config	*cfg = p->cfg;
	const cJSON	*v;
	char		 got[96];
	size_t		 n = 0;

	if (obj == NULL)
		return cfg_err(p, "models", "missing (an object that maps "
		    "model names to their limits)");
	if (!cJSON_IsObject(obj))
		return cfg_err(p, "models", "must be an object (got %s)",
		    cfg_what(obj, got, sizeof(got)));
	cJSON_ArrayForEach(v, obj)
		n++;
	if (n == 0)
		return cfg_err(p, "models", "must name at least one model");
	if ((cfg->models = calloc(n, sizeof(*cfg->models))) == NULL)
		return cfg_err(p, "models", "%s", strerror(errno));
	cJSON_ArrayForEach(v, obj)
		if (cfg_model_one(p, v) == -1)
			return -1;
	return cfg_model_dups(p);
}

/* One member of models: its name, and its limits (CFG_NOLIMIT if left out). */
static int
cfg_model_one(struct cfg_parse *p, const cJSON *v)
{
	struct cfg_model	*m = &p->cfg->models[p->cfg->nmodels];
	const cJSON		*f[CFG_NLIMITS];
	int64_t			*lim;
	char			 field[CFG_NAME_MAX + 64], prefix[CFG_NAME_MAX + 16];
	char			 got[96];
	size_t			 i;

	if (cfg_model_name(p, v->string) == -1)
		return -1;
	(void)strlcpy(m->name, v->string, sizeof(m->name));
	(void)snprintf(prefix, sizeof(prefix), "models.%s", m->name);
	if (!cJSON_IsObject(v))
		return cfg_err(p, prefix, "must be an object of limits "
		    "(got %s)", cfg_what(v, got, sizeof(got)));
	(void)strlcat(prefix, ".", sizeof(prefix));
	if (cfg_members(p, v, prefix, cfg_limit_names, CFG_NLIMITS, f) == -1)
		return -1;
	for (i = 0; i < CFG_NLIMITS; i++) {
		lim = (int64_t *)((char *)m + cfg_limit_offsets[i]);
		*lim = CFG_NOLIMIT;
		(void)snprintf(field, sizeof(field), "%s%s", prefix,
		    cfg_limit_names[i]);
		if (f[i] != NULL && cfg_int(p, f[i], field, 1, CFG_INT_MAX, 1,
		    lim) == -1)
			return -1;
	}
	p->cfg->nmodels++;
	return 0;
}

/* A model's name: not empty, short enough, fit for a URL path. */
static int
cfg_model_name(struct cfg_parse *p, const char *name)
{
	char	 got[96];

	if (name[0] == '\0')
		return cfg_err(p, "models", "a model name must not be empty");
	if (strlen(name) >= CFG_NAME_MAX)
		return cfg_err(p, "models", "model name %s is too long "
		    "(at most %zu characters)", cfg_quote(name, got,
		    sizeof(got)), (size_t)CFG_NAME_MAX - 1);
	if (!cfg_model_name_ok(name))
		return cfg_err(p, "models", "model name %s must be printable "
		    "ASCII without spaces or any of / : ? # %% \" \\",
		    cfg_quote(name, got, sizeof(got)));
	return 0;
}

/*
 * A model name ends up in URL paths ("models/<name>:generateContent"),
 * metric labels and the usage file, so it is kept to what a model id can
 * be: printable ASCII without spaces and without / : ? # % " \.
 */
static int
cfg_model_name_ok(const char *s)
{
	const unsigned char	*u;

	for (u = (const unsigned char *)s; *u != '\0'; u++)
		if (*u <= ' ' || *u >= 0x7f || strchr("/:?#%\"\\", *u) != NULL)
			return 0;
	return 1;
}

/*
 * cJSON keeps a member given twice as two members: the same model twice
 * is refused, named by the first of the duplicates in sorted order.
 */
static int
cfg_model_dups(struct cfg_parse *p)
{
	struct config	*cfg = p->cfg;
	struct cfg_dup	*d;
	char		 field[CFG_NAME_MAX + 16];
	size_t		 k;

	if ((d = cfg_dup_sort(cfg->models[0].name, cfg->nmodels,
	    sizeof(cfg->models[0]))) == NULL)
		return cfg_err(p, "models", "%s", strerror(errno));
	for (k = 1; k < cfg->nmodels; k++)
		if (strcmp(d[k].s, d[k - 1].s) == 0)
			break;
	if (k < cfg->nmodels)
		(void)snprintf(field, sizeof(field), "models.%s", d[k].s);
	free(d);
	if (k < cfg->nmodels)
		return cfg_err(p, field, "model given more than once");
	return 0;
}

/*
 * default_model: one of the models; the first of them when left out.
 * Requests for a model not in the table are metered with its limits.
 */
int
cfg_default_model(struct cfg_parse *p, const cJSON *v)
{
	struct config	*cfg = p->cfg;
	char		 got[96];

	if (v == NULL) {
		(void)strlcpy(cfg->default_model, cfg->models[0].name,
		    sizeof(cfg->default_model));
		return 0;
	}
	if (cfg_str(p, v, "default_model", 0, cfg->default_model,
	    sizeof(cfg->default_model)) == -1)
		return -1;
	if (cfg_model(cfg, cfg->default_model) == NULL)
		return cfg_err(p, "default_model", "%s is not one of the "
		    "models", cfg_quote(cfg->default_model, got, sizeof(got)));
	return 0;
}

const struct cfg_model *
cfg_model(const struct config *cfg, const char *name)
{
	size_t	 i;

	for (i = 0; i < cfg->nmodels; i++)
		if (strcmp(cfg->models[i].name, name) == 0)
			return &cfg->models[i];
	return NULL;
}
