/*
 * A request's journey to the upstream.  (Being built: issue 3.)
 */
#include "looper.h"

void
proxy_handle(struct conn *c)
{
	conn_error(c, 501, "proxying is not built yet", NULL);
}
