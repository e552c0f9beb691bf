/* 128-bit integers for exact intermediate products (rate x nanoseconds,
 * weights x totals) that overflow 64 bits. __int128 is a GCC/Clang
 * extension; __extension__ keeps -Wpedantic quiet here, once, so the
 * rest of the tree can build at warning_level=3 with -Werror. */
#ifndef MG_INT128_H
#define MG_INT128_H

__extension__ typedef __int128 mg_i128;
__extension__ typedef unsigned __int128 mg_u128;

#endif
