/* mg_utf8: what is valid (RFC 3629), and the one cleaning rule for generated
 * text: invalid bytes and NULs become U+FFFD, the rest is kept byte for
 * byte. */
#include "tests.h"
#include "mg_utf8.h"

#include <stdlib.h>
#include <string.h>

#define R "\xef\xbf\xbd"

static void test_seq(void)
{
	static const struct {
		const char *s;
		size_t n, want;
	} cases[] = {
		{ "a", 1, 1 },
		{ "", 1, 1 },				/* NUL is a valid sequence */
		{ "\xc3\xa9", 2, 2 },			/* é */
		{ "\xe2\x98\x83", 3, 3 },		/* ☃ */
		{ "\xf0\x9f\x98\x80", 4, 4 },		/* 😀 */
		{ "\xf4\x8f\xbf\xbf", 4, 4 },		/* U+10FFFF */
		{ "\xc3", 1, 0 },			/* cut */
		{ "\xe2\x98", 2, 0 },			/* cut */
		{ "\x80", 1, 0 },			/* a lone continuation byte */
		{ "\xc0\x80", 2, 0 },			/* overlong NUL */
		{ "\xe0\x80\xaf", 3, 0 },		/* overlong '/' */
		{ "\xf0\x80\x80\xaf", 4, 0 },		/* overlong '/' */
		{ "\xed\xa0\x80", 3, 0 },		/* surrogate U+D800 */
		{ "\xf4\x90\x80\x80", 4, 0 },		/* U+110000 */
		{ "\xf5\x80\x80\x80", 4, 0 },
		{ "\xc3\x28", 2, 0 },			/* bad continuation */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(mg_utf8_seq(cases[i].s, cases[i].n), cases[i].want);
}

static void check_clean(const char *in, size_t n, const char *want)
{
	size_t len = 99;
	char *got = mg_utf8_clean(in, n, &len);
	CU_ASSERT_PTR_NOT_NULL_FATAL(got);
	CU_ASSERT_STRING_EQUAL(got, want);
	CU_ASSERT_EQUAL(len, strlen(want));
	free(got);
}

static void test_clean(void)
{
	check_clean("plain text", 10, "plain text");
	check_clean("caf\xc3\xa9 \xe2\x98\x83", 9, "caf\xc3\xa9 \xe2\x98\x83");
	/* a character cut by max_tokens: each of its bytes is one U+FFFD */
	check_clean("caf\xc3", 4, "caf" R);
	check_clean("x\xf0\x9f\x98", 4, "x" R R R);
	/* NUL: U+FFFD, so the text is not cut at it downstream */
	check_clean("a\0b", 3, "a" R "b");
	check_clean("\0", 1, R);
	check_clean("\xc0\x80", 2, R R);
	check_clean("\xed\xa0\x80z", 4, R R R "z");
	check_clean("", 0, "");
	char *e = mg_utf8_clean(NULL, 0, NULL);	/* nothing to read */
	CU_ASSERT(e != NULL && e[0] == '\0');
	free(e);
}

/* Every output of the cleaning is valid and NUL-free, whatever the input. */
static void test_clean_any_bytes(void)
{
	unsigned char in[64];
	unsigned x = 12345;
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = iter % 64;
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			in[i] = (unsigned char)(x >> 16);
		}
		size_t len;
		char *out = mg_utf8_clean(in, n, &len);
		CU_ASSERT_PTR_NOT_NULL_FATAL(out);
		CU_ASSERT_EQUAL(strlen(out), len);
		int ok = 1;
		for (size_t i = 0; i < len && ok;) {
			size_t k = mg_utf8_seq(out + i, len - i);
			ok = k > 0;
			i += k;
		}
		CU_ASSERT(ok);
		free(out);
	}
}

const cu_test_t utf8_tests[] = {
	{ "seq: valid, cut, overlong, surrogate, past U+10FFFF", test_seq },
	{ "clean: invalid bytes and NUL become U+FFFD", test_clean },
	{ "clean: any bytes give valid text without NUL", test_clean_any_bytes },
	{ NULL, NULL },
};
