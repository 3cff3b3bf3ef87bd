/*
 * The secrets of a config: the pool's API keys (priority_keys, then
 * secondary_keys), the access tokens and the admin token; each key's
 * fingerprint and masked form; and the scrubber built from all of them.
 *
 * Called by config.c's cfg_build() and cfg_load(); cfg_key_id() and
 * cfg_key_mask() also by status.c and the tests.  A message names a key
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

static void	 cfg_key_field(const struct config *, size_t, char *, size_t);

/* "priority_keys[2]" or "secondary_keys[0]" for cfg->keys[k]. */
static void
cfg_key_field(const struct config *cfg, size_t k, char *buf, size_t len)
{
	if (k < cfg->npriority)
		(void)snprintf(buf, len, "priority_keys[%zu]", k);
	else
		(void)snprintf(buf, len, "secondary_keys[%zu]",
		    k - cfg->npriority);
}

/*
 * priority_keys then secondary_keys into cfg->keys.  Duplicates are found
 * by sorting (n log n): a pool of thousands of keys must load at once.
 */
int
cfg_keys(struct cfg_parse *p, const cJSON *pri, const cJSON *sec)
{
	struct config	*cfg = p->cfg;
	const cJSON	*lists[2] = { pri, sec }, *v;
	struct cfg_dup	*d;
	char		 field[64], first[64], got[64];
	size_t		 n = 0, i, k, start, dup, orig;
	int		 t;

	for (t = 0; t < 2; t++) {
		if (lists[t] == NULL || cJSON_IsNull(lists[t]))
			continue;
		if (!cJSON_IsArray(lists[t]))
			return cfg_err(p, cfg_fields[t == 0 ? F_PRIORITY_KEYS :
			    F_SECONDARY_KEYS], "must be an array of strings "
			    "(got %s)", cfg_what(lists[t], got, sizeof(got)));
		cJSON_ArrayForEach(v, lists[t])
			n++;
	}
	if (n == 0)
		return cfg_err(p, "priority_keys", "no API keys: at least one "
		    "is needed in priority_keys or secondary_keys");
	if ((cfg->keys = calloc(n, sizeof(*cfg->keys))) == NULL)
		return cfg_err(p, "priority_keys", "%s", strerror(errno));

	k = 0;
	for (t = 0; t < 2; t++) {
		if (lists[t] == NULL || !cJSON_IsArray(lists[t]))
			continue;
		i = 0;
		cJSON_ArrayForEach(v, lists[t]) {
			(void)snprintf(field, sizeof(field), "%s[%zu]",
			    t == 0 ? "priority_keys" : "secondary_keys", i++);
			if (cfg_secret(p, v, field, CFG_KEY_MAX) == -1)
				return -1;
			(void)strlcpy(cfg->keys[k].key, v->valuestring,
			    sizeof(cfg->keys[k].key));
			cfg_key_id(v->valuestring, cfg->keys[k].id);
			cfg_key_mask(v->valuestring, cfg->keys[k].masked);
			cfg->keys[k].tier = t == 0 ? CFG_TIER_PRIORITY :
			    CFG_TIER_SECONDARY;
			k++;
		}
		if (t == 0)
			cfg->npriority = k;
	}
	cfg->nkeys = k;

	for (k = 0; k < cfg->nkeys; k++)
		if (cfg_placeholder(cfg->keys[k].key))
			cfg->placeholder_keys = 1;

	if ((d = calloc(cfg->nkeys, sizeof(*d))) == NULL)
		return cfg_err(p, "priority_keys", "%s", strerror(errno));
	for (k = 0; k < cfg->nkeys; k++) {
		d[k].s = cfg->keys[k].key;
		d[k].i = k;
	}
	qsort(d, cfg->nkeys, sizeof(*d), cfg_dup_cmp);
	/* Report the earliest repeat in file order, as a reader scans. */
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
	if (dup != SIZE_MAX) {
		cfg_key_field(cfg, dup, field, sizeof(field));
		cfg_key_field(cfg, orig, first, sizeof(first));
		return cfg_err(p, field, "duplicate of %s", first);
	}
	return 0;
}

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
cfg_key_id(const char *key, char id[9])
{
	static const char	 hex[] = "0123456789abcdef";
	unsigned char		 md[EVP_MAX_MD_SIZE];
	unsigned int		 mdlen = 0;
	int			 i;

	if (EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen < 4) {
		/* Cannot happen with a working libcrypto; never show the key. */
		(void)strlcpy(id, "????????", 9);
		return;
	}
	for (i = 0; i < 4; i++) {
		id[i * 2] = hex[md[i] >> 4];
		id[i * 2 + 1] = hex[md[i] & 0xf];
	}
	id[8] = '\0';
}

/*
 * "AIza…wxyz": enough for a person to tell keys apart.  A key shorter than
 * 12 would be two thirds shown, and anything but printable ASCII might cut
 * a character in half, so those show only "…".
 */
void
cfg_key_mask(const char *key, char out[16])
{
	const unsigned char	*u = (const unsigned char *)key;
	size_t			 len = strlen(key), i;

	if (len >= 12) {
		for (i = 0; i < 4; i++)
			if (u[i] <= ' ' || u[i] >= 0x7f ||
			    u[len - 4 + i] <= ' ' || u[len - 4 + i] >= 0x7f)
				break;
		if (i == 4) {
			memcpy(out, key, 4);
			memcpy(out + 4, "\xe2\x80\xa6", 3);
			memcpy(out + 7, key + len - 4, 4);
			out[11] = '\0';
			return;
		}
	}
	(void)strlcpy(out, "\xe2\x80\xa6", 16);
}
