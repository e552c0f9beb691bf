/* chat: see chat.h. */
#include "chat.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	enum chat_template tmpl;
} names[] = {
	{ "chatml", CHAT_TEMPLATE_CHATML },
	{ "llama3", CHAT_TEMPLATE_LLAMA3 },
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int chat_detect(const char *s)
{
	if (s == NULL || *s == '\0')
		return -ENOTSUP;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].tmpl;
	/* llama.cpp's llm_chat_detect_template order: ChatML first, but
	 * <|im_sep|> marks Phi-4, whose turns differ */
	if (strstr(s, "<|im_start|>") != NULL)
		return strstr(s, "<|im_sep|>") != NULL ? -ENOTSUP : CHAT_TEMPLATE_CHATML;
	if (strstr(s, "<|start_header_id|>") != NULL && strstr(s, "<|end_header_id|>") != NULL)
		return CHAT_TEMPLATE_LLAMA3;
	return -ENOTSUP;
}

const char *chat_template_name(int tmpl)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((int)names[i].tmpl == tmpl)
			return names[i].name;
	return NULL;
}

struct buf {
	char *s;
	size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *ns = realloc(b->s, nc);
		if (ns == NULL)
			return -ENOMEM;
		b->s = ns;
		b->cap = nc;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

static int puts_(struct buf *b, const char *s)
{
	return put(b, s, strlen(s));
}

/* Jinja's |trim (and llama.cpp's trim()): ASCII whitespace both ends. */
static int put_trimmed(struct buf *b, const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	return put(b, s, n);
}

int chat_format(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		bool add_generation_prompt, char **ret, char *err, size_t errlen)
{
	return chat_format_spans(template_or_name, msgs, n, add_generation_prompt, ret, NULL, NULL, err,
				 errlen);
}

/* Appends the caller's text s (trimmed: Jinja's |trim) and records where. */
static int put_span(struct buf *b, const char *s, bool trim, tok_span_t *spans, size_t *n_spans)
{
	size_t at = b->len;
	int rc = trim ? put_trimmed(b, s) : puts_(b, s);
	if (rc == 0 && spans != NULL)
		spans[(*n_spans)++] = (tok_span_t){ at, b->len - at };
	return rc;
}

int chat_format_spans(const char *template_or_name, const chat_msg_t *msgs, size_t n,
		      bool add_generation_prompt, char **ret, tok_span_t **ret_spans, size_t *ret_n_spans,
		      char *err, size_t errlen)
{
	struct buf b = { 0 };
	tok_span_t *spans = NULL;
	size_t n_spans = 0;
	int rc = 0;

	if (template_or_name == NULL || *template_or_name == '\0') {
		seterr(err, errlen, "model has no chat template");
		return -ENOTSUP;
	}
	int tmpl = chat_detect(template_or_name);
	if (tmpl < 0) {
		seterr(err, errlen, "chat template not supported: only ChatML (<|im_start|>) and "
		       "llama-3 (<|start_header_id|>) templates are");
		return -ENOTSUP;
	}
	if (ret == NULL || (msgs == NULL && n > 0)) {
		seterr(err, errlen, "chat: no messages");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		if (msgs[i].role == NULL || msgs[i].content == NULL) {
			seterr(err, errlen, "chat message %zu has no %s", i,
			       msgs[i].role == NULL ? "role" : "content");
			return -EINVAL;
		}
	if (ret_spans != NULL && (spans = malloc((2 * n + 1) * sizeof(*spans))) == NULL)
		rc = -ENOMEM;
	if (rc == 0)
		rc = put(&b, "", 0);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (tmpl == CHAT_TEMPLATE_CHATML) {
			if ((rc = puts_(&b, "<|im_start|>")) == 0 &&
			    (rc = put_span(&b, msgs[i].role, false, spans, &n_spans)) == 0 &&
			    (rc = puts_(&b, "\n")) == 0 &&
			    (rc = put_span(&b, msgs[i].content, false, spans, &n_spans)) == 0)
				rc = puts_(&b, "<|im_end|>\n");
		} else {
			if ((rc = puts_(&b, "<|start_header_id|>")) == 0 &&
			    (rc = put_span(&b, msgs[i].role, false, spans, &n_spans)) == 0 &&
			    (rc = puts_(&b, "<|end_header_id|>\n\n")) == 0 &&
			    (rc = put_span(&b, msgs[i].content, true, spans, &n_spans)) == 0)
				rc = puts_(&b, "<|eot_id|>");
		}
	}
	if (rc == 0 && add_generation_prompt)
		rc = puts_(&b, tmpl == CHAT_TEMPLATE_CHATML ? "<|im_start|>assistant\n"
			   : "<|start_header_id|>assistant<|end_header_id|>\n\n");
	if (rc < 0) {
		seterr(err, errlen, "chat: out of memory formatting %zu messages", n);
		free(b.s);
		free(spans);
		return rc;
	}
	*ret = b.s;
	if (ret_spans != NULL) {
		*ret_spans = spans;
		*ret_n_spans = n_spans;
	}
	return 0;
}
