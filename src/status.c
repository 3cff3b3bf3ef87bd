/*
 * The operator's side of the daemon: GET /status (the dashboard, embedded
 * from web/ at build time), GET /api/status_data (its JSON), GET /metrics
 * (Prometheus text) and POST /api/test_key (one upstream request with a
 * key the operator types in).  route.c calls status_handle() in a worker
 * for /status, /status/, everything under /api/, and /metrics.
 *
 * Locks: status data and metrics copy the key x model tables into a
 * malloc'd snapshot with plain loops (no allocation, no I/O under it),
 * taking hdr->lock once for the header and models and once per batch of
 * key slots, so that no hold is long; sorting, formatting and writing
 * happen after.  The scoreboard is read without the lock, as board.c
 * allows.  test_key touches no shared state.
 *
 * Secrets: the snapshot holds each key's id and masked form, never the key.
 * The admin token is compared in constant time and the scoreboard's request
 * lines are scrubbed of key= and token= before they are shown.  The key
 * given to test_key is wiped from every buffer of ours once the upstream
 * has answered, and the answer is scrubbed of it before it is quoted.
 *
 * Output: the parts whose size follows the number of keys (keys[], the
 * per-key histories, the metrics) are written straight into a growing
 * buffer: building a cJSON tree of 10,000 keys x N models would allocate
 * millions of nodes and print every number through sprintf/sscanf.  The
 * parts whose size follows the models and workers are built with cJSON.
 *
 * /api/status_data, beyond the contract's fields: per model its four
 * limits, requests_today, errors_today, tokens_today {prompt, candidates,
 * cached, thoughts, total}, cache_hit_ratio (cached over prompt tokens)
 * and its keys counted by state; the same sums for the whole daemon; per
 * key until (when its state ends) and invalid_reason; per key x model
 * reason (tpm, rpm, tpd, rpd, 429, invalid), until (a cooling cell's
 * cooldown_until, an exhausted one's next reset), the four used counts
 * against the four limits, errors_today and cache_hit_ratio;
 * history_by_model and history_by_key (60 numbers each, oldest first,
 * aligned with history[]); the workers' scoreboard with workers_busy and
 * workers_idle; version, uptime_s, config_generation, last_reload {time,
 * ok, message}, last_reset, next_quota_reset_utc and timezone.
 *
 * /metrics families (gemini_looper_ prefix): up, build_info{version},
 * start_time_seconds, uptime_seconds, config_generation,
 * last_reload_success, last_reload_timestamp_seconds,
 * next_reset_timestamp_seconds, lock_recoveries_total, workers{state},
 * keys{state}; per model requests_total{class} (answers to clients),
 * retries_total, waits_total, request_duration_seconds (histogram); per
 * key x model upstream_requests_total{class}, upstream_429_total{quota=
 * minute|day|other}, tokens_total{kind}, tpm_used, tpm_limit and
 * key_state{state} (one-hot over available, cooling, exhausted, invalid).
 * Counters count since the shared segment was made (the daemon's start).
 */
#include <sys/types.h>

#include <bsd/string.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "looper.h"
#include "route.h"
#include "reset.h"
#include "scrub.h"
#include "shm.h"
#include "status.h"
#include "upstream.h"
#include "util.h"
#include "worker.h"

/* The dashboard's files, generated from web/ by tests/embed.sh. */
struct web_file {
	const char		*name;
	const char		*type;
	const unsigned char	*data;
	size_t			 len;
};

#include "web.h"

#define ST_TEST_BODY_MAX	(64 * 1024)	/* of the upstream's answer */
#define ST_TEST_TIMEOUT_S	30		/* cap on the test's wait */
#define ST_MESSAGE_MAX		512		/* test_key's quoted message */
#define ST_BATCH		256		/* key slots per lock hold */


/*
 * A growing output buffer.  An allocation failure is remembered and
 * every later append is ignored, so callers check once at the end.
 */
struct sbuf {
	char	*p;
	size_t	 len;
	size_t	 cap;
	int	 oom;
};

#define sb_lit(b, s)	sb_add((b), (s), sizeof(s) - 1)

static int
sb_grow(struct sbuf *b, size_t more)
{
	size_t	 ncap;
	char	*np;

	if (b->oom)
		return -1;
	if (b->len + more + 1 <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 4096;
	while (ncap < b->len + more + 1) {
		if (ncap > SIZE_MAX / 2) {
			b->oom = 1;
			return -1;
		}
		ncap *= 2;
	}
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->oom = 1;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

static void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (sb_grow(b, n) == -1)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_cstr(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void
sb_u64(struct sbuf *b, uint64_t v)
{
	char	 d[24];
	size_t	 i = sizeof(d);

	do {
		d[--i] = '0' + v % 10;
		v /= 10;
	} while (v != 0);
	sb_add(b, d + i, sizeof(d) - i);
}

static void
sb_i64(struct sbuf *b, int64_t v)
{
	if (v < 0) {
		sb_lit(b, "-");
		sb_u64(b, (uint64_t)0 - (uint64_t)v);
	} else
		sb_u64(b, (uint64_t)v);
}

/* A limit: the number, or null when there is none. */
static void
sb_limit(struct sbuf *b, int64_t v)
{
	if (v < 0)
		sb_lit(b, "null");
	else
		sb_i64(b, v);
}

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
    __attribute__((__format__ (printf, 2, 3)));

static void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_grow(b, (size_t)n) == -1)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

/*
 * A JSON string, quoted, escaped the way cJSON escapes: quote, backslash
 * and control characters; other bytes (UTF-8, such as the masked forms'
 * ellipsis) pass as they are.
 */
static void
sb_jstr(struct sbuf *b, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p, *run;
	char			 esc[6];

	sb_lit(b, "\"");
	for (p = run = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		sb_add(b, (const char *)run, p - run);
		run = p + 1;
		switch (*p) {
		case '"':
			sb_lit(b, "\\\"");
			break;
		case '\\':
			sb_lit(b, "\\\\");
			break;
		case '\n':
			sb_lit(b, "\\n");
			break;
		case '\r':
			sb_lit(b, "\\r");
			break;
		case '\t':
			sb_lit(b, "\\t");
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			sb_add(b, esc, 6);
		}
	}
	sb_add(b, (const char *)run, p - run);
	sb_lit(b, "\"");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void
sb_label(struct sbuf *b, const char *s)
{
	const char	*p, *run;

	for (p = run = s; *p != '\0'; p++) {
		if (*p != '\\' && *p != '"' && *p != '\n')
			continue;
		sb_add(b, run, p - run);
		run = p + 1;
		if (*p == '\n')
			sb_lit(b, "\\n");
		else if (*p == '"')
			sb_lit(b, "\\\"");
		else
			sb_lit(b, "\\\\");
	}
	sb_add(b, run, p - run);
}

/*
 * Times.
 */

/* "2026-11-26T04:50:00Z" for ms since the epoch. */
void
status_iso8601(int64_t ms, char *buf, size_t len)
{
	struct tm	 tm;
	time_t		 t = (time_t)(ms / 1000);

	if (len == 0)
		return;
	buf[0] = '\0';
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		buf[0] = '\0';
}

/*
 * The snapshot: what one answer needs of the shared tables, copied under
 * the lock.  Keys are kept in slot order (row r is the r-th key slot in
 * use); cells are rows x models.  After the lock is let go, each cell's
 * state is made final and the rows are sorted into config order.
 */
struct st_model {
	char		 name[SHM_NAME_MAX];
	int		 configured;
	int		 is_default;
	int32_t		 current;	/* key slot, -1 */
	int64_t		 tpm_limit;
	int64_t		 tpd_limit;
	int64_t		 rpm_limit;
	int64_t		 rpd_limit;
	uint64_t	 hist[SHM_HISTORY];
	uint64_t	 m_answers[6];	/* /metrics counters, see shm.h */
	uint64_t	 m_retries;
	uint64_t	 m_waits;
	uint64_t	 m_dur[SHM_DUR_BUCKETS];
	uint64_t	 m_dur_count;
	uint64_t	 m_dur_sum_ms;
	int		 cur_row;	/* derived: the key shown as current */
	/* Derived: the sums over its keys, and how many are in each state. */
	uint64_t	 t_prompt;
	uint64_t	 t_candidates;
	uint64_t	 t_cached;
	uint64_t	 t_thoughts;
	uint64_t	 t_total;
	uint64_t	 t_requests;
	uint64_t	 t_errors;
	uint32_t	 nstate[4];	/* available, cooling, exhausted, invalid */
};

struct st_key {
	char		 id[12];
	char		 masked[20];
	char		 invalid_why[64];
	uint32_t	 tier;
	uint32_t	 order;
	uint32_t	 invalid;
	uint32_t	 state;		/* derived: the worst of its cells */
	int64_t		 until;		/* derived: when that state ends, 0 */
	uint64_t	 hist[SHM_HISTORY];
};

struct st_cell {
	uint32_t	 state;		/* enum shm_cell_state, final after */
	uint32_t	 reason;	/* enum shm_reason */
	int64_t		 cooldown_until;
	uint64_t	 tpm_used;
	uint32_t	 rpm_used;
	uint64_t	 tpd_used;
	uint64_t	 rpd_used;
	uint64_t	 prompt;
	uint64_t	 candidates;
	uint64_t	 cached;
	uint64_t	 thoughts;
	uint64_t	 total;
	uint64_t	 requests;
	uint64_t	 errors;
	int64_t		 until;		/* derived: when the state ends, 0 */
	uint64_t	 m_status[6];	/* /metrics counters, see shm.h */
	uint64_t	 m_429[3];
	uint64_t	 m_tokens[5];
};

struct st_worker {
	pid_t		 pid;
	uint32_t	 state;
	uint64_t	 requests;
	int64_t		 busy_ms;
	char		 req[64];
};

struct st_snap {
	int64_t		 now;
	uint32_t	 minute;	/* now, in minutes since the epoch */
	uint64_t	 generation;
	int64_t		 started;
	int64_t		 last_reset;
	int64_t		 next_reset;
	int64_t		 last_reload;
	int		 last_reload_ok;
	uint32_t	 lock_recoveries;
	char		 last_reload_msg[256];

	struct st_key	*keys;
	size_t		 nkeys;
	size_t		*order;		/* rows in config order */
	struct st_model	*models;
	size_t		 nmodels;
	struct st_cell	*cells;		/* nkeys x nmodels */
	int		*slot_row;	/* key slot -> row, -1 */
	size_t		 nslots;	/* key slots allocated */
	int		*mslot;		/* model column -> model slot */
	struct st_worker *workers;
	size_t		 nworkers;
	int		 busy;
	int		 idle;
};

#define CELL(s, r, m)	(&(s)->cells[(size_t)(r) * (s)->nmodels + (m)])

static const char *const st_state_names[] = {
	"available", "cooling", "exhausted"
};

static const char *const st_reason_names[] = {
	NULL, "tpm", "rpm", "tpd", "rpd", "429", "invalid"
};

static const char *
st_state_name(uint32_t st)
{
	return st < 3 ? st_state_names[st] : "exhausted";
}

static const char *
st_reason_name(uint32_t r)
{
	return r < sizeof(st_reason_names) / sizeof(st_reason_names[0]) ?
	    st_reason_names[r] : NULL;
}

static void
st_copy(char *dst, size_t len, const char *src, size_t srclen)
{
	size_t	 n = strnlen(src, srclen);

	if (n >= len)
		n = len - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
snap_free(struct st_snap *s)
{
	free(s->keys);
	free(s->order);
	free(s->models);
	free(s->cells);
	free(s->slot_row);
	free(s->mslot);
	free(s->workers);
	memset(s, 0, sizeof(*s));
}

/*
 * The header and the models: small, copied first, under the lock.  The
 * models array has room for the segment's maximum (fixed at creation), so
 * it always fits.  Returns the number of key slots to copy.
 */
static size_t
snap_head_locked(struct shm_header *h, struct st_snap *s)
{
	const struct shm_model	*models = SHM_MODELS(h);
	struct st_model		*sm;
	uint32_t		 m, i;

	s->generation = h->generation;
	s->started = h->started;
	s->last_reset = h->last_reset;
	s->next_reset = h->next_reset;
	s->last_reload = h->last_reload;
	s->last_reload_ok = h->last_reload_ok;
	s->lock_recoveries = h->lock_recoveries;
	st_copy(s->last_reload_msg, sizeof(s->last_reload_msg),
	    h->last_reload_msg, sizeof(h->last_reload_msg));

	s->nmodels = 0;
	for (m = 0; m < h->nmodels && m < h->max_models; m++) {
		if (!models[m].in_use)
			continue;
		sm = &s->models[s->nmodels];
		s->mslot[s->nmodels++] = (int)m;
		st_copy(sm->name, sizeof(sm->name), models[m].name,
		    sizeof(models[m].name));
		sm->configured = models[m].configured != 0;
		sm->is_default = h->default_model == (int32_t)m;
		sm->current = models[m].current_key;
		sm->tpm_limit = models[m].tpm_limit;
		sm->tpd_limit = models[m].tpd_limit;
		sm->rpm_limit = models[m].rpm_limit;
		sm->rpd_limit = models[m].rpd_limit;
		for (i = 0; i < SHM_HISTORY; i++)
			sm->hist[i] = shm_minute_get(models[m].history,
			    s->minute - (SHM_HISTORY - 1) + i, NULL);
		memcpy(sm->m_answers, models[m].m_answers,
		    sizeof(sm->m_answers));
		sm->m_retries = models[m].m_retries;
		sm->m_waits = models[m].m_waits;
		memcpy(sm->m_dur, models[m].m_dur, sizeof(sm->m_dur));
		sm->m_dur_count = models[m].m_dur_count;
		sm->m_dur_sum_ms = models[m].m_dur_sum_ms;
	}
	return h->nkeys;
}

/*
 * Key slots [from, to) and their cells for the models of the head, under
 * the lock.  A slot beyond what was allocated (a reload added keys since)
 * is left for the next poll.
 */
static void
snap_keys_locked(struct shm_header *h, struct st_snap *s, uint32_t from,
    uint32_t to)
{
	const struct shm_key	*keys = SHM_KEYS(h);
	const struct shm_usage	*u;
	struct st_cell		*c;
	struct st_key		*sk;
	uint32_t		 k, i, sec = (uint32_t)(s->now / 1000);
	size_t			 r, j;

	if (to > h->nkeys)
		to = h->nkeys;
	if (to > s->nslots)
		to = (uint32_t)s->nslots;
	for (k = from; k < to; k++) {
		if (!keys[k].in_use)
			continue;
		r = s->nkeys++;
		s->slot_row[k] = (int)r;
		sk = &s->keys[r];
		st_copy(sk->id, sizeof(sk->id), keys[k].id, sizeof(keys[k].id));
		st_copy(sk->masked, sizeof(sk->masked), keys[k].masked,
		    sizeof(keys[k].masked));
		st_copy(sk->invalid_why, sizeof(sk->invalid_why),
		    keys[k].invalid_why, sizeof(keys[k].invalid_why));
		sk->tier = keys[k].tier;
		sk->order = keys[k].order;
		sk->invalid = keys[k].invalid;
		for (i = 0; i < SHM_HISTORY; i++)
			sk->hist[i] = shm_minute_get(keys[k].history,
			    s->minute - (SHM_HISTORY - 1) + i, NULL);
		for (j = 0; j < s->nmodels; j++) {
			u = SHM_USAGE(h, k, s->mslot[j]);
			c = CELL(s, r, j);
			c->state = shm_cell_state_locked(h, u, s->now);
			c->reason = u->reason;
			c->cooldown_until = u->cooldown_until;
			shm_window_locked(u, sec, &c->tpm_used, &c->rpm_used);
			c->tpd_used = u->tpd_used;
			c->rpd_used = u->rpd_used;
			c->prompt = u->prompt;
			c->candidates = u->candidates;
			c->cached = u->cached;
			c->thoughts = u->thoughts;
			c->total = u->total;
			c->requests = u->requests;
			c->errors = u->errors;
			memcpy(c->m_status, u->m_status, sizeof(c->m_status));
			memcpy(c->m_429, u->m_429, sizeof(c->m_429));
			memcpy(c->m_tokens, u->m_tokens, sizeof(c->m_tokens));
		}
	}
}

/* Config order: priority keys first, then by position in the config. */
static int
row_cmp(const void *a, const void *b, void *arg)
{
	const struct st_key	*keys = arg;
	const struct st_key	*x = &keys[*(const size_t *)a];
	const struct st_key	*y = &keys[*(const size_t *)b];

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	if (x->order != y->order)
		return x->order < y->order ? -1 : 1;
	return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/*
 * Turn what was copied into what is shown, in one pass over the cells:
 * a cell whose daily counters reached a limit is exhausted even before
 * the proxy has marked it; a cell's reason is shown only while it is not
 * available (or the key is invalid); a cell's until is its cooldown's end
 * when cooling, the next reset when exhausted; a key's state is invalid
 * or the most restrictive of its cells, until the latest until among the
 * cells in that state (when the key is whole again); a model's current
 * key is its sticky key while that can serve, else the key its next
 * request would go to, else none.  The models' sums over their keys and
 * counts of keys per state are made on the way.
 */
static void
snap_derive(struct st_snap *s)
{
	struct st_model	*sm;
	struct st_key	*sk;
	struct st_cell	*c;
	size_t		 r, j, o;
	int		*best, cur;

	for (j = 0; j < s->nmodels; j++)
		s->models[j].cur_row = -1;
	for (r = 0; r < s->nkeys; r++) {
		sk = &s->keys[r];
		sk->state = SHM_AVAILABLE;
		for (j = 0; j < s->nmodels; j++) {
			sm = &s->models[j];
			c = CELL(s, r, j);
			if (c->state == SHM_AVAILABLE) {
				c->reason = SHM_R_NONE;
				if (sm->tpd_limit >= 0 &&
				    c->tpd_used >= (uint64_t)sm->tpd_limit) {
					c->state = SHM_EXHAUSTED;
					c->reason = SHM_R_TPD;
				} else if (sm->rpd_limit >= 0 &&
				    c->rpd_used >= (uint64_t)sm->rpd_limit) {
					c->state = SHM_EXHAUSTED;
					c->reason = SHM_R_RPD;
				}
			}
			if (c->state != SHM_COOLING)
				c->cooldown_until = 0;
			if (sk->invalid && c->reason == SHM_R_NONE)
				c->reason = SHM_R_INVALID;
			if (c->state == SHM_COOLING)
				c->until = c->cooldown_until;
			else if (c->state == SHM_EXHAUSTED)
				c->until = s->next_reset > 0 ?
				    s->next_reset : 0;
			if (c->state > sk->state) {
				sk->state = c->state;
				sk->until = c->until;
			} else if (c->state == sk->state &&
			    c->until > sk->until)
				sk->until = c->until;
			sm->t_prompt += c->prompt;
			sm->t_candidates += c->candidates;
			sm->t_cached += c->cached;
			sm->t_thoughts += c->thoughts;
			sm->t_total += c->total;
			sm->t_requests += c->requests;
			sm->t_errors += c->errors;
			sm->nstate[sk->invalid ? 3 : c->state < 3 ?
			    c->state : SHM_EXHAUSTED]++;
		}
		if (sk->state == SHM_AVAILABLE || sk->invalid)
			sk->until = 0;
	}

	for (r = 0; r < s->nkeys; r++)
		s->order[r] = r;
	qsort_r(s->order, s->nkeys, sizeof(*s->order), row_cmp, s->keys);

	/* The first key in config order that can serve, per model. */
	if ((best = malloc((s->nmodels + 1) * sizeof(*best))) == NULL)
		return;
	for (j = 0; j < s->nmodels; j++)
		best[j] = -1;
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		if (s->keys[r].invalid)
			continue;
		for (j = 0; j < s->nmodels; j++)
			if (best[j] == -1 &&
			    CELL(s, r, j)->state == SHM_AVAILABLE)
				best[j] = (int)r;
	}
	for (j = 0; j < s->nmodels; j++) {
		sm = &s->models[j];
		if (sm->current < 0 || (size_t)sm->current >= s->nslots)
			continue;	/* never served, or every key invalid */
		cur = s->slot_row[sm->current];
		if (cur >= 0 && !s->keys[cur].invalid &&
		    CELL(s, cur, j)->state == SHM_AVAILABLE)
			sm->cur_row = cur;
		else
			sm->cur_row = best[j];
	}
	free(best);
}

/*
 * A scoreboard line as it may be shown: secrets in the query (key=,
 * token=) replaced by "-" and anything shaped like an API key masked.
 */
static void
st_clean_req(char *req, size_t len)
{
	char	 path[64], *sp;
	size_t	 n;

	if ((sp = strchr(req, ' ')) == NULL)
		return;
	route_log_path(sp + 1, path, sizeof(path));
	n = sp + 1 - req;
	if (n < len)
		(void)strlcpy(req + n, path, len - n);
	scrub_str(looper.cfg != NULL ? looper.cfg->scrub : NULL, req);
}

/* The scoreboard, read without the lock: a torn field is only shown. */
static int
snap_workers(struct shm_header *h, struct st_snap *s)
{
	const struct shm_slot	*slots = SHM_SLOTS(h);
	struct st_worker	*w;
	uint32_t		 i, st;
	int64_t			 start;

	s->workers = calloc(h->max_workers + 1, sizeof(*s->workers));
	if (s->workers == NULL)
		return -1;
	for (i = 0; i < h->max_workers; i++) {
		st = __atomic_load_n(&slots[i].state, __ATOMIC_ACQUIRE);
		if (st == SHM_W_FREE)
			continue;
		w = &s->workers[s->nworkers++];
		w->pid = slots[i].pid;
		w->state = st;
		w->requests = __atomic_load_n(&slots[i].requests,
		    __ATOMIC_RELAXED);
		start = slots[i].req_start;
		w->busy_ms = start > 0 && start <= s->now ? s->now - start : 0;
		st_copy(w->req, sizeof(w->req), slots[i].req,
		    sizeof(slots[i].req));
		st_clean_req(w->req, sizeof(w->req));
		if (st == SHM_W_IDLE || st == SHM_W_STARTING)
			s->idle++;
		else if (st != SHM_W_CLOSING)
			s->busy++;
	}
	return 0;
}

/*
 * Take the whole snapshot.  0, or -1 when memory ran out.
 *
 * The lock is taken once for the header and models, then once per batch
 * of ST_BATCH key slots: with 10,000 keys a single copy would hold it for
 * milliseconds, and every request's pick waits on it.  Each key's cells
 * are copied whole under one hold, which is all a dashboard needs; keys of
 * different batches may be a few microseconds apart.  Nothing is allocated
 * while the lock is held: the blocks are sized in between and their pages
 * faulted in first.
 */
static int
snap_take(struct shm_header *h, int64_t now, struct st_snap *s)
{
	size_t		 nslots, nm, k;

	memset(s, 0, sizeof(*s));
	s->now = now;
	s->minute = (uint32_t)(now / 60000);
	/* max_models is fixed when the segment is made: no lock needed. */
	s->models = calloc((size_t)h->max_models + 1, sizeof(*s->models));
	s->mslot = calloc((size_t)h->max_models + 1, sizeof(*s->mslot));
	if (s->models == NULL || s->mslot == NULL)
		goto fail;
	shm_lock(h);
	nslots = snap_head_locked(h, s);
	shm_unlock(h);

	nm = s->nmodels;
	s->nslots = nslots;
	s->keys = malloc((nslots + 1) * sizeof(*s->keys));
	s->order = calloc(nslots + 1, sizeof(*s->order));
	s->slot_row = malloc((nslots + 1) * sizeof(*s->slot_row));
	s->cells = malloc((nslots + 1) * (nm + 1) * sizeof(*s->cells));
	if (s->keys == NULL || s->order == NULL || s->slot_row == NULL ||
	    s->cells == NULL)
		goto fail;
	/*
	 * Big blocks come from mmap untouched: fault their pages in here,
	 * not one by one under the lock.  explicit_bzero, because a plain
	 * memset may be optimised away or folded into calloc.
	 */
	explicit_bzero(s->keys, (nslots + 1) * sizeof(*s->keys));
	explicit_bzero(s->cells, (nslots + 1) * (nm + 1) * sizeof(*s->cells));
	for (k = 0; k <= nslots; k++)
		s->slot_row[k] = -1;

	for (k = 0; k < nslots; k += ST_BATCH) {
		shm_lock(h);
		snap_keys_locked(h, s, (uint32_t)k, (uint32_t)(k + ST_BATCH));
		shm_unlock(h);
	}
	if (snap_workers(h, s) == -1)
		goto fail;
	snap_derive(s);
	return 0;
 fail:
	snap_free(s);
	return -1;
}

/*
 * /api/status_data.
 */

static cJSON *
js_limit(int64_t v)
{
	return v < 0 ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
}

static cJSON *
js_time(int64_t ms)
{
	char	 t[32];

	if (ms <= 0)
		return cJSON_CreateNull();
	status_iso8601(ms, t, sizeof(t));
	return cJSON_CreateString(t);
}

/*
 * The implicit-cache hit ratio: cached input tokens over input tokens,
 * 0 when there were none, rounded to 4 places for a stable document.
 */
static double
st_ratio(uint64_t cached, uint64_t prompt)
{
	double	 r;

	if (prompt == 0 || cached == 0)
		return 0;
	r = (double)cached / (double)prompt;
	return (double)(int64_t)(r * 10000 + 0.5) / 10000;
}

static cJSON *
js_tokens(uint64_t prompt, uint64_t candidates, uint64_t cached,
    uint64_t thoughts, uint64_t total)
{
	cJSON	*o;

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	cJSON_AddNumberToObject(o, "prompt", (double)prompt);
	cJSON_AddNumberToObject(o, "candidates", (double)candidates);
	cJSON_AddNumberToObject(o, "cached", (double)cached);
	cJSON_AddNumberToObject(o, "thoughts", (double)thoughts);
	cJSON_AddNumberToObject(o, "total", (double)total);
	return o;
}

/* Everything whose size does not follow the number of keys. */
static cJSON *
st_head_json(const struct st_snap *s, const struct config *cfg)
{
	const struct st_model	*sm;
	const struct st_worker	*w;
	cJSON			*o, *x, *y, *z, *arr;
	char			 t[64];
	size_t			 j, i;
	uint64_t		 sum, all[6] = { 0 };

	if ((o = cJSON_CreateObject()) == NULL)
		return NULL;
	status_iso8601(s->now, t, sizeof(t));
	cJSON_AddStringToObject(o, "now", t);
	if (s->next_reset > 0 &&
	    reset_format(cfg->timezone, s->next_reset, t, sizeof(t)) == 0)
		cJSON_AddStringToObject(o, "next_quota_reset", t);
	else if (cfg->next_reset[0] != '\0')
		cJSON_AddStringToObject(o, "next_quota_reset", cfg->next_reset);
	else
		cJSON_AddNullToObject(o, "next_quota_reset");
	cJSON_AddItemToObject(o, "next_quota_reset_utc",
	    js_time(s->next_reset));
	cJSON_AddStringToObject(o, "timezone", cfg->timezone[0] != '\0' ?
	    cfg->timezone : "UTC");
	cJSON_AddStringToObject(o, "version", LOOPER_VERSION);
	cJSON_AddNumberToObject(o, "uptime_s", s->started > 0 &&
	    s->now > s->started ? (double)((s->now - s->started) / 1000) : 0);
	cJSON_AddNumberToObject(o, "config_generation", (double)s->generation);
	x = cJSON_AddObjectToObject(o, "last_reload");
	if (x != NULL) {
		cJSON_AddItemToObject(x, "time", js_time(s->last_reload));
		cJSON_AddBoolToObject(x, "ok", s->last_reload == 0 ||
		    s->last_reload_ok);
		cJSON_AddStringToObject(x, "message", s->last_reload_msg);
	}
	cJSON_AddItemToObject(o, "last_reset", js_time(s->last_reset));
	cJSON_AddNumberToObject(o, "lock_recoveries", s->lock_recoveries);

	x = cJSON_AddObjectToObject(o, "current_keys");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		sm = &s->models[j];
		if (sm->cur_row >= 0)
			cJSON_AddStringToObject(x, sm->name,
			    s->keys[sm->cur_row].id);
		else
			cJSON_AddNullToObject(x, sm->name);
	}

	x = cJSON_AddObjectToObject(o, "models");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		sm = &s->models[j];
		if ((y = cJSON_AddObjectToObject(x, sm->name)) == NULL)
			break;
		cJSON_AddItemToObject(y, "tpm_limit", js_limit(sm->tpm_limit));
		cJSON_AddItemToObject(y, "tpd_limit", js_limit(sm->tpd_limit));
		cJSON_AddItemToObject(y, "rpm_limit", js_limit(sm->rpm_limit));
		cJSON_AddItemToObject(y, "rpd_limit", js_limit(sm->rpd_limit));
		cJSON_AddBoolToObject(y, "configured", sm->configured);
		cJSON_AddBoolToObject(y, "default", sm->is_default);
		cJSON_AddNumberToObject(y, "requests_today",
		    (double)sm->t_requests);
		cJSON_AddNumberToObject(y, "errors_today",
		    (double)sm->t_errors);
		z = js_tokens(sm->t_prompt, sm->t_candidates, sm->t_cached,
		    sm->t_thoughts, sm->t_total);
		cJSON_AddItemToObject(y, "tokens_today", z);
		cJSON_AddNumberToObject(y, "cache_hit_ratio",
		    st_ratio(sm->t_cached, sm->t_prompt));
		if ((z = cJSON_AddObjectToObject(y, "keys")) != NULL)
			for (i = 0; i < 4; i++)
				cJSON_AddNumberToObject(z, i < 3 ?
				    st_state_names[i] : "invalid",
				    sm->nstate[i]);
		for (i = 0; i < 5; i++)
			all[i] += i == 0 ? sm->t_prompt : i == 1 ?
			    sm->t_candidates : i == 2 ? sm->t_cached :
			    i == 3 ? sm->t_thoughts : sm->t_total;
		all[5] += sm->t_requests;
	}
	cJSON_AddItemToObject(o, "tokens_today", js_tokens(all[0], all[1],
	    all[2], all[3], all[4]));
	cJSON_AddNumberToObject(o, "requests_today", (double)all[5]);
	cJSON_AddNumberToObject(o, "cache_hit_ratio", st_ratio(all[2], all[0]));

	arr = cJSON_AddArrayToObject(o, "history");
	for (i = 0; arr != NULL && i < SHM_HISTORY; i++) {
		if ((y = cJSON_CreateObject()) == NULL)
			break;
		cJSON_AddItemToArray(arr, y);
		status_iso8601(((int64_t)s->minute - (SHM_HISTORY - 1) +
		    (int64_t)i) * 60000, t, sizeof(t));
		cJSON_AddStringToObject(y, "minute", t);
		for (sum = 0, j = 0; j < s->nmodels; j++)
			sum += s->models[j].hist[i];
		cJSON_AddNumberToObject(y, "tokens", (double)sum);
	}
	x = cJSON_AddObjectToObject(o, "history_by_model");
	for (j = 0; x != NULL && j < s->nmodels; j++) {
		if ((z = cJSON_AddArrayToObject(x, s->models[j].name)) == NULL)
			break;
		for (i = 0; i < SHM_HISTORY; i++)
			cJSON_AddItemToArray(z,
			    cJSON_CreateNumber((double)s->models[j].hist[i]));
	}

	arr = cJSON_AddArrayToObject(o, "workers");
	for (i = 0; arr != NULL && i < s->nworkers; i++) {
		w = &s->workers[i];
		if ((y = cJSON_CreateObject()) == NULL)
			break;
		cJSON_AddItemToArray(arr, y);
		cJSON_AddNumberToObject(y, "pid", w->pid);
		cJSON_AddStringToObject(y, "state", board_state_name(w->state));
		cJSON_AddNumberToObject(y, "requests", (double)w->requests);
		cJSON_AddStringToObject(y, "request", w->req);
		cJSON_AddNumberToObject(y, "busy_ms", (double)w->busy_ms);
	}
	cJSON_AddNumberToObject(o, "workers_busy", s->busy);
	cJSON_AddNumberToObject(o, "workers_idle", s->idle);
	return o;
}

/* A time as a quoted ISO 8601 string, or null for none (0). */
static void
sb_time(struct sbuf *b, int64_t ms)
{
	char	 t[32];

	if (ms <= 0) {
		sb_lit(b, "null");
		return;
	}
	status_iso8601(ms, t, sizeof(t));
	sb_lit(b, "\"");
	sb_cstr(b, t);
	sb_lit(b, "\"");
}

static void
st_cell_json(struct sbuf *b, const struct st_model *sm,
    const struct st_cell *c)
{
	const char	*reason;

	sb_lit(b, "{\"state\":\"");
	sb_cstr(b, st_state_name(c->state));
	sb_lit(b, "\",\"reason\":");
	if ((reason = st_reason_name(c->reason)) != NULL) {
		sb_lit(b, "\"");
		sb_cstr(b, reason);
		sb_lit(b, "\"");
	} else
		sb_lit(b, "null");
	sb_lit(b, ",\"tpm_used\":");
	sb_u64(b, c->tpm_used);
	sb_lit(b, ",\"rpm_used\":");
	sb_u64(b, c->rpm_used);
	sb_lit(b, ",\"tpd_used\":");
	sb_u64(b, c->tpd_used);
	sb_lit(b, ",\"rpd_used\":");
	sb_u64(b, c->rpd_used);
	sb_lit(b, ",\"tpm_limit\":");
	sb_limit(b, sm->tpm_limit);
	sb_lit(b, ",\"tpd_limit\":");
	sb_limit(b, sm->tpd_limit);
	sb_lit(b, ",\"rpm_limit\":");
	sb_limit(b, sm->rpm_limit);
	sb_lit(b, ",\"rpd_limit\":");
	sb_limit(b, sm->rpd_limit);
	sb_lit(b, ",\"requests_today\":");
	sb_u64(b, c->requests);
	sb_lit(b, ",\"errors_today\":");
	sb_u64(b, c->errors);
	sb_lit(b, ",\"tokens_today\":{\"prompt\":");
	sb_u64(b, c->prompt);
	sb_lit(b, ",\"candidates\":");
	sb_u64(b, c->candidates);
	sb_lit(b, ",\"cached\":");
	sb_u64(b, c->cached);
	sb_lit(b, ",\"thoughts\":");
	sb_u64(b, c->thoughts);
	sb_lit(b, ",\"total\":");
	sb_u64(b, c->total);
	sb_lit(b, "},\"cache_hit_ratio\":");
	if (c->prompt > 0 && c->cached > 0)
		sb_printf(b, "%.4f", st_ratio(c->cached, c->prompt));
	else
		sb_lit(b, "0");
	sb_lit(b, ",\"cooldown_until\":");
	sb_time(b, c->cooldown_until);
	sb_lit(b, ",\"until\":");
	sb_time(b, c->until);
	sb_lit(b, "}");
}

/* keys[] and history_by_key, whose size follows the number of keys. */
static void
st_keys_json(struct sbuf *b, const struct st_snap *s, char **mname)
{
	const struct st_key	*sk;
	size_t			 o, r, j, i;

	sb_lit(b, ",\"keys\":[");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		sk = &s->keys[r];
		if (o > 0)
			sb_lit(b, ",");
		sb_lit(b, "{\"id\":");
		sb_jstr(b, sk->id);
		sb_lit(b, ",\"masked\":");
		sb_jstr(b, sk->masked);
		sb_lit(b, ",\"tier\":\"");
		sb_cstr(b, sk->tier == CFG_TIER_PRIORITY ? "priority" :
		    "secondary");
		sb_lit(b, "\",\"state\":\"");
		sb_cstr(b, sk->invalid ? "invalid" : st_state_name(sk->state));
		sb_lit(b, "\",\"until\":");
		sb_time(b, sk->until);
		sb_lit(b, ",\"invalid_reason\":");
		if (sk->invalid)
			sb_jstr(b, sk->invalid_why[0] != '\0' ?
			    sk->invalid_why : "rejected by the upstream");
		else
			sb_lit(b, "null");
		sb_lit(b, ",\"models\":{");
		for (j = 0; j < s->nmodels; j++) {
			if (j > 0)
				sb_lit(b, ",");
			sb_cstr(b, mname[j]);
			sb_lit(b, ":");
			st_cell_json(b, &s->models[j], CELL(s, r, j));
		}
		sb_lit(b, "}}");
	}
	sb_lit(b, "],\"history_by_key\":{");
	for (o = 0; o < s->nkeys; o++) {
		sk = &s->keys[s->order[o]];
		if (o > 0)
			sb_lit(b, ",");
		sb_jstr(b, sk->id);
		sb_lit(b, ":[");
		for (i = 0; i < SHM_HISTORY; i++) {
			if (i > 0)
				sb_lit(b, ",");
			sb_u64(b, sk->hist[i]);
		}
		sb_lit(b, "]");
	}
	sb_lit(b, "}");
}

/*
 * The whole of /api/status_data for segment h at time now (ms since the
 * epoch).  Returns a malloc'd NUL-terminated string and its length, or
 * NULL when memory ran out.
 */
char *
status_data_json(struct shm_header *h, const struct config *cfg, int64_t now,
    size_t *lenp)
{
	struct st_snap	 s;
	struct sbuf	 b;
	cJSON		*head;
	char		*hs = NULL, **mname = NULL;
	size_t		 j, hl;

	memset(&b, 0, sizeof(b));
	if (snap_take(h, now, &s) == -1)
		return NULL;
	if ((head = st_head_json(&s, cfg)) == NULL)
		goto fail;
	hs = cJSON_PrintUnformatted(head);
	cJSON_Delete(head);
	if (hs == NULL || (hl = strlen(hs)) < 2 || hs[hl - 1] != '}')
		goto fail;

	/* Each model's name, quoted and escaped once for every key. */
	if ((mname = calloc(s.nmodels + 1, sizeof(*mname))) == NULL)
		goto fail;
	for (j = 0; j < s.nmodels; j++) {
		struct sbuf	 n;

		memset(&n, 0, sizeof(n));
		sb_jstr(&n, s.models[j].name);
		if (n.oom)
			goto fail;
		mname[j] = n.p;
	}

	/* The head without its closing brace, then the rest. */
	sb_add(&b, hs, hl - 1);
	st_keys_json(&b, &s, mname);
	sb_lit(&b, "}\n");
	if (b.oom)
		goto fail;
	for (j = 0; j < s.nmodels; j++)
		free(mname[j]);
	free(mname);
	free(hs);
	snap_free(&s);
	*lenp = b.len;
	return b.p;
 fail:
	if (mname != NULL)
		for (j = 0; j < s.nmodels; j++)
			free(mname[j]);
	free(mname);
	free(hs);
	free(b.p);
	snap_free(&s);
	return NULL;
}

/*
 * /metrics: the Prometheus text exposition format 0.0.4.  Every family's
 * samples are written together, as the format wants, so the cells are
 * walked once per family.
 *
 * Size: with 10,000 keys and a few models the per key x model families
 * are most of the text, so a cell's counters (upstream answers, 429s,
 * tokens) are written only once it has had traffic, and of the classes
 * only those seen, as a client library's labelled counters would; the
 * gauges (TPM used and limit, state) are written for every cell.  The
 * label sets are escaped once per key and per model, not per sample.
 */
static const char *const prom_class[6] = {
	"none", "1xx", "2xx", "3xx", "4xx", "5xx"
};
static const char *const prom_quota[3] = { "minute", "day", "other" };
static const char *const prom_kind[5] = {
	"prompt", "candidates", "cached", "thoughts", "total"
};
static const char *const prom_state[4] = {
	"available", "cooling", "exhausted", "invalid"
};

static void
prom_family(struct sbuf *b, const char *name, const char *type,
    const char *help)
{
	sb_lit(b, "# HELP ");
	sb_cstr(b, name);
	sb_lit(b, " ");
	sb_cstr(b, help);
	sb_lit(b, "\n# TYPE ");
	sb_cstr(b, name);
	sb_lit(b, " ");
	sb_cstr(b, type);
	sb_lit(b, "\n");
}

/* A label value escaped once: where it lies in the labels' buffer. */
struct plab {
	size_t	 off;
	size_t	 len;
};

/* name{key="…",model="…" — the caller adds more labels and the "} ". */
static void
prom_cell(struct sbuf *b, const char *name, const char *labs,
    const struct plab *k, const struct plab *m)
{
	sb_cstr(b, name);
	sb_lit(b, "{key=\"");
	sb_add(b, labs + k->off, k->len);
	sb_lit(b, "\",model=\"");
	sb_add(b, labs + m->off, m->len);
	sb_lit(b, "\"");
}

static void
prom_model(struct sbuf *b, const char *name, const char *labs,
    const struct plab *m)
{
	sb_cstr(b, name);
	sb_lit(b, "{model=\"");
	sb_add(b, labs + m->off, m->len);
	sb_lit(b, "\"");
}

/* ,label="value"} N\n */
static void
prom_end(struct sbuf *b, const char *label, const char *value, uint64_t v)
{
	if (label != NULL) {
		sb_lit(b, ",");
		sb_cstr(b, label);
		sb_lit(b, "=\"");
		sb_cstr(b, value);
		sb_lit(b, "\"");
	}
	sb_lit(b, "} ");
	sb_u64(b, v);
	sb_lit(b, "\n");
}

static int
prom_active(const struct st_cell *c)
{
	size_t	 i;

	for (i = 0; i < 6; i++)
		if (c->m_status[i] != 0)
			return 1;
	for (i = 0; i < 5; i++)
		if (c->m_tokens[i] != 0)
			return 1;
	return 0;
}

static void
prom_head(struct sbuf *b, const struct st_snap *s)
{
	uint32_t	 nk[4] = { 0 };
	size_t		 r, i;

	prom_family(b, "gemini_looper_up", "gauge",
	    "Whether the proxy is up.");
	sb_lit(b, "gemini_looper_up 1\n");
	prom_family(b, "gemini_looper_build_info", "gauge",
	    "The running version, as a label.");
	sb_lit(b, "gemini_looper_build_info{version=\"");
	sb_label(b, LOOPER_VERSION);
	sb_lit(b, "\"} 1\n");
	if (s->started > 0) {
		prom_family(b, "gemini_looper_start_time_seconds", "gauge",
		    "When the master started, in seconds since the epoch.");
		sb_printf(b, "gemini_looper_start_time_seconds %.3f\n",
		    s->started / 1000.0);
	}
	prom_family(b, "gemini_looper_uptime_seconds", "gauge",
	    "Seconds since the master started.");
	sb_printf(b, "gemini_looper_uptime_seconds %.3f\n",
	    s->started > 0 && s->now > s->started ?
	    (s->now - s->started) / 1000.0 : 0.0);
	prom_family(b, "gemini_looper_config_generation", "gauge",
	    "The config generation in force: 1 at start, one more per "
	    "successful reload.");
	sb_lit(b, "gemini_looper_config_generation ");
	sb_u64(b, s->generation);
	sb_lit(b, "\n");
	prom_family(b, "gemini_looper_last_reload_success", "gauge",
	    "0 when the last reload failed (the old config stayed), else 1.");
	sb_printf(b, "gemini_looper_last_reload_success %d\n",
	    s->last_reload == 0 || s->last_reload_ok ? 1 : 0);
	if (s->last_reload > 0) {
		prom_family(b, "gemini_looper_last_reload_timestamp_seconds",
		    "gauge", "When the config was last reloaded, in seconds "
		    "since the epoch.");
		sb_printf(b, "gemini_looper_last_reload_timestamp_seconds "
		    "%.3f\n", s->last_reload / 1000.0);
	}
	if (s->next_reset > 0) {
		prom_family(b, "gemini_looper_next_reset_timestamp_seconds",
		    "gauge", "When the daily quotas reset next, in seconds "
		    "since the epoch.");
		sb_printf(b, "gemini_looper_next_reset_timestamp_seconds "
		    "%.3f\n", s->next_reset / 1000.0);
	}
	prom_family(b, "gemini_looper_lock_recoveries_total", "counter",
	    "Times the shared-memory lock was recovered from a dead holder.");
	sb_lit(b, "gemini_looper_lock_recoveries_total ");
	sb_u64(b, s->lock_recoveries);
	sb_lit(b, "\n");
	prom_family(b, "gemini_looper_workers", "gauge",
	    "Worker processes, busy serving or idle.");
	sb_printf(b, "gemini_looper_workers{state=\"busy\"} %d\n"
	    "gemini_looper_workers{state=\"idle\"} %d\n", s->busy, s->idle);

	for (r = 0; r < s->nkeys; r++)
		nk[s->keys[r].invalid ? 3 : s->keys[r].state < 3 ?
		    s->keys[r].state : SHM_EXHAUSTED]++;
	prom_family(b, "gemini_looper_keys", "gauge",
	    "Keys by state: invalid, or the most restrictive of their "
	    "models' states.");
	for (i = 0; i < 4; i++)
		sb_printf(b, "gemini_looper_keys{state=\"%s\"} %u\n",
		    prom_state[i], nk[i]);
}

/* The families per model: answers, retries, waits, durations. */
static void
prom_models(struct sbuf *b, const struct st_snap *s, const char *labs,
    const struct plab *ml)
{
	const struct st_model	*sm;
	uint64_t		 cum;
	size_t			 j, i;

	prom_family(b, "gemini_looper_requests_total", "counter",
	    "Requests answered to clients, by model and status class "
	    "(none: no answer could be sent).");
	for (j = 0; j < s->nmodels; j++)
		for (i = 0; i < 6; i++) {
			prom_model(b, "gemini_looper_requests_total", labs, &ml[j]);
			prom_end(b, "class", prom_class[i],
			    s->models[j].m_answers[i]);
		}
	prom_family(b, "gemini_looper_retries_total", "counter",
	    "Requests sent again on another key after a 429 or an error.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_retries_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m_retries);
	}
	prom_family(b, "gemini_looper_waits_total", "counter",
	    "Requests that waited for a key to free up.");
	for (j = 0; j < s->nmodels; j++) {
		prom_model(b, "gemini_looper_waits_total", labs, &ml[j]);
		prom_end(b, NULL, NULL, s->models[j].m_waits);
	}
	prom_family(b, "gemini_looper_request_duration_seconds", "histogram",
	    "Time from a client's request to the end of its answer.");
	for (j = 0; j < s->nmodels; j++) {
		sm = &s->models[j];
		for (cum = 0, i = 0; i < SHM_DUR_BUCKETS; i++) {
			cum += sm->m_dur[i];
			prom_model(b,
			    "gemini_looper_request_duration_seconds_bucket",
			    labs, &ml[j]);
			if (i == SHM_DUR_BUCKETS - 1)
				sb_lit(b, ",le=\"+Inf\"} ");
			else
				sb_printf(b, ",le=\"%g\"} ", shm_dur_le[i]);
			/* The count, should a bucket have been torn. */
			sb_u64(b, i == SHM_DUR_BUCKETS - 1 ?
			    sm->m_dur_count : cum);
			sb_lit(b, "\n");
		}
		prom_model(b, "gemini_looper_request_duration_seconds_sum",
		    labs, &ml[j]);
		sb_printf(b, "} %.3f\n", sm->m_dur_sum_ms / 1000.0);
		prom_model(b, "gemini_looper_request_duration_seconds_count",
		    labs, &ml[j]);
		prom_end(b, NULL, NULL, sm->m_dur_count);
	}
}

/* The families per key x model. */
static void
prom_cells(struct sbuf *b, const struct st_snap *s, const char *labs,
    const struct plab *kl, const struct plab *ml)
{
	const struct st_cell	*c;
	size_t			 o, r, j, i;
	uint32_t		 st;

	prom_family(b, "gemini_looper_upstream_requests_total", "counter",
	    "Answers from the upstream, by key fingerprint, model and status "
	    "class (none: no answer).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = CELL(s, r, j);
			for (i = 0; i < 6; i++) {
				if (c->m_status[i] == 0)
					continue;
				prom_cell(b,
				    "gemini_looper_upstream_requests_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "class", prom_class[i],
				    c->m_status[i]);
			}
		}
	}
	prom_family(b, "gemini_looper_upstream_429_total", "counter",
	    "429 answers from the upstream, by the quota they name: "
	    "per minute, per day, or other.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = CELL(s, r, j);
			for (i = 0; i < 3; i++) {
				if (c->m_429[i] == 0)
					continue;
				prom_cell(b, "gemini_looper_upstream_429_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "quota", prom_quota[i],
				    c->m_429[i]);
			}
		}
	}
	prom_family(b, "gemini_looper_tokens_total", "counter",
	    "Tokens the upstream reported (usageMetadata), by kind.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			c = CELL(s, r, j);
			if (!prom_active(c))
				continue;
			for (i = 0; i < 5; i++) {
				prom_cell(b, "gemini_looper_tokens_total",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "kind", prom_kind[i],
				    c->m_tokens[i]);
			}
		}
	}
	prom_family(b, "gemini_looper_tpm_used", "gauge",
	    "Input tokens counted against the per-minute limit (last 60 s).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			prom_cell(b, "gemini_looper_tpm_used", labs, &kl[r], &ml[j]);
			prom_end(b, NULL, NULL, CELL(s, r, j)->tpm_used);
		}
	}
	prom_family(b, "gemini_looper_tpm_limit", "gauge",
	    "The per-minute input token limit (absent: no limit).");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			if (s->models[j].tpm_limit < 0)
				continue;
			prom_cell(b, "gemini_looper_tpm_limit", labs, &kl[r], &ml[j]);
			prom_end(b, NULL, NULL,
			    (uint64_t)s->models[j].tpm_limit);
		}
	}
	prom_family(b, "gemini_looper_key_state", "gauge",
	    "1 for the state a key is in for a model, 0 for the others.");
	for (o = 0; o < s->nkeys; o++) {
		r = s->order[o];
		for (j = 0; j < s->nmodels; j++) {
			st = s->keys[r].invalid ? 3 : CELL(s, r, j)->state;
			for (i = 0; i < 4; i++) {
				prom_cell(b, "gemini_looper_key_state",
				    labs, &kl[r], &ml[j]);
				prom_end(b, "state", prom_state[i], i == st);
			}
		}
	}
}

/*
 * The whole of /metrics for segment h at time now (ms since the epoch).
 * Returns a malloc'd NUL-terminated string and its length, or NULL when
 * memory ran out.
 */
char *
status_metrics_text(struct shm_header *h, int64_t now, size_t *lenp)
{
	struct st_snap	 s;
	struct sbuf	 b, labs;
	struct plab	*kl = NULL, *ml = NULL;
	size_t		 r, j;

	memset(&b, 0, sizeof(b));
	memset(&labs, 0, sizeof(labs));
	if (snap_take(h, now, &s) == -1)
		return NULL;
	kl = calloc(s.nkeys + 1, sizeof(*kl));
	ml = calloc(s.nmodels + 1, sizeof(*ml));
	if (kl == NULL || ml == NULL)
		goto fail;
	(void)sb_grow(&labs, 64 + s.nkeys * 16);
	for (r = 0; r < s.nkeys; r++) {
		kl[r].off = labs.len;
		sb_label(&labs, s.keys[r].id);
		kl[r].len = labs.len - kl[r].off;
	}
	for (j = 0; j < s.nmodels; j++) {
		ml[j].off = labs.len;
		sb_label(&labs, s.models[j].name);
		ml[j].len = labs.len - ml[j].off;
	}
	if (labs.oom || labs.p == NULL)
		goto fail;
	/* Some 60 bytes a sample, 6 samples a cell at the least. */
	(void)sb_grow(&b, 8192 + s.nkeys * s.nmodels * 6 * 60);

	prom_head(&b, &s);
	prom_models(&b, &s, labs.p, ml);
	prom_cells(&b, &s, labs.p, kl, ml);
	if (b.oom)
		goto fail;
	free(labs.p);
	free(kl);
	free(ml);
	snap_free(&s);
	*lenp = b.len;
	return b.p;
 fail:
	free(labs.p);
	free(kl);
	free(ml);
	free(b.p);
	snap_free(&s);
	return NULL;
}

/*
 * The admin token.
 */

static int
st_token_eq(const char *want, const char *got, size_t gotlen)
{
	size_t	 wl = strlen(want);

	/* The length is no secret worth a constant-time compare. */
	return gotlen == wl && CRYPTO_memcmp(want, got, wl) == 0;
}

/*
 * Does the request carry the admin token want, as "Authorization: Bearer"
 * (auth, may be NULL) or as ?token= in target?  An empty want lets
 * everyone in.  1 if so, 0 if not.
 */
int
status_token_ok(const char *want, const char *auth, const char *target)
{
	const char	*tok, *t;
	char		 q[CFG_TOKEN_MAX * 3];
	size_t		 tlen;
	int		 n, ok = 0;

	if (want == NULL || want[0] == '\0')
		return 1;
	if ((tok = http_bearer(auth, &tlen)) != NULL &&
	    st_token_eq(want, tok, tlen))
		return 1;
	if ((t = strchr(target, '?')) != NULL &&
	    (n = http_query_param(t + 1, "token", q, sizeof(q))) >= 0) {
		ok = st_token_eq(want, q, (size_t)n);
		explicit_bzero(q, sizeof(q));
	}
	return ok;
}

/*
 * /api/test_key.
 */

/*
 * Checks a test_key request body: {"api_key": "...", "model_name": "..."}.
 * The key must be printable ASCII without blanks and shorter than
 * CFG_KEY_MAX; the model a name of [A-Za-z0-9._-].  Copies both out and
 * returns 0, or sets *why and returns -1.  The parsed copy of the key is
 * wiped before it is freed.
 */
int
status_test_input(const char *body, size_t len, char *key, size_t keylen,
    char *model, size_t modellen, const char **why)
{
	cJSON		*root, *k, *m;
	const char	*p;
	int		 rv = -1;

	key[0] = model[0] = '\0';
	*why = "the body must be a JSON object: {\"api_key\": \"...\", "
	    "\"model_name\": \"...\"}";
	if (body == NULL || len == 0 ||
	    (root = cJSON_ParseWithLength(body, len)) == NULL)
		return -1;
	if (!cJSON_IsObject(root))
		goto done;
	k = cJSON_GetObjectItemCaseSensitive(root, "api_key");
	m = cJSON_GetObjectItemCaseSensitive(root, "model_name");
	if (!cJSON_IsString(k) || k->valuestring[0] == '\0') {
		*why = "api_key must be a non-empty string";
		goto done;
	}
	if (!cJSON_IsString(m) || m->valuestring[0] == '\0') {
		*why = "model_name must be a non-empty string";
		goto done;
	}
	for (p = k->valuestring; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			break;
	if (*p != '\0' || strlen(k->valuestring) >= CFG_KEY_MAX ||
	    strlen(k->valuestring) >= keylen) {
		*why = "api_key must be printable ASCII without spaces, "
		    "shorter than 128 characters";
		goto done;
	}
	for (p = m->valuestring; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		    *p == '-'))
			break;
	if (*p != '\0' || strlen(m->valuestring) >= CFG_NAME_MAX ||
	    strlen(m->valuestring) >= modellen) {
		*why = "model_name may hold only letters, digits, '.', '_' "
		    "and '-' (e.g. \"gemini-2.5-flash\")";
		goto done;
	}
	(void)strlcpy(key, k->valuestring, keylen);
	(void)strlcpy(model, m->valuestring, modellen);
	*why = NULL;
	rv = 0;
 done:
	if (cJSON_IsString(k = cJSON_GetObjectItemCaseSensitive(root,
	    "api_key")) && k->valuestring != NULL)
		explicit_bzero(k->valuestring, strlen(k->valuestring));
	cJSON_Delete(root);
	return rv;
}

/*
 * What the upstream's answer (status, body[0..len), at most cap bytes of
 * room) says of the key: valid (1) or not (0), and a message for the
 * operator in msg.  The body is scrubbed of key (and of anything shaped
 * like a key) in place before anything of it is quoted.
 */
int
status_test_verdict(int status, char *body, size_t len, const char *key,
    char *msg, size_t msglen)
{
	cJSON		*root = NULL, *e, *m;
	size_t		 n;
	int		 valid = status == 200 || status == 429;

	if (msglen == 0)
		return valid;
	if (status == 200)
		(void)strlcpy(msg, "key accepted", msglen);
	else if (status == 429)
		(void)strlcpy(msg, "key valid but out of quota", msglen);
	else {
		snprintf(msg, msglen, "upstream answered %d", status);
		if (body != NULL && len > 0) {
			n = scrub_one(key, body, len);
			if (n < len)
				body[n] = '\0';	/* it shrank */
			len = n;
			root = cJSON_ParseWithLength(body, len);
		}
		/* Errors come wrapped in an array on some paths. */
		if (cJSON_IsArray(root))
			e = cJSON_GetObjectItemCaseSensitive(
			    cJSON_GetArrayItem(root, 0), "error");
		else
			e = cJSON_GetObjectItemCaseSensitive(root, "error");
		m = cJSON_GetObjectItemCaseSensitive(e, "message");
		if (cJSON_IsString(m) && m->valuestring[0] != '\0')
			(void)strlcpy(msg, m->valuestring, msglen);
		cJSON_Delete(root);
	}
	/* A belt: a key too short to scrub must still not come back. */
	msg[scrub_one(key, msg, strlen(msg))] = '\0';
	if (key[0] != '\0' && strstr(msg, key) != NULL)
		snprintf(msg, msglen, "upstream answered %d", status);
	return valid;
}

static void
st_wipe_request(struct conn *c)
{
	if (c->body != NULL && c->body_len > 0)
		explicit_bzero(c->body, c->body_len);
	/* The raw body may also sit in the read buffer, after the head. */
	if (c->buf != NULL && c->next > c->req.head_len && c->next <= c->len)
		explicit_bzero(c->buf + c->req.head_len,
		    c->next - c->req.head_len);
}

/*
 * One generateContent with key on model.  0 with *status, the start of
 * the answer's body in body (*blen bytes, NUL-terminated); -1 with err
 * when the upstream could not be reached or answered nothing readable.
 */
static int
st_test_upstream(const char *key, const char *model, int *status,
    char *body, size_t bodycap, size_t *blen, char *err, size_t errlen)
{
	static const char req_body[] = "{\"contents\":[{\"role\":\"user\","
	    "\"parts\":[{\"text\":\"Hi\"}]}],\"generationConfig\":"
	    "{\"maxOutputTokens\":1}}";
	const struct config	*cfg = looper.cfg;
	struct upstream		*u;
	struct up_resp		 resp;
	char			 head[2048], host[300];
	int64_t			 deadline;
	ssize_t			 r;
	int			 n, t, v6, dflt, rv = -1;

	*blen = 0;
	body[0] = '\0';
	t = cfg->upstream_timeout_s;
	if (t <= 0 || t > ST_TEST_TIMEOUT_S)
		t = ST_TEST_TIMEOUT_S;
	deadline = mono_ms() + (int64_t)t * 1000;
	/* An IPv6 address gets its brackets back; 443 goes unsaid. */
	v6 = strchr(cfg->upstream_host, ':') != NULL;
	dflt = strcmp(cfg->upstream_port, "443") == 0;
	n = snprintf(host, sizeof(host), "%s%s%s%s%s", v6 ? "[" : "",
	    cfg->upstream_host, v6 ? "]" : "", dflt ? "" : ":",
	    dflt ? "" : cfg->upstream_port);
	if (n < 0 || (size_t)n >= sizeof(host))
		goto toolong;
	n = snprintf(head, sizeof(head), "POST %s/v1beta/models/%s:"
	    "generateContent HTTP/1.1\r\nHost: %s\r\nx-goog-api-key: %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", cfg->upstream_prefix, model, host,
	    key, sizeof(req_body) - 1);
	if (n < 0 || (size_t)n >= sizeof(head))
		goto toolong;

	if ((u = up_new(cfg)) == NULL) {
		(void)strlcpy(err, "out of memory", errlen);
		goto out;
	}
	if (up_request(u, head, (size_t)n, req_body, sizeof(req_body) - 1,
	    deadline, err, errlen) == -1 ||
	    up_read_head(u, &resp, 0, deadline, err, errlen) == -1) {
		up_free(u);
		goto out;
	}
	*status = resp.status;
	while (*blen < bodycap - 1 && !resp.no_body && !up_body_done(u)) {
		r = up_read_body(u, body + *blen, bodycap - 1 - *blen,
		    deadline);
		if (r <= 0)
			break;	/* the status is what matters */
		*blen += (size_t)r;
	}
	body[*blen] = '\0';
	up_free(u);
	rv = 0;
	goto out;
 toolong:
	(void)strlcpy(err, "upstream request too long", errlen);
 out:
	explicit_bzero(head, sizeof(head));
	return rv;
}

static void
st_test_key(struct conn *c)
{
	const char	*why;
	char		 key[CFG_KEY_MAX], model[CFG_NAME_MAX];
	char		 err[256], msg[ST_MESSAGE_MAX], ebuf[400];
	char		*body = NULL, *out = NULL;
	size_t		 blen = 0;
	cJSON		*o;
	int		 status = 0, valid, rv;

	rv = status_test_input(c->body, c->body_len, key, sizeof(key), model,
	    sizeof(model), &why);
	st_wipe_request(c);
	if (rv == -1) {
		conn_error(c, 400, why, NULL);
		return;
	}
	if ((body = malloc(ST_TEST_BODY_MAX + 1)) == NULL) {
		explicit_bzero(key, sizeof(key));
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	err[0] = '\0';
	board_set(looper.shm, looper.slot, SHM_W_UPSTREAM, NULL);
	rv = st_test_upstream(key, model, &status, body, ST_TEST_BODY_MAX + 1,
	    &blen, err, sizeof(err));
	board_set(looper.shm, looper.slot, SHM_W_WRITING, NULL);
	if (rv == -1) {
		err[scrub_one(key, err, strlen(err))] = '\0';
		explicit_bzero(key, sizeof(key));
		snprintf(ebuf, sizeof(ebuf), "could not reach the upstream: %s",
		    err[0] != '\0' ? err : "unknown error");
		conn_error(c, 502, ebuf, NULL);
		goto done;
	}
	valid = status_test_verdict(status, body, blen, key, msg, sizeof(msg));
	explicit_bzero(key, sizeof(key));
	snprintf(c->log, sizeof(c->log), "model=%s test_status=%d valid=%d",
	    model, status, valid);

	if ((o = cJSON_CreateObject()) == NULL ||
	    cJSON_AddBoolToObject(o, "valid", valid) == NULL ||
	    cJSON_AddNumberToObject(o, "status", status) == NULL ||
	    cJSON_AddStringToObject(o, "message", msg) == NULL ||
	    (out = cJSON_PrintUnformatted(o)) == NULL) {
		cJSON_Delete(o);
		conn_error(c, 500, "out of memory", NULL);
		goto done;
	}
	cJSON_Delete(o);
	conn_respond(c, 200, "application/json; charset=UTF-8",
	    "Cache-Control: no-store\r\n", out, strlen(out));
 done:
	explicit_bzero(body, ST_TEST_BODY_MAX + 1);
	free(body);
	free(out);
}

/*
 * The handler.
 */

static int
st_get(struct conn *c)
{
	if (strcmp(c->req.method, "GET") == 0 ||
	    strcmp(c->req.method, "HEAD") == 0)
		return 1;
	conn_error(c, 405, "use GET", "Allow: GET, HEAD\r\n");
	return 0;
}

static void
st_file(struct conn *c, const char *name, size_t len)
{
	const struct web_file	*f;

	/* Exact names only: nothing here can reach outside the table. */
	if (len == 0 || memchr(name, '/', len) != NULL ||
	    (len >= 2 && memmem(name, len, "..", 2) != NULL)) {
		conn_error(c, 404, "no such file", NULL);
		return;
	}
	for (f = web_files; f->name != NULL; f++) {
		if (strlen(f->name) != len || memcmp(f->name, name, len) != 0)
			continue;
		conn_respond(c, 200, f->type,
		    "Cache-Control: no-cache\r\n"
		    "X-Content-Type-Options: nosniff\r\n"
		    "X-Frame-Options: DENY\r\n"
		    "Referrer-Policy: no-referrer\r\n"
		    "Content-Security-Policy: default-src 'none'; "
		    "script-src 'self' 'unsafe-inline'; "
		    "style-src 'self' 'unsafe-inline'; connect-src 'self'; "
		    "img-src 'self' data:; frame-ancestors 'none'\r\n",
		    f->data, f->len);
		return;
	}
	conn_error(c, 404, "no such file", NULL);
}

static void
st_send(struct conn *c, const char *ctype, char *body, size_t len)
{
	if (body == NULL) {
		conn_error(c, 500, "out of memory", NULL);
		return;
	}
	conn_respond(c, 200, ctype, "Cache-Control: no-store\r\n", body, len);
	free(body);
}

/* What a path under /status, /api/ or /metrics asks for. */
enum st_what {
	ST_NONE,
	ST_PAGE,		/* /status */
	ST_FILE,		/* /status/<file> */
	ST_DATA,		/* /api/status_data */
	ST_METRICS,		/* /metrics */
	ST_TEST_KEY		/* /api/test_key */
};

static enum st_what
st_what(const char *path, size_t len)
{
	if (route_exact(path, len, "/status") ||
	    route_exact(path, len, "/status/"))
		return ST_PAGE;
	if (len > 8 && memcmp(path, "/status/", 8) == 0)
		return ST_FILE;
	if (route_exact(path, len, "/api/status_data"))
		return ST_DATA;
	if (route_exact(path, len, "/metrics"))
		return ST_METRICS;
	if (route_exact(path, len, "/api/test_key"))
		return ST_TEST_KEY;
	return ST_NONE;
}

/*
 * Once a request's head is in, before its body is read: the admin token,
 * the endpoint and its method.  Returns 0, or -1 when the answer (401,
 * 404, 405) has been sent.
 */
int
status_admit(struct conn *c)
{
	enum st_what	 w = st_what(c->req.target, c->req.path_len);

	if (looper.cfg == NULL || looper.shm == NULL) {
		conn_error(c, 503, "not ready", NULL);
		return -1;
	}
	if (!status_token_ok(looper.cfg->admin_token,
	    http_header(&c->req, "Authorization"), c->req.target)) {
		conn_error(c, 401, "this endpoint needs the admin token: "
		    "Authorization: Bearer <admin_token>, or ?token=",
		    "WWW-Authenticate: Bearer\r\n");
		return -1;
	}
	if (w == ST_NONE) {
		conn_error(c, 404, "no such endpoint: the API has "
		    "/api/status_data and /api/test_key", NULL);
		return -1;
	}
	if (w == ST_TEST_KEY) {
		if (strcmp(c->req.method, "POST") != 0) {
			conn_error(c, 405, "use POST", "Allow: POST\r\n");
			return -1;
		}
		return 0;
	}
	return st_get(c) ? 0 : -1;
}

/* A request that status_admit() let through, its body read. */
void
status_handle(struct conn *c)
{
	const char	*path = c->req.target;
	size_t		 len = c->req.path_len, n;
	char		*body;

	switch (st_what(path, len)) {
	case ST_PAGE:
		st_file(c, "status.html", strlen("status.html"));
		break;
	case ST_FILE:
		st_file(c, path + 8, len - 8);
		break;
	case ST_DATA:
		body = status_data_json(looper.shm, looper.cfg, now_ms(), &n);
		st_send(c, "application/json; charset=UTF-8", body, n);
		break;
	case ST_METRICS:
		body = status_metrics_text(looper.shm, now_ms(), &n);
		st_send(c, "text/plain; version=0.0.4; charset=utf-8", body, n);
		break;
	case ST_TEST_KEY:
		st_test_key(c);
		break;
	case ST_NONE:
		break;
	}
}
