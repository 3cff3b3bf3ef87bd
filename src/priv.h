/*
 * priv.c: the workers' privilege drop.
 */
#ifndef PRIV_H
#define PRIV_H

struct config;

void		 priv_init(const struct config *);
void		 priv_drop(void);

#endif /* PRIV_H */
