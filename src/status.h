/*
 * status.c: the dashboard and the dispatch of the operator's endpoints;
 * status_json.c: /api/status_data; metrics.c: /metrics.
 */
#ifndef STATUS_H
#define STATUS_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct conn;
struct shm_header;

/* status.c */
int		 status_admit(struct conn *);
void		 status_handle(struct conn *);

/* status_json.c */
char		*status_data_json(struct shm_header *, const struct config *,
		    int64_t, size_t *);
void		 status_iso8601(int64_t, char *, size_t);

/* metrics.c */
char		*metrics_text(struct shm_header *, int64_t, size_t *);

#endif /* STATUS_H */
