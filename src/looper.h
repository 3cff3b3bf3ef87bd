/*
 * gemini-looper: a prefork reverse proxy for the Gemini API with a key pool.
 *
 * This header lists what every file in src/ exports, file by file, the way
 * relayd.h does.  Shared-memory types live in shm/shm.h; src/ reaches shared
 * memory only through that header.
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

#define CFG_KEY_MAX		128	/* longest API key accepted */
#define CFG_NAME_MAX		128	/* longest model name */
#define CFG_TOKEN_MAX		256	/* longest access/admin token */
#define CFG_NOLIMIT		(-1)	/* a limit given as null */
#define CFG_ATTEMPTS_MAX	64	/* largest max_attempts */

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

enum cfg_tier {
	CFG_TIER_PRIORITY = 0,
	CFG_TIER_SECONDARY = 1
};

struct cfg_key {
	char		 key[CFG_KEY_MAX];
	char		 id[9];		/* first 8 hex digits of SHA-256 */
	char		 masked[16];	/* "AIza…wxyz" */
	enum cfg_tier	 tier;
};

struct cfg_model {
	char		 name[CFG_NAME_MAX];
	int64_t		 tpm_limit;	/* CFG_NOLIMIT for null */
	int64_t		 tpd_limit;
	int64_t		 rpm_limit;
	int64_t		 rpd_limit;
};

/*
 * A parsed and validated config.json.  Built whole by cfg_load(); nothing
 * global is touched until it is valid, so a failed reload leaves the running
 * config alone.  Paths are already made absolute against the config file's
 * directory.  Strings are "" when the field is null or absent.
 */
struct config {
	char		  path[PATH_MAX];	/* absolute path of the file */
	char		  dir[PATH_MAX];	/* its directory */

	char		  listen[300];		/* as written: "127.0.0.1:48888" */
	char		  listen_host[256];	/* "127.0.0.1", "::1", "*" */
	char		  listen_port[16];

	char		  upstream[512];	/* "https://host[:port][/prefix]" */
	char		  upstream_host[256];
	char		  upstream_port[16];	/* "443" by default */
	char		  upstream_prefix[256];	/* "" or "/prefix" without trailing / */
	char		  upstream_ca_file[PATH_MAX];

	int		  start_workers;
	int		  min_spare;
	int		  max_spare;
	int		  max_workers;

	char		  usage_file[PATH_MAX];
	char		  pidfile[PATH_MAX];
	char		  log_file[PATH_MAX];
	int		  log_level;		/* LOG_ERR .. LOG_DEBUG */
	char		  user[64];		/* "" for null */
	uid_t		  user_uid;		/* user's, from getpwnam() */
	gid_t		  user_gid;		/* its primary group */

	char		**access_tokens;
	size_t		  naccess_tokens;
	char		  admin_token[CFG_TOKEN_MAX];

	struct cfg_key	 *keys;		/* priority keys first, then secondary */
	size_t		  nkeys;
	size_t		  npriority;
	struct cfg_model *models;
	size_t		  nmodels;
	char		  default_model[CFG_NAME_MAX];

	int		  reset_hour;
	int		  reset_min;
	char		  reset_after[8];	/* "HH:MM" as written */
	char		  next_reset[32];	/* "YYYY-MM-DD HH:MM" or "" */
	char		  timezone[64];

	int64_t		  max_body_bytes;
	int		  max_wait_s;
	int		  persist_interval_s;
	int		  shutdown_timeout_s;
	int		  client_timeout_s;	/* to receive a whole request */
	int		  keepalive_timeout_s;	/* idle between requests */
	int		  upstream_timeout_s;	/* until the answer starts */
	int		  max_attempts;		/* upstream sends per request */
	int		  resolver_valid_s;	/* keep a name lookup this long */

	int		  placeholder_keys;	/* keys are the defaults' placeholders */

	struct scrub	 *scrub;	/* keys and tokens, to mask (scrub.c) */
};

/* config.c */
struct config	*cfg_load(const char *, char *, size_t);
int		 cfg_create_default(const char *, char *, size_t);
void		 cfg_free(struct config *);
const struct cfg_model *cfg_model(const struct config *, const char *);
void		 cfg_key_id(const char *, char [9]);
void		 cfg_key_mask(const char *, char [16]);

/*
 * HTTP/1.1 from clients.  The parser works on a buffer holding the start of
 * a connection's unread bytes; names and values point into that buffer (the
 * parser NUL-terminates them in place), so the request is valid until the
 * buffer is reused.
 */
#define HTTP_MAX_HEAD		(64 * 1024)	/* request line + headers */
#define HTTP_MAX_HEADERS	100

struct http_header {
	char		*name;
	char		*value;
};

struct http_request {
	char		*method;
	char		*target;	/* origin-form "/path?query", as sent */
	size_t		 path_len;	/* length of target up to '?' */
	int		 minor;		/* HTTP/1.<minor> */
	struct http_header hdr[HTTP_MAX_HEADERS];
	size_t		 nhdr;
	size_t		 head_len;	/* bytes of request line + headers */
	int64_t		 content_length;	/* -1 when absent */
	int		 chunked;	/* Transfer-Encoding: chunked */
	int		 keepalive;	/* connection may be reused */
	int		 expect_continue;
};

/* Incremental decoder of a chunked request body. */
struct http_chunked {
	int		 state;
	uint64_t	 remain;	/* bytes left in the current chunk */
	size_t		 line;		/* length of the size/trailer line so far */
	int		 done;
};

enum http_parse {
	HTTP_PARSE_ERROR = -1,
	HTTP_PARSE_MORE = 0,
	HTTP_PARSE_DONE = 1
};

/* http.c */
extern const unsigned char http_tchar[256];	/* RFC 9110 tchar */
int		 http_hexval(unsigned char);
int		 http_parse_head(char *, size_t, struct http_request *, int *,
		    const char **);
const char	*http_header(const struct http_request *, const char *);
const char	*http_lookup(const struct http_header *, size_t, const char *);
const char	*http_bearer(const char *, size_t *);
int		 http_chunked_decode(struct http_chunked *, const char *, size_t,
		    size_t *, char *, size_t *, const char **);
const char	*http_reason(int);
const char	*http_status_name(int);
int		 http_error_body(char *, size_t, int, const char *);

struct shm_header;
struct pidfh;

/* What every process knows about itself; "looper" in main.c. */
struct looper {
	struct config		*cfg;
	struct shm_header	*shm;
	int			 listen_fd;
	pid_t			 master_pid;
	struct pidfh		*pfh;
	int			 foreground;
	const char		*conf_path;	/* -c, as given */
	const char		*pidfile_arg;	/* -p, or NULL */
	int			 slot;		/* worker: its scoreboard slot */
	uint64_t		 generation;	/* worker: config generation */
};
extern struct looper looper;

/* One client connection, owned by a worker while it serves it. */
struct conn {
	int			 fd;
	char			 peer[64];
	char			*buf;		/* bytes read from the client */
	size_t			 len;		/* valid bytes in buf */
	size_t			 cap;
	struct http_request	 req;
	char			*body;		/* the request body, decoded */
	size_t			 body_len;
	size_t			 body_cap;
	size_t			 next;		/* where the next request starts */
	int64_t			 deadline;	/* mono ms: the request's end */
	int64_t			 started;	/* mono ms: first byte */
	int			 close;		/* close after this answer */
	int			 linger;	/* unread request bytes: linger */
	int			 body_unread;	/* answering now leaves it unread */
	int			 status;	/* sent, for the access log */
	int			 sent_head;	/* response head already sent */
	uint64_t		 bytes_out;
	char			 log[256];	/* key=, model=, tokens= */
};

/*
 * The upstream: one kept-alive TLS connection per worker (upstream.c over
 * tls.c).  An answer's head is parsed into struct up_resp; its body is then
 * read piece by piece, already de-chunked, so nothing holds a whole answer.
 */
#define UP_MAX_HEAD		(64 * 1024)
#define UP_MAX_HEADERS		100

struct up_resp {
	int			 status;
	int			 minor;
	struct http_header	 hdr[UP_MAX_HEADERS];
	size_t			 nhdr;
	int64_t			 content_length;	/* -1 when absent */
	int			 chunked;
	int			 close;		/* upstream closes after it */
	int			 no_body;	/* HEAD, 1xx, 204, 304 */
};

struct upstream;
struct ssl_st;			/* OpenSSL's SSL */
struct ssl_session_st;		/* OpenSSL's SSL_SESSION */

/* tls.c */
int		 tls_init(const struct config *, char *, size_t);
void		 tls_prepare(const struct config *);
void		 tls_free(void);
struct ssl_st	*tls_client(int, const char *, struct ssl_session_st **,
		    char *, size_t);
void		 tls_strerror(struct ssl_st *, char *, size_t);

/* resolve.c */
struct addrinfo;
int		 resolve_upstream(const char *, const char *, int, int64_t, int,
		    const struct addrinfo **, char *, size_t);

/* upstream.c */
struct upstream	*up_new(const struct config *);
void		 up_free(struct upstream *);
int		 up_request(struct upstream *, const char *, size_t,
		    const char *, size_t, int64_t, char *, size_t);
int		 up_read_head(struct upstream *, struct up_resp *, int,
		    int64_t, char *, size_t);
ssize_t		 up_read_body(struct upstream *, char *, size_t, int64_t);
int		 up_body_done(const struct upstream *);
int		 up_body_ready(const struct upstream *);
void		 up_close(struct upstream *);
void		 up_watch(struct upstream *, int);
int		 up_gone(const struct upstream *);
const char	*up_header(const struct up_resp *, const char *);
int		 up_fd(const struct upstream *);
int		 up_reused(const struct upstream *);
int		 up_stale(const struct upstream *);
int		 up_resumed(const struct upstream *);
int		 up_pending(const struct upstream *);
const char	*up_error(const struct upstream *);


/* log.c */
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

/* persist.c: the usage file (master only) */
struct stat;

/* What the usage file said about the reset schedule, for reset.c. */
struct persist_info {
	int		 loaded;		/* a usage file was read */
	int64_t		 last_reset;		/* ms since the epoch, 0: none */
	int64_t		 next_reset;
	char		 reset_after[8];	/* the schedule it was for */
	char		 timezone[64];
};

#define PERSIST_ERROR	(-1)	/* not read: the path is not written */
#define PERSIST_LOADED	0
#define PERSIST_ABSENT	1
#define PERSIST_CORRUPT	2	/* moved aside to <name>.corrupt-<time> */

int		 persist_load(struct shm_header *, const struct config *,
		    int64_t, struct persist_info *);
int		 persist_save(struct shm_header *, const struct config *, int);
void		 persist_tick(struct shm_header *, const struct config *,
		    int64_t);
int		 persist_write_file(const char *, const void *, size_t, mode_t,
		    const struct stat *, char *, size_t);
void		 persist_fp(const char *, char [17]);

/* reset.c: the daily quota reset (master only) */
struct reset_in {
	const char	*tz;
	int		 hour;
	int		 min;
	int64_t		 cfg_next;	/* config's next_quota_reset_datetime */
	int64_t		 file_next;	/* usage file's next_reset */
	int64_t		 last_reset;	/* usage file's last_reset */
	int		 schedule_changed;	/* since the usage file */
	int64_t		 now;
};

int64_t		 reset_next(const char *, int, int, int64_t);
int		 reset_parse(const char *, const char *, int64_t *);
int		 reset_format(const char *, int64_t, char *, size_t);
int		 reset_plan(const struct reset_in *, int64_t *);
int		 reset_edit(const char *, size_t, const char *, char **,
		    size_t *);
int		 reset_writeback(const char *, const char *, char *, size_t);
void		 reset_init(struct shm_header *, struct config *,
		    const struct persist_info *, int64_t);
int		 reset_tick(struct shm_header *, struct config *, int64_t);
void		 reset_reload(struct shm_header *, const struct config *,
		    struct config *, int64_t);

/* master.c */
int		 master_listen(const struct config *, char *, size_t);
int		 master_publish(struct config *, char *, size_t);
int		 master_main(int);

/* worker.c */
__attribute__((__noreturn__)) void worker_main(int);
int		 conn_write(struct conn *, const void *, size_t);
int		 conn_respond(struct conn *, int, const char *, const char *,
		    const void *, size_t);
int		 conn_error(struct conn *, int, const char *, const char *);
int		 wrk_stopping(void);
const char	*conn_date(void);

/* priv.c */
void		 priv_init(const struct config *);
void		 priv_drop(void);

/* proxy.c */
int		 proxy_admit(struct conn *);
void		 proxy_handle(struct conn *);

/* status.c */
int		 status_admit(struct conn *);
void		 status_handle(struct conn *);
struct shm_header;
char		*status_data_json(struct shm_header *, const struct config *,
		    int64_t, size_t *);
char		*status_metrics_text(struct shm_header *, int64_t, size_t *);
void		 status_iso8601(int64_t, char *, size_t);
int		 status_local_time(int64_t, const char *, char *, size_t);
int		 status_query_param(const char *, const char *, char *, size_t);
int		 status_token_ok(const char *, const char *, const char *);
int		 status_test_input(const char *, size_t, char *, size_t, char *,
		    size_t, const char **);
int		 status_test_verdict(int, char *, size_t, const char *, char *,
		    size_t);

/* route.c */
int		 route_admit(struct conn *);
void		 route_request(struct conn *);
void		 route_log_path(const char *, char *, size_t);
int		 route_prefix(const char *, size_t, const char *);
int		 route_exact(const char *, size_t, const char *);

/* util.c */
int64_t	 now_ms(void);
int64_t	 mono_ms(void);

#endif /* LOOPER_H */
