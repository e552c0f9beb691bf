/* ops private header: the layout of a KV-cache row, shared by the fast
 * attention kernels (ops.c) and the reference one (ops_ref.c). Not part of
 * ops.h's interface. */
#ifndef OPS_PRIV_H
#define OPS_PRIV_H

#include "ops.h"
#include "lib/mg_f16.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The attention kernels read a cache row as floats, as halves or as q8 (T, a
 * compile-time constant in each instance), widened on load. The widening
 * is exact (a half is a float; a q8 value is an int8 times a half scale,
 * at most 8 + 11 significant bits), so a compact cache gives the bits the
 * f32 kernel gives on the widened values. A q8 row (ops_q8_row_bytes) is
 * head_dim int8 values, then one f16 scale per block of q8_block(hd). */
enum { KV_F32, KV_F16, KV_Q8 };

static inline size_t kv_esz(int T)
{
	return T == KV_F32 ? sizeof(float) : T == KV_F16 ? sizeof(uint16_t) : 1;
}

/* Elements per q8 scale: 32 when head_dim is a multiple of 32, else the
 * whole row; a 16-element load never straddles two blocks. */
static inline int q8_block(int hd)
{
	return (hd & 31) == 0 ? 32 : hd;
}

/* Bytes of one cache row of hd elements. */
static inline size_t kv_row_bytes(int hd, int T)
{
	return T == KV_Q8 ? ops_q8_row_bytes(hd) : (size_t)hd * kv_esz(T);
}

/* The scale of element d of a q8 row. */
static inline uint16_t q8_scale(const char *row, int d, int hd)
{
	uint16_t s;
	memcpy(&s, row + hd + 2 * (d / q8_block(hd)), sizeof(s));
	return s;
}

/* Element d of a cache row, widened. */
static inline float kv_elem(const char *row, int d, int hd, int T)
{
	if (T == KV_F16)
		return mg_f16_to_f32(((const uint16_t *)row)[d]);
	if (T == KV_Q8)
		return (float)(int8_t)row[d] * mg_f16_to_f32(q8_scale(row, d, hd));
	return ((const float *)row)[d];
}

/* dst[i] = src[i] rounded to the nearest half (dst may be src). */
static inline void round_half(float *dst, const float *src, int n)
{
	uint16_t h[256];
	for (int i = 0; i < n; i += 256) {
		int m = n - i < 256 ? n - i : 256;
		ops_f16_from_f32(h, src + i, m);
		ops_f16_to_f32(dst + i, h, m);
	}
}

static inline int kv_type(const ops_attn_t *a)
{
	return a->k8 != NULL ? KV_Q8 : a->k16 != NULL ? KV_F16 : KV_F32;
}

static inline void kv_bases(const ops_attn_t *a, int T, const char **k, const char **v)
{
	*k = T == KV_Q8 ? (const char *)a->k8 : T == KV_F16 ? (const char *)a->k16 : (const char *)a->k;
	*v = T == KV_Q8 ? (const char *)a->v8 : T == KV_F16 ? (const char *)a->v16 : (const char *)a->v;
}

/* The first position the query at position p sees (ops_attn_t.window). */
static inline int window_start(const ops_attn_t *a, int p)
{
	return a->window > 0 && p >= a->window ? p - a->window + 1 : 0;
}

#endif
