/* Fuzz target: any byte string given to gguf_open_buffer is either refused
 * with a message or opened; an opened file can then be read through every
 * accessor without leaving the buffer (ASan watches). Built as a libFuzzer
 * target with clang, else linked with replay.c to rerun saved inputs. */
#include "worker/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* like assert, but kept under NDEBUG: the checked calls have effects */
#define CHECK(x)                                                        \
	do {                                                            \
		if (!(x)) {                                             \
			fprintf(stderr, "fuzz_gguf: check failed: %s\n", #x); \
			abort();                                        \
		}                                                       \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;	/* keeps the reads from being optimised out */

static void touch(const void *p, uint64_t n)
{
	const uint8_t *b = p;
	if (n > 0)
		sink += b[0] + b[n - 1];
}

static void walk(const gguf_t *g)
{
	for (uint64_t i = 0; i < gguf_n_kv(g); i++) {
		const char *key = gguf_kv_key(g, i);
		CHECK(key != NULL && gguf_find_kv(g, key) == (int64_t)i);
		enum gguf_vtype t = gguf_kv_type(g, i);
		gguf_str_t s;
		const void *v;
		if (t == GGUF_VTYPE_STRING) {
			CHECK(gguf_kv_str(g, i, &s) == 0);
			touch(s.data, s.len);
		} else if (t == GGUF_VTYPE_ARRAY) {
			enum gguf_vtype et;
			uint64_t n;
			CHECK(gguf_kv_arr_info(g, i, &et, &n) == 0);
			if (et == GGUF_VTYPE_STRING) {
				for (uint64_t k = 0; k < n; k++) {
					CHECK(gguf_kv_arr_str(g, i, k, &s) == 0);
					touch(s.data, s.len);
				}
			} else {
				CHECK(gguf_kv_arr_data(g, i, &v) == 0);
				touch(v, n * gguf_vtype_size(et));
			}
		} else {
			CHECK(gguf_kv_scalar(g, i, &v) == 0);
			touch(v, gguf_vtype_size(t));
			uint64_t u;
			int64_t x;
			double d;
			(void)gguf_get_u64(g, key, &u);
			(void)gguf_get_i64(g, key, &x);
			(void)gguf_get_f64(g, key, &d);
		}
	}
	char err[256];
	(void)gguf_check_loadable(g, err, sizeof(err));
	for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
		const gguf_tensor_t *t = gguf_tensor(g, i);
		CHECK(gguf_find_tensor(g, t->name) == t);
		touch(t->data, t->nbytes);
		if (!gguf_ttype_loadable(t->type) || t->n_elements > (1u << 22))
			continue;
		float *x = malloc((size_t)t->n_elements * sizeof(float));
		if (x != NULL) {
			CHECK(gguf_tensor_to_f32(t, x) == 0);
			sink += (uint64_t)x[t->n_elements - 1];
			free(x);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	gguf_t *g = NULL;
	char err[512];
	err[0] = '\0';
	int rc = gguf_open_buffer(data, size, &g, err, sizeof(err));
	if (rc < 0) {
		/* every refusal says why */
		CHECK(g == NULL && err[0] != '\0');
		CHECK(rc == -EBADMSG || rc == -ENOTSUP || rc == -ENOMEM);
		return 0;
	}
	walk(g);
	gguf_close(&g);
	return 0;
}
