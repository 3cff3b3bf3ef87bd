/* The unit suites, one per module (tests/check_<module>.c). */
#ifndef CHECK_SUITES_H
#define CHECK_SUITES_H

#include <check.h>

Suite	*config_suite(void);
Suite	*http_suite(void);
Suite	*lock_suite(void);
Suite	*classify_suite(void);
Suite	*usagescan_suite(void);
Suite	*inspect_suite(void);
Suite	*pick_suite(void);
Suite	*upstream_suite(void);
Suite	*status_suite(void);
Suite	*persist_suite(void);
Suite	*reset_suite(void);
Suite	*scrub_suite(void);
Suite	*route_suite(void);
Suite	*pool_suite(void);
Suite	*project_suite(void);
Suite	*resname_suite(void);
Suite	*relay_suite(void);
Suite	*storm_suite(void);
Suite	*probe_suite(void);
Suite	*ws_suite(void);
Suite	*live_suite(void);
Suite	*livemsg_suite(void);

#endif
