/*
 * util.c: the clocks.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stdint.h>

int64_t	 now_ms(void);
int64_t	 mono_ms(void);

#endif /* UTIL_H */
