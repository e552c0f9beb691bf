#ifndef TEST_LIB_H
#define TEST_LIB_H
#include "cu_main.h"
extern const cu_test_t wire_tests[], log_tests[], config_tests[], clock_tests[], hash_tests[],
	split_tests[], utf8_tests[], curve_tests[], f16_tests[],
	notify_tests[], jobstate_tests[], settings_tests[];
#endif
