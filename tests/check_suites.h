/* The unit suites, one per module (tests/check_<module>.c). */
#ifndef CHECK_SUITES_H
#define CHECK_SUITES_H

#include <check.h>

Suite	*config_suite(void);
Suite	*http_suite(void);
Suite	*lock_suite(void);
Suite	*gemini_suite(void);

#endif
