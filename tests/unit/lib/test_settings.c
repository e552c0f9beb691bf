/* mg_settings: one table gives the flags, the file merge (flags win), the
 * checks with errors naming the flag or FILE:LINE, and --help. */
#include "tests.h"
#include "mg_settings.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct conf {
	const char *name;
	int slots;
	int64_t grace_ns;
	uint64_t frame;
	int kv;
	bool curve;
} conf_t;

static const char *const kvs[] = { "f32", "f16", "q8_0", NULL };

#define AT(field) MG_SETTING_AT(conf_t, field)
static const mg_setting_t table[] = {
	{ .flag = "name", .section = "w", .key = "name", .arg = "NAME", .help = "worker name", AT(name) },
	{ .flag = "slots", .section = "w", .key = "slots", .type = MG_SETTING_INT, .lo = 1, .hi = 64,
	  .def = "8", .arg = "N", .help = "sequences in flight", AT(slots) },
	{ .flag = "grace", .section = "w", .key = "grace", .type = MG_SETTING_DURATION, .def = "30s",
	  .lo = 1000000000LL, .hi = 3600 * 1000000000LL,
	  .arg = "DUR", .help = "time to finish\nwhat is in flight", AT(grace_ns) },
	{ .flag = "kv", .section = "w", .key = "kv_type", .type = MG_SETTING_ENUM, .names = kvs, .def = "f16",
	  .arg = "TYPE", .help = "KV cache type", AT(kv) },
	{ .flag = "no-curve", .section = "w", .key = "curve", .type = MG_SETTING_BOOL, .def = "yes",
	  .set = "no", .excludes = "key", .help = "plain TCP", AT(curve) },
	{ .flag = "key", .section = "w", .key = "key", .arg = "FILE", .help = "secret key" },
	{ .flag = "prices", .section = "m", .key = "prices", .arg = "FILE", .flags = MG_SETTING_REPEAT,
	  .help = "price tables (repeatable)" },
	{ .section = "w", .key = "max_frame", .type = MG_SETTING_SIZE, .lo = 1024, .hi = 1 << 20,
	  .def = "65536", .help = "largest frame", AT(frame) },
};

static const mg_settings_spec_t spec = {
	.prog = "prog",
	.synopsis = "[--config FILE] [--slots N]\n",
	.set_example = "w.slots=4",
	.settings = table,
	.n = sizeof(table) / sizeof(table[0]),
};

/* mg_settings_usage's text (free). */
static char *usage_text(const mg_settings_spec_t *sp)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (f == NULL)
		return NULL;
	mg_settings_usage(sp, f);
	fclose(f);
	return text;
}

static char path[512];

static void write_conf(const char *text)
{
	snprintf(path, sizeof(path), "%s/settings.conf", cu_tmpdir());
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

/* argv from a NULL-terminated list; returns the count. */
static int parse(mg_config_t **cfg, char *err, size_t errlen, const char *const *args)
{
	char *v[32];
	int n = 0;
	for (; args[n] != NULL && n < 31; n++)
		v[n] = (char *)args[n];
	v[n] = NULL;
	*cfg = mg_config_new();
	err[0] = '\0';
	return mg_settings_parse(&spec, *cfg, n, v, err, errlen);
}

static void test_flags_win(void)
{
	write_conf("[w]\nname = from-file\nslots = 4\ngrace = 5s\n[m]\nprices = file.ini\n");
	/* the flag before --config still wins; a repeated --prices joins */
	const char *args[] = { "prog", "--slots", "16", "--config", path, "--prices", "a.ini",
			       "--prices=b.json", "--set", "w.kv_type=q8_0", NULL };
	mg_config_t *cfg;
	char err[256];
	CU_ASSERT_EQUAL_FATAL(parse(&cfg, err, sizeof(err), args), 0);
	conf_t c = { .name = NULL };
	CU_ASSERT_EQUAL_FATAL(mg_settings_apply(&spec, cfg, &c, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(c.name, "from-file");
	CU_ASSERT_EQUAL(c.slots, 16);
	CU_ASSERT_EQUAL(c.grace_ns, 5000000000LL);
	CU_ASSERT_EQUAL(c.kv, 2);
	CU_ASSERT_EQUAL(c.frame, 65536);	/* the default */
	CU_ASSERT_TRUE(c.curve);
	CU_ASSERT_STRING_EQUAL(mg_config_get(cfg, "m", "prices"), "a.ini,b.json");
	CU_ASSERT_TRUE(mg_settings_from_flag(&spec, cfg, "w", "slots"));
	CU_ASSERT_FALSE(mg_settings_from_flag(&spec, cfg, "w", "name"));
	CU_ASSERT_FALSE(mg_settings_from_flag(&spec, cfg, "w", "kv_type"));	/* --set */
	mg_config_destroy(&cfg);

	const char *nc[] = { "prog", "--no-curve", NULL };
	CU_ASSERT_EQUAL_FATAL(parse(&cfg, err, sizeof(err), nc), 0);
	CU_ASSERT_EQUAL_FATAL(mg_settings_apply(&spec, cfg, &c, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(c.curve);
	mg_config_destroy(&cfg);
}

/* Every refusal names what was wrong and where it came from. */
static void test_refusals(void)
{
	write_conf("[w]\nname = x\n\nslots = 99\n");
	static const struct {
		const char *args[8];
		int rc;
		const char *want[3];
	} cases[] = {
		{ { "prog", "--slots", "0" }, -EINVAL, { "--slots: [w] slots = \"0\"", "expected 1 to 64" } },
		{ { "prog", "--slots", "two" }, -EINVAL, { "--slots", "an integer from 1 to 64" } },
		{ { "prog", "--config", path }, -EINVAL, { "settings.conf:4: [w] slots = \"99\"", "1 to 64" } },
		{ { "prog", "--kv", "bf8" }, -EINVAL, { "--kv: [w] kv_type = \"bf8\"", "expected f32, f16 or q8_0" } },
		{ { "prog", "--grace", "soon" }, -EINVAL, { "--grace", "a duration" } },
		{ { "prog", "--grace", "90min" }, -EINVAL, { "--grace: [w] grace = \"90min\"", "expected 1s to 1h" } },
		{ { "prog", "--set", "w.max_frame=12" }, -EINVAL, { "command line: [w] max_frame", "1024 to 1048576 bytes" } },
		{ { "prog", "--set", "w.curve=maybe" }, -EINVAL, { "[w] curve", "yes or no" } },
		{ { "prog", "--set", "nodot" }, -EINVAL, { "SECTION.KEY=VALUE" } },
		{ { "prog", "--no-curve", "--key", "k" }, -EINVAL, { "--no-curve excludes --key" } },
		{ { "prog", "--bogus" }, -EINVAL, { "unknown option --bogus" } },
		{ { "prog", "--slots" }, -EINVAL, { "option --slots needs a value" } },
		{ { "prog", "stray" }, -EINVAL, { "unexpected argument \"stray\"" } },
		{ { "prog", "--config", "/nonexistent/x.conf" }, -ENOENT, { "/nonexistent/x.conf" } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		mg_config_t *cfg;
		char err[512];
		int r = parse(&cfg, err, sizeof(err), cases[i].args);
		bool found = true;
		for (int k = 0; k < 3 && cases[i].want[k] != NULL; k++)
			found &= strstr(err, cases[i].want[k]) != NULL;
		if (r != cases[i].rc || !found)
			fprintf(stderr, "case %zu: rc %d err \"%s\"\n", i, r, err);
		CU_ASSERT_EQUAL(r, cases[i].rc);
		CU_ASSERT_TRUE(found);
		mg_config_destroy(&cfg);
	}
}

/* --help lists every flag with its key and default, and the file-only keys. */
static void test_usage(void)
{
	char *text = usage_text(&spec);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	static const char *const want[] = {
		"usage: prog [--config FILE] [--slots N]\n",
		"  --slots N             sequences in flight (w.slots, default 8)\n",
		"  --grace DUR           time to finish\n                        what is in flight (w.grace, default 30s)\n",
		"  --no-curve            plain TCP (w.curve = no)\n",
		"  --set SECTION.KEY=VALUE  any config key, e.g. --set w.slots=4\n",
		"config file only ([section] key, or --set section.key=VALUE):\n  w.max_frame           largest frame (default 65536)\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strstr(text, want[i]) == NULL)
			fprintf(stderr, "usage lacks \"%s\":\n%s", want[i], text);
		CU_ASSERT_PTR_NOT_NULL(strstr(text, want[i]));
	}
	free(text);
	const char *help[] = { "prog", "--slots", "0", "--help", NULL };
	mg_config_t *cfg;
	char err[256];
	CU_ASSERT_EQUAL(parse(&cfg, err, sizeof(err), help), 1);	/* --help wins over a bad value */
	mg_config_destroy(&cfg);
}

/* The one integer parser behind the table and the commands' own flags. */
static void test_parse_int(void)
{
	static const struct {
		const char *s;
		int64_t lo, hi;
		int rc;
		int64_t want;
	} cases[] = {
		{ "42", 1, 100, 0, 42 }, { "-3", -5, 5, 0, -3 }, { "0", 1, 100, -EINVAL, 0 },
		{ "101", 1, 100, -EINVAL, 0 }, { "", 0, 9, -EINVAL, 0 }, { "4x", 0, 9, -EINVAL, 0 },
		{ "99999999999999999999", 0, INT64_MAX, -EINVAL, 0 },
		{ "9223372036854775807", 0, INT64_MAX, 0, INT64_MAX },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t v = -77;
		CU_ASSERT_EQUAL(mg_settings_parse_int(cases[i].s, cases[i].lo, cases[i].hi, &v), cases[i].rc);
		CU_ASSERT_EQUAL(v, cases[i].rc == 0 ? cases[i].want : -77);
	}
}

/* A program without a file: no --config, errors and --help name the flag. */
static void test_flags_only(void)
{
	mg_settings_spec_t bare = spec;
	bare.no_config = true;
	bare.set_example = NULL;
	char *v[] = { "prog", "--slots", "0", NULL }, err[256] = "";
	mg_config_t *cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse(&bare, cfg, 3, v, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "bad value '0' for --slots: expected 1 to 64");
	mg_config_destroy(&cfg);
	char *c[] = { "prog", "--config", "x.conf", NULL };
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse(&bare, cfg, 3, c, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "unknown option --config"));
	mg_config_destroy(&cfg);
	char *text = usage_text(&bare);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  --slots N             sequences in flight (default 8)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  --no-curve            plain TCP\n"));
	CU_ASSERT_PTR_NULL(strstr(text, "  --config FILE"));
	CU_ASSERT_PTR_NULL(strstr(text, "w.slots"));
	free(text);
}

/* Short flags and a LIST row: "-o FILE" or "--out FILE", "-n N" without a
 * long form; each --in value kept whole (a file name may hold a comma), a
 * value too many refused by name; help completed at run time. */
typedef struct cli {
	const char *file, *out;
	int n;
	const char *in[3];
	size_t n_in;
	bool quiet;
} cli_t;

static const char *run_dir(void)
{
	return "/run/dir";
}

#define CLI(field) MG_SETTING_AT(cli_t, field)
static const mg_setting_t cli_table[] = {
	{ .section = "c", .key = "file", .arg = "FILE", .flags = MG_SETTING_OPERAND, .help = "the input", CLI(file) },
	{ .flag = "out", .short_flag = 'o', .section = "c", .key = "out", .arg = "FILE", .help = "output", CLI(out) },
	{ .short_flag = 'n', .section = "c", .key = "n", .type = MG_SETTING_INT, .lo = 0, .hi = 99, .def = "5",
	  .arg = "N", .help = "how many", CLI(n) },
	{ .flag = "in", .section = "c", .key = "in", .type = MG_SETTING_LIST, .arg = "FILE",
	  .help = "inputs (repeatable; names in %s)", .help_fill = run_dir, MG_SETTING_LIST_AT(cli_t, in, n_in) },
	{ .flag = "quiet", .short_flag = 'q', .section = "c", .key = "quiet", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "say less", CLI(quiet) },
};

static const mg_settings_spec_t cli_spec = {
	.prog = "cli", .synopsis = "[-o FILE] [-n N] [--in FILE]...\n", .no_config = true,
	.settings = cli_table, .n = sizeof(cli_table) / sizeof(cli_table[0]),
};

static int cli_parse(char **v, cli_t *c, char *err, size_t errlen, mg_config_t **ret_cfg)
{
	int argc = 0;
	while (v[argc] != NULL)
		argc++;
	*ret_cfg = mg_config_new();
	*c = (cli_t){ 0 };
	int r = mg_settings_parse(&cli_spec, *ret_cfg, argc, v, err, errlen);
	if (r == 0)
		r = mg_settings_apply(&cli_spec, *ret_cfg, c, err, errlen);
	return r;
}

static void test_short_and_list(void)
{
	char err[256] = "";
	mg_config_t *cfg = NULL;
	cli_t c;
	char *ok[] = { "cli", "-o", "x.txt", "-n", "7", "--in", "a,b.ini", "in.jsonl", "--in", "c.json", "-q", NULL };
	CU_ASSERT_EQUAL_FATAL(cli_parse(ok, &c, err, sizeof(err), &cfg), 0);
	CU_ASSERT_STRING_EQUAL(c.file, "in.jsonl");
	CU_ASSERT_STRING_EQUAL(c.out, "x.txt");
	CU_ASSERT_EQUAL(c.n, 7);
	CU_ASSERT_TRUE(c.quiet);
	CU_ASSERT_EQUAL_FATAL(c.n_in, 2);
	CU_ASSERT_STRING_EQUAL(c.in[0], "a,b.ini");
	CU_ASSERT_STRING_EQUAL(c.in[1], "c.json");
	CU_ASSERT_TRUE(mg_settings_from_flag(&cli_spec, cfg, "c", "n"));
	mg_config_destroy(&cfg);
	char *lng[] = { "cli", "--out", "y.txt", NULL };
	CU_ASSERT_EQUAL_FATAL(cli_parse(lng, &c, err, sizeof(err), &cfg), 0);
	CU_ASSERT_STRING_EQUAL(c.out, "y.txt");
	CU_ASSERT_PTR_NULL(c.file);
	CU_ASSERT_EQUAL(c.n, 5);
	CU_ASSERT_EQUAL(c.n_in, 0);
	mg_config_destroy(&cfg);
	struct {
		char *argv[12];	/* getopt_long permutes it */
		const char *err;
	} bad[] = {
		{ { "cli", "--in", "1", "--in", "2", "--in", "3", "--in", "4" }, "at most 3 --in" },
		{ { "cli", "-n", "100" }, "bad value '100' for -n: expected 0 to 99" },
		{ { "cli", "-n" }, "option -n needs a value" },
		{ { "cli", "-x" }, "unknown option -x" },
		{ { "cli", "a.jsonl", "-q", "b.jsonl" }, "unexpected argument \"b.jsonl\"" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CU_ASSERT_EQUAL(cli_parse(bad[i].argv, &c, err, sizeof(err), &cfg), -EINVAL);
		CU_ASSERT_STRING_EQUAL(err, bad[i].err);
		mg_config_destroy(&cfg);
	}
	char *text = usage_text(&cli_spec);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  -o, --out FILE        output\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  -n N                  how many (default 5)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  --in FILE             inputs (repeatable; names in /run/dir)\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  -q, --quiet           say less\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  FILE                  the input\n"));
	free(text);
}

/* mg_settings_parse_into as a command's main calls it: the exit status
 * its return maps to, the reason on stderr after the program's name. */
static int cli_main(int argc, char **argv)
{
	mg_config_t *cfg = mg_config_new();
	cli_t c;
	int r = mg_settings_parse_into(&cli_spec, cfg, argc, argv, &c);
	if (r == 0)
		printf("n=%d in=%zu\n", c.n, c.n_in);
	mg_config_destroy(&cfg);
	return r == 0 || r == 1 ? 0 : r == -EINVAL ? 2 : 1;
}

static void test_parse_into(void)
{
	char *ok[] = { "cli", "-n", "3", "--in", "x", NULL }, *typo[] = { "cli", "--quiett", NULL };
	char *many[] = { "cli", "--in", "a", "--in", "b", "--in", "c", "--in", "d", NULL };
	char *out = NULL, *err = NULL;
	CU_ASSERT_EQUAL(cu_run_captured(cli_main, 5, ok, &out, &err), 0);
	CU_ASSERT_STRING_EQUAL(out, "n=3 in=1\n");
	CU_ASSERT_STRING_EQUAL(err, "");
	free(out);
	free(err);
	CU_ASSERT_EQUAL(cu_run_captured(cli_main, 2, typo, &out, &err), 2);
	CU_ASSERT_STRING_EQUAL(err, "cli: unknown option --quiett (see --help)\n");
	free(out);
	free(err);
	CU_ASSERT_EQUAL(cu_run_captured(cli_main, 9, many, &out, &err), 2);
	CU_ASSERT_STRING_EQUAL(err, "cli: at most 3 --in\n");
	free(out);
	free(err);
}

/* A LIST operand: "prog [TABLE]... [--json]", the tables in order among
 * the flags, one more than the row holds refused. */
typedef struct tables {
	const char *t[2];
	size_t n;
	bool json;
} tables_t;

static const mg_setting_t tables_table[] = {
	{ .section = "t", .key = "table", .type = MG_SETTING_LIST, .arg = "TABLE", .flags = MG_SETTING_OPERAND,
	  MG_SETTING_LIST_AT(tables_t, t, n) },
	{ .flag = "json", .section = "t", .key = "json", .type = MG_SETTING_BOOL, .set = "yes", .help = "JSON",
	  MG_SETTING_AT(tables_t, json) },
};

static void test_list_operand(void)
{
	static const mg_settings_spec_t ts = { .prog = "tables", .synopsis = "[TABLE]... [--json]\n", .no_config = true,
					       .settings = tables_table, .n = 2 };
	char *two[] = { "tables", "a,1.ini", "--json", "b.json", NULL }, *three[] = { "tables", "a", "b", "c", NULL };
	char *none[] = { "tables", NULL }, err[256] = "";
	tables_t t = { 0 };
	mg_config_t *cfg = mg_config_new();
	CU_ASSERT_EQUAL_FATAL(mg_settings_parse(&ts, cfg, 4, two, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(mg_settings_apply(&ts, cfg, &t, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL_FATAL(t.n, 2);
	CU_ASSERT_STRING_EQUAL(t.t[0], "a,1.ini");
	CU_ASSERT_STRING_EQUAL(t.t[1], "b.json");
	CU_ASSERT_TRUE(t.json);
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse(&ts, cfg, 4, three, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "unexpected argument \"c\"");
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	t = (tables_t){ .n = 9 };
	CU_ASSERT_EQUAL(mg_settings_parse(&ts, cfg, 1, none, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(mg_settings_apply(&ts, cfg, &t, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(t.n, 0);
	mg_config_destroy(&cfg);
}

/* Head mode: "cli [-n N] [-q] SUBCOMMAND ARGS...": the options stop at the
 * first operand (the subcommand's own flags are left to it, however they
 * look), --help after it belongs to the subcommand, and options before it
 * are still checked. */
static void test_head(void)
{
	char *ok[] = { "cli", "-n", "7", "--quiet", "wait", "-n", "x", "--max", "3", NULL };
	char *bare[] = { "cli", "-q", NULL }, *sub_help[] = { "cli", "list", "--help", NULL };
	char *bad[] = { "cli", "-n", "100", "list", NULL }, *typo[] = { "cli", "--max", "3", "list", NULL };
	char err[256] = "";
	int next = -1;
	cli_t c = { 0 };
	mg_config_t *cfg = mg_config_new();
	CU_ASSERT_EQUAL_FATAL(mg_settings_parse_head(&cli_spec, cfg, 9, ok, &next, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(next, 4);
	CU_ASSERT_STRING_EQUAL(ok[next], "wait");
	CU_ASSERT_STRING_EQUAL(ok[5], "-n");	/* the subcommand's argv is left as it was */
	CU_ASSERT_EQUAL_FATAL(mg_settings_apply(&cli_spec, cfg, &c, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(c.n, 7);
	CU_ASSERT_TRUE(c.quiet);
	CU_ASSERT_PTR_NULL(c.file);	/* operands are the caller's */
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse_head(&cli_spec, cfg, 2, bare, &next, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(next, 2);
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse_head(&cli_spec, cfg, 3, sub_help, &next, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(next, 1);
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse_head(&cli_spec, cfg, 4, bad, &next, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "bad value '100' for -n: expected 0 to 99");
	mg_config_destroy(&cfg);
	cfg = mg_config_new();
	CU_ASSERT_EQUAL(mg_settings_parse_head(&cli_spec, cfg, 4, typo, &next, err, sizeof(err)), -EINVAL);
	CU_ASSERT_STRING_EQUAL(err, "unknown option --max");
	mg_config_destroy(&cfg);
}

static int cmd_one(int argc, char **argv)
{
	(void)argv;
	return argc;
}

/* A program's commands: found by name, listed by --help after the flags,
 * the helps in a column after the longest name. */
static void test_commands(void)
{
	static const mg_settings_command_t cmds[] = {
		{ "run", cmd_one, "run it" },
		{ "economics", cmd_one, "the table" },
	};
	mg_settings_spec_t ps = cli_spec;
	ps.commands = cmds;
	ps.n_commands = 2;
	CU_ASSERT_PTR_EQUAL(mg_settings_command_find(&ps, "economics"), &cmds[1]);
	CU_ASSERT_PTR_NULL(mg_settings_command_find(&ps, "econ"));
	CU_ASSERT_PTR_NULL(mg_settings_command_find(&cli_spec, "run"));
	char *text = usage_text(&ps);
	CU_ASSERT_PTR_NOT_NULL_FATAL(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "  --help\n\ncommands:\n  run       run it\n  economics the table\n\n"
					    "cli COMMAND --help for the options of each.\n"));
	free(text);
	text = usage_text(&cli_spec);
	CU_ASSERT_PTR_NULL(strstr(text, "commands:"));
	free(text);
}

const cu_test_t settings_tests[] = {
	{ "commands", test_commands },
	{ "head", test_head },
	{ "list_operand", test_list_operand },
	{ "parse_into", test_parse_into },
	{ "short_and_list", test_short_and_list },
	{ "flags_only", test_flags_only },
	{ "parse_int", test_parse_int },
	{ "flags_win", test_flags_win },
	{ "refusals", test_refusals },
	{ "usage", test_usage },
	{ NULL, NULL },
};
