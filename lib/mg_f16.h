/* mg_f16: IEEE half precision <-> single, the one converter of the tree
 * (GGUF f16 tensors and block scales, the KV cache, the synthetic models).
 *
 * Both directions match the x86 instructions (vcvtps2ph with round to
 * nearest even, vcvtph2ps) on every input, so a scalar path and a SIMD one
 * give the same bits: f32 -> f16 rounds to nearest even, overflow (from
 * 65520 up) becomes inf, a NaN stays NaN made quiet with its top payload
 * bits; f16 -> f32 is exact, a signalling NaN comes back quiet. Inline
 * because the kernels convert once per element. Any thread. */
#ifndef MG_F16_H
#define MG_F16_H

#include <stdint.h>
#include <string.h>

/* f32 -> f16 (F. Giesen's float_to_half_fast3_rtne). */
static inline uint16_t mg_f32_to_f16(float f)
{
	const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16u) << 23;
	const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
	uint32_t x;
	memcpy(&x, &f, sizeof(x));
	uint32_t sign = x & 0x80000000u;
	x ^= sign;
	uint16_t o;
	if (x >= f16_max) {		/* overflow, inf or NaN */
		o = (uint16_t)(0x7c00u | (x > f32_inf ? 0x200u | ((x >> 13) & 0x3ffu) : 0u));
	} else if (x < (113u << 23)) {	/* a subnormal half or zero: let the FPU round */
		float fx, dm;
		memcpy(&fx, &x, sizeof(fx));
		memcpy(&dm, &denorm_magic, sizeof(dm));
		fx += dm;
		uint32_t r;
		memcpy(&r, &fx, sizeof(r));
		o = (uint16_t)(r - denorm_magic);
	} else {
		uint32_t odd = (x >> 13) & 1u;
		x += ((uint32_t)(15 - 127) << 23) + 0xfffu + odd;
		o = (uint16_t)(x >> 13);
	}
	return (uint16_t)(o | (sign >> 16));
}

/* f16 -> f32, exact. */
static inline float mg_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
	if (e == 0) {
		float f = (float)m * 0x1p-24f;	/* zero or a subnormal half */
		memcpy(&x, &f, sizeof(x));
		x |= sign;
	} else if (e == 31) {	/* inf, or NaN made quiet as vcvtph2ps does */
		x = sign | 0x7f800000u | ((m != 0 ? m | 0x200u : 0u) << 13);
	} else {
		x = sign | ((e + 112u) << 23) | (m << 13);
	}
	float f;
	memcpy(&f, &x, sizeof(f));
	return f;
}

/* The f16 at p (any alignment; GGUF's little-endian order, the host's). */
static inline float mg_f16_load(const void *p)
{
	uint16_t h;
	memcpy(&h, p, sizeof(h));
	return mg_f16_to_f32(h);
}

#endif
