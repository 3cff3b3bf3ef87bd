/*
 * The shared-memory segment: layout and the exports of the files in shm/.
 *
 * The master creates one segment before forking (shm_open, ftruncate, mmap,
 * then shm_unlink so that a crash leaves nothing behind in /dev/shm); the
 * workers inherit the mapping.  It holds plain data of fixed size, found by
 * offsets from the header, never by pointers, so the same bytes mean the same
 * thing in every process.
 *
 * Locks: one robust process-shared mutex, hdr->lock, guards the key, model,
 * usage and affinity tables.  Functions whose name ends in _locked expect it
 * held.  Each scoreboard slot is written only by the worker that owns it (and
 * by the master when the slot is free), without the lock.  No I/O is done
 * while the lock is held.
 */
#ifndef SHM_H
#define SHM_H

#include <sys/types.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SHM_MAGIC		0x31524550504f4f4cULL	/* "LOOPPER1" */
#define SHM_VERSION		3

#define SHM_KEY_MAX		128	/* = CFG_KEY_MAX */
#define SHM_NAME_MAX		128	/* = CFG_NAME_MAX */
#define SHM_WIN_BUCKETS		13	/* the per-minute window ... */
#define SHM_WIN_SPAN		5	/* ... in buckets of 5 s, one spare */
#define SHM_WIN_SECONDS		60
#define SHM_HISTORY		60	/* minutes of history kept */
#define SHM_EXTRA_MODELS	8	/* slots for models not in config */
#define SHM_AFFINITY		4096	/* resources (files/...) -> key */
#define SHM_AFF_NAME		96
#define SHM_DUR_BUCKETS		12	/* request-duration histogram */
#define SHM_REQ_MAX		64	/* a scoreboard slot's request line */
#define SHM_PROJECT_MAX		64	/* = CFG_PROJECT_MAX */
#define SHM_LABEL_MAX		64	/* = CFG_LABEL_MAX */

/*
 * A key's project: a key without one is its own project, and its cells are
 * the project's (shm_key.project is then its own slot); a named project
 * has a slot of its own in the project table, with cells of its own, and
 * shm_key.project is SHM_PROJECT_NAMED | that slot.  Either way, two keys
 * share quota exactly when their project values are equal.
 */
#define SHM_PROJECT_NAMED	0x80000000u
#define SHM_PROJECT_SLOT(v)	((v) & ~SHM_PROJECT_NAMED)
#define SHM_STORM_MAX		16	/* largest storm.keys: projects kept */
#define SHM_STORM_PAUSE_MS	60000	/* longest pause */
#define SHM_STORM_PROBE_MS	30000	/* a half-open probe's deadline */

enum shm_cell_state {
	SHM_AVAILABLE = 0,
	SHM_COOLING = 1,	/* rate-limited until cooldown_until */
	SHM_EXHAUSTED = 2	/* daily quota spent, until the next reset */
};

/* Why a key stopped serving a model; shown on the dashboard. */
enum shm_reason {
	SHM_R_NONE = 0,
	SHM_R_TPM,		/* input tokens per minute */
	SHM_R_RPM,		/* requests per minute */
	SHM_R_TPD,		/* input tokens per day */
	SHM_R_RPD,		/* requests per day */
	SHM_R_429,		/* a bare 429 */
	SHM_R_INVALID,		/* API_KEY_INVALID and friends */
	SHM_R_N
};

enum shm_worker_state {
	SHM_W_FREE = 0,		/* slot unused */
	SHM_W_STARTING,
	SHM_W_IDLE,		/* blocked in accept() */
	SHM_W_READING,		/* reading a request */
	SHM_W_UPSTREAM,		/* waiting on the upstream */
	SHM_W_WRITING,		/* writing the answer */
	SHM_W_KEEPALIVE,	/* between requests on a kept-alive connection */
	SHM_W_CLOSING		/* exiting */
};

/* Token counts kept per cell, by kind (usageMetadata's five counts). */
enum shm_tok {
	SHM_TOK_PROMPT = 0,	/* promptTokenCount */
	SHM_TOK_CANDIDATES,	/* candidatesTokenCount */
	SHM_TOK_CACHED,		/* cachedContentTokenCount */
	SHM_TOK_THOUGHTS,	/* thoughtsTokenCount */
	SHM_TOK_TOTAL,		/* totalTokenCount */
	SHM_TOK_N
};

/* Answers counted by status class: 0 none (no answer), then 1xx..5xx. */
#define SHM_CLASS_N	6

/* What a key's probe found (probe.c), for m_probes[]. */
enum shm_probe_kind {
	SHM_PROBE_OK = 0,	/* 200: the key works */
	SHM_PROBE_DELETED,	/* 400 API_KEY_INVALID: deleted or wrong */
	SHM_PROBE_REFUSED,	/* 401/403 key fault: suspended, blocked */
	SHM_PROBE_FAILED,	/* anything else: no answer, 5xx, 429 */
	SHM_PROBE_N
};

/* Quota classes of upstream 429s, for m_429[]. */
enum shm_quota {
	SHM_Q_MINUTE = 0,
	SHM_Q_DAY,
	SHM_Q_OTHER,
	SHM_Q_N
};

/* Why an answer broke off after its head went to the client, m_broken[]. */
enum shm_broken {
	SHM_B_RESET = 0,	/* the connection failed: a reset, TLS */
	SHM_B_TIMEOUT,		/* silent for upstream_timeout_s mid-answer */
	SHM_B_CLOSED,		/* closed before the body's end */
	SHM_B_MALFORMED,	/* its chunked framing broken */
	SHM_B_N
};

struct shm_bucket {
	uint32_t	 stamp;		/* bucket start, seconds since epoch */
	uint32_t	 requests;
	uint64_t	 tokens;	/* input tokens */
};

struct shm_minute {
	uint32_t	 minute;	/* minutes since epoch */
	uint32_t	 requests;
	uint64_t	 tokens;	/* totalTokenCount */
};

struct shm_key {
	uint32_t	 in_use;
	uint32_t	 tier;		/* enum cfg_tier */
	uint32_t	 invalid;	/* rejected by the upstream until a reload */
	uint32_t	 order;		/* position in the config: lower first */
	uint32_t	 project;	/* see SHM_PROJECT_NAMED */
	uint32_t	 pad;
	char		 key[SHM_KEY_MAX];
	char		 label[SHM_LABEL_MAX];
	char		 id[12];
	char		 masked[20];
	char		 invalid_why[64];
	struct shm_minute history[SHM_HISTORY];
	/* Probing an invalid key (probe.c); times in ms since the epoch. */
	int64_t		 invalid_at;	/* when it was marked invalid */
	int64_t		 probe_last;	/* last probe's answer, 0: never */
	int64_t		 probe_next;	/* next probe, 0: none scheduled */
	int64_t		 probe_iv;	/* the interval probe_next came from */
	int32_t		 probe_status;	/* last probe: HTTP status, 0 error */
	uint32_t	 probe_n;	/* probes since it was marked */
	char		 probe_err[48];	/* probe_status 0: what went wrong */
};

/* An unexplained 429 of one project on one model (storm.c). */
struct shm_storm_hit {
	int32_t		 project;	/* project slot */
	uint32_t	 pad;
	int64_t		 at;		/* ms since epoch, 0: unused */
	int64_t		 delay;		/* ms it asked to wait, <= 60 s */
};

struct shm_model {
	uint32_t	 in_use;
	uint32_t	 configured;	/* named in config (else: default's limits) */
	int32_t		 current_key;	/* sticky key index, -1 for none */
	uint32_t	 pad;
	char		 name[SHM_NAME_MAX];
	int64_t		 tpm_limit;	/* -1: no limit */
	int64_t		 tpd_limit;
	int64_t		 rpm_limit;
	int64_t		 rpd_limit;
	int64_t		 sessions_limit;	/* Live sessions open at once
					   per project; below 1: none */
	struct shm_minute history[SHM_HISTORY];
	/* Since the segment was made, for /metrics: never reset. */
	uint64_t	 m_answers[SHM_CLASS_N];	/* to clients, by class */
	uint64_t	 m_retries;	/* requests sent again to another key */
	uint64_t	 m_waits;	/* requests that waited for a key */
	uint64_t	 m_dur[SHM_DUR_BUCKETS];	/* <= shm_dur_le[i] */
	uint64_t	 m_dur_count;
	uint64_t	 m_dur_sum_ms;
	uint64_t	 m_broken[SHM_B_N];	/* answers cut, by why */
	/* A 429 storm (storm.c): the latest unexplained 429 per project,
	 * the pause, the half-open probe; and its counters for /metrics. */
	struct shm_storm_hit storm_hit[SHM_STORM_MAX];
	int64_t		 paused_until;	/* ms; 0: not paused */
	int64_t		 probe_until;	/* half-open: the probe's deadline */
	uint32_t	 probe_id;	/* the probe in flight, 0: none */
	uint32_t	 probe_seq;
	uint64_t	 m_storms;	/* pauses begun */
	uint64_t	 m_paused;	/* requests refused by a pause */
};

/* One key x model cell. */
struct shm_usage {
	uint32_t	 state;		/* enum shm_cell_state */
	uint32_t	 reason;	/* enum shm_reason */
	int64_t		 cooldown_until;	/* ms since epoch, 0 when none */
	uint64_t	 tpd_used;	/* input tokens since the reset (+reserved) */
	uint64_t	 rpd_used;	/* requests since the reset (+reserved) */
	uint64_t	 tokens[SHM_TOK_N];	/* the upstream's counts today */
	uint64_t	 requests;	/* successful requests today */
	uint64_t	 errors;
	struct shm_bucket win[SHM_WIN_BUCKETS];
	/* Since the segment was made, for /metrics: never reset. */
	uint64_t	 m_status[SHM_CLASS_N];	/* upstream answers by class */
	uint64_t	 m_429[SHM_Q_N];	/* upstream 429s by quota */
	uint64_t	 m_tokens[SHM_TOK_N];
	uint64_t	 batches;	/* batch jobs created today */
	uint64_t	 m_batches;	/* the same since the segment was made */
};

/*
 * A named project: the keys that share its quota.  Its cells (one per
 * model, SHM_PUSAGE) hold the state and the counters the limits apply to.
 */
struct shm_project {
	uint32_t	 in_use;
	uint32_t	 nkeys;		/* keys in it now */
	char		 name[SHM_PROJECT_MAX];
};

struct shm_slot {
	pid_t		 pid;
	uint32_t	 state;		/* enum shm_worker_state */
	uint64_t	 generation;	/* config generation it runs */
	uint64_t	 requests;	/* served since it started */
	int64_t		 started;	/* ms since epoch */
	int64_t		 req_start;	/* ms since epoch, 0 when idle */
	char		 req[SHM_REQ_MAX];	/* "POST /v1beta/models/x:gen..." */
	/* The Live session it holds (live.c): written under hdr->lock,
	 * and by the master when the slot is claimed or released. */
	int32_t		 live_model;	/* model slot, -1: none */
	int32_t		 live_key;	/* key slot */
	uint32_t	 live_project;	/* the key's project value */
	uint32_t	 live_pad;
};

/* The kinds of resource that belong to the project that made them. */
enum shm_res {
	SHM_RES_FILE = 0,	/* files/x: 48 h */
	SHM_RES_CACHE,		/* cachedContents/x: until its expireTime */
	SHM_RES_UPLOAD,		/* upload:<upload_id>, a resumable session */
	SHM_RES_BATCH,		/* batches/x: until done, plus a margin */
	SHM_RES_OPERATION,	/* models/m/operations/x: the same */
	SHM_RES_STORE,		/* fileSearchStores/x (and what is under it) */
	SHM_RES_TUNED,		/* tunedModels/x */
	SHM_RES_CORPUS,		/* corpora/x */
	SHM_RES_N
};

struct shm_affinity {
	uint32_t	 in_use;
	int32_t		 key;		/* key index */
	int64_t		 created;	/* ms since epoch */
	int64_t		 expires;	/* ms since epoch; 0: until deleted */
	uint32_t	 kind;		/* enum shm_res */
	uint32_t	 done;		/* a batch or operation seen finished */
	char		 name[SHM_AFF_NAME];	/* "files/abc", "batches/x" */
};

/* What an answer taught about a resource (shm_affinity_put). */
struct shm_aff_note {
	const char	*name;
	uint32_t	 kind;		/* enum shm_res */
	int		 key;		/* the key that was answered */
	int64_t		 created;	/* ms since epoch, for a new entry */
	int64_t		 expires;	/* ms since epoch; 0: until deleted */
	int		 keep_expiry;	/* known already: leave its expiry */
	int		 done;		/* seen finished */
};

struct shm_header {
	uint64_t	 magic;
	uint32_t	 version;
	uint32_t	 pad0;
	uint64_t	 size;		/* of the whole mapping */
	uint64_t	 generation;	/* config generation, bumped per reload */

	uint32_t	 max_keys;
	uint32_t	 max_models;
	uint32_t	 max_workers;
	uint32_t	 max_affinity;
	uint32_t	 max_projects;
	uint32_t	 pad2;
	uint64_t	 off_keys;
	uint64_t	 off_models;
	uint64_t	 off_usage;
	uint64_t	 off_slots;
	uint64_t	 off_affinity;
	uint64_t	 off_projects;
	uint64_t	 off_pusage;

	pthread_mutex_t	 lock;

	/* Guarded by lock. */
	uint32_t	 nkeys;		/* slots in use are below this */
	uint32_t	 nmodels;
	int32_t		 default_model;	/* model index */
	uint32_t	 nprojects;	/* named project slots in use are below */
	int64_t		 started;	/* ms since epoch */
	int64_t		 last_reset;	/* ms since epoch */
	int64_t		 next_reset;	/* ms since epoch */
	int64_t		 last_reload;	/* ms since epoch, 0: never */
	int32_t		 last_reload_ok;
	uint32_t	 lock_recoveries;
	char		 last_reload_msg[256];
	uint64_t	 m_probes[SHM_PROBE_N];	/* key probes by result */
};

_Static_assert(sizeof(struct shm_usage) % 8 == 0, "usage alignment");
_Static_assert(sizeof(struct shm_key) % 8 == 0, "key alignment");
_Static_assert(sizeof(struct shm_model) % 8 == 0, "model alignment");
_Static_assert(sizeof(struct shm_slot) % 8 == 0, "slot alignment");
_Static_assert(sizeof(struct shm_affinity) % 8 == 0, "affinity alignment");
_Static_assert(sizeof(struct shm_project) % 8 == 0, "project alignment");

/* The sizes a segment is built for. */
struct shm_sizes {
	uint32_t	 keys;
	uint32_t	 models;
	uint32_t	 workers;
	uint32_t	 affinity;
	uint32_t	 projects;
};

#define SHM_KEYS(h)	((struct shm_key *)((char *)(h) + (h)->off_keys))
#define SHM_MODELS(h)	((struct shm_model *)((char *)(h) + (h)->off_models))
#define SHM_SLOTS(h)	((struct shm_slot *)((char *)(h) + (h)->off_slots))
#define SHM_AFF(h)	((struct shm_affinity *)((char *)(h) + (h)->off_affinity))
#define SHM_PROJECTS(h) \
	((struct shm_project *)((char *)(h) + (h)->off_projects))
#define SHM_PUSAGE(h, p, m) \
	((struct shm_usage *)((char *)(h) + (h)->off_pusage) + \
	    (size_t)(p) * (h)->max_models + (size_t)(m))
#define SHM_USAGE(h, k, m) \
	((struct shm_usage *)((char *)(h) + (h)->off_usage) + \
	    (size_t)(k) * (h)->max_models + (size_t)(m))

/* What a config says about one key or model, handed to shm_publish. */
struct shm_key_spec {
	const char	*key;
	const char	*id;
	const char	*masked;
	uint32_t	 tier;
	const char	*project;	/* "" or NULL: its own project */
	const char	*label;		/* "" or NULL: none */
};

struct shm_model_spec {
	const char	*name;
	int64_t		 tpm_limit;
	int64_t		 tpd_limit;
	int64_t		 rpm_limit;
	int64_t		 rpd_limit;
	int64_t		 sessions_limit;	/* below 1: none */
};

/* shm.c */
void		 shm_sizes_for(uint32_t, uint32_t, uint32_t, uint32_t,
		    struct shm_sizes *);
size_t		 shm_layout_size(const struct shm_sizes *);
struct shm_header *shm_create(const struct shm_sizes *, int64_t);
int		 shm_check(const struct shm_header *);
void		 shm_destroy(struct shm_header *);
int		 shm_fits(const struct shm_header *, const struct shm_sizes *);

/* lock.c */
int		 shm_lock_init(pthread_mutex_t *);
void		 shm_lock(struct shm_header *);
void		 shm_unlock(struct shm_header *);
void		 shm_repair_locked(struct shm_header *);

/*
 * A key chosen for one request, with what was reserved on it.  The worker
 * keeps it until the answer is in, then settles or releases it.
 */
struct shm_pick {
	int		 key;		/* key slot, -1 when none can serve */
	int		 model;		/* model slot */
	uint32_t	 project;	/* the key's project when picked */
	uint64_t	 generation;	/* segment generation of the pick */
	uint32_t	 stamp;		/* window bucket the reservation went to */
	int64_t		 reserved;	/* input tokens reserved */
	int64_t		 wait_ms;	/* key == -1: until the earliest usable
					   key frees (-1: none will) */
	int64_t		 free_ms;	/* the same over every key, tried
					   ones too (-1: none will) */
	int		 all_invalid;	/* key == -1: every key is invalid */
	int		 sessions_full;	/* key == -1: a key could have served
					   but its project's Live sessions
					   were at sessions_limit */
	char		 key_str[SHM_KEY_MAX];
	char		 id[12];
};

/* What the upstream reported for a request. */
struct shm_tokens {
	int64_t		 prompt;
	int64_t		 candidates;
	int64_t		 cached;
	int64_t		 thoughts;
	int64_t		 total;
};

/* keys.c: publishing a config */
int		 shm_publish(struct shm_header *, const struct shm_key_spec *,
		    size_t, const struct shm_model_spec *, size_t, size_t);
void		 shm_carry(struct shm_header *, struct shm_header *);
int		 shm_find_model_locked(struct shm_header *, const char *);
int		 shm_find_key_locked(struct shm_header *, const char *);

/*
 * A further test a key that could serve must pass to be chosen
 * (shm_pick_locked): ok(h, key slot, model slot, arg) under the lock.
 * refused is set when it said no to any.
 */
struct shm_gate {
	int		(*ok)(struct shm_header *, int, int, void *);
	void		*arg;
	int		 refused;
};

/* pick.c: choosing, reserving, settling */
int		 shm_model_slot(struct shm_header *, const char *);
int		 shm_model_named(struct shm_header *, const char *);
int		 shm_pick(struct shm_header *, int, int64_t, const int *, size_t,
		    int, int64_t, struct shm_pick *);
int		 shm_pick_locked(struct shm_header *, int, int64_t,
		    const int *, size_t, int, int64_t, struct shm_gate *,
		    struct shm_pick *);
int64_t		 shm_free_ms(struct shm_header *, int, int64_t, int64_t,
		    int *);
void		 shm_settle(struct shm_header *, struct shm_pick *,
		    const struct shm_tokens *, int64_t);
void		 shm_settle_batch(struct shm_header *, struct shm_pick *);
void		 shm_release(struct shm_header *, struct shm_pick *);
void		 shm_cancel(struct shm_header *, struct shm_pick *);
void		 shm_cool(struct shm_header *, const struct shm_pick *,
		    int64_t, uint32_t);
void		 shm_exhaust(struct shm_header *, const struct shm_pick *,
		    uint32_t);
void		 shm_invalidate(struct shm_header *, const struct shm_pick *,
		    const char *, int64_t);
void		 shm_window(const struct shm_usage *, uint32_t,
		    uint64_t *, uint32_t *);
int		 shm_window_live(const struct shm_usage *, uint32_t,
		    const struct shm_bucket *[SHM_WIN_BUCKETS]);
uint64_t	 shm_minute_get(const struct shm_minute *, uint32_t,
		    uint32_t *);
struct shm_usage *shm_project_cell_locked(struct shm_header *, int, int);
struct shm_bucket *shm_bucket_locked(struct shm_usage *, uint32_t);
int		 shm_pick_valid_locked(struct shm_header *,
		    const struct shm_pick *);
struct shm_usage *shm_pick_pcell_locked(struct shm_header *,
		    const struct shm_pick *);

/* live.c: Live API sessions, held in scoreboard slots */
int		 shm_live_pick(struct shm_header *, int, int, const int *,
		    size_t, int64_t, struct shm_pick *);
void		 shm_live_open(struct shm_header *, struct shm_pick *,
		    int64_t);
void		 shm_live_usage(struct shm_header *, const struct shm_pick *,
		    const struct shm_tokens *, int64_t);
void		 shm_live_end(struct shm_header *, int, struct shm_pick *,
		    int);
uint32_t	 shm_live_sessions(const struct shm_header *, int);
void		 shm_live_clear(struct shm_slot *);
void		 shm_live_reproject_locked(struct shm_header *,
		    const unsigned char *);
void		 shm_live_carry_locked(struct shm_header *,
		    const struct shm_header *, const int *, const int *);

/* What a 429 from the upstream says of itself (storm.c). */
#define SHM_NAMED_MAX	4
struct shm_429 {
	int64_t		 delay_ms;	/* the wait it asked for, -1: none */
	uint32_t	 nnamed;	/* quotas it names */
	uint32_t	 kind[SHM_NAMED_MAX];	/* enum shm_reason */
	int64_t		 value[SHM_NAMED_MAX];	/* quotaValue, -1: unknown */
};

/* What shm_storm_note() made of a 429. */
enum shm_storm_verdict {
	SHM_STORM_EXPLAINED = 0,	/* the project's own usage explains it */
	SHM_STORM_COUNTED,		/* unexplained, counted */
	SHM_STORM_PAUSED		/* unexplained, and the model paused */
};

/* storm.c: 429 storms pause a model pool-wide */
int		 shm_storm_gate(struct shm_header *, int, uint32_t *, int64_t,
		    int64_t *);
enum shm_storm_verdict shm_storm_note(struct shm_header *,
		    const struct shm_pick *, const struct shm_429 *, int, int,
		    uint32_t, int64_t);
int		 shm_storm_done(struct shm_header *, int, uint32_t, int);
int		 shm_storm_state(const struct shm_model *, int64_t);

/* events.c: what the master records */
void		 shm_note_reload(struct shm_header *, int64_t, int,
		    const char *);
void		 shm_resets(struct shm_header *, int64_t *, int64_t *);
void		 shm_set_next_reset(struct shm_header *, int64_t);
void		 shm_restore_last_reset(struct shm_header *, int64_t);
void		 shm_daily_reset(struct shm_header *, int64_t, int64_t);

/* Usage read back from a file, resolved to slots (restore.c). */
struct shm_restore_cell {
	int			 k;	/* key slot */
	int			 m;	/* model slot */
	struct shm_usage	 u;
};

struct shm_restore_hist {
	int			 slot;		/* key or model slot */
	int			 current;	/* a model's sticky key, -1 */
	struct shm_minute	 hist[SHM_HISTORY];
};

struct shm_restore_aff {
	char			 name[SHM_AFF_NAME];
	int			 k;
	uint32_t		 kind;		/* enum shm_res */
	int			 done;
	int64_t			 created;
	int64_t			 expires;	/* 0: until deleted */
};

/* A named project's cell, by the project's name (it has no slot yet). */
struct shm_restore_pcell {
	char			 name[SHM_PROJECT_MAX];
	int			 m;	/* model slot */
	struct shm_usage	 u;
};

struct shm_restore {
	struct shm_restore_cell	*cells;
	size_t			 ncells;
	struct shm_restore_pcell *pcells;
	size_t			 npcells;
	struct shm_restore_hist	*khist;
	size_t			 nkhist;
	struct shm_restore_hist	*mhist;
	size_t			 nmhist;
	struct shm_restore_aff	*aff;
	size_t			 naff;
};

/* restore.c */
void		 shm_restore(struct shm_header *, const struct shm_restore *,
		    int, int64_t);

/* stats.c: counters for /metrics */
extern const double shm_dur_le[SHM_DUR_BUCKETS];
extern const char *const shm_tok_names[SHM_TOK_N];
extern const char *const shm_class_names[SHM_CLASS_N];
extern const char *const shm_reason_names[SHM_R_N];
void		 shm_note_upstream(struct shm_header *, const struct shm_pick *,
		    int, int);
void		 shm_note_request(struct shm_header *, int, int, int64_t, int,
		    int);
extern const char *const shm_broken_names[SHM_B_N];
void		 shm_note_broken(struct shm_header *, int, int);

/*
 * A copy of the tables for readers that show or save them (snapshot.c).
 * keys[] and usage[] hold nkeys rows (slots in use have in_use set); the
 * keys' text is wiped.
 */
struct shm_snap {
	int64_t			 now;
	uint64_t		 generation;
	uint32_t		 nkeys;
	uint32_t		 nmodels;
	int32_t			 default_model;
	int32_t			 last_reload_ok;
	uint32_t		 lock_recoveries;
	uint64_t		 m_probes[SHM_PROBE_N];
	int64_t			 started;
	int64_t			 last_reset;
	int64_t			 next_reset;
	int64_t			 last_reload;
	char			 last_reload_msg[256];
	struct shm_key		*keys;
	struct shm_model	*models;
	struct shm_usage	*usage;		/* nkeys x nmodels */
	struct shm_affinity	*aff;		/* SHM_SNAP_AFFINITY: in use */
	size_t			 naff;
	uint32_t		 nprojects;
	struct shm_project	*projects;	/* nprojects named slots */
	struct shm_usage	*pusage;	/* nprojects x nmodels */
};

#define SHM_SNAP_AFFINITY	0x1	/* the affinity table too */
#define SHM_SNAP_NO_USAGE	0x2	/* keys and models only: no cells */
#define SHM_SNAP_CELL(s, k, m) \
	(&(s)->usage[(size_t)(k) * (s)->nmodels + (size_t)(m)])
#define SHM_SNAP_PCELL(s, p, m) \
	(&(s)->pusage[(size_t)(p) * (s)->nmodels + (size_t)(m)])

/* snapshot.c */
int		 shm_snap_take(struct shm_header *, unsigned, int64_t,
		    void (*)(void *, uint32_t, const char *), void *,
		    struct shm_snap *);
void		 shm_snap_free(struct shm_snap *);
const struct shm_usage *shm_snap_project_cell(const struct shm_snap *,
		    uint32_t, uint32_t);
uint32_t	 shm_cell_state(const struct shm_model *,
		    const struct shm_usage *, int64_t, uint32_t *);

/* The probe schedule of invalid keys (key_probe in the config). */
struct shm_probe_conf {
	int64_t		 first_ms;	/* after the marking; 0: probing off */
	int64_t		 max_ms;	/* the doubling stops here */
};

/* One probe's outcome, as probe.c read it. */
struct shm_probe_res {
	uint32_t	 kind;		/* enum shm_probe_kind */
	int32_t		 status;	/* HTTP status, 0: no answer */
	char		 why[64];	/* key fault: the verdict; status 0:
					   the error (never a key) */
};

/* probe.c */
extern const char *const shm_probe_names[SHM_PROBE_N];
int64_t		 shm_probe_jitter(const char *, uint32_t, int64_t);
int64_t		 shm_probe_interval(const struct shm_probe_conf *, int64_t,
		    uint32_t);
size_t		 shm_probe_due(struct shm_header *, int64_t,
		    const struct shm_probe_conf *, int *, size_t, int64_t *);
int		 shm_probe_take(struct shm_header *, int, const char *, char *,
		    size_t, int64_t *);
int		 shm_probe_done(struct shm_header *, int, const char *, int64_t,
		    int64_t, const struct shm_probe_conf *,
		    const struct shm_probe_res *);

/* affinity.c */
int		 shm_affinity_get(struct shm_header *, const char *, int64_t);
void		 shm_affinity_put(struct shm_header *,
		    const struct shm_aff_note *, int64_t);
void		 shm_affinity_forget(struct shm_header *, const char *);
int		 shm_owner_key(struct shm_header *, int, uint32_t *,
		    char *, size_t);
extern const char *const shm_res_names[SHM_RES_N];

/* board.c */
int		 board_claim(struct shm_header *, pid_t);
void		 board_release(struct shm_header *, int);
void		 board_set(struct shm_header *, int, enum shm_worker_state,
		    const char *);
void		 board_served(struct shm_header *, int);
void		 board_set_pid(struct shm_header *, int, pid_t);
uint32_t	 board_state(const struct shm_header *, int);
void		 board_count(const struct shm_header *, int *, int *, int *);
size_t		 board_copy(const struct shm_header *, struct shm_slot *);
int		 board_find(const struct shm_header *, pid_t);
const char	*board_state_name(uint32_t);

#endif /* SHM_H */
