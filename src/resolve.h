/*
 * resolve.c: the upstream's addresses, looked up in the background.
 */
#ifndef RESOLVE_H
#define RESOLVE_H

#include <stddef.h>
#include <stdint.h>

struct addrinfo;

/* resolve_upstream()'s results: 0 with the addresses, or one of these. */
#define RESOLVE_FAIL		(-1)	/* no address: err says why */
#define RESOLVE_GONE		(-2)	/* the client on watch went away */
#define RESOLVE_TIMEOUT		(-3)	/* the deadline passed first */

int		 resolve_upstream(const char *, const char *, int, int64_t, int,
		    const struct addrinfo **, char *, size_t);

#endif /* RESOLVE_H */
