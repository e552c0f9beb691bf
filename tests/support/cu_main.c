/* Shared main() for the CUnit test executables: see cu_main.h. */
#include "cu_main.h"
#include "margin_config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cu_main(int argc, char **argv, const cu_suite_t *suites)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	for (const cu_suite_t *s = suites; s->name; s++) {
		int wanted = argc < 2;
		for (int i = 1; i < argc; i++)
			if (strcmp(argv[i], s->name) == 0)
				wanted = 1;
		if (!wanted)
			continue;
		CU_pSuite cs = CU_add_suite(s->name, s->init, s->cleanup);
		if (cs == NULL)
			goto fail;
		for (const cu_test_t *t = s->tests; t->name; t++)
			if (CU_add_test(cs, t->name, t->fn) == NULL)
				goto fail;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	unsigned suites_failed = CU_get_number_of_suites_failed();
	CU_cleanup_registry();
	return (failed || suites_failed) ? 1 : 0;
fail:
	fprintf(stderr, "CUnit registry error: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 1;
}

const char *cu_shared_path(const char *rel)
{
	static char buf[8][PATH_MAX];
	static int slot;
	char *out = buf[slot++ % 8];
	const char *base = getenv("MARGIN_SHARED_DIR");
	if (base == NULL || *base == '\0')
		base = MARGIN_SHARED_DIR;
	if (base == NULL || *base == '\0')
		base = MARGIN_SOURCE_ROOT "/../shared";
	snprintf(out, PATH_MAX, "%s/%s", base, rel);
	return out;
}

const char *cu_tmpdir(void)
{
	static char dir[PATH_MAX];
	if (dir[0] == '\0') {
		const char *t = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/margin-test-XXXXXX", t && *t ? t : "/tmp");
		if (mkdtemp(dir) == NULL)
			return NULL;
	}
	return dir;
}

/* What fd holds, from its start, as a new string. */
static char *read_back(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	char *s = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
	CU_ASSERT_FATAL(s != NULL && (len <= 0 || pread(fd, s, (size_t)len, 0) == len));
	return s;
}

int cu_run_captured(int (*fn)(int, char **), int argc, char **argv, char **out, char **err)
{
	char po[PATH_MAX], pe[PATH_MAX];
	snprintf(po, sizeof(po), "%s/captured.out", cu_tmpdir());
	snprintf(pe, sizeof(pe), "%s/captured.err", cu_tmpdir());
	fflush(stdout);
	fflush(stderr);
	int fo = open(po, O_RDWR | O_CREAT | O_TRUNC, 0600);
	int fe = err != NULL ? open(pe, O_RDWR | O_CREAT | O_TRUNC, 0600) : fo;
	int so = dup(1), se = dup(2);
	CU_ASSERT_FATAL(fo >= 0 && fe >= 0 && so >= 0 && se >= 0);
	dup2(fo, 1);
	dup2(fe, 2);
	int status = fn(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(so, 1);
	dup2(se, 2);
	close(so);
	close(se);
	*out = read_back(fo);
	close(fo);
	if (err != NULL) {
		*err = read_back(fe);
		close(fe);
	}
	return status;
}
