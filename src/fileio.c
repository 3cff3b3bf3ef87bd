/*
 * Whole files in and out, for the files the master keeps: config.json
 * (read by config.c, rewritten by reset.c) and the usage file
 * (persist.c).  A file is read to its end, whatever its size said when it
 * was opened (a file that grows meanwhile stays whole), up to a bound;
 * it is replaced atomically, the way redis writes its dump: a temp file
 * in the same directory, fsync'd, renamed over the old one, and the
 * directory fsync'd, so that a crash, a kill or a full disk leaves the old
 * file or the new one, whole.
 *
 * No locks; never called by a worker.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <bsd/string.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"

/*
 * The whole of the file at path, NUL-terminated, its length in *lenp and
 * its stat in *stp (may be NULL).  With FILEIO_REGULAR in flags only a
 * regular file is read (the master must not wait on a FIFO); else
 * anything but a directory (a pipe too: -c <(...)).  NULL with errno
 * set: as open(2) and read(2) say, EISDIR for a directory, EINVAL for
 * what is not a regular file when one is wanted, EFBIG past max bytes.
 */
char *
fileio_read(const char *path, size_t max, int flags, size_t *lenp,
    struct stat *stp)
{
	struct stat	 st;
	char		*buf = NULL, *nbuf;
	size_t		 len = 0, cap = 0;
	ssize_t		 n;
	int		 fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1)
		goto fail;
	if (S_ISDIR(st.st_mode) || ((flags & FILEIO_REGULAR) &&
	    !S_ISREG(st.st_mode))) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto fail;
	}
	for (;;) {
		if (cap - len < 2) {
			cap = cap == 0 ? (st.st_size > 0 &&
			    (size_t)st.st_size < max ? (size_t)st.st_size + 2 :
			    8192) : cap * 2;
			if (cap > max + 2)
				cap = max + 2;
			if ((nbuf = realloc(buf, cap)) == NULL)
				goto fail;
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		len += n;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	close(fd);
	if (buf == NULL && (buf = malloc(1)) == NULL)
		return NULL;
	buf[len] = '\0';
	*lenp = len;
	if (stp != NULL)
		*stp = st;
	return buf;
fail:
	saved = errno;
	close(fd);
	free(buf);
	errno = saved;
	return NULL;
}

/*
 * The directory of path into dir, and where its last component starts
 * into *base.  0, or -1 when dir is too small.
 */
int
fileio_split(const char *path, char *dir, size_t dirlen, const char **base)
{
	const char	*slash = strrchr(path, '/');

	if (slash == NULL) {
		*base = path;
		return strlcpy(dir, ".", dirlen) >= dirlen ? -1 : 0;
	}
	*base = slash + 1;
	if (slash == path)
		return strlcpy(dir, "/", dirlen) >= dirlen ? -1 : 0;
	if ((size_t)(slash - path) >= dirlen)
		return -1;
	memcpy(dir, path, slash - path);
	dir[slash - path] = '\0';
	return 0;
}

/* Is the file at path still the one was describes (same inode, size,
 * modification time)?  1 or 0. */
int
fileio_unchanged(const char *path, const struct stat *was)
{
	struct stat	 now;

	return stat(path, &now) == 0 && now.st_dev == was->st_dev &&
	    now.st_ino == was->st_ino && now.st_size == was->st_size &&
	    now.st_mtim.tv_sec == was->st_mtim.tv_sec &&
	    now.st_mtim.tv_nsec == was->st_mtim.tv_nsec;
}

/* A rename is in the directory: make that durable too.  0, or -1. */
static int
fileio_sync_dir(const char *dir, char *err, size_t errlen)
{
	int	 dfd, saved;

	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "%s: open directory: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (fsync(dfd) == -1 && errno != EINVAL) {
		saved = errno;
		close(dfd);
		snprintf(err, errlen, "%s: fsync directory: %s", dir,
		    strerror(saved));
		errno = saved;
		return -1;
	}
	close(dfd);
	return 0;
}

/*
 * Replace path with buf, atomically: ".<name>.tmp" in the same directory
 * (rename works only within a file system), written, fsync'd, renamed
 * over path, and the directory fsync'd so the rename itself is durable.
 * mode is the new file's mode.  was, when not NULL, is path as the caller
 * read it: the new file gets its owner (as root: keep a config file's
 * owner), and path is replaced only if it is still that file, so that a
 * config the user saved meanwhile is not overwritten with an edit of the
 * one before (EAGAIN).  On failure path is untouched, the temp file
 * removed, and err says what failed.  Returns 0 or -1.
 */
int
fileio_write(const char *path, const void *buf, size_t len,
    mode_t mode, const struct stat *was, char *err, size_t errlen)
{
	char		 dir[PATH_MAX], tmp[PATH_MAX];
	const char	*base, *p = buf, *what;
	size_t		 off = 0;
	ssize_t		 w;
	int		 fd = -1, n, saved;

	if (fileio_split(path, dir, sizeof(dir), &base) == -1 ||
	    *base == '\0' ||
	    (n = snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, base)) < 0 ||
	    (size_t)n >= sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	what = "create";
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    mode & 0777);
	if (fd == -1)
		goto fail;
	what = "chmod";
	if (fchmod(fd, mode) == -1)
		goto fail;
	if (was != NULL && geteuid() == 0)
		(void)fchown(fd, was->st_uid, was->st_gid);
	what = "write";
	while (off < len) {
		w = write(fd, p + off, len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			goto fail;
		off += (size_t)w;
	}
	what = "fsync";
	if (fsync(fd) == -1)
		goto fail;
	what = "close";
	n = close(fd);
	fd = -1;
	if (n == -1)
		goto fail;
	/* Checked last: the window left is a stat and a rename wide. */
	if (was != NULL && !fileio_unchanged(path, was)) {
		(void)unlink(tmp);
		snprintf(err, errlen, "%s: changed while it was being updated "
		    "(left as it is)", path);
		errno = EAGAIN;
		return -1;
	}
	what = "rename";
	if (rename(tmp, path) == -1)
		goto fail;
	return fileio_sync_dir(dir, err, errlen);
fail:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (strcmp(what, "create") != 0)
		(void)unlink(tmp);
	snprintf(err, errlen, "%s: %s: %s", tmp, what, strerror(saved));
	errno = saved;
	return -1;
}
