/*
 * sbuf.c: a growing output buffer.
 */
#ifndef SBUF_H
#define SBUF_H

#include <stddef.h>
#include <stdint.h>

struct sbuf {
	char	*p;		/* NUL-terminated once anything was added */
	size_t	 len;
	size_t	 cap;
	int	 oom;		/* an allocation failed: p is incomplete */
};

#define sb_lit(b, s)	sb_add((b), (s), sizeof(s) - 1)

int		 sb_grow(struct sbuf *, size_t);
void		 sb_add(struct sbuf *, const char *, size_t);
void		 sb_cstr(struct sbuf *, const char *);
void		 sb_u64(struct sbuf *, uint64_t);
void		 sb_i64(struct sbuf *, int64_t);
void		 sb_limit(struct sbuf *, int64_t);
void		 sb_printf(struct sbuf *, const char *, ...)
		    __attribute__((__format__ (printf, 2, 3)));
void		 sb_jstr(struct sbuf *, const char *);
void		 sb_label(struct sbuf *, const char *);

#endif /* SBUF_H */
