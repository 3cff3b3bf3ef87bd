/*
 * tls.c: the OpenSSL client context for the upstream.
 */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>

struct config;
struct ssl_st;			/* OpenSSL's SSL */
struct ssl_session_st;		/* OpenSSL's SSL_SESSION */

/* tls.c */
int		 tls_init(const struct config *, char *, size_t);
void		 tls_prepare(const struct config *);
void		 tls_free(void);
struct ssl_st	*tls_client(int, const char *, struct ssl_session_st **,
		    char *, size_t);
void		 tls_strerror(struct ssl_st *, char *, size_t);

#endif /* TLS_H */
