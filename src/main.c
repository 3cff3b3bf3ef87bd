/*
 * gemini-looper: options and the start-up order.
 *
 * pidfile_open (a second instance stops here, naming the running pid) ->
 * config -> bind -> shared memory -> daemonize -> pidfile_write -> fork the
 * workers (master.c).  Everything that can fail is tried while stderr still
 * reaches the user, and the daemonizing parent exits 0 only once the master
 * says the socket is bound and the workers are up.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <bsd/libutil.h>
#include <bsd/stdlib.h>
#include <bsd/unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "looper.h"
#include "master.h"
#include "priv.h"
#include "shm.h"
#include "tls.h"



extern char	**environ;

static __attribute__((__noreturn__)) void
usage(void)
{
	fprintf(stderr, "usage: %s [-dtV] [-c config.json] [-p pidfile]\n",
	    LOOPER_NAME);
	exit(1);
}

/*
 * Detach from the terminal.  The parent waits on a pipe for the master to
 * report that it is serving ('1') or has failed (EOF without '1'), and
 * exits 0 or 1 accordingly, so that an init script learns the truth.
 * Returns the write end of the pipe in the child.
 */
static int
daemonize(void)
{
	int	 p[2], fd;
	pid_t	 pid;
	char	 c;
	ssize_t	 n;

	if (pipe2(p, O_CLOEXEC) == -1)
		fatal("pipe");
	switch (pid = fork()) {
	case -1:
		fatal("fork");
	case 0:
		break;
	default:
		close(p[1]);
		do {
			n = read(p[0], &c, 1);
		} while (n == -1 && errno == EINTR);
		_exit(n == 1 && c == '1' ? 0 : 1);
	}
	close(p[0]);
	if (setsid() == -1)
		fatal("setsid");
	if (chdir("/") == -1)
		fatal("chdir /");
	if ((fd = open("/dev/null", O_RDWR)) != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		/* stderr stays until the master is up: fatal() still reaches
		 * the user through the waiting parent's terminal. */
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return p[1];
}

/* The options; returns 1 for -t, exits for -V, -h and mistakes. */
static int
main_options(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "foreground",	no_argument,		NULL, 'd' },
		{ "pidfile",	required_argument,	NULL, 'p' },
		{ "test",	no_argument,		NULL, 't' },
		{ "version",	no_argument,		NULL, 'V' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL,		0,			NULL, 0 }
	};
	int	 ch, test = 0;

	looper.conf_path = "config.json";
	while ((ch = getopt_long(argc, argv, "c:dp:tVh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			looper.conf_path = optarg;
			break;
		case 'd':
			looper.foreground = 1;
			break;
		case 'p':
			looper.pidfile_arg = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'V':
			printf("%s %s\n", LOOPER_NAME, LOOPER_VERSION);
			exit(0);
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	return test;
}

/*
 * The config, made with defaults when there is none (not for -t).
 * NULL when it cannot be read or made (said on stderr).
 */
static struct config *
main_config(int test)
{
	struct config	*cfg;
	struct stat	 st;
	char		 err[1024];

	if (!test && stat(looper.conf_path, &st) == -1 && errno == ENOENT) {
		if (cfg_create_default(looper.conf_path, err,
		    sizeof(err)) == -1) {
			fprintf(stderr, "%s\n", err);
			return NULL;
		}
		log_warnx("%s did not exist: created it with defaults "
		    "(mode 0600); put your Gemini API keys in it",
		    looper.conf_path);
	}
	if ((cfg = cfg_load(looper.conf_path, err, sizeof(err))) == NULL)
		fprintf(stderr, "%s\n", err);
	return cfg;
}

/* The pidfile taken, the socket bound, the segment made: 0, or -1. */
static int
main_acquire(struct config *cfg, const char *pidpath)
{
	char	 err[1024];
	pid_t	 other;

	looper.pfh = pidfile_open(pidpath, 0644, &other);
	if (looper.pfh == NULL) {
		if (errno == EEXIST)
			fprintf(stderr, "%s: already running, pid %ld "
			    "(pidfile %s)\n", LOOPER_NAME, (long)other,
			    pidpath);
		else
			fprintf(stderr, "%s: pidfile %s: %s\n", LOOPER_NAME,
			    pidpath, strerror(errno));
		return -1;
	}
	if ((looper.listen_fd = master_listen(cfg, err, sizeof(err))) == -1 ||
	    master_publish(cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		pidfile_remove(looper.pfh);
		return -1;
	}
	return 0;
}

int
main(int argc, char *argv[])
{
	struct config	*cfg;
	const char	*pidpath;
	int		 test, readyfd = -1;

	setproctitle_init(argc, argv, environ);
	test = main_options(argc, argv);
	/* Until daemonized, everything goes to stderr. */
	log_init(1, NULL, LOG_INFO);
	if ((cfg = main_config(test)) == NULL)
		return 1;
	if (test) {
		printf("configuration ok\n");
		cfg_free(cfg);
		return 0;
	}
	if (cfg->placeholder_keys)
		log_warnx("%s: the keys are placeholders: requests will fail "
		    "until you put real Gemini API keys in priority_keys",
		    cfg->path);
	looper.cfg = cfg;
	log_setlevel(cfg->log_level);
	priv_init(cfg);
	tls_prepare(cfg);	/* once, for every worker: tls.c */

	pidpath = looper.pidfile_arg != NULL ? looper.pidfile_arg :
	    cfg->pidfile;
	if (main_acquire(cfg, pidpath) == -1)
		return 1;
	if (!looper.foreground)
		readyfd = daemonize();
	looper.master_pid = getpid();
	if (pidfile_write(looper.pfh) == -1)
		log_err("pidfile %s", pidpath);
	return master_main(readyfd);
}
