/* meter (data files): where profiles and price tables are found by name,
 * how a spec is told apart from a name, and a price given as text — what
 * margind's [meter] settings and marginctl cost/economics both go
 * through. The shipped files under deploy/ are the fixtures. */
#include "tests.h"
#include "hwprof.h"
#include "meter.h"
#include "pricetab.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool has(const char *s, const char *needle)
{
	if (strstr(s, needle) != NULL)
		return true;
	fprintf(stderr, "\nexpected \"%s\" in: %s\n", needle, s);
	return false;
}


static void test_default_dir(void)
{
	char buf[4096], small[8];
	/* An uninstalled build finds the source tree's deploy/ (an installed
	 * one DATADIR/margin/): either way the shipped profile is there. */
	CU_ASSERT_PTR_EQUAL(meter_default_dir("hardware", buf, sizeof(buf)), buf);
	CU_ASSERT(strcmp(buf, DEPLOY("hardware")) == 0 || ends_with(buf, "/margin/hardware"));
	hwprof_t hw;
	char err[512] = "";
	CU_ASSERT_EQUAL(hwprof_find(buf, "cpu-2vcpu", &hw, err, sizeof(err)), 0);
	meter_default_dir("prices", buf, sizeof(buf));
	CU_ASSERT(strcmp(buf, DEPLOY("prices")) == 0 || ends_with(buf, "/margin/prices"));
	/* Found nowhere: the installed path, for the messages. */
	meter_default_dir("no-such-kind", buf, sizeof(buf));
	CU_ASSERT(buf[0] == '/' && ends_with(buf, "/margin/no-such-kind"));
	/* A buffer too small is truncated, still terminated. */
	CU_ASSERT_PTR_EQUAL(meter_default_dir("hardware", small, sizeof(small)), small);
	CU_ASSERT_EQUAL(strlen(small), sizeof(small) - 1);
}

static void test_load_profile(void)
{
	hwprof_t hw;
	char err[1024] = "";
	/* By name, with or without .conf, and by path (no directory needed). */
	CU_ASSERT_EQUAL(meter_load_profile("cpu-2vcpu", DEPLOY("hardware"), &hw, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(hw.name, "cpu-2vcpu");
	CU_ASSERT_STRING_EQUAL(hw.currency, "CNY");
	memset(&hw, 0, sizeof(hw));
	CU_ASSERT_EQUAL(meter_load_profile("8xh100.conf", DEPLOY("hardware"), &hw, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(hw.name, "8xh100");
	memset(&hw, 0, sizeof(hw));
	CU_ASSERT_EQUAL(meter_load_profile(DEPLOY("hardware/8xa100.conf"), NULL, &hw, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(hw.name, "8xa100");

	/* An existing file without '/' is a file, not a name in dir. */
	char cwd[PATH_MAX];
	CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(cwd, sizeof(cwd)));
	CU_ASSERT_EQUAL_FATAL(chdir(DEPLOY("hardware")), 0);
	memset(&hw, 0, sizeof(hw));
	int r = meter_load_profile("8xh20.conf", "/nonexistent", &hw, err, sizeof(err));
	CU_ASSERT_EQUAL_FATAL(chdir(cwd), 0);
	CU_ASSERT_EQUAL(r, 0);
	CU_ASSERT_STRING_EQUAL(hw.name, "8xh20");

	/* Failures name what was asked for and leave *ret alone. */
	hwprof_t keep = hw;
	CU_ASSERT_EQUAL(meter_load_profile("no-such-gpu", DEPLOY("hardware"), &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no-such-gpu"));
	CU_ASSERT_EQUAL(meter_load_profile("cpu-2vcpu", NULL, &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "cpu-2vcpu") && has(err, "no profile directory"));
	CU_ASSERT_EQUAL(meter_load_profile("cpu-2vcpu", "", &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT_EQUAL(meter_load_profile("/nonexistent/cpu-2vcpu.conf", DEPLOY("hardware"), &hw, err, sizeof(err)),
			-ENOENT);
	CU_ASSERT(memcmp(&hw, &keep, sizeof(hw)) == 0);
	/* A name is a name: no climbing out of the directory. */
	CU_ASSERT_EQUAL(meter_load_profile(".hidden", DEPLOY("hardware"), &hw, err, sizeof(err)), -EINVAL);
}

static void test_load_prices(void)
{
	char err[1024] = "";
	pricetab_t *t = pricetab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	/* By name (NAME.conf in dir) and by path. */
	CU_ASSERT_EQUAL(meter_load_prices(t, "closed-2024", DEPLOY("prices"), NULL, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(pricetab_find(t, "gpt-4o-mini"));
	CU_ASSERT_EQUAL(meter_load_prices(t, DEPLOY("prices/cn-2024-05-after.conf"), NULL, NULL, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(pricetab_find(t, "qwen-long"));
	pricetab_destroy(&t);

	/* A .json file is LiteLLM's format, by name in dir too, with the date
	 * given for its prices. */
	t = pricetab_new();
	CU_ASSERT_EQUAL(meter_load_prices(t, "litellm_sample.json", METER_TEST_DATA, "2024-07-18", err, sizeof(err)), 0);
	const pricetab_entry_t *e = pricetab_find(t, "gpt-4o-mini");
	CU_ASSERT_PTR_NOT_NULL_FATAL(e);
	CU_ASSERT_STRING_EQUAL(e->in_date, "2024-07-18");
	CU_ASSERT(meter_q_cmp(e->in_per_1m, METER_Q(3, 20)) == 0);	/* 1.5e-07 USD per token */
	pricetab_destroy(&t);

	/* NAME in dir comes before NAME.conf; a name with no directory is a path. */
	t = pricetab_new();
	CU_ASSERT_EQUAL(meter_load_prices(t, "mytab", DATA("tables"), NULL, err, sizeof(err)), 0);
	CU_ASSERT_PTR_NOT_NULL(pricetab_find(t, "plain"));
	CU_ASSERT_PTR_NULL(pricetab_find(t, "dotconf"));
	CU_ASSERT(meter_load_prices(t, "closed-2024", NULL, NULL, err, sizeof(err)) < 0);
	CU_ASSERT(meter_load_prices(t, "closed-2024", "", NULL, err, sizeof(err)) < 0);
	CU_ASSERT_PTR_NULL(pricetab_find(t, "gpt-4o-mini"));

	/* Errors name the file. */
	CU_ASSERT_EQUAL(meter_load_prices(t, "no-such-table", DEPLOY("prices"), NULL, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no-such-table"));
	CU_ASSERT_EQUAL(meter_load_prices(t, "bad", DATA("tables"), NULL, err, sizeof(err)), -EINVAL);
	CU_ASSERT(has(err, DATA("tables/bad.conf")) && has(err, "ISO 4217"));
	char *huge = malloc(9000);
	CU_ASSERT_PTR_NOT_NULL_FATAL(huge);
	memset(huge, 'a', 8999);
	huge[8999] = '\0';
	CU_ASSERT_EQUAL(meter_load_prices(t, huge, DEPLOY("prices"), NULL, err, sizeof(err)), -ENAMETOOLONG);
	CU_ASSERT(has(err, "longer than"));
	free(huge);
	pricetab_destroy(&t);
}

static void test_price_entry(void)
{
	pricetab_entry_t e;
	char err[512] = "";
	CU_ASSERT_EQUAL(meter_parse_price_entry("0.15/0.6", "sale", "acme", "USD", "--sale-price", &e, err,
						sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(e.name, "sale");
	CU_ASSERT_STRING_EQUAL(e.model, "sale");
	CU_ASSERT_STRING_EQUAL(e.provider, "acme");
	CU_ASSERT_STRING_EQUAL(e.mode, "chat");
	CU_ASSERT_STRING_EQUAL(e.currency, "USD");
	CU_ASSERT(meter_q_cmp(e.in_per_1m, METER_Q(3, 20)) == 0);
	CU_ASSERT(meter_q_cmp(e.out_per_1m, METER_Q(3, 5)) == 0);
	CU_ASSERT_STRING_EQUAL(e.in_source, "--sale-price");
	CU_ASSERT_STRING_EQUAL(e.out_source, "--sale-price");
	CU_ASSERT_STRING_EQUAL(e.origin, "--sale-price");
	CU_ASSERT_STRING_EQUAL(e.in_date, "as given");
	CU_ASSERT(!e.has_batch && e.n_bands == 0);
	/* It prices calls like any entry: one number is both prices. */
	CU_ASSERT_EQUAL(meter_parse_price_entry("2", "flat", NULL, "CNY", "[meter] sale_price", &e, err, sizeof(err)),
			0);
	CU_ASSERT_STRING_EQUAL(e.provider, "");
	meter_q_t pin, pout;
	CU_ASSERT_EQUAL(pricetab_prices(&e, 1000, true, &pin, &pout), 0);
	CU_ASSERT(meter_q_cmp(pin, METER_Q(2, 1)) == 0 && meter_q_cmp(pout, METER_Q(2, 1)) == 0);
	CU_ASSERT_EQUAL(meter_parse_price_entry("0/0", "free", NULL, "USD", "s", &e, err, sizeof(err)), 0);

	/* Malformed: the message quotes it and says what is expected, *ret untouched. */
	pricetab_entry_t keep = e;
	const char *bad[] = { "", "abc", "-1", "1/-2", "1/", "/2", "1/2/3", "1,5",
			      "1.000000000000000000000000000000000000000000000000000000000000000000001" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(meter_parse_price_entry(bad[i], "x", NULL, "USD", "s", &e, err, sizeof(err)), -EINVAL);
		CU_ASSERT(has(err, "expected P or IN/OUT") && has(err, "USD per 1M tokens"));
		char quoted[128];
		snprintf(quoted, sizeof(quoted), "price \"%s\"", bad[i]);
		CU_ASSERT(has(err, quoted));
	}
	CU_ASSERT_EQUAL(meter_parse_price_entry("1/2", "x", NULL, "usd", "s", &e, err, sizeof(err)), -EINVAL);
	CU_ASSERT(has(err, "currency \"usd\" is not an ISO 4217 code"));
	CU_ASSERT(memcmp(&e, &keep, sizeof(e)) == 0);
}

static void test_defaults(void)
{
	/* What a fresh margind or marginctl loads when nothing is configured:
	 * every default table is shipped and holds every default reference. */
	char err[1024] = "";
	pricetab_t *t = pricetab_new();
	const char *refs[8];
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(meter_find_default_refs(t, refs, 8), 0);
	size_t n_tables = 0;
	for (const char *const *p = meter_default_price_tables; *p != NULL; p++, n_tables++)
		CU_ASSERT_EQUAL(meter_load_prices(t, *p, DEPLOY("prices"), NULL, err, sizeof(err)), 0);
	CU_ASSERT(n_tables >= 2);
	CU_ASSERT_PTR_NOT_NULL(pricetab_find_fx(t, "CNY"));	/* exchange rates come with them */
	size_t n_refs = 0;
	while (meter_default_refs[n_refs] != NULL)
		n_refs++;
	CU_ASSERT_EQUAL(meter_find_default_refs(t, refs, 8), n_refs);
	for (size_t i = 0; i < n_refs; i++)
		CU_ASSERT_STRING_EQUAL(refs[i], meter_default_refs[i]);
	/* At most max, in order. */
	CU_ASSERT_EQUAL(meter_find_default_refs(t, refs, 1), 1);
	CU_ASSERT_STRING_EQUAL(refs[0], meter_default_refs[0]);
	pricetab_destroy(&t);

	/* Only those present are picked. */
	t = pricetab_new();
	CU_ASSERT_EQUAL(pricetab_load_string(t, "one.conf", "[price.qwen-long]\ncurrency = CNY\ninput_per_1m = 0.5\n"
					     "output_per_1m = 2\nsource = s\ndate = d\n", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(meter_find_default_refs(t, refs, 8), 1);
	CU_ASSERT_STRING_EQUAL(refs[0], "qwen-long");
	pricetab_destroy(&t);
}

const cu_test_t meter_files_tests[] = {
	{ "default_dir", test_default_dir },
	{ "load_profile", test_load_profile },
	{ "load_prices", test_load_prices },
	{ "price_entry", test_price_entry },
	{ "defaults", test_defaults },
	{ NULL, NULL },
};
