/* mg_curve: see mg_curve.h. */
#include "mg_curve.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

bool mg_curve_key_valid(const char *z85)
{
	unsigned char bin[MG_CURVE_KEY_BYTES];
	return z85 != NULL && strlen(z85) == MG_CURVE_KEY_LEN && zmq_z85_decode(bin, z85) != NULL;
}

/* Opens the key file; with credentials, as mg_curve_key_load says. *ret_used
 * is the path opened (or the last one tried, for the error). */
static FILE *open_key(const char *path, bool credentials, char *buf, size_t len,
		      const char **ret_used)
{
	const char *cred = credentials ? getenv("CREDENTIALS_DIRECTORY") : NULL;
	if (path[0] != '/' && cred != NULL && cred[0] != '\0' &&
	    (size_t)snprintf(buf, len, "%s/%s", cred, path) < len) {
		FILE *f = fopen(buf, "re");
		if (f != NULL || errno != ENOENT) {
			*ret_used = buf;
			return f;
		}
	}
	*ret_used = path;
	return fopen(path, "re");
}

static bool blank(const char *s)
{
	return s[strspn(s, " \t\r\n")] == '\0';
}

static int read_key(const char *path, bool credentials, char ret_z85[MG_CURVE_KEY_LEN + 1],
		    unsigned char ret_bin[MG_CURVE_KEY_BYTES], char *err, size_t errlen)
{
	char alt[PATH_MAX];
	const char *used;
	FILE *f = open_key(path, credentials, alt, sizeof(alt), &used);
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "cannot read CURVE key file %s: %s", used, strerror(e));
		return -e;
	}
	char line[512], key[MG_CURVE_KEY_LEN + 1];
	unsigned char bin[MG_CURVE_KEY_BYTES];
	int lineno = 0, rc = 0, key_line = 0;
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		char *p = line + strspn(line, " \t");
		if (*p == '#' || blank(p))
			continue;
		size_t n = strcspn(p, " \t\r\n");
		bool word = blank(p + n);	/* the line is one word */
		if (word && n == MG_CURVE_KEY_LEN) {
			memcpy(key, p, n);
			key[n] = '\0';
		}
		if (key_line != 0) {
			snprintf(err, errlen, "%s:%d: a second key after the one on line %d (one key a file)",
				 used, lineno, key_line);
			rc = -EBADMSG;
		} else if (word && n == MG_CURVE_KEY_LEN && zmq_z85_decode(bin, key) != NULL) {
			key_line = lineno;
		} else if (strncmp(p, "curve", 5) == 0 || strncmp(p, "metadata", 8) == 0 ||
			   strstr(p, "-key = ") != NULL) {
			snprintf(err, errlen, "%s:%d: a czmq certificate? expected the bare key, 40 Z85 "
				 "characters, as marginctl keygen writes", used, lineno);
			rc = -EBADMSG;
		} else if (word && n == MG_CURVE_KEY_LEN) {
			snprintf(err, errlen, "%s:%d: not a CURVE key (a character outside Z85)", used, lineno);
			rc = -EBADMSG;
		} else {
			snprintf(err, errlen, "%s:%d: not a CURVE key (expected 40 Z85 characters, got %s%zu)",
				 used, lineno, word ? "" : "more than one word, the first ", n);
			rc = -EBADMSG;
		}
	}
	fclose(f);
	if (rc == 0 && key_line == 0) {
		snprintf(err, errlen, "%s: no CURVE key in the file (expected 40 Z85 characters, as "
			 "marginctl keygen writes)", used);
		rc = -EBADMSG;
	}
	if (rc < 0)
		return rc;
	memcpy(ret_z85, key, sizeof(key));
	if (ret_bin != NULL)
		memcpy(ret_bin, bin, sizeof(bin));
	return 0;
}

int mg_curve_key_read(const char *path, char ret_z85[MG_CURVE_KEY_LEN + 1],
		      unsigned char ret_bin[MG_CURVE_KEY_BYTES], char *err, size_t errlen)
{
	return read_key(path, false, ret_z85, ret_bin, err, errlen);
}

int mg_curve_key_load(const char *name, char ret_z85[MG_CURVE_KEY_LEN + 1],
		      unsigned char ret_bin[MG_CURVE_KEY_BYTES], char *err, size_t errlen)
{
	return read_key(name, true, ret_z85, ret_bin, err, errlen);
}
