/* CUnit suites of the daemon area, one per module. */
#include "lib/mg_log.h"
#include "tests.h"

static const cu_suite_t suites[] = {
	{ "htab", htab_tests, NULL, NULL },
	{ "registry", registry_tests, NULL, NULL },
	{ "ingest", ingest_tests, NULL, NULL },
	{ "journal", journal_tests, NULL, NULL },
	{ "sched", sched_tests, NULL, NULL },
	{ "ctl", ctl_tests, NULL, NULL },
	{ "opts", opts_tests, NULL, NULL },
	{ "batchfmt", batchfmt_tests, NULL, NULL },
	{ "metrics", metrics_tests, NULL, NULL },
	{ "apikeys", apikeys_tests, NULL, NULL },
	{ "http", http_tests, NULL, NULL },
	{ "booking", booking_tests, NULL, NULL },
	{ "retain", retain_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	/* The scheduler logs every lost worker and requeue: quiet unless asked
	 * (MARGIN_LOG_LEVEL=info). */
	mg_log_set_level(MG_LOG_ERROR);
	mg_log_init_from_env();
	return cu_main(argc, argv, suites);
}
