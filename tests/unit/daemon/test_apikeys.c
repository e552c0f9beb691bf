/* apikeys: key files, hashed keys, Bearer headers. */
#include "cu_main.h"
#include "apikeys.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

extern const cu_test_t apikeys_tests[];

static const char *write_file(const char *name, const char *text)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s/%s", cu_tmpdir(), name);
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_load_and_check(void)
{
	const char *p = write_file("keys",
		"# API keys of the batch team\n"
		"\n"
		"  sk-alpha-0123456789  \n"
		"sk-beta\r\n"
		"\t# indented comment\n");
	apikeys_t *k = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(apikeys_load(p, &k, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(apikeys_count(k), 2);
	CU_ASSERT_TRUE(apikeys_check(k, "sk-alpha-0123456789", 19));
	CU_ASSERT_TRUE(apikeys_check(k, "sk-beta", 7));
	/* Neither a prefix, an extension, another case nor the blanks. */
	CU_ASSERT_FALSE(apikeys_check(k, "sk-alpha", 8));
	CU_ASSERT_FALSE(apikeys_check(k, "sk-alpha-01234567890", 20));
	CU_ASSERT_FALSE(apikeys_check(k, "SK-BETA", 7));
	CU_ASSERT_FALSE(apikeys_check(k, "  sk-alpha-0123456789  ", 23));
	CU_ASSERT_FALSE(apikeys_check(k, "", 0));
	CU_ASSERT_FALSE(apikeys_check(k, "# API keys of the batch team", 28));
	apikeys_destroy(&k);
	CU_ASSERT_PTR_NULL(k);
	apikeys_destroy(&k);
}

static void test_header(void)
{
	apikeys_t *k = apikeys_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(k);
	CU_ASSERT_EQUAL(apikeys_add(k, "secret-key", 10), 0);
	CU_ASSERT_TRUE(apikeys_check_header(k, "Bearer secret-key"));
	CU_ASSERT_TRUE(apikeys_check_header(k, "bearer   secret-key "));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Bearer"));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Bearer "));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Bearersecret-key"));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Basic c2VjcmV0LWtleQ=="));
	CU_ASSERT_FALSE(apikeys_check_header(k, "secret-key"));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Bearer wrong-key"));
	CU_ASSERT_FALSE(apikeys_check_header(k, NULL));
	apikeys_destroy(&k);
}

/* A key given as "sha256:HEX" lets the file hold no plaintext key. The
 * digest below is the FIPS 180-2 test vector for "abc". */
static void test_digest_lines(void)
{
	const char *p = write_file("hashed",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
	apikeys_t *k = NULL;
	char err[256] = "";
	CU_ASSERT_EQUAL_FATAL(apikeys_load(p, &k, err, sizeof(err)), 0);
	CU_ASSERT_TRUE(apikeys_check(k, "abc", 3));
	CU_ASSERT_FALSE(apikeys_check(k, "abd", 3));
	CU_ASSERT_FALSE(apikeys_check_header(k, "Bearer sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	apikeys_destroy(&k);
}

static void test_bad_files(void)
{
	apikeys_t *k = NULL;
	char err[256] = "";
	const char *p = write_file("empty", "# nothing here\n\n");
	CU_ASSERT_EQUAL(apikeys_load(p, &k, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NULL(k);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "no key"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, p));

	p = write_file("blank-inside", "good-key\ntwo words\n");
	CU_ASSERT_EQUAL(apikeys_load(p, &k, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":2:"));

	p = write_file("short-digest", "sha256:abcd\n");
	CU_ASSERT_EQUAL(apikeys_load(p, &k, err, sizeof(err)), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, ":1:"));

	CU_ASSERT_EQUAL(apikeys_load("/nonexistent/keys", &k, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent/keys"));
	CU_ASSERT_PTR_NULL(k);
}

static void test_empty_set_refuses(void)
{
	apikeys_t *k = apikeys_new();
	CU_ASSERT_FALSE(apikeys_check(k, "anything", 8));
	CU_ASSERT_FALSE(apikeys_check(NULL, "anything", 8));
	CU_ASSERT_EQUAL(apikeys_add(k, "", 0), -EINVAL);
	apikeys_destroy(&k);
}

const cu_test_t apikeys_tests[] = {
	{ "key file: comments, blanks, exact match only", test_load_and_check },
	{ "Authorization: Bearer parsing", test_header },
	{ "sha256: digest lines", test_digest_lines },
	{ "bad files name file and line", test_bad_files },
	{ "an empty set lets nobody in", test_empty_set_refuses },
	{ NULL, NULL },
};
