/* speed: how fast other hardware serves the same calls, for what-ifs.
 *
 * A what-if prices calls on a target profile. Its node time is the booked
 * time divided by the speed ratio
 *
 *   ratio = booked seconds per call / target seconds per call
 *
 * at the batch's own call mix (mean prompt and completion tokens per call):
 *
 *  - booked: measured by the ledger, the calls' busy time over their count;
 *  - target: in / prefill_tok_s + out / decode_tok_s of the target's
 *    throughput for the model's shape, from, in this order:
 *      1. a bench given for the target (`--bench FILE.json`): "measured";
 *      2. a bench attached to the target profile (`bench = ...`) of the
 *         same model shape: "measured";
 *      3. a roofline estimate (thru_estimate) on the target profile's peaks
 *         with efficiency factors measured here: "estimate".
 *
 * The model's shape. A bench states n_params and params_per_token; a ledger
 * states the model's name and each call's FLOPs, and a forward pass costs
 * about 2 FLOPs per weight read, so params per token ~ flops / (2 x
 * tokens) (attention adds a little at long contexts: an upper bound).
 * Same shape (speed_shape_match): the same model name, or params_per_token
 * within 1% (and n_params within 1% when both state it).
 *
 * Estimates use the profile's fp16 peak and 2 bytes per weight when it
 * states one (accelerators serve in fp16/bf16), else fp32 and 4 bytes; the
 * weights read per token are params_per_token (else n_params); the decode
 * batch is the one asked for, else the bench run's being compared, else
 * SPEED_DEFAULT_BATCH. Attention, KV traffic and communication are left
 * out: an upper bound on speed.
 *
 * Memory (speed_mem_t). An estimate checks the batch against the target's
 * memory_bytes with plan.h's fit when the model's full shape can be had:
 * the model's name is a preset (shape.h) whose parameters agree with the
 * shape's within 1%, weights in f16 (fp16 peak) or f32. Then, at a call
 * mix of in + out tokens (the what-if's batch mix), the default batch is
 * capped at the largest that fits (weights + batch x KV at in + out
 * tokens), a batch asked for must fit, and a model whose weights alone do
 * not fit is an error (-ENOSPC, weights vs memory). Without a call mix
 * (charts, a bench's figures) only the weights are checked. A shape that
 * cannot be had (a name that is no preset; the ledger states only the
 * model's name and FLOPs) or a profile without memory_bytes: the batch is
 * kept and the basis says "memory not checked".
 *
 * Pure functions (they read attached bench files); any thread. */
#ifndef SPEED_H
#define SPEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwprof.h"
#include "ledger.h"
#include "plan.h"
#include "shape.h"
#include "thru.h"

#define SPEED_DEFAULT_BATCH 32		/* decode batch of an estimate when none is known */
#define SPEED_SHAPE_TOLERANCE 0.01	/* same shape: within 1% */

typedef struct speed_shape {
	char model[96];			/* "" when unknown */
	uint64_t n_params;		/* 0 when unknown */
	uint64_t params_per_token;	/* weights read per token; 0 when unknown */
	bool from_flops;		/* params_per_token derived from the ledger's FLOPs */
} speed_shape_t;

/* The shape of a bench's model; of a planned model (shape.h). */
void speed_shape_from_bench(const thru_bench_t *b, speed_shape_t *ret);
void speed_shape_from_model(const shape_t *m, speed_shape_t *ret);
/* The shape of a batch's model from its ledger rows: the model name of the
 * rows (-EINVAL when they name several) and flops / (2 x tokens) over the
 * rows with FLOPs. -EINVAL when no row has both. */
int speed_shape_from_rows(const ledger_row_t *rows, size_t n, speed_shape_t *ret, char *err, size_t errlen);
bool speed_shape_match(const speed_shape_t *s, const thru_bench_t *b);
/* "llama2-7b (6.61e+09 params per token)". Returns buf. */
char *speed_shape_describe(const speed_shape_t *s, char *buf, size_t len);

/* Was bench b measured on profile hw? By its "hardware" field when it has
 * one; else by its machine section: sgemm GFLOP/s at most hw's fp32 peak
 * and above a tenth of it. *why says which. Unknown (no field, no sgemm
 * figure or no fp32 peak): true, saying so. */
bool speed_bench_on(const thru_bench_t *b, const hwprof_t *hw, char *why, size_t whylen);

/* The first bench attached to hw of shape: 1 with it in *ret, 0 when
 * none is, or a bench file's error (naming the profile). */
int speed_attached_bench(const hwprof_t *hw, const speed_shape_t *shape, thru_bench_t *ret, char *err,
			 size_t errlen);

/* The memory check of an estimate (see the header comment). */
typedef struct speed_mem {
	bool checked;			/* the KV cache was sized: fit holds */
	plan_fit_t fit;
	uint32_t batch;			/* the estimate's decode batch */
	char why[512];			/* "decode batch 32 (...): fits ..." or "... memory not checked: ..." */
} speed_mem_t;

/* The full shape of s on hw, for the memory check: 1 with it in *ret, 0
 * with the reason in why. */
int speed_model_shape(const speed_shape_t *s, const hwprof_t *hw, shape_t *ret, char *why, size_t whylen);

/* The target's throughput for shape at decode batch `batch` (0: the
 * bench's best run, or SPEED_DEFAULT_BATCH capped by memory for an
 * estimate): bench (the target's, given) when not NULL, else the attached
 * bench of the shape, else an estimate with eff (NULL: machine.md's
 * factors) checked against memory at in + out tokens per call (out <= 0:
 * unknown, weights only). ret->source is THRU_BENCH or THRU_ESTIMATED;
 * ret->why names the file or the roofline and the memory check; mem (may
 * be NULL) gets the check (mem->why "" for a bench). -ENOENT naming the
 * batch when a bench has no run at it; -ENOSPC when the model does not fit
 * the target; the estimate's -EINVAL naming a missing peak; a bench file's
 * errors. */
int speed_target_thru(const hwprof_t *hw, const speed_shape_t *shape, const thru_bench_t *bench, uint32_t batch,
		      double in, double out, const thru_eff_t *eff, thru_t *ret, speed_mem_t *mem, char *err,
		      size_t errlen);

/* A bench for hw of b's model: the attached bench of b's shape, or one
 * estimated at each of b's batch sizes (source THRU_ESTIMATED; origin says
 * so; the weights checked against memory, -ENOSPC when they do not fit).
 * For charts of another machine than b's. */
int speed_target_bench(const hwprof_t *hw, const thru_bench_t *b, const thru_eff_t *eff, thru_bench_t *ret,
		       char *err, size_t errlen);

/* A what-if of rows (one batch's calls, booked on one or more profiles) on
 * target: the speed ratio (target / booked), its basis ("measured" or
 * "estimate", static) and one line saying what it was computed from, and
 * the target's throughput at the batch's mix (for charts and the price-war
 * check). bench, batch, eff as speed_target_thru, at the rows' mix; why
 * ends with the estimate's memory check. -EINVAL when the rows have no
 * engine time or no shape; -ENOSPC when the model does not fit target. */
typedef struct speed_whatif {
	double ratio;			/* target speed / booked speed; busy and idle times divide by it */
	meter_q_t time_scale;		/* 1 / ratio, exactly, with ratio rounded to 6 significant digits */
	const char *basis;		/* "measured" or "estimate" */
	char why[1024];
	thru_t target;			/* the target's throughput */
	speed_shape_t shape;
	speed_mem_t mem;		/* an estimate's memory check */
	double in_per_call, out_per_call;	/* the batch's mix */
	double booked_s_per_call, target_s_per_call;
} speed_whatif_t;

int speed_whatif(const ledger_row_t *rows, size_t n, const hwprof_t *target, const thru_bench_t *bench,
		 uint32_t batch, const thru_eff_t *eff, speed_whatif_t *ret, char *err, size_t errlen);

/* Throughput figures of one machine used for another, replaced by the
 * other's (marginctl economics). Each leaves its input as it is when it
 * was measured on hw, else replaces it with hw's for the same model:
 *  - bench_elsewhere: *th was taken from bench b at decode batch `batch`
 *    (0: its best run); becomes hw's at that batch (speed_target_thru);
 *  - ledger_elsewhere: *th was measured from rows (thru source ledger);
 *    becomes hw's at the rows' mix when they ran on another profile;
 *  - chart_bench: *b becomes speed_target_bench's for hw; returns 1 then
 *    (0: left), with a line for people in note.
 * The new why says what was replaced and why. Their errors. */
int speed_bench_elsewhere(const thru_bench_t *b, const hwprof_t *hw, uint32_t batch, const thru_eff_t *eff,
			  thru_t *th, char *err, size_t errlen);
int speed_ledger_elsewhere(const ledger_row_t *rows, size_t n, const hwprof_t *hw, uint32_t batch,
			   const thru_eff_t *eff, thru_t *th, char *err, size_t errlen);
int speed_chart_bench(thru_bench_t *b, const hwprof_t *hw, const thru_eff_t *eff, char *note, size_t notelen,
		      char *err, size_t errlen);

/* Efficiency measured here: thru_eff_from_bench of b, a bench of this
 * machine, against `here`, its profile. The bytes a weight took in the run
 * come from the bench's own figures (bandwidth_pct of its smallest batch:
 * weight bytes streamed / its read bandwidth), else 4 (f32, margin-worker's
 * default matrices), said in ret->why. Its errors (a missing peak or
 * figure). */
int speed_eff_from_bench(const thru_bench_t *b, const hwprof_t *here, thru_eff_t *ret, char *err, size_t errlen);

/* A speed typed in (--speed X): time_scale 1/X, basis "given". -EINVAL for
 * anything but a positive decimal. */
int speed_given(const char *text, speed_whatif_t *ret, char *err, size_t errlen);

#endif
