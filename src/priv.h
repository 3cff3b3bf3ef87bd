/*
 * priv.c: the privilege drop of the master's children.
 */
#ifndef PRIV_H
#define PRIV_H

struct config;

void		 priv_init(const struct config *);
void		 priv_drop(void);
void		 priv_child(int);

#endif /* PRIV_H */
