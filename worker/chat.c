/* chat: see chat.h.
 *
 * Detection and formats follow llama.cpp's src/llama-chat.cpp (the 2025
 * version with mistral-v7-tekken, gpt-oss and seed_oss); they are written
 * here as tables of markup around the callers' text, so that every piece of
 * callers' text is appended in one place that records its span. */
#include "chat.h"

#include "lib/mg_err.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- output: the prompt and the spans of callers' text ---------------- */

struct out {
	char *s;		/* owned until handed to the caller */
	size_t len, cap;
	tok_span_t *spans;	/* owned; NULL when the caller wants none */
	size_t n_spans;
	int rc;			/* the first error; appends after it do nothing */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->rc < 0)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t nc = o->cap ? o->cap : 256;
		while (nc < o->len + n + 1)
			nc *= 2;
		char *ns = realloc(o->s, nc);
		if (ns == NULL) {
			o->rc = -ENOMEM;
			return;
		}
		o->s = ns;
		o->cap = nc;
	}
	memcpy(o->s + o->len, s, n);
	o->len += n;
	o->s[o->len] = '\0';
}

/* The template's own markup. */
static void lit(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* Jinja's |trim and llama.cpp's trim(): ASCII whitespace at both ends. */
static void trimmed(const char **s, size_t *n)
{
	while (*n > 0 && isspace((unsigned char)**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
		(*n)--;
}

/* Callers' text (trimmed if asked), recorded as a span. The spans array
 * has room for two per message, and no template writes more. */
static void text(struct out *o, const char *s, bool trim)
{
	size_t n = strlen(s), at = o->len;
	if (trim)
		trimmed(&s, &n);
	put(o, s, n);
	if (o->rc == 0 && o->spans != NULL)
		o->spans[o->n_spans++] = (tok_span_t){ at, n };
}

static bool is(const char *role, const char *name)
{
	return strcmp(role, name) == 0;
}

/* ---- the formats ---------------------------------------------------------- */

/* Turns with the role written out: pre ROLE mid CONTENT post, then gen.
 * role_in_marker: pre and mid make one control token around the role
 * ("<|" "user" "|>"), so the roles the model knows are markup and any
 * other role is plain text (see chat.h). */
struct turns {
	const char *pre, *mid, *post, *gen;
	bool trim;
	bool role_in_marker;
};

static void fmt_turns(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen)
{
	const struct turns *t = arg;
	for (size_t i = 0; i < n; i++) {
		lit(o, t->pre);
		const char *r = m[i].role;
		if (t->role_in_marker && (is(r, "system") || is(r, "user") || is(r, "assistant")))
			lit(o, r);
		else
			text(o, r, false);
		lit(o, t->mid);
		text(o, m[i].content, t->trim);
		lit(o, t->post);
	}
	if (gen)
		lit(o, t->gen);
}

/* TURNS(pre, mid, post, gen[, .field = value...]): the optional fields
 * ride in __VA_ARGS__ with gen, which is never empty (ISO C). */
#define TURNS(p, m, e, ...) { .pre = p, .mid = m, .post = e, .gen = __VA_ARGS__ }
static const struct turns chatml = TURNS("<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n");
static const struct turns phi4 = TURNS("<|im_start|>", "<|im_sep|>", "<|im_end|>",
				       "<|im_start|>assistant<|im_sep|>");
static const struct turns llama3 = TURNS("<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
					 "<|start_header_id|>assistant<|end_header_id|>\n\n", .trim = true);
static const struct turns phi3 = TURNS("<|", "|>\n", "<|end|>\n", "<|assistant|>\n", .role_in_marker = true);
static const struct turns falcon3 = TURNS("<|", "|>\n", "\n", "<|assistant|>\n", .role_in_marker = true);
static const struct turns glmedge = TURNS("<|", "|>\n", "", "<|assistant|>", .role_in_marker = true);
static const struct turns zephyr = TURNS("<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n",
					 .role_in_marker = true);
static const struct turns plain = TURNS("", ": ", "\n", "assistant:");
#undef TURNS

/* Turns marked by role, the role itself not written: pre[k] CONTENT post[k]
 * for k = system, user, assistant; other roles are left out, or written as
 * assistant turns (other_as_assistant). gen NULL: no generation prompt. */
enum { R_SYSTEM, R_USER, R_ASSISTANT };

struct by_role {
	const char *pre[3], *post[3];
	const char *gen;
	bool other_as_assistant;
};

static void fmt_by_role(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen)
{
	const struct by_role *t = arg;
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		int k = is(r, "system") ? R_SYSTEM : is(r, "user") ? R_USER
			: is(r, "assistant") || t->other_as_assistant ? R_ASSISTANT : -1;
		if (k < 0)
			continue;
		lit(o, t->pre[k]);
		text(o, m[i].content, false);
		lit(o, t->post[k]);
	}
	if (gen && t->gen != NULL)
		lit(o, t->gen);
}

static const struct by_role vicuna = {
	{ "", "USER: ", "ASSISTANT: " }, { "\n\n", "\n", "</s>\n" }, "ASSISTANT:", false };
static const struct by_role vicuna_orca = {
	{ "SYSTEM: ", "USER: ", "ASSISTANT: " }, { "\n", "\n", "</s>\n" }, "ASSISTANT:", false };
static const struct by_role deepseek = {
	{ "", "### Instruction:\n", "### Response:\n" }, { "", "\n", "\n<|EOT|>\n" }, "### Response:\n", false };
static const struct by_role deepseek3 = {
	{ "", "<｜User｜>", "<｜Assistant｜>" }, { "\n\n", "", "<｜end▁of▁sentence｜>" }, "<｜Assistant｜>", false };
static const struct by_role mistral_v7 = {
	{ "[SYSTEM_PROMPT] ", "[INST] ", " " }, { "[/SYSTEM_PROMPT]", "[/INST]", "</s>" }, NULL, true };
static const struct by_role mistral_v7_tekken = {
	{ "[SYSTEM_PROMPT]", "[INST]", "" }, { "[/SYSTEM_PROMPT]", "[/INST]", "</s>" }, NULL, true };

/* Llama 2: "[INST] " opens the first turn (the tokenizer adds BOS), an
 * assistant's "</s>" closes one, and the next message opens another
 * ("<s>[INST] " with bos). A system message goes inside the turn, between
 * <<SYS>> markers (sys) or followed by "\n"; users end with " [/INST]".
 * strip: every content trimmed. No generation prompt. */
struct llama2 {
	bool sys, bos, strip;
};

static void fmt_llama2(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen)
{
	const struct llama2 *t = arg;
	bool inside = true;
	(void)gen;
	lit(o, "[INST] ");
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		if (!inside) {
			inside = true;
			lit(o, t->bos ? "<s>[INST] " : "[INST] ");
		}
		if (is(r, "system")) {
			lit(o, t->sys ? "<<SYS>>\n" : "");
			text(o, m[i].content, t->strip);
			lit(o, t->sys ? "\n<</SYS>>\n\n" : "\n");
		} else if (is(r, "user")) {
			text(o, m[i].content, t->strip);
			lit(o, " [/INST]");
		} else {
			text(o, m[i].content, t->strip);
			lit(o, "</s>");
			inside = false;
		}
	}
}

static const struct llama2 llama2 = { false, false, false };
static const struct llama2 llama2_sys = { true, false, false };
static const struct llama2 llama2_sys_bos = { true, true, false };
static const struct llama2 llama2_sys_strip = { true, false, true };

/* Mistral's own v1/v3 templates: lead "[INST]" trail opens a turn, a
 * system message is followed by "\n\n" inside it, a user's ends with
 * lead "[/INST]", an assistant's is trail CONTENT "</s>" (trimmed in v3)
 * and closes the turn. No generation prompt. */
struct mistral {
	const char *lead, *trail;
	bool trim_assistant;
};

static void fmt_mistral(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen)
{
	const struct mistral *t = arg;
	bool inside = false;
	(void)gen;
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		if (!inside) {
			lit(o, t->lead);
			lit(o, "[INST]");
			lit(o, t->trail);
			inside = true;
		}
		if (is(r, "system")) {
			text(o, m[i].content, false);
			lit(o, "\n\n");
		} else if (is(r, "user")) {
			text(o, m[i].content, false);
			lit(o, t->lead);
			lit(o, "[/INST]");
		} else {
			lit(o, t->trail);
			text(o, m[i].content, t->trim_assistant);
			lit(o, "</s>");
			inside = false;
		}
	}
}

static const struct mistral mistral_v1 = { " ", " ", false };
static const struct mistral mistral_v3 = { "", " ", true };
static const struct mistral mistral_v3_tekken = { "", "", false };

/* Whether s is empty once trimmed. */
static bool blank(const char *s)
{
	size_t n = strlen(s);
	trimmed(&s, &n);
	return n == 0;
}

/* Gemma has no system turn: system contents (trimmed, concatenated) wait
 * for the next turn that is not the model's and open it, followed by
 * "\n\n". "assistant" is called "model"; contents are trimmed. */
static void fmt_gemma(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen)
{
	size_t sys_from = 0;	/* system messages in [sys_from, i) are waiting */
	(void)arg;
	for (size_t i = 0; i < n; i++) {
		const char *r = m[i].role;
		if (is(r, "system"))
			continue;
		bool model = is(r, "assistant") || is(r, "model");
		lit(o, "<start_of_turn>");
		if (is(r, "assistant"))
			lit(o, "model");
		else
			text(o, r, false);
		lit(o, "\n");
		if (!model) {
			bool waiting = false;
			for (size_t k = sys_from; k < i && !waiting; k++)
				waiting = is(m[k].role, "system") && !blank(m[k].content);
			for (size_t k = sys_from; k < i && waiting; k++)
				if (is(m[k].role, "system"))
					text(o, m[k].content, true);
			if (waiting)
				lit(o, "\n\n");
			sys_from = i + 1;
		}
		text(o, m[i].content, true);
		lit(o, "<end_of_turn>\n");
	}
	if (gen)
		lit(o, "<start_of_turn>model\n");
}

/* ---- names and detection ------------------------------------------------- */

typedef void format_fn(struct out *o, const void *arg, const chat_msg_t *m, size_t n, bool gen);

static const struct {
	const char *name;	/* llama.cpp's name for it */
	enum chat_template tmpl;
	format_fn *format;
	const void *arg;
} templates[] = {
	{ "chatml", CHAT_TEMPLATE_CHATML, fmt_turns, &chatml },
	{ "llama3", CHAT_TEMPLATE_LLAMA3, fmt_turns, &llama3 },
	{ "llama2", CHAT_TEMPLATE_LLAMA2, fmt_llama2, &llama2 },
	{ "llama2-sys", CHAT_TEMPLATE_LLAMA2_SYS, fmt_llama2, &llama2_sys },
	{ "llama2-sys-bos", CHAT_TEMPLATE_LLAMA2_SYS_BOS, fmt_llama2, &llama2_sys_bos },
	{ "llama2-sys-strip", CHAT_TEMPLATE_LLAMA2_SYS_STRIP, fmt_llama2, &llama2_sys_strip },
	{ "mistral-v1", CHAT_TEMPLATE_MISTRAL_V1, fmt_mistral, &mistral_v1 },
	{ "mistral-v3", CHAT_TEMPLATE_MISTRAL_V3, fmt_mistral, &mistral_v3 },
	{ "mistral-v3-tekken", CHAT_TEMPLATE_MISTRAL_V3_TEKKEN, fmt_mistral, &mistral_v3_tekken },
	{ "mistral-v7", CHAT_TEMPLATE_MISTRAL_V7, fmt_by_role, &mistral_v7 },
	{ "mistral-v7-tekken", CHAT_TEMPLATE_MISTRAL_V7_TEKKEN, fmt_by_role, &mistral_v7_tekken },
	{ "phi3", CHAT_TEMPLATE_PHI3, fmt_turns, &phi3 },
	{ "phi4", CHAT_TEMPLATE_PHI4, fmt_turns, &phi4 },
	{ "falcon3", CHAT_TEMPLATE_FALCON3, fmt_turns, &falcon3 },
	{ "glmedge", CHAT_TEMPLATE_GLMEDGE, fmt_turns, &glmedge },
	{ "zephyr", CHAT_TEMPLATE_ZEPHYR, fmt_turns, &zephyr },
	{ "gemma", CHAT_TEMPLATE_GEMMA, fmt_gemma, NULL },
	{ "vicuna", CHAT_TEMPLATE_VICUNA, fmt_by_role, &vicuna },
	{ "vicuna-orca", CHAT_TEMPLATE_VICUNA_ORCA, fmt_by_role, &vicuna_orca },
	{ "deepseek", CHAT_TEMPLATE_DEEPSEEK, fmt_by_role, &deepseek },
	{ "deepseek3", CHAT_TEMPLATE_DEEPSEEK3, fmt_by_role, &deepseek3 },
	{ "plain", CHAT_TEMPLATE_PLAIN, fmt_turns, &plain },
};

#define N_TEMPLATES (sizeof(templates) / sizeof(templates[0]))

static int by_name(const char *name)
{
	for (size_t i = 0; i < N_TEMPLATES; i++)
		if (strcmp(name, templates[i].name) == 0)
			return (int)i;
	return -1;
}

static bool has(const char *s, const char *needle)
{
	return strstr(s, needle) != NULL;
}

/* The families llama.cpp tells apart by plain substrings, after ChatML and
 * the [INST] family, in its order: the first rule whose needles all occur
 * names the template (a variant's rule comes before its general one). */
static const struct {
	const char *needle[4];
	const char *name;
} rules[] = {
	{ { "<|assistant|>", "<|end|>" }, "phi3" },
	{ { "[gMASK]<sop>" }, "chatglm4" },
	{ { "<|assistant|>", "<|user|>", "</s>" }, "falcon3" },
	{ { "<|assistant|>", "<|user|>" }, "glmedge" },
	{ { "<|{{ item['role'] }}|>", "<|begin_of_image|>" }, "glmedge" },
	{ { "<|user|>", "<|endoftext|>" }, "zephyr" },
	{ { "bos_token + message['role']" }, "monarch" },
	{ { "<start_of_turn>" }, "gemma" },
	{ { "'\\n\\nAssistant: ' + eos_token" }, "orion" },
	{ { "GPT4 Correct " }, "openchat" },
	{ { "USER: ", "ASSISTANT: ", "SYSTEM: " }, "vicuna-orca" },
	{ { "USER: ", "ASSISTANT: " }, "vicuna" },
	{ { "### Instruction:", "<|EOT|>" }, "deepseek" },
	{ { "<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>" }, "command-r" },
	{ { "<|start_header_id|>", "<|end_header_id|>" }, "llama3" },
	{ { "[gMASK]sop" }, "chatglm3" },
	{ { "<用户>" }, "minicpm" },
	{ { "'Assistant: ' + message['content'] + eos_token" }, "deepseek2" },
	{ { "<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>" }, "deepseek3" },
	{ { "[|system|]", "[|assistant|]", "[|endofturn|]", "[|tool|]" }, "exaone4" },
	{ { "[|system|]", "[|assistant|]", "[|endofturn|]" }, "exaone3" },
	{ { "rwkv-world" }, "rwkv-world" },
	{ { "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}" }, "rwkv-world" },
	{ { "<|start_of_role|>" }, "granite" },
	{ { "message['role'] + additional_special_tokens[0] + message['content'] + "
	    "additional_special_tokens[1]" }, "gigachat" },
	{ { "<|role_start|>" }, "megrez" },
	{ { " Ассистент:" }, "yandex" },
	{ { "<role>ASSISTANT</role>", "'HUMAN'" }, "bailing" },
	{ { "<|header_start|>", "<|header_end|>" }, "llama4" },
	{ { "<|endofuserprompt|>" }, "dots1" },
	{ { "<|extra_0|>", "<|extra_4|>" }, "hunyuan-moe" },
	{ { "<|start|>", "<|channel|>" }, "gpt-oss" },
	{ { "<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>" }, "hunyuan-dense" },
	{ { "<|im_assistant|>assistant<|im_middle|>" }, "kimi-k2" },
	{ { "<seed:bos>" }, "seed_oss" },
};

/* llama.cpp's name for the template text s (llm_chat_detect_template after
 * its name lookup), or NULL when it recognises none. */
static const char *family(const char *s)
{
	if (has(s, "<|im_start|>"))
		return has(s, "<|im_sep|>") ? "phi4" : has(s, "<end_of_utterance>") ? "smolvlm" : "chatml";
	if (strncmp(s, "mistral", 7) == 0 || has(s, "[INST]")) {
		if (has(s, "[SYSTEM_PROMPT]"))
			return "mistral-v7";
		/* mistral's own v1 ("' [INST] ' + system_message") and v3
		 * (tool blocks) templates, v3-tekken without the spaces */
		if (has(s, "' [INST] ' + system_message") || has(s, "[AVAILABLE_TOOLS]"))
			return has(s, " [INST]") ? "mistral-v1"
			       : has(s, "\"[INST]\"") ? "mistral-v3-tekken" : "mistral-v3";
		return has(s, "content.strip()") ? "llama2-sys-strip"
		       : has(s, "bos_token + '[INST]") ? "llama2-sys-bos"
		       : has(s, "<<SYS>>") ? "llama2-sys" : "llama2";
	}
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
		bool all = true;
		for (size_t k = 0; k < 4 && rules[i].needle[k] != NULL && all; k++)
			all = has(s, rules[i].needle[k]);
		if (all)
			return rules[i].name;
	}
	return NULL;
}

/* Index into templates[], or -1. */
static int lookup(const char *s)
{
	if (s == NULL || *s == '\0')
		return -1;
	int i = by_name(s);
	if (i >= 0)
		return i;
	const char *f = family(s);
	return f != NULL ? by_name(f) : -1;
}

int chat_detect(const char *s)
{
	int i = lookup(s);
	return i >= 0 ? (int)templates[i].tmpl : -ENOTSUP;
}

const char *chat_template_name(int tmpl)
{
	for (size_t i = 0; i < N_TEMPLATES; i++)
		if ((int)templates[i].tmpl == tmpl)
			return templates[i].name;
	return NULL;
}

chat_pick_t chat_pick(const tok_t *t)
{
	const char *s = t != NULL ? tok_chat_template(t) : NULL;
	int i = lookup(s);
	if (i >= 0)
		return (chat_pick_t){ templates[i].tmpl, false, templates[i].name };
	const char *found = "none";
	if (s != NULL && *s != '\0') {
		found = family(s);
		if (found == NULL)
			found = "unrecognised";
	}
	bool im = t != NULL && tok_find(t, "<|im_start|>", 12) >= 0 && tok_find(t, "<|im_end|>", 10) >= 0;
	return (chat_pick_t){ im ? CHAT_TEMPLATE_CHATML : CHAT_TEMPLATE_PLAIN, true, found };
}

/* ---- formatting ------------------------------------------------------------ */

int chat_format(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		bool add_generation_prompt, char **ret, char *err, size_t errlen)
{
	return chat_format_spans(template_or_name, msgs, n, add_generation_prompt, ret, NULL, NULL, err,
				 errlen);
}

int chat_format_spans(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		      bool add_generation_prompt, char **ret, tok_span_t **ret_spans, size_t *ret_n_spans,
		      char *err, size_t errlen)
{
	if (template_or_name == NULL || *template_or_name == '\0')
		return mg_seterr(err, errlen, -ENOTSUP, "model has no chat template");
	int t = lookup(template_or_name);
	if (t < 0) {
		const char *f = family(template_or_name);
		return f != NULL ? mg_seterr(err, errlen, -ENOTSUP, "chat template '%s' is not supported", f)
				 : mg_seterr(err, errlen, -ENOTSUP, "chat template not recognised");
	}
	if (ret == NULL || (msgs == NULL && n > 0))
		return mg_seterr(err, errlen, -EINVAL, "chat: no messages");
	if (n > SIZE_MAX / (2 * sizeof(tok_span_t)) - 1)
		return mg_seterr(err, errlen, -EINVAL, "chat: %zu messages are too many", n);
	for (size_t i = 0; i < n; i++)
		if (msgs[i].role == NULL || msgs[i].content == NULL)
			return mg_seterr(err, errlen, -EINVAL, "chat message %zu has no %s", i,
					 msgs[i].role == NULL ? "role" : "content");
	struct out o = { 0 };
	if (ret_spans != NULL && (o.spans = malloc((2 * n + 1) * sizeof(*o.spans))) == NULL)
		o.rc = -ENOMEM;
	put(&o, "", 0);
	templates[t].format(&o, templates[t].arg, msgs, n, add_generation_prompt);
	if (o.rc < 0) {
		free(o.s);
		free(o.spans);
		return mg_seterr(err, errlen, o.rc, "chat: out of memory formatting %zu messages", n);
	}
	*ret = o.s;
	if (ret_spans != NULL) {
		*ret_spans = o.spans;
		*ret_n_spans = o.n_spans;
	}
	return 0;
}
