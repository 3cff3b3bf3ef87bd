/*
 * Privilege drop, in one place (relayd's way).
 *
 * Started as root with `user` set, the master keeps root for what needs it
 * and nothing else: it binds the listening socket, creates shared memory,
 * writes the pidfile and the usage file, opens log_file, and signals its
 * workers.  Each worker, right after fork() and its TLS set-up (which reads
 * upstream_ca_file, perhaps readable by root only), and before it touches a
 * client, becomes that user for good:
 * setgroups() to the user's primary group alone, setresgid(), setresuid(),
 * then PR_SET_NO_NEW_PRIVS, and it proves there is no way back (setuid(0)
 * must fail).  A worker that cannot drop exits WRK_EXIT_FATAL, so the master
 * stops instead of respawning it forever; a worker never serves a request
 * as root by accident.
 *
 * The user is looked up by cfg_load() (config.c), so -t, start and reload
 * all report an unknown user as "<path>: user: no such user ...".  Started
 * as another user than root, `user` only earns a warning: the daemon runs
 * as whoever started it, as it would without `user`.
 *
 * log_file is opened by the master and inherited; so that a worker can
 * reopen it after logrotate (SIGUSR1), the master gives the file to the
 * user, as nginx does with its logs (log.c, log_setowner).
 *
 * A change of uid clears PR_SET_PDEATHSIG, so priv_child() sets it after
 * priv_drop(), not before.
 *
 * No locks are taken.  The master calls priv_init() at start and after
 * each reload; its children (workers, the prober) call priv_child().
 */
#include <sys/prctl.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bsd/libutil.h>

#include "config.h"
#include "log.h"
#include "looper.h"
#include "priv.h"

/*
 * Master, at start and after a reload that succeeded: say whether the
 * workers will drop, and let log.c hand log_file to the user.
 */
void
priv_init(const struct config *cfg)
{
	if (cfg->user[0] == '\0') {
		log_setowner((uid_t)-1);
		return;
	}
	if (geteuid() != 0) {
		log_setowner((uid_t)-1);
		log_warnx("user \"%s\" is set but %s was not started as root: "
		    "workers run as uid %ld", cfg->user, LOOPER_NAME,
		    (long)geteuid());
		return;
	}
	log_setowner(cfg->user_uid);
	log_debug("workers will run as user %s (uid %ld, gid %ld)",
	    cfg->user, (long)cfg->user_uid, (long)cfg->user_gid);
}

/*
 * Say why the worker cannot run, in the log and, while a daemon is still
 * starting up, on the terminal of whoever started it (a worker's stderr is
 * still the master's then; /dev/null later), and exit for good.
 */
static __attribute__((__noreturn__, __format__ (printf, 1, 2))) void
priv_fail(const char *fmt, ...)
{
	char	 msg[PATH_MAX + 256];
	va_list	 ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_errx("%s", msg);
	if (!looper.foreground)
		(void)fprintf(stderr, "%s: %s\n", LOOPER_NAME, msg);
	_exit(WRK_EXIT_FATAL);
}

/*
 * Worker, first thing after fork(): become cfg->user, for good.  Does
 * nothing without `user` or when not root (priv_init warned).  Returns
 * only when the worker runs as that user with no way back.
 */
void
priv_drop(void)
{
	const struct config	*cfg = looper.cfg;
	uid_t			 uid = cfg->user_uid, ru, eu, su;
	gid_t			 gid = cfg->user_gid, rg, eg, sg;

	if (cfg->user[0] == '\0' || geteuid() != 0)
		return;
	if (uid == (uid_t)-1 || uid == 0 || gid == (gid_t)-1)
		priv_fail("user \"%s\": no uid/gid was looked up", cfg->user);

	/* Groups first: only root may change them. */
	if (setgroups(1, &gid) == -1)
		priv_fail("user \"%s\": setgroups: %s", cfg->user,
		    strerror(errno));
	if (setresgid(gid, gid, gid) == -1)
		priv_fail("user \"%s\": setresgid %ld: %s", cfg->user,
		    (long)gid, strerror(errno));
	if (setresuid(uid, uid, uid) == -1)
		priv_fail("user \"%s\": setresuid %ld: %s", cfg->user,
		    (long)uid, strerror(errno));
	/* No setuid binary or file capability can give anything back. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		priv_fail("user \"%s\": prctl(PR_SET_NO_NEW_PRIVS): %s",
		    cfg->user, strerror(errno));

	/* Trust, but verify: every id is the user's and root is gone. */
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		priv_fail("user \"%s\": getresuid: %s", cfg->user,
		    strerror(errno));
	if (ru != uid || eu != uid || su != uid ||
	    rg != gid || eg != gid || sg != gid)
		priv_fail("user \"%s\": the ids did not change", cfg->user);
	if (setuid(0) != -1 || seteuid(0) != -1)
		priv_fail("user \"%s\": setuid(0) still works", cfg->user);
	if (gid != 0 && (setgid(0) != -1 || setegid(0) != -1))
		priv_fail("user \"%s\": setgid(0) still works", cfg->user);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		priv_fail("user \"%s\": no_new_privs is not set", cfg->user);

	log_debug("worker running as user %s (uid %ld, gid %ld)", cfg->user,
	    (long)uid, (long)gid);
}

/*
 * A child of the master (a worker, the prober), after its TLS set-up:
 * privileges dropped, then (a change of uid clears it) death with the
 * master, checking it did not die already (then exit(ok)); a daemon's
 * stderr, the waiting parent's pipe, let go of; the pidfile left to the
 * master.
 */
void
priv_child(int ok)
{
	int	 fd;

	priv_drop();
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 ||
	    getppid() != looper.master_pid)
		_exit(ok);
	if (!looper.foreground && (fd = open("/dev/null", O_WRONLY)) != -1) {
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	if (looper.pfh != NULL)
		pidfile_close(looper.pfh);
	looper.pfh = NULL;
}
