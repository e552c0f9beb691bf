/* Logging: logfmt lines with the message quoted and key=values kept. */
#include "tests.h"
#include "mg_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_format(void)
{
	char line[512];
	/* 2026-11-28T21:40:00.123Z */
	long long ns = 1795902000123000000LL;
	mg_log_format_line(line, sizeof(line), ns, MG_LOG_INFO, "core",
			   "shard done batch=b1 shard=3 err=\"x y\"");
	CU_ASSERT_STRING_EQUAL(line, "ts=2026-11-28T21:40:00.123Z level=info comp=core "
			       "msg=\"shard done\" batch=b1 shard=3 err=\"x y\"");
	mg_log_format_line(line, sizeof(line), ns, MG_LOG_ERROR, "gguf", "bad \"file\"\nnext");
	CU_ASSERT_STRING_EQUAL(line, "ts=2026-11-28T21:40:00.123Z level=error comp=gguf "
			       "msg=\"bad \\\"file\\\"\\nnext\"");
	/* '=' inside a word that is not a key start stays in the message */
	mg_log_format_line(line, sizeof(line), ns, MG_LOG_WARN, "x", "a==b");
	CU_ASSERT_PTR_NOT_NULL(strstr(line, "msg=\"a==b\""));
}

static void test_levels(void)
{
	CU_ASSERT_EQUAL(mg_log_level_parse("debug"), MG_LOG_DEBUG);
	CU_ASSERT_EQUAL(mg_log_level_parse("WARN"), MG_LOG_WARN);
	CU_ASSERT_EQUAL(mg_log_level_parse("warning"), MG_LOG_WARN);
	CU_ASSERT_EQUAL(mg_log_level_parse("0"), MG_LOG_ERROR);
	CU_ASSERT_EQUAL(mg_log_level_parse("loud"), -EINVAL);
	setenv("MARGIN_LOG_LEVEL", "nonsense", 1);
	CU_ASSERT_EQUAL(mg_log_init_from_env(), -EINVAL);
	setenv("MARGIN_LOG_LEVEL", "debug", 1);
	CU_ASSERT_EQUAL(mg_log_init_from_env(), 0);
	CU_ASSERT_EQUAL(mg_log_level_current, MG_LOG_DEBUG);
	unsetenv("MARGIN_LOG_LEVEL");
}

static int evaluated;
static int side_effect(void) { evaluated++; return 1; }

static void test_filtered(void)
{
	int p[2];
	CU_ASSERT_EQUAL_FATAL(pipe(p), 0);
	int old = mg_log_set_fd(p[1]);
	mg_log_set_level(MG_LOG_WARN);
	evaluated = 0;
	mg_log(MG_LOG_DEBUG, "t", "hidden n=%d", side_effect());
	CU_ASSERT_EQUAL(evaluated, 0);
	mg_log(MG_LOG_ERROR, "t", "shown n=%d", side_effect());
	CU_ASSERT_EQUAL(evaluated, 1);
	mg_log_set_fd(old);
	close(p[1]);
	char buf[512] = { 0 };
	ssize_t n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	CU_ASSERT(n > 0);
	CU_ASSERT_PTR_NULL(strstr(buf, "hidden"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "level=error comp=t msg=\"shown\" n=1\n"));
	mg_log_set_level(MG_LOG_INFO);
}

const cu_test_t log_tests[] = {
	{ "logfmt line", test_format },
	{ "level names and env", test_levels },
	{ "below-level lines cost nothing", test_filtered },
	{ NULL, NULL },
};
