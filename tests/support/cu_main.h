/* Shared main() for the CUnit test executables.
 *
 * Each test executable defines a table of suites and calls
 * cu_main(argc, argv, suites). The exit status is non-zero when any test
 * failed (CU_basic_run_tests() alone returns success even then).
 *
 * There is no skip: each executable holds a whole area, so a 77 (meson's
 * SKIP) would hide every suite of it, and every suite can run wherever the
 * project builds (a missing ../shared is a setup error and fails loudly).
 * Tests that truly cannot run on some hosts exit 77 themselves: the
 * multi-host scenarios without network namespaces (tests/multihost), which
 * deploy/test-summary.py counts as skipped. */
#ifndef CU_MAIN_H
#define CU_MAIN_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

typedef struct cu_test {
	const char *name;
	void (*fn)(void);
} cu_test_t;

typedef struct cu_suite {
	const char *name;
	const cu_test_t *tests;	/* terminated by { NULL, NULL } */
	int (*init)(void);
	int (*cleanup)(void);
} cu_suite_t;

/* Runs every suite (or only those named on the command line). */
int cu_main(int argc, char **argv, const cu_suite_t *suites);

/* Path of a file under ../shared (or $MARGIN_SHARED_DIR): "models/x.gguf". */
const char *cu_shared_path(const char *rel);
/* A fresh temporary directory for the test (removed by the OS tmp cleaner). */
const char *cu_tmpdir(void);

/* Runs a command's entry point (cmd_bench, cmd_run, ...) in this process
 * with its output in files; returns its exit status. *out gets what it
 * printed on stdout, and on stderr too when err is NULL; else *err gets
 * stderr (NUL-terminated strings, free()). */
int cu_run_captured(int (*fn)(int, char **), int argc, char **argv, char **out, char **err);

#endif
