/*
 * Fuzz target: cfg_load() of src/config.c on any file content.
 *
 * The input is written to a file on tmpfs (/dev/shm when there is one)
 * and loaded, as -t and a reload do.  A load either gives a config that
 * holds together (keys, models, a default model among them, workers in
 * order) or fails with one line that starts with the file's path.  And no
 * message ever shows a secret: when an API key or a token of the input
 * appears in the message, the input is loaded again with that secret
 * changed; if the message follows the change, it came from the secret, and
 * that is a leak.  (A secret that happens to be a word of a message, or
 * that is also written elsewhere in the file, is not.)  Warnings about
 * unknown fields go to /dev/null.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

#define SECRET_MIN	8	/* shorter ones are found in any text */
#define SECRETS_MAX	64	/* checked per input */

static char	 dir[64];
static char	 path[PATH_MAX];

static void
cleanup(void)
{
	(void)unlink(path);
	(void)rmdir(dir);
}

static void
setup(void)
{
	if (path[0] != '\0')
		return;
	(void)snprintf(dir, sizeof(dir), "/dev/shm/fuzz-config-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		(void)snprintf(dir, sizeof(dir), "/tmp/fuzz-config-XXXXXX");
		if (mkdtemp(dir) == NULL)
			abort();
	}
	(void)snprintf(path, sizeof(path), "%s/config.json", dir);
	(void)atexit(cleanup);
	log_init(0, "/dev/null", LOG_ERR);
	(void)unsetenv("TZDIR");
}

static void
write_file(const void *data, size_t len)
{
	const char	*p = data;
	ssize_t		 n;
	int		 fd;

	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1)
		abort();
	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			abort();
		}
		p += n;
		len -= n;
	}
	close(fd);
}

/* Load data as the config file; err gets the message on failure. */
static struct config *
load(const void *data, size_t len, char *err, size_t errlen)
{
	struct config	*cfg;

	write_file(data, len);
	cfg = cfg_load(path, err, errlen);
	if (cfg == NULL) {
		FUZZ_CHECK(err[0] != '\0', "failed without a message");
		FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0,
		    "message does not start with the path: %s", err);
		FUZZ_CHECK(strpbrk(err, "\r\n") == NULL,
		    "message of more than one line: %s", err);
	}
	return cfg;
}

static void
check_config(const struct config *cfg)
{
	size_t	 i;

	FUZZ_CHECK(cfg->nkeys >= 1 && cfg->npriority <= cfg->nkeys,
	    "%zu keys, %zu priority", cfg->nkeys, cfg->npriority);
	for (i = 0; i < cfg->nkeys; i++)
		FUZZ_CHECK(cfg->keys[i].key[0] != '\0' &&
		    strlen(cfg->keys[i].id) == 8, "key %zu", i);
	FUZZ_CHECK(cfg->nmodels >= 1, "no models");
	FUZZ_CHECK(cfg_model(cfg, cfg->default_model) != NULL,
	    "default model %s not a model", cfg->default_model);
	FUZZ_CHECK(cfg->start_workers >= 1 &&
	    cfg->start_workers <= cfg->max_workers &&
	    cfg->min_spare <= cfg->max_spare &&
	    cfg->max_spare <= cfg->max_workers, "workers %d %d %d %d",
	    cfg->start_workers, cfg->min_spare, cfg->max_spare,
	    cfg->max_workers);
	FUZZ_CHECK(cfg->max_body_bytes >= 1 && cfg->client_timeout_s >= 1 &&
	    cfg->upstream_timeout_s >= 1, "limits");
	FUZZ_CHECK(cfg->path[0] == '/' && cfg->usage_file[0] == '/' &&
	    cfg->pidfile[0] == '/', "paths not absolute");
	FUZZ_CHECK(strncmp(cfg->upstream, "https://", 8) == 0 ||
	    strncasecmp(cfg->upstream, "https://", 8) == 0, "upstream %s",
	    cfg->upstream);
}

/* Every string of the document, names and values, that contains s. */
static size_t
count_strings(const cJSON *j, const char *s)
{
	const cJSON	*c;
	size_t		 n = 0;

	if (j->string != NULL && strstr(j->string, s) != NULL)
		n++;
	if (cJSON_IsString(j) && strstr(j->valuestring, s) != NULL)
		n++;
	for (c = j->child; c != NULL; c = c->next)
		n += count_strings(c, s);
	return n;
}

static size_t
count_raw(const char *data, size_t len, const char *s)
{
	const char	*p = data, *q;
	size_t		 n = 0, sl = strlen(s);

	while ((q = memmem(p, len - (p - data), s, sl)) != NULL) {
		n++;
		p = q + 1;
	}
	return n;
}

/* Letters and digits rotated: the same shape, other text. */
static void
rotate(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'a' && *s <= 'z')
			*s = 'a' + (*s - 'a' + 13) % 26;
		else if (*s >= 'A' && *s <= 'Z')
			*s = 'A' + (*s - 'A' + 13) % 26;
		else if (*s >= '0' && *s <= '9')
			*s = '0' + (*s - '0' + 5) % 10;
	}
}

/*
 * The secret s of the input data[0..len) showed in err: did it come from
 * there?
 */
static void
check_secret(const char *data, size_t len, const cJSON *root, const char *s,
    const char *err)
{
	struct config	*cfg;
	char		*quoted, *copy, *at, *rot, err2[1024];
	size_t		 sl = strlen(s);

	if (sl < SECRET_MIN || strstr(err, s) == NULL)
		return;
	/* Only a secret written once, plainly, as a whole string. */
	if (count_raw(data, len, s) != 1 || count_strings(root, s) != 1)
		return;
	if ((quoted = malloc(sl + 3)) == NULL || (copy = malloc(len)) == NULL ||
	    (rot = strdup(s)) == NULL)
		abort();
	quoted[0] = '"';
	memcpy(quoted + 1, s, sl);
	memcpy(quoted + 1 + sl, "\"", 2);
	memcpy(copy, data, len);
	rotate(rot);
	if (strcmp(rot, s) != 0 &&
	    (at = memmem(copy, len, quoted, sl + 2)) != NULL) {
		memcpy(at + 1, rot, sl);
		cfg = load(copy, len, err2, sizeof(err2));
		cfg_free(cfg);
		FUZZ_CHECK(!(strstr(err2, rot) != NULL &&
		    strstr(err2, s) == NULL), "a secret in the message: %s",
		    err);
	}
	free(rot);
	free(copy);
	free(quoted);
}

static void
check_secrets(const char *data, size_t len, const char *err)
{
	static const char *const lists[] = {
		"priority_keys", "secondary_keys", "access_tokens"
	};
	cJSON		*root;
	const cJSON	*m, *v;
	size_t		 i, n = 0;

	/* As cfg_load() parses: the NUL after the text included. */
	root = cJSON_ParseWithLengthOpts(data, len + 1, NULL, 1);
	if (root == NULL)
		return;
	for (m = root->child; m != NULL; m = m->next) {
		if (m->string == NULL)
			continue;
		if (strcmp(m->string, "admin_token") == 0 &&
		    cJSON_IsString(m))
			check_secret(data, len, root, m->valuestring, err);
		for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
			if (strcmp(m->string, lists[i]) == 0 &&
			    cJSON_IsArray(m))
				cJSON_ArrayForEach(v, m)
					if (cJSON_IsString(v) &&
					    n++ < SECRETS_MAX)
						check_secret(data, len, root,
						    v->valuestring, err);
	}
	cJSON_Delete(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct config	*cfg;
	char		 err[1024], *text;

	setup();
	cfg = load(data, len, err, sizeof(err));
	if (cfg != NULL) {
		check_config(cfg);
		cfg_free(cfg);
		return 0;
	}
	/* A NUL-terminated copy for cJSON, as cfg_load() reads it. */
	if (memchr(data, '\0', len) != NULL)
		return 0;
	if ((text = malloc(len + 1)) == NULL)
		abort();
	memcpy(text, data, len);
	text[len] = '\0';
	check_secrets(text, len, err);
	free(text);
	return 0;
}
