/*
 * verdict.c: what classify.c decided of an upstream answer, applied to the
 * key that got it, for REST (proxy.c) and Live sessions (live.c) alike.
 */
#ifndef VERDICT_H
#define VERDICT_H

struct gem_verdict;
struct shm_pick;

void	 verdict_apply(const struct shm_pick *, const char *, int,
	    const struct gem_verdict *, int);

#endif /* VERDICT_H */
