/* thru: node throughput for cost-per-token figures, from one of three
 * sources, always recorded with the figure:
 *
 *  - given: a number from a reference (e.g. TensorRT-LLM's table), typed in;
 *  - bench: a `margin-worker bench --json` output measured on the node,
 *    {"hardware":PROFILE,"machine":{"sgemm_gflops","bandwidth_gbs","threads"},
 *     "model":{...,"n_params"},
 *     "runs":[{"batch","prefill_tok_s","decode_tok_s","gflops","roofline_pct",
 *              "bandwidth_pct","peak_rss_mb"}]};
 *  - estimated: a roofline for hardware that is not here, from the
 *    profile's peak FLOP/s and memory bandwidth times efficiency factors
 *    measured here (thru_eff_from_bench, or machine.md's figures);
 *  - ledger: measured from a batch's calls in margind's ledger (their
 *    tokens over their engine time).
 *
 * Throughput is a measured float, so these figures are doubles; money stays
 * in integer micros (cost.h). Pure functions; any thread. */
#ifndef THRU_H
#define THRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwprof.h"
#include "thru_bench.h"

/* A node's throughput at 100% utilization. Two shapes:
 *  phases: prefill and decode rates, a call costs in/prefill + out/decode
 *          seconds of node time (what a bench measures);
 *  mix:    output tokens/s measured at a given in/out mix, input tokens
 *          following from the mix (how TensorRT-LLM's table reports). */
typedef struct thru {
	thru_source_t source;
	bool phases;
	double prefill_tok_s, decode_tok_s;	/* phases */
	double out_tok_s;			/* mix */
	char why[512];				/* where the figure comes from */
} thru_t;

typedef struct thru_eff {
	double flops;		/* achieved / peak FLOP/s, 0..1 */
	double bandwidth;	/* achieved / peak memory bandwidth, 0..1 */
	char why[256];
} thru_eff_t;

/* The run at `batch`, or with batch == 0 the run of highest decode_tok_s,
 * as a phases throughput. -ENOENT when there is no such run. */
int thru_from_bench(const thru_bench_t *b, uint32_t batch, thru_t *ret, char *err, size_t errlen);

const char *thru_source_name(thru_source_t s);	/* "given", "bench", "estimated", "ledger" */
/* The basis for people and what-ifs: "given", "measured" (bench, ledger)
 * or "estimate". */
const char *thru_basis_name(thru_source_t s);

/* Tokens per hour of a call mix (in, out tokens per call) at utilization
 * u (0 < u <= 1). -EDOM for non-positive inputs. */
int thru_tokens_per_hour(const thru_t *t, double in_per_call, double out_per_call, double u, double *ret_in,
			 double *ret_out);

/* Efficiency measured here: the best run's gflops / the profile's peak
 * fp32, and the smallest batch's weight traffic (decode_tok_s / batch *
 * params_per_token (else n_params) * bytes_per_param) / the profile's
 * mem_bandwidth. */
int thru_eff_from_bench(const thru_bench_t *b, const hwprof_t *here, double bytes_per_param, thru_eff_t *ret,
			char *err, size_t errlen);
/* The same factors from machine.md (2026-11-28, this 2-vCPU node): OpenBLAS
 * sgemm 208.9 of 234.8 GFLOP/s (0.89); batch-1 decode at 69 of the ~100
 * tok/s bandwidth ceiling (0.68). */
void thru_eff_machine_md(thru_eff_t *ret);
/* Roofline estimate on hw for a dense model of n_params weights of
 * bytes_per_param bytes, at decode batch `batch`:
 *   prefill tok/s = F*eff.flops / (2 n_params)
 *   decode  tok/s = batch / max(2 n_params batch / (F*eff.flops),
 *                               n_params bytes_per_param / (BW*eff.bandwidth))
 * F = the profile's fp16 peak when fp16, else fp32. Attention and KV-cache
 * traffic are left out (small at short contexts, machine.md 3), so this is
 * an upper bound. -EINVAL naming a missing peak. */
int thru_estimate(const hwprof_t *hw, bool fp16, uint64_t n_params, double bytes_per_param, uint32_t batch,
		  const thru_eff_t *eff, thru_t *ret, char *err, size_t errlen);

#endif
