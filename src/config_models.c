/*
 * models: the table of model names and their per-minute and per-day
 * limits, and the lookup by name that the rest of the program uses.
 *
 * cfg_models() is called by config.c's cfg_build(); cfg_model() by
 * anyone holding a config.  No global state, no locks.
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
	X(rpd_limit)

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

static int	 cfg_model_name_ok(const char *);

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

int
cfg_models(struct cfg_parse *p, const cJSON *obj)
{
	struct config		*cfg = p->cfg;
	struct cfg_model	*m;
	struct cfg_dup		*d;
	const cJSON		*v, *f[CFG_NLIMITS];
	int64_t			*lim;
	char			 field[CFG_NAME_MAX + 64], prefix[CFG_NAME_MAX + 16];
	char			 got[96];
	size_t			 n = 0, i, k;

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

	cJSON_ArrayForEach(v, obj) {
		m = &cfg->models[cfg->nmodels];
		if (v->string[0] == '\0')
			return cfg_err(p, "models", "a model name must not be "
			    "empty");
		if (strlen(v->string) >= sizeof(m->name))
			return cfg_err(p, "models", "model name %s is too long "
			    "(at most %zu characters)", cfg_quote(v->string,
			    got, sizeof(got)), sizeof(m->name) - 1);
		if (!cfg_model_name_ok(v->string))
			return cfg_err(p, "models", "model name %s must be "
			    "printable ASCII without spaces or any of "
			    "/ : ? # %% \" \\",
			    cfg_quote(v->string, got, sizeof(got)));
		(void)strlcpy(m->name, v->string, sizeof(m->name));
		(void)snprintf(prefix, sizeof(prefix), "models.%s", m->name);
		if (!cJSON_IsObject(v))
			return cfg_err(p, prefix, "must be an object of limits "
			    "(got %s)", cfg_what(v, got, sizeof(got)));
		(void)strlcat(prefix, ".", sizeof(prefix));
		if (cfg_members(p, v, prefix, cfg_limit_names, CFG_NLIMITS,
		    f) == -1)
			return -1;
		for (i = 0; i < CFG_NLIMITS; i++) {
			lim = (int64_t *)((char *)m + cfg_limit_offsets[i]);
			*lim = CFG_NOLIMIT;
			(void)snprintf(field, sizeof(field), "%s%s", prefix,
			    cfg_limit_names[i]);
			if (f[i] != NULL && cfg_int(p, f[i], field, 1,
			    CFG_INT_MAX, 1, lim) == -1)
				return -1;
		}
		cfg->nmodels++;
	}

	if ((d = calloc(cfg->nmodels, sizeof(*d))) == NULL)
		return cfg_err(p, "models", "%s", strerror(errno));
	for (k = 0; k < cfg->nmodels; k++) {
		d[k].s = cfg->models[k].name;
		d[k].i = k;
	}
	qsort(d, cfg->nmodels, sizeof(*d), cfg_dup_cmp);
	for (k = 1; k < cfg->nmodels; k++)
		if (strcmp(d[k].s, d[k - 1].s) == 0)
			break;
	if (k < cfg->nmodels) {
		(void)snprintf(prefix, sizeof(prefix), "models.%s", d[k].s);
		free(d);
		return cfg_err(p, prefix, "model given more than once");
	}
	free(d);
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
