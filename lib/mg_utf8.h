/* mg_utf8: checking and cleaning UTF-8, one rule for every program.
 *
 * Valid means RFC 3629: no overlong forms, no surrogates (U+D800..U+DFFF),
 * nothing past U+10FFFF, no cut sequence. The tokenizer reads text as
 * llama.cpp does instead (worker/tok.c: it decodes overlong forms), so that
 * token ids match llama.cpp's; it does not use this. Any thread may call
 * these. */
#ifndef MG_UTF8_H
#define MG_UTF8_H

#include <stddef.h>

/* Length (1..4) of the valid UTF-8 sequence at p, of which left > 0 bytes
 * may be read, or 0 when the bytes there do not start one. A NUL byte is a
 * valid 1-byte sequence here; callers that cannot carry it say so. */
size_t mg_utf8_seq(const void *p, size_t left);

/* Generated text made fit for a client (the rule `margin-worker run --json`
 * and serve's outputs share): a NUL-terminated copy of s[0..n) in which each
 * byte that does not start a valid sequence becomes U+FFFD, as a decoder
 * renders a character cut by max_tokens, and so does each NUL byte: the
 * text travels as a C string (protobuf-c, jansson's json_string), and a NUL
 * would silently cut it there. The result is valid UTF-8 without NULs, at
 * most 3n + 1 bytes; *ret_len (may be NULL) gets its length. Returns a
 * string the caller frees, NULL when out of memory. */
char *mg_utf8_clean(const void *s, size_t n, size_t *ret_len);

#endif
