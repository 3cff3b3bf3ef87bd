/*
 * log.c: log lines to syslog, stderr or log_file.
 */
#ifndef LOG_H
#define LOG_H

#include <sys/types.h>

#include <stdarg.h>

void	 log_init(int, const char *, int);
int	 log_reopen(void);
void	 log_setlevel(int);
int	 log_wants(int);
void	 log_setowner(uid_t);
void	 log_err(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_errx(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_warn(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_warnx(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_info(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_debug(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 log_access(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
void	 vlog(int, const char *, va_list)
	    __attribute__((__format__ (printf, 2, 0)));
__attribute__((__noreturn__)) void fatal(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));
__attribute__((__noreturn__)) void fatalx(const char *, ...)
	    __attribute__((__format__ (printf, 1, 2)));

#endif /* LOG_H */
