/*
 * livemsg.c: what the proxy reads in a Live session's messages.
 */
#ifndef LIVEMSG_H
#define LIVEMSG_H

#include <stddef.h>
#include <stdint.h>

struct gem_verdict;
struct shm_tokens;

#define LM_SETUP_COMPLETE	0x1
#define LM_USAGE		0x2

int		 lm_setup_model(const uint8_t *, size_t, char *, size_t);
int		 lm_server(const uint8_t *, size_t, struct shm_tokens *);
void		 lm_close_verdict(int, const char *, size_t,
		    struct gem_verdict *);

#endif /* LIVEMSG_H */
