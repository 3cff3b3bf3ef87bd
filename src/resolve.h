/*
 * resolve.c: the upstream's addresses, looked up in the background.
 */
#ifndef RESOLVE_H
#define RESOLVE_H

#include <stddef.h>
#include <stdint.h>

struct addrinfo;

int		 resolve_upstream(const char *, const char *, int, int64_t, int,
		    const struct addrinfo **, char *, size_t);

#endif /* RESOLVE_H */
