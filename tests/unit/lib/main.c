#include "tests.h"

static const cu_suite_t suites[] = {
	{ "wire", wire_tests, NULL, NULL },
	{ "log", log_tests, NULL, NULL },
	{ "config", config_tests, NULL, NULL },
	{ "clock", clock_tests, NULL, NULL },
	{ "hash", hash_tests, NULL, NULL },
	{ "settings", settings_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_main(argc, argv, suites);
}
