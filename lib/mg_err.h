/* mg_err: the error-text convention of every parser and loader.
 *
 * A function that can fail returns a negative errno and, where a person
 * has to act on it, fills a caller's buffer with what went wrong and where.
 * mg_seterr() formats that text (when err is non-NULL and errlen > 0) and
 * returns rc, so a failure is one line:
 *
 *	return mg_seterr(err, errlen, -EBADMSG, "tensor %s: offset %llu past the end", ...);
 *
 * Any thread. */
#ifndef MG_ERR_H
#define MG_ERR_H

#include <stddef.h>

int mg_seterr(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
