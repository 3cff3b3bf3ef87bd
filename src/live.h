/*
 * live.c: the Live API (WebSocket BidiGenerateContent sessions) through
 * the pool, with liverelay.c and livemsg.c.  route.c calls these two.
 */
#ifndef LIVE_H
#define LIVE_H

struct conn;

int		 live_admit(struct conn *);
void		 live_handle(struct conn *);

#endif /* LIVE_H */
