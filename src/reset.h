/*
 * reset.c: the daily quota reset (master only).
 */
#ifndef RESET_H
#define RESET_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct persist_info;
struct shm_header;

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

#endif /* RESET_H */
