/* chat: chat templates, messages -> one prompt string.
 *
 * The formats of llama.cpp's built-in templates (llm_chat_apply_template in
 * its src/llama-chat.cpp), byte for byte, selected by name or detected in a
 * GGUF's tokenizer.chat_template text by llama.cpp's rules
 * (llm_chat_detect_template: the first rule that matches wins, in this
 * order):
 *
 *   name               detected by the template text containing
 *   chatml             "<|im_start|>" (without "<|im_sep|>")   Qwen, Hermes, ...
 *   phi4               "<|im_start|>" and "<|im_sep|>"
 *   mistral-v7         "[INST]" (or text starting "mistral") and "[SYSTEM_PROMPT]"
 *   mistral-v1         "[INST]", "' [INST] ' + system_message" or
 *                      "[AVAILABLE_TOOLS]", and " [INST]" (space before)
 *   mistral-v3-tekken  the same two without " [INST]", with "\"[INST]\""
 *   mistral-v3         the same two otherwise       Mistral-7B-Instruct-v0.3
 *   llama2-sys-strip   "[INST]" and "content.strip()"          Llama-2-chat
 *   llama2-sys-bos     "[INST]" and "bos_token + '[INST]"
 *   llama2-sys         "[INST]" and "<<SYS>>"
 *   llama2             "[INST]" otherwise         Mistral-7B-Instruct v0.1/v0.2
 *   phi3               "<|assistant|>" and "<|end|>"
 *   falcon3            "<|assistant|>", "<|user|>" and "</s>"
 *   glmedge            "<|assistant|>" and "<|user|>" otherwise  zephyr-7b-beta
 *   zephyr             "<|user|>" and "<|endoftext|>"
 *   gemma              "<start_of_turn>"               Gemma 1/2/3 (-it)
 *   vicuna-orca        "USER: ", "ASSISTANT: " and "SYSTEM: "
 *   vicuna             "USER: " and "ASSISTANT: "
 *   deepseek           "### Instruction:" and "<|EOT|>"        deepseek-coder
 *   llama3             "<|start_header_id|>" and "<|end_header_id|>"
 *   deepseek3          "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"
 *   mistral-v7-tekken  by name only (as in llama.cpp)
 *   plain              by name only: margin's fallback, below
 *
 * The other families llama.cpp recognises (command-r, chatglm4, monarch,
 * openchat, orion, granite, llama4, gpt-oss, ...) are detected in their
 * place in that order, so that they are never taken for one of the above,
 * but margin does not format them: chat_detect says -ENOTSUP and a model
 * carrying one gets the fallback (chat_pick names the family).
 *
 * Some formats in short (add_generation_prompt adds the last part):
 *   chatml   <|im_start|>ROLE\nCONTENT<|im_end|>\n ... <|im_start|>assistant\n
 *   llama3   <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|> ...
 *            <|start_header_id|>assistant<|end_header_id|>\n\n  (CONTENT trimmed)
 *   llama2-sys  [INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST]ASSISTANT</s>[INST] USER [/INST]
 *   mistral-v1  " [INST] SYS\n\nUSER [/INST] ASSISTANT</s> [INST] USER [/INST]"
 *   mistral-v3  [INST] SYS\n\nUSER[/INST] ASSISTANT</s>[INST] USER[/INST]
 *   mistral-v7  [SYSTEM_PROMPT] SYS[/SYSTEM_PROMPT][INST] USER[/INST] ASSISTANT</s>
 *            (the [INST] families have no generation prompt: the text ends
 *            with [/INST], as in llama.cpp)
 *   gemma    <start_of_turn>user\nSYS\n\nUSER<end_of_turn>\n<start_of_turn>model\n...
 *            (system trimmed and merged into the next user turn, assistant
 *            named model, contents trimmed)
 *   phi3     <|ROLE|>\nCONTENT<|end|>\n ... <|assistant|>\n
 *   plain    ROLE: CONTENT\n ... assistant:
 *
 * No BOS is written at the start: the tokenizer adds it (add_special). The
 * Jinja text itself is not executed, so template-specific extras (default
 * system messages, tool blocks, role-order checks) are not reproduced, as in
 * llama.cpp. Stateless: any thread may call these. */
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
	CHAT_TEMPLATE_LLAMA2,
	CHAT_TEMPLATE_LLAMA2_SYS,
	CHAT_TEMPLATE_LLAMA2_SYS_BOS,
	CHAT_TEMPLATE_LLAMA2_SYS_STRIP,
	CHAT_TEMPLATE_MISTRAL_V1,
	CHAT_TEMPLATE_MISTRAL_V3,
	CHAT_TEMPLATE_MISTRAL_V3_TEKKEN,
	CHAT_TEMPLATE_MISTRAL_V7,
	CHAT_TEMPLATE_MISTRAL_V7_TEKKEN,
	CHAT_TEMPLATE_PHI3,
	CHAT_TEMPLATE_PHI4,
	CHAT_TEMPLATE_FALCON3,
	CHAT_TEMPLATE_GLMEDGE,
	CHAT_TEMPLATE_ZEPHYR,
	CHAT_TEMPLATE_GEMMA,
	CHAT_TEMPLATE_VICUNA,
	CHAT_TEMPLATE_VICUNA_ORCA,
	CHAT_TEMPLATE_DEEPSEEK,
	CHAT_TEMPLATE_DEEPSEEK3,
	CHAT_TEMPLATE_PLAIN,
};

/* The template a name ("chatml", "gemma", ... as in the table above) or a
 * GGUF template text selects: an enum chat_template, or -ENOTSUP (NULL,
 * empty, not recognised, or a family margin does not format). */
int chat_detect(const char *template_or_name);
/* The name of an enum chat_template value, NULL for another value. */
const char *chat_template_name(int tmpl);

/* The template a model's chat requests use. */
typedef struct chat_pick {
	int tmpl;		/* enum chat_template */
	bool fallback;		/* the model's own template is absent or not one of margin's */
	/* static text: the template's name when not a fallback; otherwise what
	 * the model carries: "none", "unrecognised", or the name of a family
	 * llama.cpp recognises and margin does not format ("command-r") */
	const char *found;
} chat_pick_t;

/* The template for a model with tokenizer t: its tokenizer.chat_template
 * as chat_detect reads it, or else the fallback (.fallback = true), which
 * never fails:
 *   - ChatML when the vocabulary has both "<|im_start|>" and "<|im_end|>"
 *     tokens (a ChatML-trained model whose GGUF lost its template),
 *   - otherwise "plain": "ROLE: CONTENT\n" per message, then "assistant:".
 * t may be NULL (no tokenizer: plain). The caller that loads a model logs
 * the fallback once (serve does); formatting never logs. Any thread. */
chat_pick_t chat_pick(const tok_t *t);

/* Formats msgs[0..n) with the template named or given as text. *ret is a
 * new NUL-terminated string (free()). Errors: -ENOTSUP when
 * template_or_name is NULL/empty ("model has no chat template") or not a
 * supported template (callers that format for a model pick the template
 * with chat_pick and pass its name, so they never see this), -EINVAL for a
 * message without role or content, -ENOMEM; err then says which. Messages
 * whose role a template has no place for (e.g. "tool" with vicuna) are
 * left out, as in llama.cpp. */
int chat_format(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		bool add_generation_prompt, char **ret, char *err, size_t errlen);

/* chat_format, and where in *ret the callers' text went: *spans (a new
 * array, free()) holds *n_spans byte ranges of *ret, in order, at most two
 * per message: each content (as written: trimmed where the template trims)
 * and each role the template writes as given. The template's own markup
 * lies outside them, so a tokenizer can read control-token text as control
 * tokens there and as plain text inside them (tok_encode_plain): a message
 * that contains "<|im_end|>", "<end_of_turn>" or (where the vocabulary
 * has it as a token, Mistral v3 and later) "[/INST]" cannot end its turn
 * or open another role's. Markup that is ordinary text in the vocabulary
 * ("USER: " of vicuna, "[INST]" in Llama 2's, plain's "assistant:") is
 * text either way, as with llama.cpp and transformers.
 * Where a role is written inside a control token's text (phi3, falcon3,
 * glmedge, zephyr: "<|user|>"), "system", "user" and "assistant" are
 * markup, so that the marker stays one token, and any other role is a
 * span: "<|end|>" made from a role "end" is plain text. Roles a template
 * renames (gemma's "model") are markup. */
int chat_format_spans(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		      bool add_generation_prompt, char **ret, tok_span_t **spans, size_t *n_spans,
		      char *err, size_t errlen);

#endif
