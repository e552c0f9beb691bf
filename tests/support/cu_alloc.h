/* The failing allocator: fails the Nth allocation from now, for tests that
 * loop a call over N = 1, 2, ... until it succeeds (each failure must
 * return -ENOMEM, leak nothing and leave the state as it was).
 *
 * The test executables link with -Wl,--wrap for malloc, calloc, realloc,
 * strdup and strndup (tests/meson.build): every call to them from margin's
 * own code (the area libraries linked in) goes through here, and so does
 * SQLite's (its allocator is set to these before main), so a journal
 * transaction can fail mid-statement with SQLITE_NOMEM. Allocations inside
 * libc and Jansson are not counted. Not thread-safe: arm it only while one
 * thread allocates. */
#ifndef CU_ALLOC_H
#define CU_ALLOC_H

#include <stdbool.h>

/* Fail the nth allocation from now (1: the next one), and every one after
 * it until cu_alloc_reset(); 0 disarms. */
void cu_alloc_fail_at(unsigned long n);
/* Disarms; returns whether an allocation was failed since it was armed. */
bool cu_alloc_reset(void);

#endif
