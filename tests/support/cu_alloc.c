/* The failing allocator: see cu_alloc.h. */
#include "cu_alloc.h"

#include <stddef.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static unsigned long fail_at;	/* 0: disarmed; else allocations left + 1 */
static bool failed;

void cu_alloc_fail_at(unsigned long n)
{
	fail_at = n;
	failed = false;
}

bool cu_alloc_reset(void)
{
	bool f = failed;
	fail_at = 0;
	failed = false;
	return f;
}

/* Is this allocation the one to fail (or one after it)? Once the nth has
 * failed, every later one fails too, so a caller that retries cannot
 * succeed by accident. */
static bool fail_now(void)
{
	if (fail_at == 0)
		return false;
	if (fail_at > 1) {
		fail_at--;
		return false;
	}
	failed = true;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

/* libc's strdup allocates inside libc, out of --wrap's reach: these copy
 * through the wrapped malloc instead. */
char *__wrap_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = __wrap_malloc(n);
	return d != NULL ? memcpy(d, s, n) : NULL;
}

char *__wrap_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = __wrap_malloc(len + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}
