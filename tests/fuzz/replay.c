/*
 * Replays inputs through a fuzz target without libFuzzer, for make check:
 * the seed corpus and every input that once broke something
 * (tests/fuzz/regress/<target>/) go through LLVMFuzzerTestOneInput() of a
 * target built with gcc and ASan/UBSan.  A broken invariant aborts, a
 * sanitizer report exits non-zero; either fails the build.
 *
 *   replay-<target> DIR|FILE ...
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static int
replay_file(const char *path)
{
	FILE	*f;
	uint8_t	*buf = NULL, *nbuf;
	size_t	 len = 0, cap = 0, n;

	if ((f = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - len < 4096) {
			cap = cap == 0 ? 65536 : cap * 2;
			if ((nbuf = realloc(buf, cap)) == NULL) {
				fprintf(stderr, "replay: out of memory\n");
				exit(1);
			}
			buf = nbuf;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	/* An exactly sized copy, as libFuzzer hands it over. */
	if ((nbuf = malloc(len > 0 ? len : 1)) == NULL)
		exit(1);
	if (len > 0)
		memcpy(nbuf, buf, len);
	free(buf);
	(void)LLVMFuzzerTestOneInput(nbuf, len);
	free(nbuf);
	return 0;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir, in name order; returns how many. */
static int
replay_dir(const char *dir, int *failed)
{
	DIR		*d;
	struct dirent	*e;
	struct stat	 st;
	char		**names = NULL, **nn, path[4096];
	size_t		 n = 0, i;
	int		 count = 0;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		*failed = 1;
		return 0;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if ((nn = realloc(names, (n + 1) * sizeof(*names))) == NULL ||
		    (nn[n] = strdup(e->d_name)) == NULL)
			exit(1);
		names = nn;
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), cmp);
	for (i = 0; i < n; i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		    names[i]) < sizeof(path) && stat(path, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			if (replay_file(path) == -1)
				*failed = 1;
			else
				count++;
		}
		free(names[i]);
	}
	free(names);
	return count;
}

int
main(int argc, char *argv[])
{
	struct stat	 st;
	int		 i, count = 0, failed = 0;

	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) == -1) {
			/* A target with no regressions yet has no folder. */
			if (errno == ENOENT)
				continue;
			fprintf(stderr, "replay: %s: %s\n", argv[i],
			    strerror(errno));
			failed = 1;
		} else if (S_ISDIR(st.st_mode))
			count += replay_dir(argv[i], &failed);
		else if (replay_file(argv[i]) == 0)
			count++;
		else
			failed = 1;
	}
	printf("%s: %d inputs replayed\n", argc > 0 ? argv[0] : "replay",
	    count);
	return failed;
}
