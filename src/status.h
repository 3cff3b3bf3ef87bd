/*
 * status.c: the dashboard, its data, test_key and the metrics.
 */
#ifndef STATUS_H
#define STATUS_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct conn;
struct shm_header;

int		 status_admit(struct conn *);
void		 status_handle(struct conn *);
char		*status_data_json(struct shm_header *, const struct config *,
		    int64_t, size_t *);
char		*status_metrics_text(struct shm_header *, int64_t, size_t *);
void		 status_iso8601(int64_t, char *, size_t);
int		 status_token_ok(const char *, const char *, const char *);
int		 status_test_input(const char *, size_t, char *, size_t, char *,
		    size_t, const char **);
int		 status_test_verdict(int, char *, size_t, const char *, char *,
		    size_t);

#endif /* STATUS_H */
