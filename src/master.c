/*
 * The master: binds, builds shared memory, forks the workers and then only
 * sleeps in sigsuspend(), the way nginx's master does.  Signal handlers set
 * flags; the loop acts on them:
 *   SIGCHLD  reap, and replace what died (with a back-off when workers die
 *            right after they start);
 *   SIGALRM  once a second: size the pool from the scoreboard (Apache
 *            prefork's idle-server maintenance);
 *   SIGHUP   reload: a new config is built whole; if it fails the old one
 *            stays; if it loads, it is published in shared memory with a new
 *            generation and the old workers finish what they are doing and
 *            exit while new ones start (Apache's graceful restart);
 *   SIGTERM/SIGINT  graceful stop;  SIGUSR1  reopen the log file.
 * The master never serves a request, and never exits because a reload or
 * a request went wrong.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <bsd/libutil.h>
#include <bsd/stdlib.h>
#include <bsd/string.h>
#include <bsd/unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "looper.h"
#include "master.h"
#include "persist.h"
#include "pool.h"
#include "priv.h"
#include "probe.h"
#include "reset.h"
#include "shm.h"
#include "tls.h"
#include "util.h"
#include "worker.h"

#define QUICK_DEATH_MS		1000	/* died this soon, unready: back off */
#define BACKOFF_MAX_MS		10000
#define PROBER_BACKOFF_MS	5000	/* respawn delay after a bad exit */

struct child {
	pid_t		 pid;
	int		 slot;
	int64_t		 started;	/* mono ms */
	uint64_t	 generation;
	int		 stopping;	/* told to finish and exit */
};

static volatile sig_atomic_t	 sig_hup, sig_term, sig_chld, sig_usr1,
				 sig_alrm;
static struct child		*children;
static int			 nchildren;	/* capacity of children[] */
static int			 stop_spawning;
static int64_t			 backoff_ms, next_spawn;
static uint32_t			 seen_recoveries;
static pid_t			 prober_pid;	/* 0: none running */
static int64_t			 prober_after;	/* mono ms: respawn then */

static void
master_sig(int sig)
{
	int	 saved = errno;

	switch (sig) {
	case SIGHUP:
		sig_hup = 1;
		break;
	case SIGTERM:
	case SIGINT:
		sig_term = 1;
		break;
	case SIGCHLD:
		sig_chld = 1;
		break;
	case SIGUSR1:
		sig_usr1 = 1;
		break;
	case SIGALRM:
		sig_alrm = 1;
		break;
	}
	errno = saved;
}

/*
 * Bind the listening socket of cfg->listen.  Returns the fd, or -1 with err
 * saying why.  The socket is non-blocking: workers wait for it in epoll and
 * several may race for one connection.
 */
int
master_listen(const struct config *cfg, char *err, size_t errlen)
{
	struct addrinfo	 hints, *res, *ai;
	const char	*host;
	int		 fd = -1, on = 1, gai, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	host = cfg->listen_host;
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		host = NULL;
	if ((gai = getaddrinfo(host, cfg->listen_port, &hints, &res)) != 0) {
		snprintf(err, errlen, "%s: listen: %s: %s", cfg->path,
		    cfg->listen, gai_strerror(gai));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on,
		    sizeof(on));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 511) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		snprintf(err, errlen, "%s: listen: cannot bind %s: %s",
		    cfg->path, cfg->listen, strerror(saved));
	return fd;
}

/*
 * The address fd is bound to, numerically ("127.0.0.1:48888",
 * "[::1]:48888"), into looper.listen_addr: with port 0 in the config,
 * the log says which port the system chose.
 */
static void
master_bound(int fd, const struct config *cfg)
{
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	char			 host[NI_MAXHOST], port[NI_MAXSERV];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1 ||
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		(void)strlcpy(looper.listen_addr, cfg->listen,
		    sizeof(looper.listen_addr));
		return;
	}
	(void)snprintf(looper.listen_addr, sizeof(looper.listen_addr),
	    ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/*
 * Put cfg's keys and models into shared memory, creating the segment the
 * first time and a bigger one when a reload outgrows it (usage carried
 * over).  Returns 0, or -1 with err (the running state is then untouched).
 */
int
master_publish(struct config *cfg, char *err, size_t errlen)
{
	struct shm_key_spec	*ks;
	struct shm_model_spec	*ms;
	struct shm_sizes	 sz;
	struct shm_header	*h, *old = looper.shm;
	size_t			 i, def = 0;
	int			 rv = -1;

	ks = calloc(cfg->nkeys + 1, sizeof(*ks));
	ms = calloc(cfg->nmodels + 1, sizeof(*ms));
	if (ks == NULL || ms == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	for (i = 0; i < cfg->nkeys; i++) {
		ks[i].key = cfg->keys[i].key;
		ks[i].id = cfg->keys[i].id;
		ks[i].masked = cfg->keys[i].masked;
		ks[i].tier = cfg->keys[i].tier;
		ks[i].project = cfg->keys[i].project;
		ks[i].label = cfg->keys[i].label;
	}
	for (i = 0; i < cfg->nmodels; i++) {
		ms[i].name = cfg->models[i].name;
		ms[i].tpm_limit = cfg->models[i].tpm_limit;
		ms[i].tpd_limit = cfg->models[i].tpd_limit;
		ms[i].rpm_limit = cfg->models[i].rpm_limit;
		ms[i].rpd_limit = cfg->models[i].rpd_limit;
		ms[i].sessions_limit = cfg->models[i].sessions_limit;
		if (strcmp(cfg->models[i].name, cfg->default_model) == 0)
			def = i;
	}
	/* Old-generation workers drain while new ones start: twice the pool. */
	shm_sizes_for(cfg->nkeys, cfg->nmodels, cfg->max_workers * 2,
	    cfg->nprojects, &sz);
	h = old;
	if (h == NULL || !shm_fits(h, &sz) ||
	    shm_publish(h, ks, cfg->nkeys, ms, cfg->nmodels, def) == -1) {
		if ((h = shm_create(&sz, now_ms())) == NULL) {
			snprintf(err, errlen, "shared memory of %zu bytes: %s",
			    shm_layout_size(&sz), strerror(errno));
			goto done;
		}
		if (shm_publish(h, ks, cfg->nkeys, ms, cfg->nmodels,
		    def) == -1) {
			snprintf(err, errlen, "shared memory: publish failed");
			shm_destroy(h);
			goto done;
		}
		if (old != NULL) {
			shm_carry(h, old);	/* the old start time too */
			shm_destroy(old);
		}
		looper.shm = h;
		log_info("shared memory: %zu bytes for %u keys, %u models, "
		    "%u workers", (size_t)h->size, h->max_keys, h->max_models,
		    h->max_workers);
	}
	rv = 0;
done:
	free(ks);
	free(ms);
	return rv;
}

static struct child *
child_find(pid_t pid)
{
	int	 i;

	for (i = 0; i < nchildren; i++)
		if (children[i].pid == pid)
			return &children[i];
	return NULL;
}

static int
spawn_worker(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 slot;

	if ((c = child_find(0)) == NULL) {
		log_warnx("worker table full (%d)", nchildren);
		return -1;
	}
	if ((slot = board_claim(looper.shm, 0)) == -1) {
		log_warnx("scoreboard full (%u slots)", looper.shm->max_workers);
		return -1;
	}
	switch (pid = fork()) {
	case -1:
		log_err("fork");
		board_release(looper.shm, slot);
		return -1;
	case 0:
		free(children);
		worker_main(slot);
		/* NOTREACHED */
	}
	board_set_pid(looper.shm, slot, pid);
	c->pid = pid;
	c->slot = slot;
	c->started = mono_ms();
	c->generation = looper.shm->generation;
	c->stopping = 0;
	return 0;
}

/* Send sig to every child, or only to those of an older generation. */
static void
signal_children(int sig, int old_only)
{
	int	 i;

	for (i = 0; i < nchildren; i++) {
		if (children[i].pid <= 0)
			continue;
		if (old_only &&
		    children[i].generation == looper.shm->generation)
			continue;
		if (sig == SIGTERM || sig == SIGHUP || sig == SIGUSR2)
			children[i].stopping = 1;
		(void)kill(children[i].pid, sig);
	}
}

static int
live_children(void)
{
	int	 i, n = 0;

	for (i = 0; i < nchildren; i++)
		if (children[i].pid > 0)
			n++;
	return n;
}

/*
 * The prober (prober.c) is forked on a tick while key_probe is on, and
 * again a tick after it exits (a reload ends it, so that the new config's
 * schedule applies), or PROBER_BACKOFF_MS after it failed.
 */
static void
prober_reaped(int status)
{
	prober_pid = 0;
	prober_after = mono_ms();
	if (WIFEXITED(status) && WEXITSTATUS(status) == WRK_EXIT_OK)
		return;
	log_errx("prober exited (status %d), respawning in %d ms", status,
	    PROBER_BACKOFF_MS);
	prober_after += PROBER_BACKOFF_MS;
}

static void
prober_tick(void)
{
	pid_t	 pid;

	if (looper.cfg->probe_first_s <= 0 || sig_term) {
		if (prober_pid > 0)
			(void)kill(prober_pid, SIGTERM);
		return;
	}
	if (prober_pid > 0 || mono_ms() < prober_after)
		return;
	if ((pid = prober_spawn()) == -1)
		prober_after = mono_ms() + PROBER_BACKOFF_MS;
	else
		prober_pid = pid;
}

static void
reap(void)
{
	struct child	*c;
	pid_t		 pid;
	int		 status, ready;
	int64_t		 lived;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == prober_pid) {
			prober_reaped(status);
			continue;
		}
		if ((c = child_find(pid)) == NULL)
			continue;
		ready = board_state(looper.shm, c->slot) != SHM_W_STARTING;
		board_release(looper.shm, c->slot);
		lived = mono_ms() - c->started;
		c->pid = 0;
		if (WIFEXITED(status) && WEXITSTATUS(status) == WRK_EXIT_OK)
			continue;
		if (WIFEXITED(status) &&
		    WEXITSTATUS(status) == WRK_EXIT_FATAL) {
			log_errx("worker %ld cannot work (exit %d): "
			    "not respawning, stopping", (long)pid,
			    WEXITSTATUS(status));
			stop_spawning = 1;
			sig_term = 1;
			continue;
		}
		if (WIFSIGNALED(status))
			log_errx("worker %ld killed by signal %d%s",
			    (long)pid, WTERMSIG(status),
			    c->stopping ? "" : ", replacing it");
		else
			log_errx("worker %ld exited with %d, replacing it",
			    (long)pid, WEXITSTATUS(status));
		if (c->stopping)
			continue;
		/* Dying right after start, before it could serve, means
		 * starting a worker fails: slow down instead of forking in a
		 * tight loop.  A worker that was up and got killed (the OOM
		 * killer, an admin) says nothing about its successor: it is
		 * replaced at once, and the back-off starts over, else a few
		 * such kills would leave the pool empty for seconds. */
		if ((lived < QUICK_DEATH_MS && !ready) || (WIFEXITED(status) &&
		    WEXITSTATUS(status) == WRK_EXIT_SLOW)) {
			backoff_ms = backoff_ms == 0 ? 100 : backoff_ms * 2;
			if (backoff_ms > BACKOFF_MAX_MS)
				backoff_ms = BACKOFF_MAX_MS;
			next_spawn = mono_ms() + backoff_ms;
			log_warnx("workers die young: next spawn in %lld ms",
			    (long long)backoff_ms);
		} else if (ready)
			backoff_ms = 0;
	}
}

/*
 * Apache prefork's idle-server maintenance: keep between min_spare and
 * max_spare idle workers of the current generation, never more than
 * max_workers in all.  Streams hold a worker for tens of seconds, so the
 * pool follows the load both ways.
 */
static void
maintain_pool(void)
{
	const struct config	*cfg = looper.cfg;
	struct pool_plan	 plan;
	int			 i, total = 0, idle = 0, excess;
	uint32_t		 st;

	if (stop_spawning || sig_term)
		return;
	for (i = 0; i < nchildren; i++) {
		if (children[i].pid <= 0 || children[i].stopping)
			continue;
		total++;
		st = board_state(looper.shm, children[i].slot);
		if (st == SHM_W_IDLE || st == SHM_W_STARTING)
			idle++;
	}
	pool_plan(total, idle, cfg, &plan);
	if (plan.spawn > 0 && mono_ms() >= next_spawn) {
		for (i = 0; i < plan.spawn; i++)
			if (spawn_worker() == -1)
				break;
		return;
	}
	excess = plan.stop;
	for (i = nchildren - 1; i >= 0 && excess > 0; i--) {
		if (children[i].pid <= 0 || children[i].stopping)
			continue;
		st = board_state(looper.shm, children[i].slot);
		if (st != SHM_W_IDLE)
			continue;
		/* SIGUSR2: exit if idle, or after the current request. */
		children[i].stopping = 1;
		(void)kill(children[i].pid, SIGUSR2);
		excess--;
	}
}

static void
grow_children(int want)
{
	struct child	*n;

	if (want <= nchildren)
		return;
	if ((n = reallocarray(children, want, sizeof(*n))) == NULL) {
		log_err("worker table");
		return;
	}
	memset(n + nchildren, 0, sizeof(*n) * (want - nchildren));
	children = n;
	nchildren = want;
}

/* SIGHUP: build a new config; keep the old one if anything fails. */
static void
reload(void)
{
	struct config	*ncfg, *ocfg = looper.cfg;
	char		 err[1024];
	int64_t		 now;
	int		 fd = -1, i;

	log_info("reloading %s", looper.conf_path);
	if ((ncfg = cfg_load(looper.conf_path, err, sizeof(err))) == NULL)
		goto fail;
	if (strcmp(ncfg->listen, ocfg->listen) != 0 &&
	    (fd = master_listen(ncfg, err, sizeof(err))) == -1)
		goto fail;
	if (master_publish(ncfg, err, sizeof(err)) == -1)
		goto fail;
	if (fd != -1) {
		close(looper.listen_fd);
		looper.listen_fd = fd;
		master_bound(fd, ncfg);
		log_info("now listening on %s", looper.listen_addr);
	}
	priv_init(ncfg);
	if (!looper.foreground && strcmp(ncfg->log_file, ocfg->log_file) != 0)
		log_init(0, ncfg->log_file, ncfg->log_level);
	log_setlevel(ncfg->log_level);
	if (ncfg->placeholder_keys)
		log_warnx("%s: the keys are placeholders", ncfg->path);
	now = now_ms();
	reset_reload(looper.shm, ocfg, ncfg, now);
	looper.cfg = ncfg;
	tls_prepare(ncfg);	/* before the new workers fork */
	cfg_free(ocfg);
	(void)persist_save(looper.shm, looper.cfg, 1, now);
	grow_children(looper.shm->max_workers);
	snprintf(err, sizeof(err), "generation %llu: %zu keys, %zu models",
	    (unsigned long long)looper.shm->generation, ncfg->nkeys,
	    ncfg->nmodels);
	shm_note_reload(looper.shm, now, 1, err);
	log_info("reloaded: %s", err);
	/* Old workers finish their request and go; new ones take over. */
	signal_children(SIGHUP, 1);
	if (prober_pid > 0)
		(void)kill(prober_pid, SIGTERM);	/* respawned with ncfg */
	for (i = 0; i < ncfg->start_workers; i++)
		if (spawn_worker() == -1)
			break;
	return;
 fail:
	log_errx("reload failed, keeping the running config: %s", err);
	shm_note_reload(looper.shm, now_ms(), 0, err);
	if (fd != -1)
		close(fd);
	cfg_free(ncfg);
}

static void
tick(void)
{
	int64_t		 now, mono;
	uint32_t	 r;

	r = __atomic_load_n(&looper.shm->lock_recoveries, __ATOMIC_RELAXED);
	if (r != seen_recoveries) {
		log_warnx("shared memory: a process died holding the lock; "
		    "state checked and repaired (%u times so far)", r);
		seen_recoveries = r;
	}
	maintain_pool();
	prober_tick();
	now = now_ms();		/* after the forks, which may take a while */
	mono = mono_ms();
	reset_tick(looper.shm, looper.cfg, now);
	persist_tick(looper.shm, looper.cfg, now, mono);
}

/* Graceful stop: no new connections, let requests finish, then go. */
static int
shutdown_master(sigset_t *waitmask)
{
	int64_t	 deadline;

	log_info("stopping: waiting up to %d s for requests in flight",
	    looper.cfg->shutdown_timeout_s);
	close(looper.listen_fd);
	looper.listen_fd = -1;
	signal_children(SIGTERM, 0);
	if (prober_pid > 0)
		(void)kill(prober_pid, SIGTERM);
	deadline = mono_ms() + (int64_t)looper.cfg->shutdown_timeout_s * 1000;
	reap();
	while (live_children() > 0) {
		if (mono_ms() >= deadline) {
			log_warnx("stopping: %d workers still busy after %d s,"
			    " killing them", live_children(),
			    looper.cfg->shutdown_timeout_s);
			signal_children(SIGKILL, 0);
			while (live_children() > 0 && waitpid(-1, NULL, 0) > 0)
				reap();
			break;
		}
		sigsuspend(waitmask);
		reap();
	}
	reap();
	/* The workers are gone: nothing changes the counts any more. */
	(void)persist_save(looper.shm, looper.cfg, 1, now_ms());
	pidfile_remove(looper.pfh);
	log_info("stopped");
	return 0;
}

/*
 * Wait until the first workers are in accept(), so that the daemonizing
 * parent can report success truthfully.  Returns 0, or -1 if they did not
 * come up.
 */
static int
wait_ready(void)
{
	struct timespec	 ts = { 0, 10 * 1000 * 1000 };
	uint32_t	 st;
	int		 i, j, up;

	for (i = 0; i < 1000; i++) {
		reap();
		if (stop_spawning)
			return -1;
		for (up = 0, j = 0; j < nchildren; j++) {
			if (children[j].pid <= 0)
				continue;
			st = board_state(looper.shm, children[j].slot);
			if (st != SHM_W_STARTING)
				up++;
		}
		if (up >= looper.cfg->start_workers)
			return 0;
		nanosleep(&ts, NULL);
	}
	return -1;
}

/*
 * Signals: all blocked except while the master sleeps in sigsuspend()
 * (waitmask); the handlers only set flags.
 */
static void
master_signals(sigset_t *waitmask)
{
	static const int	 sigs[] = {
		SIGHUP, SIGTERM, SIGINT, SIGCHLD, SIGUSR1, SIGALRM
	};
	struct sigaction	 sa;
	sigset_t		 block;
	size_t			 i;

	sigemptyset(&block);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&block, sigs[i]);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, waitmask);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = master_sig;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigdelset(waitmask, sigs[i]);
		sigaction(sigs[i], &sa, NULL);
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/*
 * The usage file, the reset schedule, the first workers; then the parent
 * that waits on readyfd is told.  0, or -1 when the workers did not come
 * up (they are killed).
 */
static int
master_start(int readyfd)
{
	static const char *const usage[] = {
		[PERSIST_LOADED] = "restored",
		[PERSIST_ABSENT] = "none yet",
		[PERSIST_CORRUPT] = "moved aside"
	};
	struct persist_info	 pi;
	int64_t			 now;
	int			 i, fd, rv;

	/* What the last run counted, before any worker can count more.  An
	 * unreadable file is retried on every save (persist.c says so). */
	master_bound(looper.listen_fd, looper.cfg);
	now = now_ms();
	rv = persist_load(looper.shm, looper.cfg, now, &pi);
	reset_init(looper.shm, looper.cfg, &pi, now);

	grow_children(looper.shm->max_workers);
	for (i = 0; i < looper.cfg->start_workers; i++)
		if (spawn_worker() == -1)
			break;
	if (wait_ready() == -1) {
		log_errx("workers did not start");
		signal_children(SIGKILL, 0);
		return -1;
	}
	log_info("%s %s started: master pid %ld, listening on %s, %d workers,"
	    " %zu keys, %zu models, usage %s", LOOPER_NAME, LOOPER_VERSION,
	    (long)getpid(), looper.listen_addr, looper.cfg->start_workers,
	    looper.cfg->nkeys, looper.cfg->nmodels,
	    rv >= 0 && rv <= PERSIST_CORRUPT ? usage[rv] : "unreadable");
	if (readyfd != -1) {
		(void)write(readyfd, "1", 1);
		close(readyfd);
		if ((fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
	}
	return 0;
}

int
master_main(int readyfd)
{
	struct itimerval	 itv;
	sigset_t		 waitmask;

	setproctitle("master");
	if (!looper.foreground)
		log_init(0, looper.cfg->log_file, looper.cfg->log_level);
	master_signals(&waitmask);
	if (master_start(readyfd) == -1) {
		pidfile_remove(looper.pfh);
		return 1;
	}
	memset(&itv, 0, sizeof(itv));
	itv.it_interval.tv_sec = 1;
	itv.it_value.tv_sec = 1;
	setitimer(ITIMER_REAL, &itv, NULL);

	for (;;) {
		if (!(sig_hup || sig_term || sig_chld || sig_usr1 || sig_alrm))
			sigsuspend(&waitmask);
		if (sig_chld) {
			sig_chld = 0;
			reap();
			maintain_pool();
		}
		if (sig_term)
			return shutdown_master(&waitmask);
		if (sig_hup) {
			sig_hup = 0;
			reload();
		}
		if (sig_usr1) {
			sig_usr1 = 0;
			if (log_reopen() == -1)
				log_err("reopening %s", looper.cfg->log_file);
			else
				log_info("log file reopened");
			signal_children(SIGUSR1, 0);
		}
		if (sig_alrm) {
			sig_alrm = 0;
			tick();
		}
	}
}
