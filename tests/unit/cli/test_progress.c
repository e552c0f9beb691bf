/* progress: what `marginctl wait` shows — counts, rates, ETA, cost. */
#include "cu_main.h"
#include "progress.h"

#include <string.h>

extern const cu_test_t progress_tests[];

static progress_t running(int64_t total, int64_t done, int64_t failed, int64_t tokens)
{
	progress_t p = { .id = "batch_1", .status = "in_progress", .total = total, .completed = done,
			 .failed = failed, .tokens = tokens, .cost_micros = -1 };
	return p;
}

static void test_rates_and_eta(void)
{
	progress_t p = running(100, 10, 0, 400);
	progress_update(&p, 50.0);
	/* The first running sample only starts the clock. */
	CU_ASSERT_TRUE(p.tok_per_s < 0);
	CU_ASSERT_TRUE(p.eta_s < 0);
	p.completed = 28;
	p.failed = 2;
	p.tokens = 1200;
	progress_update(&p, 54.0);
	/* 800 tokens in 4 s; 20 requests in 4 s, 70 left -> 14 s. */
	CU_ASSERT_DOUBLE_EQUAL(p.tok_per_s, 200.0, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(p.eta_s, 14.0, 1e-9);
	p.completed = 98;
	p.failed = 2;
	progress_update(&p, 60.0);
	CU_ASSERT_DOUBLE_EQUAL(p.eta_s, 0.0, 1e-9);
}

static void test_no_progress_no_eta(void)
{
	progress_t p = { .id = "b", .status = "validating", .total = 10, .tokens = -1, .cost_micros = -1 };
	progress_update(&p, 1.0);
	CU_ASSERT_FALSE(p.started);
	p.status = "in_progress";
	progress_update(&p, 2.0);
	progress_update(&p, 9.0);
	/* Nothing finished yet: no ETA rather than an infinite one; no tokens known. */
	CU_ASSERT_TRUE(p.eta_s < 0);
	CU_ASSERT_TRUE(p.tok_per_s < 0);
}

static void test_plain_line(void)
{
	progress_t p = running(20, 9, 1, 0);
	p.tok_per_s = 412.4;
	p.eta_s = 41.6;
	p.cost_micros = 12300;
	p.currency = "USD";
	char buf[256];
	progress_format(&p, false, 0, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "batch_1 in_progress: 9/20 done, 1 failed, 412 tok/s, ETA 42s, cost 0.012300 USD");
	p.tok_per_s = -1;
	p.eta_s = -1;
	p.cost_micros = -1;
	progress_format(&p, false, 0, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "batch_1 in_progress: 9/20 done, 1 failed");
}

static void test_bar(void)
{
	progress_t p = running(20, 9, 1, 0);
	p.tok_per_s = 100;
	p.eta_s = 75;
	char buf[512];
	size_t n = progress_format(&p, true, 80, buf, sizeof(buf));
	CU_ASSERT_EQUAL(n, strlen(buf));
	CU_ASSERT_TRUE(n <= 80);
	CU_ASSERT_EQUAL(buf[0], '[');
	/* Half done: half the cells filled. */
	const char *open = strchr(buf, '['), *close = strchr(buf, ']');
	CU_ASSERT_PTR_NOT_NULL_FATAL(open);
	CU_ASSERT_PTR_NOT_NULL_FATAL(close);
	int cells = (int)(close - open - 1), fill = 0;
	for (const char *c = open + 1; c < close; c++)
		fill += *c == '#';
	CU_ASSERT_TRUE(cells >= 10);
	CU_ASSERT_EQUAL(fill, cells / 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, " 50%  9/20 done  1 failed  100 tok/s  ETA 1:15"));
	/* A finished batch shows its status instead of an ETA, and a
	 * narrow terminal still gets a (short) bar. */
	p.status = "completed";
	p.completed = 19;
	progress_format(&p, true, 20, buf, sizeof(buf));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "100%"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "completed"));
	CU_ASSERT_PTR_NULL(strstr(buf, "ETA"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "[##########]"));
}

static void test_duration(void)
{
	char b[32];
	CU_ASSERT_STRING_EQUAL(progress_duration(42, b, sizeof(b)), "0:42");
	CU_ASSERT_STRING_EQUAL(progress_duration(3723, b, sizeof(b)), "1:02:03");
	CU_ASSERT_STRING_EQUAL(progress_duration(-1, b, sizeof(b)), "?");
}

const cu_test_t progress_tests[] = {
	{ "rates and ETA average since the start", test_rates_and_eta },
	{ "no ETA before anything finished", test_no_progress_no_eta },
	{ "plain lines for pipes and logs", test_plain_line },
	{ "bar fits the terminal and fills with progress", test_bar },
	{ "durations", test_duration },
	{ NULL, NULL },
};
