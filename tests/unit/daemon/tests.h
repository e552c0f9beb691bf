#ifndef TEST_DAEMON_H
#define TEST_DAEMON_H
#include "cu_main.h"
extern const cu_test_t htab_tests[], journal_tests[], ingest_tests[], sched_tests[], ctl_tests[],
	opts_tests[], registry_tests[], batchfmt_tests[], metrics_tests[], apikeys_tests[], http_tests[],
	booking_tests[], retain_tests[];
#endif
