/* thru_bench: see thru_bench.h. */
#include "thru_bench.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Optional number: 0 when absent; -EINVAL when present but not a number. */
static int opt_num(const json_t *o, const char *field, double *ret, const char *name, const char *where, char *err,
		   size_t errlen)
{
	const json_t *j = json_object_get(o, field);
	*ret = 0;
	if (j == NULL || json_is_null(j))
		return 0;
	if (!json_is_number(j) || !isfinite(json_number_value(j)) || json_number_value(j) < 0) {
		snprintf(err, errlen, "%s: %s.%s: expected a non-negative number", name, where, field);
		return -EINVAL;
	}
	*ret = json_number_value(j);
	return 0;
}

int thru_bench_parse(const char *name, const char *text, size_t len, thru_bench_t *ret, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(text, len, 0, &je);
	thru_bench_t *b = calloc(1, sizeof(*b));
	double v;
	int r = -EINVAL;
	if (b == NULL) {
		json_decref(root);
		return -ENOMEM;
	}
	if (root == NULL) {
		snprintf(err, errlen, "%s:%d:%d: %s", name, je.line, je.column, je.text);
		r = -EBADMSG;
		goto fail;
	}
	snprintf(b->origin, sizeof(b->origin), "%s", name);
	b->source = THRU_BENCH;
	if (!json_is_object(root)) {
		snprintf(err, errlen, "%s: expected a JSON object (margin-worker bench --json)", name);
		goto fail;
	}
	const json_t *hwj = json_object_get(root, "hardware");
	if (hwj != NULL && !json_is_null(hwj)) {
		if (!json_is_string(hwj) || json_string_length(hwj) >= sizeof(b->hardware)) {
			snprintf(err, errlen, "%s: hardware: expected a profile name (a string of at most %zu characters)",
				 name, sizeof(b->hardware) - 1);
			goto fail;
		}
		if (strcmp(json_string_value(hwj), "unknown") != 0)
			snprintf(b->hardware, sizeof(b->hardware), "%s", json_string_value(hwj));
	}
	const json_t *m = json_object_get(root, "machine");
	if (json_is_object(m)) {
		if ((r = opt_num(m, "sgemm_gflops", &b->sgemm_gflops, name, "machine", err, errlen)) < 0 ||
		    (r = opt_num(m, "bandwidth_gbs", &b->bandwidth_gbs, name, "machine", err, errlen)) < 0 ||
		    (r = opt_num(m, "threads", &v, name, "machine", err, errlen)) < 0)
			goto fail;
		b->threads = (uint32_t)v;
	}
	const json_t *mo = json_object_get(root, "model");
	if (json_is_object(mo)) {
		const json_t *s = json_object_get(mo, "name");
		if (!json_is_string(s))
			s = json_object_get(mo, "arch");
		if (json_is_string(s))
			snprintf(b->model, sizeof(b->model), "%s", json_string_value(s));
		if ((r = opt_num(mo, "n_params", &v, name, "model", err, errlen)) < 0)
			goto fail;
		b->n_params = (uint64_t)v;
		if ((r = opt_num(mo, "params_per_token", &v, name, "model", err, errlen)) < 0)
			goto fail;
		b->params_per_token = (uint64_t)v;
	}
	const json_t *runs = json_object_get(root, "runs");
	r = -EINVAL;
	if (!json_is_array(runs) || json_array_size(runs) == 0) {
		snprintf(err, errlen, "%s: runs: expected a non-empty array", name);
		goto fail;
	}
	if (json_array_size(runs) > THRU_MAX_RUNS) {
		snprintf(err, errlen, "%s: runs: more than %d", name, THRU_MAX_RUNS);
		goto fail;
	}
	size_t i;
	const json_t *run;
	json_array_foreach(runs, i, run) {
		char where[32];
		thru_run_t *x = &b->runs[i];
		snprintf(where, sizeof(where), "runs[%zu]", i);
		if (!json_is_object(run)) {
			snprintf(err, errlen, "%s: %s: expected an object", name, where);
			goto fail;
		}
		if ((r = opt_num(run, "batch", &v, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "prefill_tok_s", &x->prefill_tok_s, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "decode_tok_s", &x->decode_tok_s, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "gflops", &x->gflops, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "roofline_pct", &x->roofline_pct, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "bandwidth_pct", &x->bandwidth_pct, name, where, err, errlen)) < 0 ||
		    (r = opt_num(run, "peak_rss_mb", &x->peak_rss_mb, name, where, err, errlen)) < 0)
			goto fail;
		r = -EINVAL;
		if (v < 1 || v > UINT32_MAX) {
			snprintf(err, errlen, "%s: %s.batch: missing or not a positive integer", name, where);
			goto fail;
		}
		x->batch = (uint32_t)v;
		if (!(x->decode_tok_s > 0)) {
			snprintf(err, errlen, "%s: %s.decode_tok_s: missing or zero", name, where);
			goto fail;
		}
		b->n_runs = i + 1;
	}
	*ret = *b;
	r = 0;
fail:
	free(b);
	json_decref(root);
	return r;
}

int thru_bench_load(const char *path, thru_bench_t *ret, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int r = 0;
	for (;;) {
		if (len + 4096 > cap) {
			if (cap > 64u * 1024 * 1024) {
				snprintf(err, errlen, "%s: too large for a bench output", path);
				r = -EFBIG;
				goto out;
			}
			char *nb = realloc(buf, cap ? cap * 2 : 8192);
			if (nb == NULL) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	r = thru_bench_parse(path, buf ? buf : "", len, ret, err, errlen);
out:
	free(buf);
	fclose(f);
	return r;
}
