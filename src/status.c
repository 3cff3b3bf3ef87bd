/*
 * /status, /api/status_data, /api/test_key, /metrics.  (Being built.)
 */
#include "looper.h"

void
status_handle(struct conn *c)
{
	conn_error(c, 404, "not built yet", NULL);
}
