/* mg_curve: the key files margind and the worker accept (what marginctl
 * keygen writes, with comments and blank lines around it), the ones they
 * refuse with the file and line named, and where a relative name is found
 * ($CREDENTIALS_DIRECTORY first, for both programs). */
#include "tests.h"
#include "mg_curve.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

static void test_accepted(void)
{
	char pub[41], sec[41], path[PATH_MAX], text[256], k[41], err[512];
	unsigned char bin[32], want[32];
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(pub, sec), 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(zmq_z85_decode(want, sec));
	const char *forms[] = { "%s\n", "%s", "# node07's secret key\n\n  %s  \r\n\n# end\n", "\t%s\t\n" };
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(path, sizeof(path), "%s/ok%zu.key", cu_tmpdir(), i);
		snprintf(text, sizeof(text), forms[i], sec);
		write_file(path, text);
		memset(k, 0, sizeof(k));
		CU_ASSERT_EQUAL(mg_curve_key_read(path, k, bin, err, sizeof(err)), 0);
		CU_ASSERT_STRING_EQUAL(k, sec);
		CU_ASSERT_EQUAL(memcmp(bin, want, 32), 0);
	}
	CU_ASSERT_TRUE(mg_curve_key_valid(pub));
	CU_ASSERT_FALSE(mg_curve_key_valid(NULL));
	CU_ASSERT_FALSE(mg_curve_key_valid("short"));
}

static void test_refused(void)
{
	char pub[41], sec[41], k[41] = "untouched", err[512];
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(pub, sec), 0);
	char two[128], short_key[128], words[128], notz85[64];
	snprintf(two, sizeof(two), "# both\n%s\n%s\n", pub, sec);
	snprintf(short_key, sizeof(short_key), "# a secret key\n%.39s\n", sec);
	snprintf(words, sizeof(words), "%s margind\n", pub);
	memset(notz85, '~', 40);	/* '~' is not a Z85 character */
	snprintf(notz85 + 40, sizeof(notz85) - 40, "\n");
	const struct {
		const char *name, *text, *want;
	} cases[] = {
		{ "empty.key", "", "empty.key: no CURVE key in the file" },
		{ "comments.key", "# nothing\n\n", "comments.key: no CURVE key in the file" },
		{ "short.key", short_key, "short.key:2: not a CURVE key (expected 40 Z85 characters, got 39)" },
		{ "two.key", two, "two.key:3: a second key after the one on line 2" },
		{ "words.pub", words, "words.pub:1: not a CURVE key (expected 40 Z85 characters, got more than one word" },
		{ "notz85.key", notz85, "notz85.key:1: not a CURVE key (a character outside Z85)" },
		{ "zcert.key_secret", "#   ZeroMQ CURVE **Secret** Certificate\nmetadata\ncurve\n"
		  "    public-key = \"abc\"\n", "zcert.key_secret:2: a czmq certificate?" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", cu_tmpdir(), cases[i].name);
		write_file(path, cases[i].text);
		err[0] = '\0';
		CU_ASSERT_EQUAL(mg_curve_key_read(path, k, NULL, err, sizeof(err)), -EBADMSG);
		bool named = strstr(err, cases[i].want) != NULL && strncmp(err, path, strlen(path)) == 0;
		if (!named)
			fprintf(stderr, "%s: error \"%s\" lacks \"%s\"\n", cases[i].name, err, cases[i].want);
		CU_ASSERT_TRUE(named);
		CU_ASSERT_STRING_EQUAL(k, "untouched");	/* written only on success */
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/absent.key", cu_tmpdir());
	CU_ASSERT_EQUAL(mg_curve_key_read(path, k, NULL, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot read CURVE key file "));
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "absent.key: No such file or directory"));
}

/* A relative name: $CREDENTIALS_DIRECTORY first, then the working
 * directory, for the daemon's secret and the worker's keys alike (the
 * worker used to read the working directory's file first). */
static void test_credentials(void)
{
	char pub[41], sec[41], pub2[41], sec2[41], k[41], err[512];
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(pub, sec), 0);
	CU_ASSERT_EQUAL_FATAL(zmq_curve_keypair(pub2, sec2), 0);
	char cred[PATH_MAX], work[PATH_MAX], path[PATH_MAX + 32], old[PATH_MAX];
	snprintf(cred, sizeof(cred), "%s/credentials", cu_tmpdir());
	snprintf(work, sizeof(work), "%s/workdir", cu_tmpdir());
	CU_ASSERT_EQUAL_FATAL(mkdir(cred, 0700) == 0 || errno == EEXIST, 1);
	CU_ASSERT_EQUAL_FATAL(mkdir(work, 0700) == 0 || errno == EEXIST, 1);
	snprintf(path, sizeof(path), "%s/worker-0.key", cred);
	write_file(path, sec);
	snprintf(path, sizeof(path), "%s/worker-0.key", work);
	write_file(path, sec2);
	snprintf(path, sizeof(path), "%s/only-here.pub", work);
	write_file(path, pub2);
	snprintf(path, sizeof(path), "%s/bad.key", cred);
	write_file(path, "oops\n");
	CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(old, sizeof(old)));
	CU_ASSERT_EQUAL_FATAL(chdir(work), 0);
	const char *had = getenv("CREDENTIALS_DIRECTORY");
	char *saved = had ? strdup(had) : NULL;
	setenv("CREDENTIALS_DIRECTORY", cred, 1);

	/* both exist: the credential wins */
	CU_ASSERT_EQUAL(mg_curve_key_load("worker-0.key", k, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(k, sec);
	/* not a credential: the working directory */
	CU_ASSERT_EQUAL(mg_curve_key_load("only-here.pub", k, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(k, pub2);
	/* a bad credential is refused, naming the file in the credentials */
	CU_ASSERT_EQUAL(mg_curve_key_load("bad.key", k, NULL, err, sizeof(err)), -EBADMSG);
	snprintf(path, sizeof(path), "%s/bad.key:1: not a CURVE key", cred);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, path));
	/* neither: the name as given */
	CU_ASSERT_EQUAL(mg_curve_key_load("nowhere.key", k, NULL, err, sizeof(err)), -ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "nowhere.key"));
	/* an absolute path, and mg_curve_key_read, never look there */
	snprintf(path, sizeof(path), "%s/worker-0.key", work);
	CU_ASSERT_EQUAL(mg_curve_key_load(path, k, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(k, sec2);
	CU_ASSERT_EQUAL(mg_curve_key_read("worker-0.key", k, NULL, err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(k, sec2);

	if (saved) {
		setenv("CREDENTIALS_DIRECTORY", saved, 1);
		free(saved);
	} else {
		unsetenv("CREDENTIALS_DIRECTORY");
	}
	CU_ASSERT_EQUAL(chdir(old), 0);
}

const cu_test_t curve_tests[] = {
	{ "accepted: keygen's file, comments, blank lines, white space", test_accepted },
	{ "refused: file and line named", test_refused },
	{ "credentials: $CREDENTIALS_DIRECTORY first, then as given", test_credentials },
	{ NULL, NULL },
};
