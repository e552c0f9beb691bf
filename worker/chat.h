/* chat: chat templates, messages -> one prompt string.
 *
 * Two formats, as llama.cpp's built-in templates write them
 * (llm_chat_apply_template), selected by name or detected in a GGUF's
 * tokenizer.chat_template text the way llama.cpp detects them:
 *
 *   ChatML  ("chatml"; a template containing "<|im_start|>"), e.g. Qwen2:
 *     <|im_start|>ROLE\nCONTENT<|im_end|>\n ... then <|im_start|>assistant\n
 *   llama-3 ("llama3"; "<|start_header_id|>" and "<|end_header_id|>"):
 *     <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> ... then
 *     <|start_header_id|>assistant<|end_header_id|>\n\n
 *     (content trimmed of surrounding whitespace, as the Llama 3 template
 *     does; no <|begin_of_text|>: the tokenizer adds BOS)
 *
 * The Jinja text itself is not executed, so template-specific extras (e.g.
 * Qwen1.5's default system message) are not reproduced, as in llama.cpp.
 * The caller tokenizes the result with add_special = true, parse_special =
 * true. Stateless: any thread may call these. */
#ifndef CHAT_H
#define CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "tok.h"

typedef struct chat_msg {
	const char *role;	/* "system", "user", "assistant", ... */
	const char *content;
} chat_msg_t;

enum chat_template {
	CHAT_TEMPLATE_CHATML = 1,
	CHAT_TEMPLATE_LLAMA3 = 2,
};

/* The template a name ("chatml", "llama3") or a GGUF template text selects:
 * an enum chat_template, or -ENOTSUP (NULL, empty, or not recognised). */
int chat_detect(const char *template_or_name);
/* "chatml", "llama3", or NULL for another value. */
const char *chat_template_name(int tmpl);

/* Formats msgs[0..n) with the template named or given as text. *ret is a
 * new NUL-terminated string (free()). Errors: -ENOTSUP when
 * template_or_name is NULL/empty ("model has no chat template") or not a
 * supported template, -EINVAL for a message without role or content,
 * -ENOMEM; err then says which. */
int chat_format(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		bool add_generation_prompt, char **ret, char *err, size_t errlen);

/* chat_format, and where in *ret the callers' text went: *spans (a new
 * array, free()) holds *n_spans byte ranges of *ret, one per
 * role and per content. The template's own markup lies outside them, so a
 * tokenizer can read control-token text as control tokens there and as
 * plain text inside them (tok_encode_plain): a message that contains
 * "<|im_end|>" cannot end its turn or open another role's. */
int chat_format_spans(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		      bool add_generation_prompt, char **ret, tok_span_t **spans, size_t *n_spans,
		      char *err, size_t errlen);

#endif
