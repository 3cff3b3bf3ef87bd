/*
 * fileio.c: whole files read, and replaced atomically.
 */
#ifndef FILEIO_H
#define FILEIO_H

#include <sys/types.h>

#include <stddef.h>

struct stat;

#define FILEIO_REGULAR	0x01	/* fileio_read: regular files only */

char		*fileio_read(const char *, size_t, int, size_t *,
		    struct stat *);
int		 fileio_write(const char *, const void *, size_t, mode_t,
		    const struct stat *, char *, size_t);
int		 fileio_split(const char *, char *, size_t, const char **);
int		 fileio_unchanged(const char *, const struct stat *);

#endif /* FILEIO_H */
