/*
 * wire.c: small readers the Gemini wire parsers share.
 */
#ifndef WIRE_H
#define WIRE_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

int		 gem_namech(int);
void		 gem_idcopy(char *, size_t, const char *, size_t);
int		 gem_json_int(const struct cJSON *, int64_t *);

#endif /* WIRE_H */
