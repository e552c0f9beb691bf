/* Config: INI files, typed getters with errors that name the key. */
#include "tests.h"
#include "mg_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void test_load_and_override(void)
{
	mg_config_t *c = mg_config_new();
	char err[256] = "";
	const char *text =
		"# margind\n[scheduler]\nstate_dir = /var/lib/margin\nheartbeat = 1s\n"
		"shard_requests = 64\n\n[http]\nlisten = 127.0.0.1:8080 ; inline comment\n"
		"curve = no\n";
	CU_ASSERT_EQUAL_FATAL(mg_config_load_string(c, "test.conf", text, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(mg_config_get(c, "scheduler", "state_dir"), "/var/lib/margin");
	CU_ASSERT_STRING_EQUAL(mg_config_get(c, "http", "listen"), "127.0.0.1:8080");
	CU_ASSERT_PTR_NULL(mg_config_get(c, "http", "absent"));
	uint64_t u = 0;
	CU_ASSERT_EQUAL(mg_config_get_u64(c, "scheduler", "shard_requests", &u, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(u, 64);
	int64_t ns = 0;
	CU_ASSERT_EQUAL(mg_config_get_duration(c, "scheduler", "heartbeat", 1000000000LL, &ns, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(ns, 1000000000LL);
	bool b = true;
	CU_ASSERT_EQUAL(mg_config_get_bool(c, "http", "curve", &b, err, sizeof(err)), 0);
	CU_ASSERT_FALSE(b);
	CU_ASSERT_EQUAL(mg_config_set(c, "scheduler", "shard_requests", "8"), 0);
	CU_ASSERT_EQUAL(mg_config_get_u64(c, "scheduler", "shard_requests", &u, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(u, 8);
	CU_ASSERT_STRING_EQUAL(mg_config_origin(c, "scheduler", "shard_requests"), "command line");
	CU_ASSERT_EQUAL(mg_config_get_u64(c, "x", "y", &u, err, sizeof(err)), -ENOENT);
	mg_config_destroy(&c);
	CU_ASSERT_PTR_NULL(c);
	mg_config_destroy(&c);
}

static void test_errors(void)
{
	mg_config_t *c = mg_config_new();
	char err[256] = "";
	CU_ASSERT_EQUAL(mg_config_load_string(c, "bad.conf", "[a]\nk = v\nthis line has no equals\n",
					      err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "bad.conf:3"));
	CU_ASSERT_EQUAL(mg_config_load_string(c, "t.conf", "[w]\nslots = many\nfrac = 1.5x\nb = maybe\nd = 3 fortnights\n",
					      err, sizeof(err)), 0);
	uint64_t u;
	CU_ASSERT_EQUAL(mg_config_get_u64(c, "w", "slots", &u, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "[w] slots = \"many\""));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "t.conf"));
	double d;
	CU_ASSERT_EQUAL(mg_config_get_double(c, "w", "frac", &d, err, sizeof(err)), -EINVAL);
	bool b;
	CU_ASSERT_EQUAL(mg_config_get_bool(c, "w", "b", &b, err, sizeof(err)), -EINVAL);
	int64_t ns;
	CU_ASSERT_EQUAL(mg_config_get_duration(c, "w", "d", 1, &ns, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "duration"));
	CU_ASSERT_EQUAL(mg_config_load(c, "/nonexistent/margin.conf", err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/margin.conf"));
	mg_config_destroy(&c);
}

/* A value read from a file remembers the file and its line, so that an
 * error about it can send the reader there. */
static void test_origin_line(void)
{
	mg_config_t *c = mg_config_new();
	char err[256] = "";
	const char *text = "# comment\n[worker]\n\nslots = 4\n; more\nname = w1\n";
	CU_ASSERT_EQUAL_FATAL(mg_config_load_string(c, "w.conf", text, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(mg_config_origin(c, "worker", "slots"), "w.conf:4");
	CU_ASSERT_STRING_EQUAL(mg_config_origin(c, "worker", "name"), "w.conf:6");
	CU_ASSERT_EQUAL(mg_config_set_from(c, "worker", "slots", "8", "--slots"), 0);
	CU_ASSERT_STRING_EQUAL(mg_config_origin(c, "worker", "slots"), "--slots");
	mg_config_destroy(&c);
}

const cu_test_t config_tests[] = {
	{ "load, typed get, command-line override", test_load_and_override },
	{ "errors name file, section and key", test_errors },
	{ "origin is FILE:LINE", test_origin_line },
	{ NULL, NULL },
};
