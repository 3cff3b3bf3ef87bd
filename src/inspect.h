/*
 * inspect.c: the model a request names, and its token estimate.
 */
#ifndef INSPECT_H
#define INSPECT_H

#include <stddef.h>
#include <stdint.h>

int		 gem_model_from_path(const char *, size_t, char *, size_t);
int		 gem_model_from_body(const char *, size_t, char *, size_t);
int64_t		 gem_estimate_tokens(size_t);

#endif /* INSPECT_H */
