/*
 * master.c: the master process.
 */
#ifndef MASTER_H
#define MASTER_H

#include <stddef.h>

struct config;

int		 master_listen(const struct config *, char *, size_t);
int		 master_publish(struct config *, char *, size_t);
int		 master_main(int);

#endif /* MASTER_H */
