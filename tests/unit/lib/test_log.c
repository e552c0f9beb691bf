/* Logging: logfmt lines with the message quoted and key=values kept. */
#include "tests.h"
#include "mg_log.h"

#include <errno.h>
#include <stdarg.h>
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

/* What mg_log writes for one line, from "level=" on. */
static char captured[4096];

static const char *capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *capture(const char *fmt, ...)
{
	int p[2];
	captured[0] = '\0';
	if (pipe(p) != 0)
		return captured;
	int old = mg_log_set_fd(p[1]);
	va_list ap;
	va_start(ap, fmt);
	mg_log_writev(MG_LOG_WARN, "sched", fmt, ap);
	va_end(ap);
	mg_log_set_fd(old);
	close(p[1]);
	ssize_t n = read(p[0], captured, sizeof(captured) - 1);
	close(p[0]);
	captured[n > 0 ? n : 0] = '\0';
	char *lvl = strstr(captured, "level=");
	return lvl ? lvl : captured;
}

/* Strings a worker chooses (its name, model, Bye reason) go into values:
 * they cannot add fields, end the line or break the quoting. */
static void test_values_escaped(void)
{
	const char *l;
	l = capture("worker joined worker=%s name=%s slots=%u", "w1", "gpu7 level=error admin=1", 4u);
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"worker joined\" worker=w1 "
			       "name=\"gpu7 level=error admin=1\" slots=4\n");
	l = capture("worker lost worker=%s reason=\"%s\"", "w2", "bye\" injected=\"1\nts=2000-01-01 level=error");
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"worker lost\" worker=w2 "
			       "reason=\"bye\\\" injected=\\\"1\\nts=2000-01-01 level=error\"\n");
	/* a control character, a backslash, an empty value, UTF-8 kept */
	l = capture("x model=%s a=%s b=%s c=%s", "m\x01", "back\\slash", "", "café");
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"x\" model=\"m\\x01\" "
			       "a=\"back\\\\slash\" b= c=café\n");
	/* An argument in the message stays in the message. */
	l = capture("%s worker=%s", "joined as=admin", "w3");
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"joined as=admin\" worker=w3\n");
	/* Conversions of every kind still format as printf does. */
	l = capture("n id=%.*s hex=0x%x big=%lld size=%zu f=%.2f pct=%d%% lines=%lld-%lld c=%c",
		    3, "abcdef", 255u, -5LL, (size_t)7, 1.5, 50, 1LL, 9LL, 'z');
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"n\" id=abc hex=0xff big=-5 size=7 f=1.50 "
			       "pct=50% lines=1-9 c=z\n");
	/* A space flag does not split a value. */
	l = capture("n a=% d b=%s", 5, "x");
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"n\" a=\" 5\" b=x\n");
	/* Literal text in the format is kept as written. */
	l = capture("refused reason=\"CURVE required\" peer=%s", "10.0.0.1:5555");
	CU_ASSERT_STRING_EQUAL(l, "level=warn comp=sched msg=\"refused\" reason=\"CURVE required\" "
			       "peer=10.0.0.1:5555\n");
}

/* The first event is logged, then one line a minute with the count of the
 * ones in between. */
static void test_throttle(void)
{
	mg_log_throttle_t t = { 0 };
	uint64_t quiet = 99;
	int64_t s = 1000000000LL, t0 = 5 * s;
	CU_ASSERT_TRUE(mg_log_throttle(&t, t0, &quiet));
	CU_ASSERT_EQUAL(quiet, 0);
	int logged = 0;
	for (int i = 1; i <= 2000; i++)		/* 2000 events in 7 s */
		logged += mg_log_throttle(&t, t0 + i * 7 * s / 2000, &quiet);
	CU_ASSERT_EQUAL(logged, 0);
	CU_ASSERT_TRUE(mg_log_throttle(&t, t0 + 60 * s, &quiet));
	CU_ASSERT_EQUAL(quiet, 2000);
	CU_ASSERT_FALSE(mg_log_throttle(&t, t0 + 61 * s, &quiet));
	CU_ASSERT_TRUE(mg_log_throttle(&t, t0 + 120 * s, &quiet));
	CU_ASSERT_EQUAL(quiet, 1);
	/* a clock that starts at 0 is no special case */
	mg_log_throttle_t z = { 0 };
	CU_ASSERT_TRUE(mg_log_throttle(&z, 0, &quiet));
	CU_ASSERT_FALSE(mg_log_throttle(&z, 1, &quiet));
}

const cu_test_t log_tests[] = {
	{ "logfmt line", test_format },
	{ "level names and env", test_levels },
	{ "below-level lines cost nothing", test_filtered },
	{ "values from outside are quoted and escaped", test_values_escaped },
	{ "throttled events: the first, then one a minute", test_throttle },
	{ NULL, NULL },
};
