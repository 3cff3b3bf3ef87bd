/*
 * The prober: a helper process the master forks when key_probe is on
 * (and forks again when it dies, or after a reload, which ends it), like
 * nginx's cache manager.  It never serves a client.  It wakes at least
 * once a second, asks shared memory which invalid keys are due
 * (shm_probe_due), probes them one after another (probe.c), at most
 * key_probe.per_s in any second (struct probe_pace), and writes each
 * answer back (shm_probe_done): a 200 puts the key back in the pool.
 *
 * A fresh prober waits a second before its first probe, so a respawn
 * cannot add a second's probes to those its predecessor just made.
 * Signals: TERM, INT and HUP end it between probes (a probe takes at most
 * PROBE_TIMEOUT_S); USR1 reopens the log.  Locks: only through shm/.
 */
#include <sys/types.h>

#include <bsd/libutil.h>
#include <bsd/unistd.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "looper.h"
#include "priv.h"
#include "probe.h"
#include "shm.h"
#include "tls.h"
#include "util.h"

#define PROBER_BATCH	16	/* due keys fetched per scan */
#define PROBER_NAP_MS	1000	/* the longest sleep */

static volatile sig_atomic_t	 pr_stop, pr_usr1;

static void
prober_sig(int sig)
{
	if (sig == SIGUSR1)
		pr_usr1 = 1;
	else
		pr_stop = 1;
}

/* Sleep ms, cut short by a signal. */
static void
prober_nap(int64_t ms)
{
	struct timespec	 ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	(void)nanosleep(&ts, NULL);
}

static void
prober_start(void)
{
	static const int	 stop[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
	struct sigaction	 sa;
	sigset_t		 none;
	char			 errbuf[256];
	size_t			 i;

	/* First: tests tell the prober from the workers by its title. */
	setproctitle("prober");
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = prober_sig;
	for (i = 0; i < sizeof(stop) / sizeof(stop[0]); i++)
		sigaction(stop[i], &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);	/* the master's mask */

	if (tls_init(looper.cfg, errbuf, sizeof(errbuf)) == -1) {
		log_errx("prober: upstream TLS: %s", errbuf);
		_exit(WRK_EXIT_SLOW);
	}
	close(looper.listen_fd);
	priv_child(WRK_EXIT_OK);
}

/* Probe the key in slot k, if it is still invalid, and log the answer. */
static void
prober_one(int k, const struct shm_probe_conf *pc, struct probe_pace *pace)
{
	struct shm_probe_res	 r;
	char			 key[SHM_KEY_MAX], id[CFG_ID_SIZE];
	char			 msg[PROBE_MESSAGE_MAX];
	int64_t			 stamp;
	int			 back;

	if (shm_probe_take(looper.shm, k, NULL, key, sizeof(key),
	    &stamp) == -1)
		return;
	(void)probe_key(looper.cfg, key, &r, msg, sizeof(msg));
	probe_pace_note(pace, mono_ms());
	back = shm_probe_done(looper.shm, k, key, stamp, now_ms(), pc, &r);
	cfg_key_id(key, id);
	explicit_bzero(key, sizeof(key));
	if (back == 1)
		log_info("key=%s probe: status=%d, back in the pool", id,
		    r.status);
	else if (back == 0)
		log_info("key=%s probe: %s status=%d %s: still out of the "
		    "pool", id, shm_probe_names[r.kind < SHM_PROBE_N ? r.kind :
		    SHM_PROBE_FAILED], r.status, r.why);
}

/*
 * One round: the keys due now, each probed when the pace allows.
 * Returns how long to sleep before the next round (ms).
 */
static int64_t
prober_round(const struct shm_probe_conf *pc, struct probe_pace *pace)
{
	int		 due[PROBER_BATCH];
	int64_t		 next, now, wait;
	size_t		 n, i;

	now = now_ms();
	n = shm_probe_due(looper.shm, now, pc, due, PROBER_BATCH, &next);
	for (i = 0; i < n && !pr_stop; i++) {
		while (!pr_stop && (wait = probe_pace_wait(pace,
		    mono_ms())) > 0)
			prober_nap(wait);
		if (pr_stop)
			break;
		prober_one(due[i], pc, pace);
	}
	if (n > 0)
		return 0;
	wait = next == INT64_MAX ? PROBER_NAP_MS : next - now;
	return wait < PROBER_NAP_MS ? (wait > 0 ? wait : 1) : PROBER_NAP_MS;
}

void
prober_main(void)
{
	struct shm_probe_conf	 pc;
	struct probe_pace	 pace;
	uint64_t		 gen = looper.shm->generation;

	prober_start();
	probe_conf(looper.cfg, &pc);
	if (probe_pace_init(&pace, looper.cfg->probe_per_s) == -1)
		_exit(WRK_EXIT_SLOW);
	prober_nap(PROBER_NAP_MS);
	while (!pr_stop && getppid() == looper.master_pid &&
	    looper.shm->generation == gen) {
		if (pr_usr1) {
			pr_usr1 = 0;
			(void)log_reopen();
		}
		prober_nap(prober_round(&pc, &pace));
	}
	_exit(WRK_EXIT_OK);
}

/* Fork the prober (master only).  Its pid, or -1. */
pid_t
prober_spawn(void)
{
	pid_t	 pid;

	switch (pid = fork()) {
	case -1:
		log_err("fork (prober)");
		return -1;
	case 0:
		prober_main();
		/* NOTREACHED */
	}
	return pid;
}
