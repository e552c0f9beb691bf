/* gguf private header: what the reader (gguf.c) and the writer
 * (gguf_write.c) share of the file format. Not part of gguf.h's
 * interface. */
#ifndef GGUF_PRIV_H
#define GGUF_PRIV_H

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c and gguf_write.c read and write little-endian files by plain loads and stores: little-endian hosts only"
#endif

#define GGUF_MAGIC "GGUF"
#define MAX_KEY_LEN 65535u
#define MAX_NAME_LEN 64u	/* GGUF spec: tensor names at most 64 bytes */

#endif
