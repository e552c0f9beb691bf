/* dump_logits: the logits margin's model code gives for a token sequence,
 * for the reference tests (tests/ref/test_ref.py).
 *
 *   dump_logits MODEL.gguf ID,ID,...
 *
 * Loads the model with model_load (f32 weights as the file has them, the
 * packed batch-invariant kernels), then runs the sequence twice over an f32
 * KV cache: all of it in one model_forward step (2 threads) and token by
 * token (1 thread), every position's logits wanted. Prints one JSON object:
 *
 *   {"vocab": V, "batch": [[V floats] per position], "stepwise": [...]}
 *
 * Floats are printed with 9 significant digits, so they read back as the
 * same f32 bits. Exit 0, or 1 with the reason on stderr. A test program:
 * it links the worker library as the worker does and is not installed. */
#include "worker/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses "1,2,3" into a malloc'd array; -EINVAL for anything else. */
static int parse_ids(const char *s, int32_t **ret, int *ret_n)
{
	int cap = 16, n = 0;
	int32_t *ids = malloc((size_t)cap * sizeof(*ids));
	if (ids == NULL)
		return -ENOMEM;
	while (*s != '\0') {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (errno != 0 || end == s || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
			free(ids);
			return -EINVAL;
		}
		if (n == cap) {
			int32_t *more = realloc(ids, (size_t)(cap *= 2) * sizeof(*ids));
			if (more == NULL) {
				free(ids);
				return -ENOMEM;
			}
			ids = more;
		}
		ids[n++] = (int32_t)v;
		s = *end == ',' ? end + 1 : end;
	}
	if (n == 0) {
		free(ids);
		return -EINVAL;
	}
	*ret = ids;
	*ret_n = n;
	return 0;
}

/* Logits of every position of ids[0..n) into out[n][vocab], fed in steps of
 * step tokens on threads threads. */
static int run(const model_t *m, const int32_t *ids, int n, int step, int threads, float *out)
{
	int V = model_config(m)->vocab_size;
	model_kv_t *kv = NULL;
	model_scratch_t *s = NULL;
	int32_t *pos = malloc((size_t)n * sizeof(*pos));
	model_kv_t **kvs = malloc((size_t)n * sizeof(*kvs));
	bool *want = malloc((size_t)n * sizeof(*want));
	int rc = -ENOMEM;
	if (pos == NULL || kvs == NULL || want == NULL)
		goto done;
	if ((rc = model_kv_new(m, n, MODEL_KV_F32, &kv)) < 0 ||
	    (rc = model_scratch_new(m, step, threads, &s)) < 0)
		goto done;
	for (int i = 0; i < n; i++) {
		pos[i] = i;
		kvs[i] = kv;
		want[i] = true;
	}
	for (int i = 0; i < n; i += step) {
		int k = n - i < step ? n - i : step;
		model_batch_t b = { .n = k, .tokens = ids + i, .pos = pos + i, .kv = kvs + i,
				    .logits_wanted = want, .logits = out + (size_t)i * V };
		if ((rc = model_forward(m, s, &b)) != k) {
			rc = rc < 0 ? rc : -EPROTO;
			goto done;
		}
	}
	rc = 0;
done:
	model_kv_destroy(&kv);
	model_scratch_destroy(&s);
	free(pos);
	free(kvs);
	free(want);
	return rc;
}

static void print_rows(const char *name, const float *x, int n, int V)
{
	printf("\"%s\":[", name);
	for (int i = 0; i < n; i++) {
		printf(i ? ",[" : "[");
		for (int v = 0; v < V; v++)
			printf(v ? ",%.9g" : "%.9g", (double)x[(size_t)i * V + v]);
		putchar(']');
	}
	putchar(']');
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: dump_logits MODEL.gguf ID,ID,...\n");
		return 2;
	}
	int32_t *ids = NULL;
	int n = 0;
	if (parse_ids(argv[2], &ids, &n) < 0) {
		fprintf(stderr, "dump_logits: bad token list '%s' (comma-separated ids)\n", argv[2]);
		return 2;
	}
	char err[512];
	model_t *m = NULL;
	float *batch = NULL, *step = NULL;
	int rc = model_load(argv[1], &m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "dump_logits: %s\n", err);
		goto fail;
	}
	int V = model_config(m)->vocab_size;
	if (n > model_config(m)->n_ctx) {
		fprintf(stderr, "dump_logits: %d tokens, past the model's context of %d\n", n,
			model_config(m)->n_ctx);
		goto fail;
	}
	batch = malloc((size_t)n * (size_t)V * sizeof(float));
	step = malloc((size_t)n * (size_t)V * sizeof(float));
	if (batch == NULL || step == NULL) {
		fprintf(stderr, "dump_logits: out of memory\n");
		goto fail;
	}
	if ((rc = run(m, ids, n, n, 2, batch)) < 0 || (rc = run(m, ids, n, 1, 1, step)) < 0) {
		fprintf(stderr, "dump_logits: model_forward: %s\n", strerror(-rc));
		goto fail;
	}
	printf("{\"vocab\":%d,", V);
	print_rows("batch", batch, n, V);
	putchar(',');
	print_rows("stepwise", step, n, V);
	printf("}\n");
	free(ids);
	free(batch);
	free(step);
	model_destroy(&m);
	return fflush(stdout) == 0 ? 0 : 1;
fail:
	free(ids);
	free(batch);
	free(step);
	model_destroy(&m);
	return 1;
}
