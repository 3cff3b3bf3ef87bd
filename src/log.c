/*
 * Logging, in the style of OpenBSD's log.c: log_warn appends strerror(errno),
 * log_warnx does not; fatal/fatalx log and exit 1 (start-up only).
 *
 * Where lines go: stderr in the foreground (-d), else log_file when set, else
 * syslog (facility daemon).  log_reopen() reopens log_file on SIGUSR1.  Each
 * line is written with one write(2) so that lines of several processes
 * appending to one file never interleave.
 *
 * When the workers drop privileges (priv.c), the master, still root, gives
 * log_file to their user each time it opens it (log_setowner), so that the
 * workers can reopen it themselves after logrotate, as nginx does.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "looper.h"

static int	 log_fd = STDERR_FILENO;
static int	 log_to_syslog;
static int	 log_level = LOG_INFO;
static char	 log_path[PATH_MAX];
static uid_t	 log_uid = (uid_t)-1;	/* give log_file to them */

/*
 * foreground: log to stderr; path: a log file ("" for syslog); level: the
 * most verbose priority that is written.
 */
void
log_init(int foreground, const char *path, int level)
{
	log_level = level;
	log_path[0] = '\0';
	if (foreground) {
		log_to_syslog = 0;
		log_fd = STDERR_FILENO;
		return;
	}
	if (path != NULL && path[0] != '\0') {
		if (strlen(path) >= sizeof(log_path))
			fatalx("log_file too long");
		memcpy(log_path, path, strlen(path) + 1);
		log_to_syslog = 0;
		if (log_reopen() == -1)
			fatal("open %s", log_path);
		return;
	}
	log_to_syslog = 1;
	openlog(LOOPER_NAME, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

/* Reopen log_file (logrotate moved it away).  Returns -1 on failure. */
int
log_reopen(void)
{
	int	 fd;

	if (log_to_syslog || log_path[0] == '\0')
		return 0;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -1;
	if (log_fd != STDERR_FILENO && log_fd != -1)
		close(log_fd);
	log_fd = fd;
	/* Root (the master) hands the file to the workers' user; the
	 * group stays, so whoever reads the logs still can. */
	if (log_uid != (uid_t)-1 && geteuid() == 0 &&
	    fchown(fd, log_uid, (gid_t)-1) == -1)
		log_warn("chown %s to uid %ld: workers cannot reopen it",
		    log_path, (long)log_uid);
	return 0;
}

/*
 * Who must be able to reopen log_file: the workers' uid, or -1 for nobody
 * but the master.  Takes effect at the next open.
 */
void
log_setowner(uid_t uid)
{
	log_uid = uid;
}

void
log_setlevel(int level)
{
	log_level = level;
}

/* Would a line of priority pri be written?  Then it is worth building. */
int
log_wants(int pri)
{
	return pri <= log_level;
}

static const char *
log_prio_name(int pri)
{
	switch (pri) {
	case LOG_CRIT:
		return "crit";
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warn";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void
vlog(int pri, const char *fmt, va_list ap)
{
	char		 line[2048], ts[32];
	int		 n, m, saved = errno;
	struct tm	 tm;
	time_t		 t;

	if (pri > log_level) {
		errno = saved;
		return;
	}
	if (log_to_syslog) {
		vsyslog(pri, fmt, ap);
		errno = saved;
		return;
	}
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof(line), "%s %s[%ld] %s: ", ts, LOOPER_NAME,
	    (long)getpid(), log_prio_name(pri));
	if (n < 0)
		n = 0;
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)write(log_fd, line, n);
	errno = saved;
}

static void
log_line(int pri, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(pri, fmt, ap);
	va_end(ap);
}

static void
log_errno(int pri, const char *fmt, va_list ap)
{
	char	 buf[1024];
	int	 saved = errno;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (saved != 0)
		log_line(pri, "%s: %s", buf, strerror(saved));
	else
		log_line(pri, "%s", buf);
	errno = saved;
}

/* Something failed that the operator must see to: LOG_ERR. */
void
log_err(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_errno(LOG_ERR, fmt, ap);
	va_end(ap);
}

void
log_errx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_ERR, fmt, ap);
	va_end(ap);
}

/* Something went wrong and was dealt with: LOG_WARNING. */
void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_errno(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap);
	va_end(ap);
}

/* One access-log line per request; written at LOG_NOTICE. */
void
log_access(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_NOTICE, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_errno(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}
