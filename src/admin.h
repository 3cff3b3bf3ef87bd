/*
 * admin.c: the admin token, /api/test_key.
 */
#ifndef ADMIN_H
#define ADMIN_H

#include <stddef.h>

struct conn;

int		 admin_token_ok(const char *, const char *, const char *);
void		 admin_test_key(struct conn *);
void		 admin_probe_key(struct conn *, const char *, size_t);
int		 admin_test_input(const char *, size_t, char *, size_t, char *,
		    size_t, const char **);
int		 admin_test_verdict(int, char *, size_t, const char *, char *,
		    size_t);

#endif /* ADMIN_H */
