/*
 * view.c: the shared tables as the dashboard, its JSON and /metrics show
 * them: one snapshot (shm/snapshot.c), each cell's state made final, keys
 * in config order, sums per model.
 */
#ifndef VIEW_H
#define VIEW_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#include "shm.h"

/* Key states as shown: the cell states, and invalid over all of them. */
#define VIEW_INVALID	3
#define VIEW_NSTATES	4

struct view_model {
	const struct shm_model *m;	/* into the snapshot */
	int		 is_default;
	uint64_t	 hist[SHM_HISTORY];	/* oldest first */
	int		 cur_row;	/* the key shown as current, -1 */
	/* The sums over its keys, and how many are in each state. */
	uint64_t	 t_tokens[SHM_TOK_N];
	uint64_t	 t_requests;
	uint64_t	 t_errors;
	uint32_t	 nstate[VIEW_NSTATES];
	uint32_t	 live_sessions;	/* Live sessions open, scoreboard */
};

struct view_key {
	const struct shm_key *k;	/* into the snapshot, key wiped */
	uint32_t	 state;		/* the worst of its cells, or invalid */
	int64_t		 until;		/* when that state ends, 0 */
	uint64_t	 hist[SHM_HISTORY];	/* oldest first */
};

struct view_cell {
	const struct shm_usage *u;	/* into the snapshot: the counts */
	const struct shm_usage *pu;	/* its project's: the state */
	uint32_t	 state;		/* enum shm_cell_state */
	uint32_t	 reason;	/* enum shm_reason, shown when not 0 */
	int64_t		 cooldown_until;	/* while cooling, else 0 */
	int64_t		 until;		/* when the state ends, 0 */
	uint64_t	 tpm_used;	/* the last minute's window */
	uint32_t	 rpm_used;
};

/* A named project, with its cells (state and the counts limits apply to). */
struct view_project {
	const struct shm_project *p;	/* into the snapshot */
	uint32_t	 slot;
	struct view_cell *cells;	/* nmodels, into view.pcells */
};

struct view {
	struct shm_snap	 snap;
	int64_t		 now;
	uint32_t	 minute;	/* now, in minutes since the epoch */
	struct view_key	*keys;		/* slots in use, slot order */
	size_t		 nkeys;
	size_t		*order;		/* rows in config order */
	struct view_model *models;
	size_t		 nmodels;
	struct view_cell *cells;	/* nkeys x nmodels */
	int		*slot_row;	/* key slot -> row, -1 */
	struct view_project *projects;	/* named, in use, by name */
	size_t		 nprojects;
	struct view_cell *pcells;	/* nprojects x nmodels */
	struct shm_slot	*workers;	/* board_copy(): slots in use, their
					   request lines scrubbed */
	size_t		 nworkers;
	int		 busy;
	int		 idle;
};

#define VIEW_CELL(v, r, j)	(&(v)->cells[(size_t)(r) * (v)->nmodels + (j)])

int		 view_take(struct shm_header *, int64_t, struct view *);
const char	*view_project_name(const struct view *, const struct shm_key *);
void		 view_free(struct view *);
const char	*view_state_name(uint32_t);
const char	*view_reason_name(uint32_t);

#endif /* VIEW_H */
