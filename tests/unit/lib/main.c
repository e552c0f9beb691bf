#include "tests.h"

static const cu_suite_t suites[] = {
	{ "wire", wire_tests, NULL, NULL },
	{ "log", log_tests, NULL, NULL },
	{ "config", config_tests, NULL, NULL },
	{ "clock", clock_tests, NULL, NULL },
	{ "hash", hash_tests, NULL, NULL },
	{ "split", split_tests, NULL, NULL },
	{ "utf8", utf8_tests, NULL, NULL },
	{ "curve", curve_tests, NULL, NULL },
	{ "f16", f16_tests, NULL, NULL },
	{ "notify", notify_tests, NULL, NULL },
	{ "jobstate", jobstate_tests, NULL, NULL },
	{ "settings", settings_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_main(argc, argv, suites);
}
