/* CUnit suites of the cli area, one per module. */
#include "cu_main.h"

extern const cu_test_t progress_tests[];

static const cu_suite_t suites[] = {
	{ "progress", progress_tests, NULL, NULL },
	{ NULL, NULL, NULL, NULL },
};

int main(int argc, char **argv)
{
	return cu_main(argc, argv, suites);
}
