/*
 * gemini-looper: a prefork reverse proxy for the Gemini API with a key pool.
 *
 * What is truly global: the program's name and version, the workers' exit
 * codes, and struct looper, what every process knows about itself.  Each
 * file of src/ has a header of its own for what it exports, as nginx's
 * modules do; shared-memory types live in shm/shm.h, and src/ reaches
 * shared memory only through it.
 */
#ifndef LOOPER_H
#define LOOPER_H

#include <sys/types.h>

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define LOOPER_NAME		"gemini-looper"
#define LOOPER_VERSION		"0.1.0"

/*
 * Worker exit codes, read by the master when it reaps a worker.
 *  0: normal exit (graceful stop, generation change, pool shrink);
 *  WRK_EXIT_SLOW: something went wrong, respawn after a back-off;
 *  WRK_EXIT_FATAL: the worker cannot ever work (setuid failed, ...):
 *     the master stops respawning and shuts down.
 */
#define WRK_EXIT_OK		0
#define WRK_EXIT_SLOW		70
#define WRK_EXIT_FATAL		71

struct config;
struct pidfh;
struct shm_header;

/* What every process knows about itself; "looper" in main.c. */
struct looper {
	struct config		*cfg;
	struct shm_header	*shm;
	int			 listen_fd;
	char			 listen_addr[96];	/* as bound: "127.0.0.1:48888" */
	pid_t			 master_pid;
	struct pidfh		*pfh;
	int			 foreground;
	const char		*conf_path;	/* -c, as given */
	const char		*pidfile_arg;	/* -p, or NULL */
	int			 slot;		/* worker: its scoreboard slot */
	uint64_t		 generation;	/* worker: config generation */
};
extern struct looper looper;

#endif /* LOOPER_H */
