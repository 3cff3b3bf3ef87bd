/*
 * proxy.c: a request's journey to the upstream and back (with rewrite.c,
 * relay.c and owner.c, which share px.h).  route.c calls these two.
 */
#ifndef PROXY_H
#define PROXY_H

struct conn;

/* proxy.c */
int		 proxy_authorized(struct conn *, int);
int		 proxy_admit(struct conn *);
void		 proxy_handle(struct conn *);

#endif /* PROXY_H */
