/*
 * The secrets of a config: the pool's API keys (priority_keys, then
 * secondary_keys), the access tokens and the admin token; each key's
 * fingerprint and masked form; and the scrubber built from all of them.
 *
 * Called by config.c's cfg_build() and cfg_load(); cfg_key_id() and
 * cfg_key_mask() are exported for the tests too.  A message names a key
 * by its place in a list, never by its value.  No global state, no locks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "config.h"
#include "config_int.h"
#include "scrub.h"

#define CFG_MASK_SHOWN	4		/* characters shown of each end */
#define CFG_ELLIPSIS	"\xe2\x80\xa6"	/* U+2026 in UTF-8 */

_Static_assert(2 * CFG_MASK_SHOWN + sizeof(CFG_ELLIPSIS) <= CFG_MASKED_SIZE,
    "a masked key fits in cfg_key.masked");

/* The key lists by enum cfg_tier: priority keys are used first. */
static const enum cfg_field cfg_key_lists[] = {
	[CFG_TIER_PRIORITY] = F_PRIORITY_KEYS,
	[CFG_TIER_SECONDARY] = F_SECONDARY_KEYS,
};

#define CFG_NTIERS	(sizeof(cfg_key_lists) / sizeof(cfg_key_lists[0]))

static int	 cfg_key_count(struct cfg_parse *, const cJSON *const *,
		    size_t *);
static int	 cfg_key_fill(struct cfg_parse *, const cJSON *const *);
static int	 cfg_key_dups(struct cfg_parse *);
static int	 cfg_key_projects(struct cfg_parse *);
static int	 cfg_key_object(struct cfg_parse *, const cJSON *,
		    const char *, struct cfg_key *);
static int	 cfg_key_text(struct cfg_parse *, const cJSON *, const char *,
		    const char *, char *, size_t);
static void	 cfg_key_field(const struct config *, size_t, char *, size_t);

/*
 * priority_keys then secondary_keys into cfg->keys; either may be null or
 * left out, but not both.
 */
int
cfg_keys(struct cfg_parse *p, const cJSON *pri, const cJSON *sec)
{
	struct config	*cfg = p->cfg;
	const cJSON	*lists[CFG_NTIERS];
	size_t		 n;

	lists[CFG_TIER_PRIORITY] = pri;
	lists[CFG_TIER_SECONDARY] = sec;
	if (cfg_key_count(p, lists, &n) == -1)
		return -1;
	if (n == 0)
		return cfg_err(p, cfg_fields[F_PRIORITY_KEYS], "no API keys: "
		    "at least one is needed in %s or %s",
		    cfg_fields[F_PRIORITY_KEYS], cfg_fields[F_SECONDARY_KEYS]);
	if ((cfg->keys = calloc(n, sizeof(*cfg->keys))) == NULL)
		return cfg_err(p, cfg_fields[F_PRIORITY_KEYS], "%s",
		    strerror(errno));
	if (cfg_key_fill(p, lists) == -1 || cfg_key_dups(p) == -1)
		return -1;
	return cfg_key_projects(p);
}

/* How many distinct named projects (to size the shared tables). */
static int
cfg_key_projects(struct cfg_parse *p)
{
	struct config	*cfg = p->cfg;
	struct cfg_dup	*d;
	size_t		 k;

	if ((d = cfg_dup_sort(cfg->keys[0].project, cfg->nkeys,
	    sizeof(cfg->keys[0]))) == NULL)
		return cfg_err(p, cfg_fields[F_PRIORITY_KEYS], "%s",
		    strerror(errno));
	for (k = 0; k < cfg->nkeys; k++)
		if (d[k].s[0] != '\0' &&
		    (k == 0 || strcmp(d[k].s, d[k - 1].s) != 0))
			cfg->nprojects++;
	free(d);
	return 0;
}

/* The lists are arrays, null or left out; *np: how many keys in all. */
static int
cfg_key_count(struct cfg_parse *p, const cJSON *const *lists, size_t *np)
{
	const cJSON	*v;
	char		 got[64];
	size_t		 t;

	*np = 0;
	for (t = 0; t < CFG_NTIERS; t++) {
		if (lists[t] == NULL || cJSON_IsNull(lists[t]))
			continue;
		if (!cJSON_IsArray(lists[t]))
			return cfg_err(p, cfg_fields[cfg_key_lists[t]],
			    "must be an array of key strings or objects "
			    "(got %s)",
			    cfg_what(lists[t], got, sizeof(got)));
		cJSON_ArrayForEach(v, lists[t])
			(*np)++;
	}
	return 0;
}

/* Each key checked into cfg->keys, with its fingerprint and masked form. */
static int
cfg_key_fill(struct cfg_parse *p, const cJSON *const *lists)
{
	struct config	*cfg = p->cfg;
	struct cfg_key	*k;
	const cJSON	*v;
	char		 field[64];
	size_t		 t, i;

	for (t = 0; t < CFG_NTIERS; t++) {
		if (lists[t] == NULL || !cJSON_IsArray(lists[t]))
			continue;
		i = 0;
		cJSON_ArrayForEach(v, lists[t]) {
			(void)snprintf(field, sizeof(field), "%s[%zu]",
			    cfg_fields[cfg_key_lists[t]], i++);
			k = &cfg->keys[cfg->nkeys++];
			if (cJSON_IsObject(v)) {
				if (cfg_key_object(p, v, field, k) == -1)
					return -1;
			} else if (cfg_secret(p, v, field, CFG_KEY_MAX) == -1)
				return -1;
			else
				(void)strlcpy(k->key, v->valuestring,
				    sizeof(k->key));
			cfg_key_id(k->key, k->id);
			cfg_key_mask(k->key, k->masked);
			k->tier = (enum cfg_tier)t;
			if (cfg_placeholder(k->key))
				cfg->placeholder_keys = 1;
		}
		if (t == CFG_TIER_PRIORITY)
			cfg->npriority = cfg->nkeys;
	}
	return 0;
}

/*
 * {"key": "AIza…", "project": "team-a", "label": "alice's key"}: the key
 * as in a plain entry; project and label optional (null or left out: its
 * own project, no label).
 */
static int
cfg_key_object(struct cfg_parse *p, const cJSON *v, const char *field,
    struct cfg_key *k)
{
	static const char *const names[] = { "key", "project", "label" };
	const cJSON	*f[3];
	char		 sub[96];
	char		 prefix[72];

	(void)snprintf(prefix, sizeof(prefix), "%s.", field);
	if (cfg_members(p, v, prefix, names, 3, f) == -1)
		return -1;
	(void)snprintf(sub, sizeof(sub), "%skey", prefix);
	if (f[0] == NULL)
		return cfg_err(p, sub, "missing: an entry given as an object "
		    "needs its key");
	if (cfg_secret(p, f[0], sub, CFG_KEY_MAX) == -1)
		return -1;
	(void)strlcpy(k->key, f[0]->valuestring, sizeof(k->key));
	(void)snprintf(sub, sizeof(sub), "%sproject", prefix);
	if (cfg_key_text(p, f[1], sub, "\"\\", k->project,
	    sizeof(k->project)) == -1)
		return -1;
	(void)snprintf(sub, sizeof(sub), "%slabel", prefix);
	return cfg_key_text(p, f[2], sub, "", k->label, sizeof(k->label));
}

/*
 * An optional name (project, label): left out or null is "", else a
 * non-empty string of at most len - 1 bytes, without control characters
 * or any of the bytes in bad (it is shown, logged and saved).
 */
static int
cfg_key_text(struct cfg_parse *p, const cJSON *v, const char *field,
    const char *bad, char *dst, size_t len)
{
	const unsigned char	*u;

	if (v == NULL || cJSON_IsNull(v)) {
		dst[0] = '\0';
		return 0;
	}
	if (cfg_str(p, v, field, 1, dst, len) == -1)
		return -1;
	for (u = (const unsigned char *)dst; *u != '\0'; u++)
		if (*u < ' ' || *u == 0x7f || (*bad != '\0' &&
		    strchr(bad, *u) != NULL))
			return cfg_err(p, field, "must not hold control "
			    "characters%s (character %zu does)",
			    *bad != '\0' ? ", quotes or backslashes" : "",
			    (size_t)(u - (const unsigned char *)dst) + 1);
	return 0;
}

/*
 * No key twice, in either list or across them.  Found by sorting (n log
 * n): a pool of thousands of keys must load at once.  The message names
 * the earliest repeat in file order, as a reader scans.
 */
static int
cfg_key_dups(struct cfg_parse *p)
{
	struct config	*cfg = p->cfg;
	struct cfg_dup	*d;
	char		 field[64], first[64];
	size_t		 k, start, dup, orig;

	if ((d = cfg_dup_sort(cfg->keys[0].key, cfg->nkeys,
	    sizeof(cfg->keys[0]))) == NULL)
		return cfg_err(p, cfg_fields[F_PRIORITY_KEYS], "%s",
		    strerror(errno));
	dup = orig = SIZE_MAX;
	for (start = 0, k = 1; k < cfg->nkeys; k++) {
		if (strcmp(d[k].s, d[start].s) != 0) {
			start = k;
			continue;
		}
		if (d[k].i < dup) {
			dup = d[k].i;
			orig = d[start].i;
		}
	}
	free(d);
	if (dup == SIZE_MAX)
		return 0;
	cfg_key_field(cfg, dup, field, sizeof(field));
	cfg_key_field(cfg, orig, first, sizeof(first));
	return cfg_err(p, field, "duplicate of %s", first);
}

/* "priority_keys[2]" or "secondary_keys[0]" for cfg->keys[k]. */
static void
cfg_key_field(const struct config *cfg, size_t k, char *buf, size_t len)
{
	if (k < cfg->npriority)
		(void)snprintf(buf, len, "%s[%zu]",
		    cfg_fields[F_PRIORITY_KEYS], k);
	else
		(void)snprintf(buf, len, "%s[%zu]",
		    cfg_fields[F_SECONDARY_KEYS], k - cfg->npriority);
}

/*
 * access_tokens, one of which a client must present when there are any,
 * and admin_token, which guards the status pages when set.  Both may be
 * null or left out.
 */
int
cfg_tokens(struct cfg_parse *p, const cJSON *list, const cJSON *admin)
{
	struct config	*cfg = p->cfg;
	const cJSON	*v;
	char		 field[64], got[64];
	size_t		 n = 0;

	if (list != NULL && !cJSON_IsNull(list)) {
		if (!cJSON_IsArray(list))
			return cfg_err(p, "access_tokens", "must be an array "
			    "of strings (got %s)", cfg_what(list, got,
			    sizeof(got)));
		cJSON_ArrayForEach(v, list)
			n++;
	}
	if (n > 0) {
		if ((cfg->access_tokens = calloc(n,
		    sizeof(*cfg->access_tokens))) == NULL)
			return cfg_err(p, "access_tokens", "%s",
			    strerror(errno));
		cJSON_ArrayForEach(v, list) {
			(void)snprintf(field, sizeof(field),
			    "access_tokens[%zu]", cfg->naccess_tokens);
			if (cfg_secret(p, v, field, CFG_TOKEN_MAX) == -1)
				return -1;
			if ((cfg->access_tokens[cfg->naccess_tokens] =
			    strdup(v->valuestring)) == NULL)
				return cfg_err(p, field, "%s", strerror(errno));
			cfg->naccess_tokens++;
		}
	}
	if (admin == NULL || cJSON_IsNull(admin))
		return 0;
	if (!cJSON_IsString(admin))
		return cfg_err(p, "admin_token", "must be a non-empty string or "
		    "null (got %s)", cfg_what(admin, got, sizeof(got)));
	if (cfg_secret(p, admin, "admin_token", CFG_TOKEN_MAX) == -1)
		return -1;
	(void)strlcpy(cfg->admin_token, admin->valuestring,
	    sizeof(cfg->admin_token));
	return 0;
}

/*
 * Every secret of the config, for masking wherever text leaves the
 * process: pool keys, access tokens and the admin token.  Built once here
 * (in the master) so that workers share it read-only.
 */
int
cfg_secrets(struct cfg_parse *p)
{
	struct config	 *cfg = p->cfg;
	const char	**all;
	size_t		  i, n = 0;

	if ((all = calloc(cfg->nkeys + cfg->naccess_tokens + 2,
	    sizeof(*all))) == NULL)
		return cfg_err(p, NULL, "%s", strerror(errno));
	for (i = 0; i < cfg->nkeys; i++)
		all[n++] = cfg->keys[i].key;
	for (i = 0; i < cfg->naccess_tokens; i++)
		all[n++] = cfg->access_tokens[i];
	if (cfg->admin_token[0] != '\0')
		all[n++] = cfg->admin_token;
	cfg->scrub = scrub_new(all, n);
	free(all);
	if (cfg->scrub == NULL)
		return cfg_err(p, NULL, "%s", strerror(errno));
	return 0;
}

/* The key's fingerprint: first 8 hex digits of its SHA-256. */
void
cfg_key_id(const char *key, char id[CFG_ID_SIZE])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	int			 i;

	if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < CFG_ID_SIZE / 2) {
		/* Cannot happen with a working libcrypto; never show the key. */
		(void)strlcpy(id, "????????", CFG_ID_SIZE);
		return;
	}
	for (i = 0; i < CFG_ID_SIZE / 2; i++) {
		id[i * 2] = hex[md[i] >> 4];
		id[i * 2 + 1] = hex[md[i] & 0xf];
	}
	id[CFG_ID_SIZE - 1] = '\0';
}

/*
 * "AIza…wxyz": enough for a person to tell keys apart.  A key shorter than
 * three times what is shown of each end would be two thirds shown, and
 * anything but printable ASCII might cut a character in half, so those
 * show only "…".
 */
void
cfg_key_mask(const char *key, char out[CFG_MASKED_SIZE])
{
	const unsigned char	*u = (const unsigned char *)key;
	size_t			 len = strlen(key), i;

	if (len >= 3 * CFG_MASK_SHOWN) {
		for (i = 0; i < CFG_MASK_SHOWN; i++)
			if (u[i] <= ' ' || u[i] >= 0x7f ||
			    u[len - CFG_MASK_SHOWN + i] <= ' ' ||
			    u[len - CFG_MASK_SHOWN + i] >= 0x7f)
				break;
		if (i == CFG_MASK_SHOWN) {
			(void)snprintf(out, CFG_MASKED_SIZE, "%.*s%s%s",
			    CFG_MASK_SHOWN, key, CFG_ELLIPSIS,
			    key + len - CFG_MASK_SHOWN);
			return;
		}
	}
	(void)strlcpy(out, CFG_ELLIPSIS, CFG_MASKED_SIZE);
}
