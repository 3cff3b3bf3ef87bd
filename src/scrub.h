/*
 * scrub.c: secrets (pool keys, tokens, anything shaped like a Google API
 * key) masked out of text before it leaves the process.
 */
#ifndef SCRUB_H
#define SCRUB_H

#include <stddef.h>

struct scrub;

struct scrub	*scrub_new(const char *const *, size_t);
void		 scrub_free(struct scrub *);
size_t		 scrub_text(const struct scrub *, char *, size_t);
size_t		 scrub_one(const char *, char *, size_t);
void		 scrub_str(const struct scrub *, char *);

#endif /* SCRUB_H */
