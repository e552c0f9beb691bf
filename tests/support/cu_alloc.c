/* The failing allocator: see cu_alloc.h. */
#include "cu_alloc.h"

#include <sqlite3.h>
#include <stddef.h>
#include <stdlib.h>
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

/* SQLite's allocations (the journal's statements, pages, transactions)
 * go through the same count: a failure surfaces as SQLITE_NOMEM, which the
 * journal returns as -ENOMEM, mid-transaction. Each block carries its
 * size in a 16-byte header (xSize). */
#define HDR 16

static void *sq_malloc(int n)
{
	char *p = __wrap_malloc((size_t)n + HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &(size_t){ (size_t)n }, sizeof(size_t));
	return p + HDR;
}

static void sq_free(void *p)
{
	if (p != NULL)
		free((char *)p - HDR);
}

static int sq_size(void *p)
{
	size_t n;
	memcpy(&n, (char *)p - HDR, sizeof(n));
	return (int)n;
}

static void *sq_realloc(void *p, int n)
{
	char *q = __wrap_realloc((char *)p - HDR, (size_t)n + HDR);
	if (q == NULL)
		return NULL;
	memcpy(q, &(size_t){ (size_t)n }, sizeof(size_t));
	return q + HDR;
}

static int sq_roundup(int n)
{
	return (n + 7) & ~7;
}

static int sq_init(void *unused)
{
	return SQLITE_OK;
}

static void sq_shutdown(void *unused)
{
}

/* Before main, so before SQLite initializes. */
__attribute__((constructor)) static void route_sqlite(void)
{
	static const sqlite3_mem_methods m = { sq_malloc, sq_free, sq_realloc, sq_size, sq_roundup, sq_init,
					       sq_shutdown, NULL };
	sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
}
