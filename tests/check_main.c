/*
 * The one runner of every unit suite.  CK_FORK=yes (the default) runs each
 * test in its own process, so a crash fails one test, not the run.
 */
#include <stdlib.h>

#include "check_suites.h"

int
main(void)
{
	SRunner	*sr;
	int	 failed;

	sr = srunner_create(config_suite());
	srunner_add_suite(sr, http_suite());
	srunner_add_suite(sr, lock_suite());
	srunner_add_suite(sr, classify_suite());
	srunner_add_suite(sr, usagescan_suite());
	srunner_add_suite(sr, inspect_suite());
	srunner_add_suite(sr, pick_suite());
	srunner_add_suite(sr, upstream_suite());
	srunner_add_suite(sr, status_suite());
	srunner_add_suite(sr, persist_suite());
	srunner_add_suite(sr, reset_suite());
	srunner_add_suite(sr, scrub_suite());
	srunner_add_suite(sr, route_suite());
	srunner_add_suite(sr, pool_suite());
	srunner_add_suite(sr, project_suite());
	srunner_add_suite(sr, resname_suite());
	srunner_add_suite(sr, relay_suite());
	srunner_add_suite(sr, storm_suite());
	srunner_add_suite(sr, probe_suite());
	srunner_add_suite(sr, ws_suite());
	srunner_add_suite(sr, live_suite());
	srunner_add_suite(sr, livemsg_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
