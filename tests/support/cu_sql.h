/* SQL checks for the CUnit suites that read a SQLite database. */
#ifndef CU_SQL_H
#define CU_SQL_H

#include <sqlite3.h>
#include <stdint.h>

/* The first column of the first row of sql (a COUNT(*), a SUM), or -1 when
 * it returns no row; a statement that does not prepare fails the test. */
int64_t cu_sql_int(sqlite3 *db, const char *sql);

#endif
