/* meter (data files): where profiles and price tables are found by name,
 * how a spec is told apart from a name, and a price given as text — what
 * margind's [meter] settings and marginctl cost/economics both go
 * through. The shipped files under deploy/ are the fixtures. */
#include "tests.h"
#include "hwprof.h"
#include "meter.h"
#include "meter_catalog.h"
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
	/* The default tables hold the default embedding references too, each
	 * an embedding price, and no default chat reference is one. */
	size_t n_emb = 0;
	while (meter_default_embed_refs[n_emb] != NULL)
		n_emb++;
	CU_ASSERT_EQUAL(n_emb, 3);
	CU_ASSERT_EQUAL(meter_find_default_embed_refs(t, refs, 8), n_emb);
	for (size_t i = 0; i < n_emb; i++) {
		CU_ASSERT_STRING_EQUAL(refs[i], meter_default_embed_refs[i]);
		CU_ASSERT_EQUAL(meter_check_ref_kind(t, refs[i], true, "embed", err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(meter_check_ref_kind(t, refs[i], false, "[meter] refs", err, sizeof(err)), -EINVAL);
		CU_ASSERT(has(err, "[meter] refs: ") && has(err, "is an embedding price (mode = embedding)") &&
			  has(err, "embed_refs"));
	}
	for (size_t i = 0; i < n_refs; i++) {
		CU_ASSERT_EQUAL(meter_check_ref_kind(t, meter_default_refs[i], false, "refs", err, sizeof(err)), 0);
		CU_ASSERT_EQUAL(meter_check_ref_kind(t, meter_default_refs[i], true, "[meter] embed_refs", err,
						     sizeof(err)), -EINVAL);
		CU_ASSERT(has(err, "[meter] embed_refs: ") && has(err, "(mode = chat), not an embedding price"));
	}
	CU_ASSERT_EQUAL(meter_check_ref_kind(t, "text-embedding-9", true, "x", err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no price \"text-embedding-9\""));
	pricetab_destroy(&t);

	/* Only those present are picked. */
	t = pricetab_new();
	CU_ASSERT_EQUAL(pricetab_load_string(t, "one.conf", "[price.qwen-long]\ncurrency = CNY\ninput_per_1m = 0.5\n"
					     "output_per_1m = 2\nsource = s\ndate = d\n", err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(meter_find_default_refs(t, refs, 8), 1);
	CU_ASSERT_STRING_EQUAL(refs[0], "qwen-long");
	pricetab_destroy(&t);
}

/* A misspelt profile or table is an error that lists the known names,
 * the close ones first: 8xH100 (wrong case) was once priced as the
 * fallback profile with only a log line. */
static void test_unknown_names(void)
{
	hwprof_t hw;
	char err[2048] = "";
	CU_ASSERT_EQUAL(meter_load_profile("8xH100", DEPLOY("hardware"), &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no hardware profile \"8xH100\""));
	CU_ASSERT(has(err, "did you mean 8xh100"));	/* same name ignoring case: first */
	CU_ASSERT(has(err, "known: 8xa100, 8xascend910b, 8xh100, 8xh20, 8xh800-rental, cpu-2vcpu"));
	/* What a worker announces goes through hwprof_find: the same list. */
	CU_ASSERT_EQUAL(hwprof_find(DEPLOY("hardware"), "h100", &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "did you mean 8xh100?") && has(err, "cpu-2vcpu"));
	CU_ASSERT_EQUAL(meter_load_profile("zzzzzz", DEPLOY("hardware"), &hw, err, sizeof(err)), -ENOENT);
	CU_ASSERT(strstr(err, "did you mean") == NULL && has(err, "known: 8xa100"));

	pricetab_t *t = pricetab_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(t);
	CU_ASSERT_EQUAL(meter_load_prices(t, "cn-2024-05-befor", DEPLOY("prices"), NULL, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no price table \"cn-2024-05-befor\"") && has(err, "did you mean cn-2024-05-before"));
	CU_ASSERT(has(err, "closed-2024, cn-2024-05-after, cn-2024-05-before, cn-2024-late, deepseek-2025, embeddings, fx"));
	/* .json tables count, NAME and NAME.conf are one name. */
	CU_ASSERT_EQUAL(meter_load_prices(t, "litellm-sample", METER_TEST_DATA, NULL, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "did you mean litellm_sample?"));
	size_t n;
	char **names = meter_dir_names(DATA("tables"), true, &n);
	CU_ASSERT_FATAL(names != NULL && n == 2);
	CU_ASSERT(strcmp(names[0], "bad") == 0 && strcmp(names[1], "mytab") == 0 && names[2] == NULL);
	meter_names_free(&names);
	CU_ASSERT_PTR_NULL(names);
	CU_ASSERT_PTR_NULL(meter_dir_names("/nonexistent", true, &n));
	CU_ASSERT_EQUAL(n, 0);

	/* An entry of a loaded table. */
	CU_ASSERT_EQUAL(meter_load_prices(t, "cn-2024-05-after", DEPLOY("prices"), NULL, err, sizeof(err)), 0);
	const pricetab_entry_t *e = NULL;
	CU_ASSERT_EQUAL(meter_find_entry(t, "Qwen-Long", "table cn-2024-05-after", &e, err, sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no price entry \"Qwen-Long\" in table cn-2024-05-after: did you mean qwen-long?"));
	CU_ASSERT(has(err, "known: qwen-long, qwen-max"));
	CU_ASSERT_EQUAL(meter_find_entry(t, "qwen-long", "x", &e, err, sizeof(err)), 0);
	CU_ASSERT(e != NULL && strcmp(e->name, "qwen-long") == 0);
	pricetab_destroy(&t);

	/* meter_suggest alone: the list is cut at a whole name. */
	const char *many[] = { "alpha", "beta", "gamma", "delta", "epsilon" };
	char small[40];
	meter_suggest("gama", many, 5, true, small, sizeof(small));
	CU_ASSERT(has(small, "did you mean gamma?") && has(small, "..."));
	CU_ASSERT(strlen(small) < sizeof(small));
	meter_suggest("x", many, 0, true, err, sizeof(err));
	CU_ASSERT(has(err, "known: (none)"));
}

/* A bare entry resolves across the tables of the prices directory and
 * says which; one in several tables is an error naming TABLE:ENTRY. */
static void test_resolve_entry(void)
{
	pricetab_entry_t e;
	char table[128] = "", err[4096] = "";
	CU_ASSERT_EQUAL(meter_resolve_entry("gpt-4o-mini", DEPLOY("prices"), &e, table, sizeof(table), err, sizeof(err)),
			0);
	CU_ASSERT_STRING_EQUAL(table, "closed-2024");
	CU_ASSERT_STRING_EQUAL(e.name, "gpt-4o-mini");
	CU_ASSERT(meter_q_cmp(e.in_per_1m, METER_Q(15, 100)) == 0);
	CU_ASSERT_EQUAL(meter_resolve_entry("doubao-pro-32k", DEPLOY("prices"), &e, table, sizeof(table), err,
					    sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(table, "cn-2024-05-after");

	/* Ambiguous: every candidate, as TABLE:ENTRY. */
	CU_ASSERT_EQUAL(meter_resolve_entry("qwen-max", DEPLOY("prices"), &e, table, sizeof(table), err, sizeof(err)),
			-EEXIST);
	CU_ASSERT(has(err, "give TABLE:ENTRY") && has(err, "cn-2024-05-after:qwen-max") &&
		  has(err, "cn-2024-05-before:qwen-max") && has(err, "cn-2024-late:qwen-max"));
	CU_ASSERT_EQUAL(meter_resolve_entry("qwen-long", DEPLOY("prices"), &e, table, sizeof(table), err, sizeof(err)),
			-EEXIST);
	CU_ASSERT(has(err, "cn-2024-05-after:qwen-long, cn-2024-05-before:qwen-long"));

	/* TABLE:ENTRY picks one. */
	CU_ASSERT_EQUAL(meter_resolve_entry("cn-2024-late:qwen-max", DEPLOY("prices"), &e, table, sizeof(table), err,
					    sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(table, "cn-2024-late");
	CU_ASSERT(meter_q_cmp(e.in_per_1m, METER_Q(20, 1)) == 0);

	/* Unknown: the close ones as TABLE:ENTRY. */
	CU_ASSERT_EQUAL(meter_resolve_entry("qwen-lng", DEPLOY("prices"), &e, table, sizeof(table), err, sizeof(err)),
			-ENOENT);
	CU_ASSERT(has(err, "no price entry \"qwen-lng\"") &&
		  has(err, "did you mean cn-2024-05-after:qwen-long or cn-2024-05-before:qwen-long?"));
	CU_ASSERT_EQUAL(meter_resolve_entry("cn-2024-05-after:qwen-lng", DEPLOY("prices"), &e, table, sizeof(table), err,
					    sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "in table cn-2024-05-after: did you mean qwen-long?"));
	CU_ASSERT_EQUAL(meter_resolve_entry("cn-2024-aftr:qwen-long", DEPLOY("prices"), &e, table, sizeof(table), err,
					    sizeof(err)), -ENOENT);
	CU_ASSERT(has(err, "no price table \"cn-2024-aftr\""));
	/* A broken table in the directory is named, not skipped. */
	CU_ASSERT_EQUAL(meter_resolve_entry("plain", DATA("tables"), &e, table, sizeof(table), err, sizeof(err)), -EINVAL);
	CU_ASSERT(has(err, "bad.conf"));
}

const cu_test_t meter_files_tests[] = {
	{ "unknown_names", test_unknown_names },
	{ "resolve_entry", test_resolve_entry },
	{ "default_dir", test_default_dir },
	{ "load_profile", test_load_profile },
	{ "load_prices", test_load_prices },
	{ "price_entry", test_price_entry },
	{ "defaults", test_defaults },
	{ NULL, NULL },
};
