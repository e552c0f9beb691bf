/* tok: tokenizers built from GGUF metadata (or from a vocabulary in memory,
 * for synthetic models).
 *
 *   tokenizer.ggml.model = "llama": SentencePiece style (scores, byte
 *     fallback <0xNN>, dummy-prefix space, BOS added by default)
 *   tokenizer.ggml.model = "gpt2": byte-level BPE (merges), with the
 *     pre-tokenizer named by tokenizer.ggml.pre ("llama-bpe", "qwen2",
 *     default gpt2-style), regexes through PCRE2 (Unicode properties).
 *
 * Conventions follow llama.cpp's (see shared/testdata/vocab/README.md):
 * BOS by vocabulary, user-defined tokens matched in plain text, no Unicode
 * normalization. A tok_t is immutable after creation: any thread may use it
 * concurrently. */
#ifndef TOK_H
#define TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tok tok_t;

enum tok_kind { TOK_KIND_SPM = 0, TOK_KIND_BPE = 1 };

/* token types, GGUF numbering */
enum tok_type {
	TOK_TYPE_UNDEFINED = 0,
	TOK_TYPE_NORMAL = 1,
	TOK_TYPE_UNKNOWN = 2,
	TOK_TYPE_CONTROL = 3,
	TOK_TYPE_USER_DEFINED = 4,
	TOK_TYPE_UNUSED = 5,
	TOK_TYPE_BYTE = 6,
};

/* A vocabulary in memory (all pointers borrowed for the duration of
 * tok_new; tok_new copies what it keeps). */
typedef struct tok_vocab {
	enum tok_kind kind;
	const char *pre;		/* BPE pre-tokenizer name, NULL = default */
	uint32_t n_tokens;
	const char *const *tokens;	/* [n_tokens] NUL-terminated */
	const float *scores;		/* [n_tokens] or NULL */
	const int32_t *types;		/* [n_tokens] enum tok_type, or NULL = normal */
	uint32_t n_merges;
	const char *const *merges;	/* [n_merges] "left right" (BPE) */
	int32_t bos, eos, unk, pad;	/* -1 = none */
	int add_bos;			/* 1, 0, or -1 = the vocabulary's default */
	int add_eos;
	const char *chat_template;	/* tokenizer.chat_template or NULL */
} tok_vocab_t;

/* *ret is owned by the caller (tok_destroy). -EINVAL for an inconsistent
 * vocabulary (special id outside it, ...), -ENOTSUP for an unknown
 * pre-tokenizer name; err says which. pre: "gpt2"/"default"/NULL,
 * "llama-bpe" (also "llama3", "llama-v3", "falcon3"), "qwen2" (also
 * "deepseek-r1-qwen"). */
int tok_new(const tok_vocab_t *v, tok_t **ret, char *err, size_t errlen);
/* Reads tokenizer.ggml.* (model, pre, tokens, scores, token_type, merges,
 * bos/eos/unknown/padding/eot/eom ids, add_bos_token, add_eos_token,
 * add_space_prefix) and tokenizer.chat_template from a GGUF; copies what it
 * keeps, so g may be closed afterwards. -EBADMSG with err naming the key
 * (missing or mistyped), -ENOTSUP for a tokenizer model or pre-tokenizer
 * not handled. Ids outside the vocabulary (4294967295 = none) keep
 * llama.cpp's defaults (SPM: bos 1, eos 2, unk 0; BPE: none). */
int tok_new_from_gguf(const gguf_t *g, tok_t **ret, char *err, size_t errlen);
void tok_destroy(tok_t **t);

enum tok_kind tok_kind(const tok_t *t);
uint32_t tok_n_vocab(const tok_t *t);
int32_t tok_bos(const tok_t *t);	/* -1 if none */
int32_t tok_eos(const tok_t *t);
bool tok_add_bos(const tok_t *t);	/* whether generation prompts get BOS */
/* End of generation: EOS, or another control token the vocabulary marks as
 * ending a turn (<|im_end|>, <|eot_id|>, ...). */
bool tok_is_eog(const tok_t *t, int32_t id);
/* Borrowed chat template from the GGUF or NULL. */
const char *tok_chat_template(const tok_t *t);

/* Encode text (len bytes, need not be NUL-terminated). add_special: prepend
 * BOS (and append EOS) as the vocabulary asks; parse_special: turn the text
 * of control tokens into those tokens. User-defined tokens are always
 * matched. *ret_ids is a new array (free()) of *ret_n ids. Invalid UTF-8
 * reads as U+FFFD in BPE (as in llama.cpp) and falls back to byte tokens in
 * SPM. -ENOMEM, or -EILSEQ where an SPM byte has neither a <0xNN> token nor
 * <unk> to stand for it. O(n log n) in len; any thread. */
int tok_encode(const tok_t *t, const char *text, size_t len, bool add_special,
	       bool parse_special, int32_t **ret_ids, size_t *ret_n);
/* A byte range of a text. */
typedef struct tok_span {
	size_t off, len;
} tok_span_t;

/* tok_encode with parse_special, except inside the n_plain byte ranges
 * plain[] of text: a control token's text there stays text (user-defined
 * tokens still match). Text outside the ranges, and text inside them that
 * holds no control-token text, encodes exactly as tok_encode would. For
 * prompts built from a template and callers' text (chat_format_spans).
 * -EINVAL for a range past len. */
int tok_encode_plain(const tok_t *t, const char *text, size_t len, bool add_special,
		     const tok_span_t *plain, size_t n_plain, int32_t **ret_ids, size_t *ret_n);

/* The bytes of one token as generation prints them: SPM '▁' -> ' ',
 * <0xNN> -> the byte, BPE byte-level chars -> bytes, control tokens -> ""
 * (unless special). Returns the byte length (may exceed len: then nothing
 * beyond len is written), or -EINVAL for a bad id. */
int tok_piece(const tok_t *t, int32_t id, bool special, char *buf, size_t len);

/* Concatenated pieces of ids; *ret is a new NUL-terminated string (free()). */
int tok_decode(const tok_t *t, const int32_t *ids, size_t n, bool special, char **ret, size_t *ret_len);

/* The token's text as stored in the vocabulary (borrowed), NULL if bad id. */
const char *tok_text(const tok_t *t, int32_t id);

/* The id whose stored text is exactly text[0..len), or -1. */
int32_t tok_find(const tok_t *t, const char *text, size_t len);
/* enum tok_type of id as the tokenizer uses it (llama.cpp's rule: a token
 * whose text marks an end of turn, e.g. <|im_end|>, counts as CONTROL), or
 * -EINVAL for a bad id. */
int tok_type(const tok_t *t, int32_t id);
/* The BPE pre-tokenizer in use: "gpt2", "llama-bpe" or "qwen2"; NULL for SPM. */
const char *tok_pre(const tok_t *t);

#endif
