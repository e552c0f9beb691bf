/* ops_ref: the plain-C reference kernels, the oracle of the fast ones
 * (see ops.h). */
#include "ops.h"
#include "ops_priv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================= reference kernels ======================= */

void ops_ref_matmul(float *y, const float *x, const float *w, int n, int n_out, int n_in)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n_out; j++) {
			double s = 0.0;
			for (int k = 0; k < n_in; k++)
				s += (double)x[(size_t)i * n_in + k] * (double)w[(size_t)j * n_in + k];
			y[(size_t)i * n_out + j] = (float)s;
		}
}

void ops_ref_matmul_chain(float *y, const float *x, const float *w, int n, int n_out, int n_in)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n_out; j++) {
			float s = 0.0f;
			for (int k = 0; k < n_in; k++)
				s = fmaf(x[(size_t)i * n_in + k], w[(size_t)j * n_in + k], s);
			y[(size_t)i * n_out + j] = s;
		}
}

void ops_ref_rmsnorm(float *y, const float *x, const float *g, int dim, float eps)
{
	double ss = 0.0;
	for (int i = 0; i < dim; i++)
		ss += (double)x[i] * x[i];
	double s = 1.0 / sqrt(ss / dim + eps);
	for (int i = 0; i < dim; i++)
		y[i] = (float)(x[i] * s * g[i]);
}

void ops_ref_rope(float *x, int n_heads, int head_dim, int rope_dim, bool neox, int pos, float base,
		  float freq_scale, const float *ff)
{
	int half = rope_dim / 2;
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (size_t)h * head_dim;
		for (int i = 0; i < half; i++) {
			/* written out again, not rope_angle: an oracle of its own */
			double a = pos * (double)freq_scale * pow((double)base, -2.0 * i / rope_dim);
			if (ff != NULL)
				a /= ff[i];
			int ia = neox ? i : 2 * i;
			int ib = neox ? i + half : 2 * i + 1;
			double x0 = v[ia], x1 = v[ib];
			v[ia] = (float)(x0 * cos(a) - x1 * sin(a));
			v[ib] = (float)(x0 * sin(a) + x1 * cos(a));
		}
	}
}

void ops_ref_softmax(float *x, int n)
{
	double mx = x[0], sum = 0.0;
	for (int i = 1; i < n; i++)
		if (x[i] > mx)
			mx = x[i];
	for (int i = 0; i < n; i++)
		sum += exp(x[i] - mx);
	for (int i = 0; i < n; i++)
		x[i] = (float)(exp(x[i] - mx) / sum);
}

void ops_ref_swiglu(float *h, const float *g, const float *u, int n)
{
	for (int i = 0; i < n; i++) {
		double v = g[i];
		h[i] = (float)(v / (1.0 + exp(-v)) * u[i]);
	}
}

void ops_ref_attention(const ops_attn_t *a, const float *q, size_t ldq, int pos0, int n_q,
		       int g0, int g1, float *out, size_t ldo)
{
	int hd = a->head_dim;
	int group = a->n_heads / a->n_kv_heads;
	int T = kv_type(a);
	size_t esz = kv_esz(T);
	const char *kc, *vc;
	kv_bases(a, T, &kc, &vc);
	for (int t = 0; t < n_q; t++) {
		int lo = window_start(a, pos0 + t), n_kv = pos0 + t + 1 - lo;
		for (int h = g0 * group; h < g1 * group; h++) {
			const float *qh = q + (size_t)t * ldq + (size_t)h * hd;
			size_t hoff = (size_t)(h / group) * a->head_stride + (size_t)lo * a->row_stride;
			double mx = -INFINITY, sum = 0.0;
			double *s = malloc((size_t)n_kv * sizeof(double));
			if (s == NULL)
				return;
			bool half = T == KV_F16 && a->half_math;
			float qr[512];
			if (half) {
				round_half(qr, qh, hd);
				qh = qr;
			}
			for (int p = 0; p < n_kv; p++) {
				double d = 0.0;
				for (int i = 0; i < hd; i++)
					d += (double)qh[i] * kv_elem(kc + (hoff + (size_t)p * a->row_stride) * esz, i, hd, T);
				s[p] = d / sqrt((double)hd);
				if (s[p] > mx)
					mx = s[p];
			}
			for (int p = 0; p < n_kv; p++) {
				s[p] = exp(s[p] - mx);
				sum += s[p];
			}
			if (half) {	/* normalized probabilities as halves */
				for (int p = 0; p < n_kv; p++) {
					float pr = (float)(s[p] / sum);
					round_half(&pr, &pr, 1);
					s[p] = pr;
				}
				sum = 1.0;
			}
			for (int i = 0; i < hd; i++) {
				double o = 0.0;
				for (int p = 0; p < n_kv; p++)
					o += s[p] * kv_elem(vc + (hoff + (size_t)p * a->row_stride) * esz, i, hd, T);
				out[(size_t)t * ldo + (size_t)h * hd + i] = (float)(o / sum);
			}
			free(s);
		}
	}
}
