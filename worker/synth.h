/* synth: synthetic models from architecture presets — the throughput and
 * cost of a model shape without its weights.
 *
 * Weights are pseudo-random and deterministic: element i of tensor NAME is
 * a function of (SYNTH_SEED, hash(NAME), i) alone (splitmix64 finalizer of
 * a counter), so any tensor, or any rows of it, can be generated
 * independently and in any order — a 7B model is never held twice. Values
 * are uniform in [-a, a) with a = sqrt(3 / fan_in) (variance 1/fan_in, as a
 * real initialization, so activations stay near unit scale), norm weights
 * are 1 and biases uniform in [-0.1, 0.1). Two exceptions: the per-head q/k
 * norms of qwen3 are 1 + uniform[-0.5, 0.5) (so a test sees which weight
 * scales which dimension), and rope_freqs.weight holds Llama 3's frequency
 * factors computed from the preset's rope_scaling_factor and rope_orig_ctx
 * as llama.cpp's converter does.
 *
 * The vocabulary is SentencePiece-style, built in memory: <unk>, <s>, </s>
 * (ids 0, 1, 2), the 256 byte tokens <0x00>..<0xFF> (ids 3..258), "▁"
 * (259), then generated pieces: alternately "▁" + word and word, where word
 * runs a, b, ..., z, aa, ab, ... (bijective base 26); score -(id - 259). */
#ifndef SYNTH_H
#define SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "tok.h"

#define SYNTH_SEED 0x6d617267696e2d31ULL	/* "margin-1" */

typedef struct synth_preset {
	const char *name;
	const char *about;
	model_config_t cfg;
} synth_preset_t;

/* Presets: "tiny", "tiny-qwen2", "tiny-k" (rows of 256, for the K-quants),
 * "llama-110m", "qwen2-0.5b", "llama2-7b", "llama3-8b", "qwen2-7b", the test models of each later feature "llama3-tiny" (Llama 3
 * rope_freqs), "llama-linear-tiny" (linear RoPE scaling), "mistral-tiny"
 * (sliding window 8), "qwen3-tiny", and the shapes "qwen3-0.6b",
 * "llama3.2-1b", "mistral-7b". Static, borrowed. NULL if unknown. */
const synth_preset_t *synth_preset_find(const char *name);
size_t synth_n_presets(void);
const synth_preset_t *synth_preset_at(size_t i);

/* Rows [row0, row0 + n_rows) of tensor name (a model_tensor_specs() name
 * of cfg, shape [ne1 rows][ne0]) into dst[n_rows][ne0]. -EINVAL for a name
 * the configuration does not have. */
int synth_tensor_rows(const model_config_t *cfg, const char *name, uint64_t row0,
		      uint64_t n_rows, float *dst);

/* The synthetic vocabulary of cfg->vocab_size tokens (>= 260). Arrays are
 * owned by the synth_vocab_t. */
typedef struct synth_vocab {
	uint32_t n;
	char **tokens;		/* [n] NUL-terminated */
	float *scores;		/* [n] */
	int32_t *types;		/* [n] enum tok_type */
	char *pool;		/* storage of the strings */
} synth_vocab_t;
int synth_vocab_init(synth_vocab_t *v, uint32_t n_tokens);
void synth_vocab_done(synth_vocab_t *v);
/* A tokenizer over the synthetic vocabulary (BOS 1 added, EOS 2). */
int synth_tok_new(uint32_t n_tokens, tok_t **ret, char *err, size_t errlen);

/* Writes the preset (n_layers_override > 0: that many layers) as a GGUF v3
 * file with llama.cpp's key and tensor names, each tensor in the type the
 * mix gives it (quant.h quant_mix_parse names: "f32", "f16", "q8_0",
 * "q4_k_m", ...; quant_mix_type with the preset's GQA and tied output;
 * 1-D tensors F32) and general.file_type set to the mix's llama_ftype, as
 * llama-quantize would write the same weights. The weights are generated
 * and quantized piece by piece while the file is written: memory stays
 * under a few MiB whatever the preset. The file appears complete or not at
 * all (gguf_writer_write). -EINVAL for an unknown preset or mix, with err. */
int synth_write_gguf_mix(const char *preset, int n_layers_override, const char *mix,
			 const char *path, char *err, size_t errlen);
/* The same for type GGUF_TTYPE_F32, F16, BF16 or Q8_0 (the mix of that
 * name); -EINVAL for other types. */
int synth_write_gguf(const char *preset, int n_layers_override, uint32_t type,
		     const char *path, char *err, size_t errlen);

/* A synthetic model from an architecture preset: model_new_generated with
 * this generator. n_layers_override > 0 builds only that many layers
 * (benchmarks scale the rest). -EINVAL naming the presets for an unknown
 * one. *ret owned by the caller. */
int model_new_synth(const char *preset, int n_layers_override, model_t **ret,
		    char *err, size_t errlen);
int model_new_synth_opts(const char *preset, int n_layers_override, const model_opts_t *o,
			 model_t **ret, char *err, size_t errlen);

#endif
