/* quant: every tensor of the ten llama.cpp-quantized files in
 * shared/testdata/kquant dequantizes to the reference values bit for bit
 * (sha256 of the float32 bytes, computed by gguf-py's numpy dequantizer and
 * cross-checked against ggml's C code), and the block tables agree with the
 * GGUF type table. */
#include "cu_main.h"
#include "lib/mg_f16.h"

#include "gguf.h"
#include "ops.h"
#include "quant.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void hex(const unsigned char *h, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", h[i]);
}

static void test_reference_dequant(void)
{
	CU_ASSERT_FATAL(sodium_init() >= 0);
	json_error_t je;
	json_t *root = json_load_file(cu_shared_path("testdata/kquant/kquant_dequant_ref.json"), 0, &je);
	CU_ASSERT_PTR_NOT_NULL_FATAL(root);
	json_t *tensors = json_object_get(root, "tensors");
	CU_ASSERT_EQUAL_FATAL(json_array_size(tensors), 210);
	char cur[128] = "";
	gguf_t *g = NULL;
	int checked = 0, types_seen[64] = { 0 };
	for (size_t i = 0; i < json_array_size(tensors); i++) {
		json_t *e = json_array_get(tensors, i);
		const char *file = json_string_value(json_object_get(e, "file"));
		const char *name = json_string_value(json_object_get(e, "tensor"));
		const char *type = json_string_value(json_object_get(e, "type"));
		const char *want = json_string_value(json_object_get(e, "sha256"));
		if (strcmp(file, cur) != 0) {
			char rel[200], err[256];
			gguf_close(&g);
			snprintf(rel, sizeof(rel), "testdata/kquant/%s", file);
			CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path(rel), &g, err, sizeof(err)), 0);
			CU_ASSERT_EQUAL(gguf_check_loadable(g, err, sizeof(err)), 0);
			snprintf(cur, sizeof(cur), "%s", file);
		}
		const gguf_tensor_t *t = gguf_find_tensor(g, name);
		CU_ASSERT_PTR_NOT_NULL_FATAL(t);
		CU_ASSERT_STRING_EQUAL(gguf_ttype_name(t->type), type);
		float *v = malloc(t->n_elements * sizeof(float));
		CU_ASSERT_PTR_NOT_NULL_FATAL(v);
		CU_ASSERT_EQUAL(gguf_tensor_to_f32(t, v), 0);
		unsigned char h[32];
		char got[65];
		crypto_hash_sha256(h, (const unsigned char *)v, t->n_elements * sizeof(float));
		hex(h, got);
		if (strcmp(got, want) != 0) {
			json_t *f16 = json_object_get(e, "first16");
			fprintf(stderr, "\n%s %s (%s): sha256 differs; first values %.9g/%.9g %.9g/%.9g\n",
				file, name, type, v[0], json_real_value(json_array_get(f16, 0)), v[1],
				json_real_value(json_array_get(f16, 1)));
		}
		CU_ASSERT_STRING_EQUAL(got, want);
		if (t->type < 64)
			types_seen[t->type] = 1;
		free(v);
		checked++;
	}
	gguf_close(&g);
	CU_ASSERT_EQUAL(checked, 210);
	/* the ten file types and the F32 norms */
	static const uint32_t must[] = { 0, QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0,
					 QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K };
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		CU_ASSERT(types_seen[must[i]]);
	json_decref(root);
}

/* The block sizes quant.c decodes are the ones the GGUF reader validates
 * files against. */
static void test_block_tables(void)
{
	static const uint32_t types[] = { QUANT_Q4_0, QUANT_Q4_1, QUANT_Q5_0, QUANT_Q5_1, QUANT_Q8_0,
					  QUANT_Q2_K, QUANT_Q3_K, QUANT_Q4_K, QUANT_Q5_K, QUANT_Q6_K,
					  QUANT_IQ4_NL, QUANT_IQ4_XS };
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		CU_ASSERT(quant_supported(types[i]));
		CU_ASSERT(gguf_ttype_loadable(types[i]));
		CU_ASSERT_EQUAL((uint32_t)quant_block_values(types[i]), gguf_ttype_block_size(types[i]));
		CU_ASSERT_EQUAL((uint32_t)quant_block_bytes(types[i]), gguf_ttype_type_size(types[i]));
	}
	CU_ASSERT_FALSE(quant_supported(16));	/* IQ2_XXS */
	CU_ASSERT_FALSE(quant_supported(0));
	CU_ASSERT_EQUAL(quant_row_bytes(QUANT_Q4_K, 512), 288);
	CU_ASSERT_EQUAL(quant_row_bytes(QUANT_Q4_K, 100), 0);
	float out[256];
	uint8_t blk[210] = { 0 };
	CU_ASSERT_EQUAL(quant_dequant_row(16, blk, out, 256), -EINVAL);
	CU_ASSERT_EQUAL(quant_dequant_row(QUANT_Q6_K, blk, out, 100), -EINVAL);
}

/* IQ4_NL and IQ4_XS have no llama.cpp-made file here: their definition,
 * checked on hand-built blocks. */
static void test_iq4(void)
{
	uint8_t b[18] = { 0 };
	uint16_t d = 0x3c00;	/* 1.0 */
	memcpy(b, &d, 2);
	b[2] = 0xf0;		/* value 0: level 0 (-127), value 16: level 15 (113) */
	b[3] = 0x98;		/* value 1: level 8 (1), value 17: level 9 (13) */
	float y[256];
	CU_ASSERT_EQUAL(quant_dequant_row(QUANT_IQ4_NL, b, y, 32), 0);
	CU_ASSERT(y[0] == -127.0f && y[16] == 113.0f && y[1] == 1.0f && y[17] == 13.0f && y[2] == -127.0f);
	uint8_t x[136] = { 0 };
	d = 0x3800;		/* 0.5 */
	memcpy(x, &d, 2);
	uint16_t sh = 0x0002;	/* sub-block 0: high scale bits 2 -> ls = 32 | low */
	memcpy(x + 2, &sh, 2);
	x[4] = 0x03;		/* sub-block 0 low bits 3: ls = 35, dl = 0.5 * 3 */
	x[8] = 0x0f;		/* value 0: level 15 (113); value 16: level 0 */
	CU_ASSERT_EQUAL(quant_dequant_row(QUANT_IQ4_XS, x, y, 256), 0);
	CU_ASSERT(y[0] == 1.5f * 113.0f);
	CU_ASSERT(y[16] == 1.5f * -127.0f);
	CU_ASSERT(y[32] == 0.5f * -32.0f * -127.0f);	/* sub-block 1: ls = 0 */
}

/* A block whose f16 scale is inf or NaN is found, with its index. */
static void test_check_row(void)
{
	uint8_t row[3 * 144] = { 0 };
	int64_t bad = -1;
	CU_ASSERT_EQUAL(quant_check_row(QUANT_Q4_K, row, 768, &bad), 0);
	row[144 + 2] = 0x00;
	row[144 + 3] = 0x7c;	/* block 1's dmin = +inf */
	CU_ASSERT_EQUAL(quant_check_row(QUANT_Q4_K, row, 768, &bad), -EBADMSG);
	CU_ASSERT_EQUAL(bad, 1);
	uint8_t q6[210] = { 0 };
	q6[209] = 0x7e;		/* d = NaN */
	CU_ASSERT_EQUAL(quant_check_row(QUANT_Q6_K, q6, 256, &bad), -EBADMSG);
	CU_ASSERT_EQUAL(bad, 0);
}

/* ---- quantization ---- */

static uint64_t rng_state;

static double urand(void)	/* xorshift64, [0, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static double gauss(void)
{
	double u = urand(), v = urand();
	return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(2.0 * M_PI * v);
}

/* The error bound quant.h states for each type. */
typedef struct qbound {
	uint32_t type;
	char of;		/* 'A': max |x|, 'R': max - min (+ 2^-10 |min|), 'P': R' over groups */
	int group;		/* values per group for 'P' */
	double frac;		/* bound = frac x A, R or R' */
	double levels;		/* L: the subnormal-scale slack is L x 2^-24 */
	double rms;		/* relative RMS error on N(0, 1) at most */
} qbound_t;

static const qbound_t qbounds[] = {
	{ QUANT_Q8_0, 'A', 0, 1.0 / 254, 127, 0.0056 },
	{ QUANT_Q4_0, 'A', 0, 1.0 / 8, 8, 0.089 },
	{ QUANT_Q5_0, 'A', 0, 1.0 / 16, 16, 0.044 },
	{ QUANT_IQ4_NL, 'A', 0, 14.0 / 127, 127, 0.082 },
	{ QUANT_Q4_1, 'R', 0, 1.0 / 30, 16, 0.082 },
	{ QUANT_Q5_1, 'R', 0, 1.0 / 62, 32, 0.040 },
	{ QUANT_Q2_K, 'P', 16, 1.0 / 6 * 31 / 30, 60, 0.345 },
	{ QUANT_Q3_K, 'A', 0, 1.0 / 4 + 1.0 / 62, 128, 0.161 },
	{ QUANT_Q4_K, 'P', 32, 1.0 / 30 * 127 / 126, 1008, 0.082 },
	{ QUANT_Q5_K, 'P', 32, 1.0 / 62 * 127 / 126, 2016, 0.040 },
	{ QUANT_Q6_K, 'A', 0, 1.0 / 32 + 1.0 / 254, 4096, 0.019 },
	{ QUANT_IQ4_XS, 'A', 0, 14.0 / 127 + 1.0 / 62, 4064, 0.083 },
};
#define N_QBOUNDS (sizeof(qbounds) / sizeof(qbounds[0]))

/* The bound of quant.h for the block of qk values at x. */
static double block_bound(const qbound_t *b, const float *x, int qk)
{
	double amax = 0, lo = x[0], hi = x[0], rp = 0;
	for (int i = 0; i < qk; i++) {
		amax = fmax(amax, fabs(x[i]));
		lo = fmin(lo, x[i]);
		hi = fmax(hi, x[i]);
	}
	for (int g = 0; b->of == 'P' && g < qk / b->group; g++) {
		double glo = 0, ghi = x[g * b->group];
		for (int i = 0; i < b->group; i++) {
			glo = fmin(glo, x[g * b->group + i]);
			ghi = fmax(ghi, x[g * b->group + i]);
		}
		rp = fmax(rp, ghi - glo);
	}
	double base = b->of == 'A' ? amax : b->of == 'R' ? hi - lo + fabs(lo) / 1024 : rp;
	return b->frac * base * (1.0 + 1.0 / 512) + b->levels * 0x1p-24;
}

enum { QN = 256 * 64 };

/* Fills x[QN] with data set k; returns its name, NULL past the last. */
static const char *dataset(int k, float *x)
{
	rng_state = 0x9e3779b97f4a7c15ULL + (uint64_t)k;
	switch (k) {
	case 0: for (int i = 0; i < QN; i++) x[i] = (float)gauss(); return "N(0, 1)";
	case 1: for (int i = 0; i < QN; i++) x[i] = (float)(0.02 * gauss()); return "N(0, 0.02)";
	case 2: for (int i = 0; i < QN; i++) x[i] = (float)(1e-5 * gauss()); return "N(0, 1e-5) (subnormal scales)";
	case 3: for (int i = 0; i < QN; i++) x[i] = (float)(2 * urand() - 1); return "uniform";
	case 4: for (int i = 0; i < QN; i++) x[i] = (float)(gauss() * (i % 37 == 5 ? 50 : 1)); return "outliers";
	case 5: for (int i = 0; i < QN; i++) x[i] = 0.0f; return "zeros";
	case 6: for (int i = 0; i < QN; i++) x[i] = (float)((i / 32) % 2 ? -3.5 : 0.75 * (1 + i / 512)); return "constant blocks";
	case 7: for (int i = 0; i < QN; i++) x[i] = (float)(0.5 + urand()); return "positive";
	case 8: for (int i = 0; i < QN; i++) x[i] = (float)(200 * gauss()); return "N(0, 200)";
	case 9: for (int i = 0; i < QN; i++) x[i] = i % 61 == 0 ? (float)gauss() : 0.0f; return "sparse";
	case 10: for (int i = 0; i < QN; i++) x[i] = (float)(100 + gauss()); return "offset";
	default: return NULL;
	}
}

/* Every type: valid blocks with finite scales, the same bytes twice, and
 * every value within the stated bound; RMS error on N(0, 1) as stated. */
static void test_quantize_roundtrip(void)
{
	float *x = malloc(QN * sizeof(float)), *y = malloc(QN * sizeof(float));
	uint8_t *q = malloc(QN * 2), *q2 = malloc(QN * 2);
	CU_ASSERT_FATAL(x != NULL && y != NULL && q != NULL && q2 != NULL);
	for (size_t t = 0; t < N_QBOUNDS; t++) {
		const qbound_t *b = &qbounds[t];
		int qk = quant_block_values(b->type);
		const char *name;
		double tightest = 0;
		for (int k = 0; (name = dataset(k, x)) != NULL; k++) {
			size_t nb = quant_row_bytes(b->type, QN);
			memset(q, 0xa5, nb);
			CU_ASSERT_EQUAL_FATAL(quant_quantize_row(b->type, x, q, QN), 0);
			CU_ASSERT_EQUAL(quant_check_row(b->type, q, QN, NULL), 0);
			CU_ASSERT_EQUAL(quant_quantize_row(b->type, x, q2, QN), 0);
			CU_ASSERT(memcmp(q, q2, nb) == 0);
			CU_ASSERT_EQUAL(quant_dequant_row(b->type, q, y, QN), 0);
			int bad = 0;
			double se = 0, ss = 0, worst = 0;
			for (int blk = 0; blk < QN / qk; blk++) {
				const float *xb = x + blk * qk, *yb = y + blk * qk;
				double bound = block_bound(b, xb, qk);
				for (int i = 0; i < qk; i++) {
					double e = fabs((double)xb[i] - yb[i]);
					worst = fmax(worst, e / bound);
					bad += !(e <= bound);
					se += e * e;
					ss += (double)xb[i] * xb[i];
				}
			}
			if (bad > 0)
				fprintf(stderr, "\n%s on %s: %d values past the bound (worst %.3f x)\n",
					gguf_ttype_name(b->type), name, bad, worst);
			CU_ASSERT_EQUAL(bad, 0);
			if (k == 0) {
				if (!(sqrt(se / ss) <= b->rms))
					fprintf(stderr, "\n%s: RMS error %.4f\n", gguf_ttype_name(b->type), sqrt(se / ss));
				CU_ASSERT(sqrt(se / ss) <= b->rms);
			}
			tightest = fmax(tightest, worst);
			if (k == 5)
				for (int i = 0; i < QN; i++)
					CU_ASSERT_EQUAL_FATAL(y[i], 0.0f);
		}
		/* the bound is the worst case, not slack: some value comes close
		 * (0.99 of it for most types, 0.94 for Q3_K and IQ4_XS, 0.7 for
		 * Q6_K) */
		CU_ASSERT(tightest > 0.65);
	}
	free(x);
	free(y);
	free(q);
	free(q2);
}

/* Q8_0 is ops_q8_block's rounding bit for bit (the loader quantizes at load
 * with it), ties included. */
static void test_quantize_q8_matches_ops(void)
{
	float x[32];
	uint8_t blk[34];
	rng_state = 12345;
	for (int r = 0; r < 20000; r++) {
		double a = r % 3 == 0 ? 1e-6 : r % 3 == 1 ? 0.02 : 30.0;
		for (int i = 0; i < 32; i++)
			x[i] = (float)(a * gauss());
		if (r % 5 == 0) {	/* exact halves of the step: ties */
			float d = mg_f16_to_f32(mg_f32_to_f16(1.0f / 127));
			for (int i = 0; i < 32; i++)
				x[i] = (float)((int)(urand() * 250) - 125) * 0.5f * d;
			x[7] = 1.0f;
		}
		int8_t q[32];
		uint16_t d16;
		ops_q8_block(x, 32, q, &d16);
		CU_ASSERT_EQUAL_FATAL(quant_quantize_row(QUANT_Q8_0, x, blk, 32), 0);
		CU_ASSERT_FATAL(memcmp(blk, &d16, 2) == 0);
		CU_ASSERT_FATAL(memcmp(blk + 2, q, 32) == 0);
	}
}

static void test_quantize_errors(void)
{
	float x[256] = { 0 };
	uint8_t q[256];
	CU_ASSERT_EQUAL(quant_quantize_row(16, x, q, 256), -EINVAL);	/* IQ2_XXS */
	CU_ASSERT_EQUAL(quant_quantize_row(GGUF_TTYPE_F32, x, q, 256), -EINVAL);
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_K, x, q, 32), -EINVAL);
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_0, x, q, 33), -EINVAL);
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_0, x, q, 0), 0);
	x[40] = NAN;
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_0, x, q, 64), -EINVAL);
	x[40] = INFINITY;
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q6_K, x, q, 256), -EINVAL);
	x[40] = 1e6f;		/* Q4_0 scale 1e6 / 8: past f16 */
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_0, x, q, 64), -ERANGE);
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q4_K, x, q, 256), 0);	/* 1e6 / 945 fits */
	x[40] = 1e9f;
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q6_K, x, q, 256), -ERANGE);
	CU_ASSERT_EQUAL(quant_quantize_row(QUANT_Q8_0, x, q, 64), -ERANGE);
}

/* ---- mixes ---- */

static void test_mix_parse(void)
{
	static const struct {
		const char *name;
		uint32_t ftype, base;
	} cases[] = {
		{ "q4_0", 2, QUANT_Q4_0 }, { "Q4_1", 3, QUANT_Q4_1 }, { "q5_0", 8, QUANT_Q5_0 },
		{ "q5_1", 9, QUANT_Q5_1 }, { "q8_0", 7, QUANT_Q8_0 }, { "Q2_K", 10, QUANT_Q2_K },
		{ "q3_k", 12, QUANT_Q3_K }, { "Q3_K_M", 12, QUANT_Q3_K }, { "q3_k_s", 11, QUANT_Q3_K },
		{ "q3_k_l", 13, QUANT_Q3_K }, { "q4_k", 15, QUANT_Q4_K }, { "Q4_K_M", 15, QUANT_Q4_K },
		{ "q4_k_s", 14, QUANT_Q4_K }, { "q5_k", 17, QUANT_Q5_K }, { "q5_k_m", 17, QUANT_Q5_K },
		{ "q5_k_s", 16, QUANT_Q5_K }, { "q6_k", 18, QUANT_Q6_K }, { "iq4_nl", 25, QUANT_IQ4_NL },
		{ "IQ4_XS", 30, QUANT_IQ4_XS }, { "f32", 0, GGUF_TTYPE_F32 }, { "f16", 1, GGUF_TTYPE_F16 },
		{ "bf16", 32, GGUF_TTYPE_BF16 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		quant_mix_t m, back;
		CU_ASSERT_EQUAL_FATAL(quant_mix_parse(cases[i].name, &m), 0);
		CU_ASSERT_EQUAL(m.ftype, cases[i].ftype);
		CU_ASSERT_EQUAL(m.base, cases[i].base);
		CU_ASSERT_EQUAL(m.n_gqa, 1);
		CU_ASSERT_FALSE(m.tied_output);
		CU_ASSERT_EQUAL(strcasecmp(m.name, cases[i].name) == 0 || strlen(m.name) > strlen(cases[i].name), 1);
		CU_ASSERT_EQUAL(quant_mix_from_ftype(m.ftype, &back), 0);
		CU_ASSERT_STRING_EQUAL(back.name, m.name);
	}
	quant_mix_t m;
	CU_ASSERT_EQUAL(quant_mix_parse("q4_k_xl", &m), -EINVAL);
	CU_ASSERT_EQUAL(quant_mix_parse("", &m), -EINVAL);
	CU_ASSERT_EQUAL(quant_mix_parse(NULL, &m), -EINVAL);
	CU_ASSERT_EQUAL(quant_mix_from_ftype(19, &m), -EINVAL);	/* IQ2_XXS */
	size_t n = 0;
	while (quant_mix_name(n) != NULL)
		CU_ASSERT_EQUAL(quant_mix_parse(quant_mix_name(n++), &m), 0);
	CU_ASSERT_EQUAL(n, 19);
}

/* Every tensor of a llama.cpp-quantized file has the type quant_mix_type
 * gives for the file's mix; returns the number of tensors compared. */
static int check_file_types(const char *rel)
{
	char err[256];
	gguf_t *g = NULL;
	CU_ASSERT_EQUAL_FATAL(gguf_open(cu_shared_path(rel), &g, err, sizeof(err)), 0);
	uint32_t ftype = 0, heads = 0, kv = 0, layers = 0;
	CU_ASSERT_EQUAL(gguf_get_u32(g, "general.file_type", &ftype), 0);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.attention.head_count", &heads), 0);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.attention.head_count_kv", &kv), 0);
	CU_ASSERT_EQUAL(gguf_get_u32(g, "llama.block_count", &layers), 0);
	quant_mix_t mix;
	CU_ASSERT_EQUAL_FATAL(quant_mix_from_ftype(ftype, &mix), 0);
	mix.n_gqa = (int)(heads / kv);
	mix.tied_output = gguf_find_tensor(g, "output.weight") == NULL;
	int n = 0;
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		uint32_t want = quant_mix_type(&mix, t->name, -1, (int)layers, (int64_t)t->ne[0]);
		if (want != t->type)
			fprintf(stderr, "\n%s: %s is %s, the %s mix says %s\n", rel, t->name,
				gguf_ttype_name(t->type), mix.name, gguf_ttype_name(want));
		CU_ASSERT_EQUAL(want, t->type);
		n++;
	}
	gguf_close(&g);
	return n;
}

/* The ten kquant files (rows of 256: llama.cpp's own choices, no
 * fallback) and the three stories15M files (rows of 288: the fallbacks,
 * a tied embedding, use_more_bits layers 2 and 5 of 6). */
static void test_mix_real_files(void)
{
	static const char *const kq[] = { "q2_k", "q3_k_m", "q4_k_m", "q5_k_m", "q6_k",
					  "q4_0", "q4_1", "q5_0", "q5_1", "q8_0" };
	char rel[128];
	int n = 0;
	for (size_t i = 0; i < sizeof(kq) / sizeof(kq[0]); i++) {
		snprintf(rel, sizeof(rel), "testdata/kquant/synth-kq-%s.gguf", kq[i]);
		n += check_file_types(rel);
	}
	CU_ASSERT_EQUAL(n, 210);
	n = check_file_types("models/stories15M-q4_k_m.gguf");
	n += check_file_types("models/stories15M-q4_0.gguf");
	n += check_file_types("models/stories15M-q8_0.gguf");
	CU_ASSERT_EQUAL(n, 3 * 56);
}

/* Rules the files above do not reach: many layers, GQA, fallbacks. */
static void test_mix_rules(void)
{
	quant_mix_t m;
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q4_k_m", &m), 0);
	/* Llama-2-7B (32 layers): attn_v and ffn_down in Q6_K on use_more_bits layers */
	int q6 = 0;
	for (int l = 0; l < 32; l++) {
		char name[64];
		snprintf(name, sizeof(name), "blk.%d.attn_v.weight", l);
		bool more = l < 4 || l >= 28 || (l - 4) % 3 == 2;
		CU_ASSERT_EQUAL(quant_mix_type(&m, name, -1, 32, 4096), more ? QUANT_Q6_K : QUANT_Q4_K);
		CU_ASSERT_EQUAL(quant_mix_type(&m, name, l, 32, 4096), more ? QUANT_Q6_K : QUANT_Q4_K);
		snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", l);
		CU_ASSERT_EQUAL(quant_mix_type(&m, name, l, 32, 11008), more ? QUANT_Q6_K : QUANT_Q4_K);
		q6 += more;
	}
	CU_ASSERT_EQUAL(q6, 16);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output.weight", -1, 32, 4096), QUANT_Q6_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "token_embd.weight", -1, 32, 4096), QUANT_Q4_K);
	m.tied_output = true;
	CU_ASSERT_EQUAL(quant_mix_type(&m, "token_embd.weight", -1, 32, 4096), QUANT_Q6_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.attn_qkv.weight", 0, 32, 4096), QUANT_Q5_K);
	/* norms, biases: not quantized; rows not whole blocks fall back */
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.attn_norm.weight", 0, 32, 4096), GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output_norm.weight", -1, 32, 4096), GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.attn_q.bias", 0, 32, 4096), GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "rope_freqs.weight", -1, 32, 64), GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.attn_k_norm.weight", 0, 32, 128), GGUF_TTYPE_F32);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.5.attn_q.weight", 5, 32, 896), QUANT_Q5_0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.5.attn_q.weight", 5, 32, 100), GGUF_TTYPE_F16);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.ffn_down.weight", 0, 32, 4864), QUANT_Q6_K);	/* 19 x 256 */
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.ffn_down.weight", 0, 32, 4896), QUANT_Q8_0);	/* 153 x 32 */
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.ffn_down.weight", 0, 32, 4880), GGUF_TTYPE_F16);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output.weight", -1, 32, 896), QUANT_Q8_0);	/* rows not whole Q4_K blocks */
	/* Q2_K: attn_v by GQA, ffn_down and attn_output Q3_K, fallback to IQ4_NL */
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q2_k", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.attn_v.weight", 3, 32, 4096), QUANT_Q3_K);
	m.n_gqa = 4;
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.attn_v.weight", 3, 32, 4096), QUANT_Q4_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.attn_output.weight", 3, 32, 4096), QUANT_Q3_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.ffn_down.weight", 3, 32, 11008), QUANT_Q3_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.ffn_up.weight", 3, 32, 4096), QUANT_Q2_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.ffn_up.weight", 3, 32, 288), QUANT_IQ4_NL);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.3.attn_v.weight", 3, 32, 288), QUANT_Q5_0);
	/* Q3_K_M: attn_v Q5_K in layers 0-1; ffn_down Q5_K below n/16 */
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q3_k_m", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.1.attn_v.weight", 1, 32, 4096), QUANT_Q5_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_v.weight", 2, 32, 4096), QUANT_Q4_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.1.ffn_down.weight", 1, 32, 11008), QUANT_Q5_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.ffn_down.weight", 2, 32, 11008), QUANT_Q4_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_output.weight", 2, 32, 4096), QUANT_Q4_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_q.weight", 2, 32, 4096), QUANT_Q3_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_q.weight", 2, 32, 4000), QUANT_IQ4_NL);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_q.weight", 2, 32, 4001), GGUF_TTYPE_F16);
	/* Q5_K_M falls back to Q5_1; IQ4_XS to IQ4_NL; Q8_0 keeps the output */
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q5_k_m", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_q.weight", 2, 32, 288), QUANT_Q5_1);
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("iq4_xs", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.attn_q.weight", 2, 32, 288), QUANT_IQ4_NL);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.2.ffn_down.weight", 2, 32, 11008), QUANT_Q5_K);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.4.ffn_down.weight", 4, 32, 11008), QUANT_IQ4_XS);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output.weight", -1, 32, 4096), QUANT_Q6_K);
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("q8_0", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output.weight", -1, 32, 4096), QUANT_Q8_0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.9.attn_v.weight", 9, 32, 4096), QUANT_Q8_0);
	CU_ASSERT_EQUAL_FATAL(quant_mix_parse("f16", &m), 0);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "output.weight", -1, 32, 4096), GGUF_TTYPE_F16);
	CU_ASSERT_EQUAL(quant_mix_type(&m, "blk.0.ffn_norm.weight", 0, 32, 4096), GGUF_TTYPE_F32);
}

const cu_test_t quant_tests[] = {
	{ "reference dequantization (210 tensors)", test_reference_dequant },
	{ "block tables", test_block_tables },
	{ "iq4 levels", test_iq4 },
	{ "check_row", test_check_row },
	{ "quantize: every type within its bound", test_quantize_roundtrip },
	{ "quantize: Q8_0 is ops_q8_block", test_quantize_q8_matches_ops },
	{ "quantize: errors", test_quantize_errors },
	{ "mix: names", test_mix_parse },
	{ "mix: the types of 13 llama.cpp-quantized files", test_mix_real_files },
	{ "mix: rules", test_mix_rules },
	{ NULL, NULL },
};
