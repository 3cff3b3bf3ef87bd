/*
 * proxy.c: a request's journey to the upstream and back.
 */
#ifndef PROXY_H
#define PROXY_H

struct conn;

int		 proxy_admit(struct conn *);
void		 proxy_handle(struct conn *);

#endif /* PROXY_H */
