/*
 * route.c: which handler serves a path.
 */
#ifndef ROUTE_H
#define ROUTE_H

#include <stddef.h>

struct conn;

int		 route_admit(struct conn *);
void		 route_request(struct conn *);
void		 route_log_path(const char *, char *, size_t);
int		 route_prefix(const char *, size_t, const char *);
int		 route_exact(const char *, size_t, const char *);

#endif /* ROUTE_H */
