/* quant: every tensor of the ten llama.cpp-quantized files in
 * shared/testdata/kquant dequantizes to the reference values bit for bit
 * (sha256 of the float32 bytes, computed by gguf-py's numpy dequantizer and
 * cross-checked against ggml's C code), and the block tables agree with the
 * GGUF type table. */
#include "cu_main.h"

#include "gguf.h"
#include "quant.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

const cu_test_t quant_tests[] = {
	{ "reference dequantization (210 tensors)", test_reference_dequant },
	{ "block tables", test_block_tables },
	{ "iq4 levels", test_iq4 },
	{ "check_row", test_check_row },
	{ NULL, NULL },
};
