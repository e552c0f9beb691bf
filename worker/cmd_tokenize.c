/* margin-worker tokenize --model FILE.gguf (--text TEXT | --file PATH) [--json]:
 * the token ids of a text as llama.cpp's tokenizer tests count them (no
 * BOS/EOS, special-token text not parsed, unless asked). Reads only the
 * vocabulary from the GGUF, never the weights. */
#include "cmds.h"
#include "gguf.h"
#include "tok.h"
#include "lib/mg_settings.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tokenize_opts {
	const char *model, *text, *file;	/* borrowed from the config */
	bool json, add_special, parse_special;
} tokenize_opts_t;

#define TO(field) MG_SETTING_AT(tokenize_opts_t, field)
static const mg_setting_t tokenize_settings[] = {
	{ .flag = "model", .section = "tokenize", .key = "model", .arg = "FILE",
	  .help = "GGUF file whose tokenizer to use (only the vocabulary is read)", TO(model) },
	{ .flag = "text", .section = "tokenize", .key = "text", .arg = "TEXT", .excludes = "file",
	  .help = "the text", TO(text) },
	{ .flag = "file", .section = "tokenize", .key = "file", .arg = "PATH",
	  .help = "read the text from a file ('-' = stdin) instead", TO(file) },
	{ .flag = "json", .section = "tokenize", .key = "json", .type = MG_SETTING_BOOL, .set = "yes",
	  .help = "print {\"ids\":[...]}", TO(json) },
	{ .flag = "add-special", .section = "tokenize", .key = "add_special", .type = MG_SETTING_BOOL,
	  .set = "yes", .help = "add BOS/EOS as the model does for generation", TO(add_special) },
	{ .flag = "parse-special", .section = "tokenize", .key = "parse_special", .type = MG_SETTING_BOOL,
	  .set = "yes", .help = "turn special-token text into those tokens", TO(parse_special) },
};

static const mg_settings_spec_t tokenize_spec = {
	.prog = "margin-worker tokenize",
	.synopsis = "--model FILE.gguf (--text TEXT | --file PATH) [--json]\n",
	.intro = "Print the token ids of a text: one per line with its piece, or with --json\n"
		 "exactly {\"ids\":[...]}. By default no BOS/EOS is added and the text of\n"
		 "special tokens (<|im_end|>, <s>, ...) is tokenized as plain text.\n",
	.no_config = true,
	.settings = tokenize_settings,
	.n = sizeof(tokenize_settings) / sizeof(tokenize_settings[0]),
};

static char *read_all(const char *path, size_t *ret_len)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 1 >= cap) {
			size_t nc = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, nc);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap = nc;
		}
		size_t r = fread(buf + len, 1, cap - len - 1, f);
		len += r;
		if (r == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	if (f != stdin)
		fclose(f);
	buf[len] = '\0';
	*ret_len = len;
	return buf;
fail:
	if (f != stdin)
		fclose(f);
	free(buf);
	return NULL;
}

/* A piece in single quotes: control bytes, quotes, backslashes and bytes
 * that are not (complete) UTF-8 escaped. */
static void print_piece(const char *s, size_t n)
{
	putchar('\'');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t l = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
			: (c & 0xf8) == 0xf0 ? 4 : 0;
		bool ok = l > 0 && i + l <= n;
		for (size_t k = 1; ok && k < l; k++)
			ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\\' || c == '\'')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f || !ok)
			printf("\\x%02x", c);
		else {
			fwrite(s + i, 1, l, stdout);
			i += l - 1;
		}
	}
	putchar('\'');
}

/* Prints the tokens of o's text (said on failure): 0 or 1. */
static int tokenize(const tokenize_opts_t *o)
{
	const char *model = o->model, *text = o->text, *file = o->file;
	bool json = o->json, add_special = o->add_special, parse_special = o->parse_special;
	int status = 1;
	gguf_t *g = NULL;
	tok_t *t = NULL;
	char *owned = NULL;
	int32_t *ids = NULL;
	size_t n = 0, len;
	char err[512] = "";
	int rc = gguf_open(model, &g, err, sizeof(err));
	if (rc < 0) {
		if (err[0])
			fprintf(stderr, "margin-worker tokenize: %s\n", err);
		else
			fprintf(stderr, "margin-worker tokenize: %s: %s\n", model, strerror(-rc));
		goto out;
	}
	rc = tok_new_from_gguf(g, &t, err, sizeof(err));
	gguf_close(&g);
	if (rc < 0) {
		fprintf(stderr, "margin-worker tokenize: %s: %s\n", model,
			err[0] ? err : strerror(-rc));
		goto out;
	}
	if (file != NULL) {
		owned = read_all(file, &len);
		if (owned == NULL) {
			fprintf(stderr, "margin-worker tokenize: cannot read %s: %s\n", file,
				strerror(errno ? errno : EIO));
			goto out;
		}
		text = owned;
	} else {
		len = strlen(text);
	}
	rc = tok_encode(t, text, len, add_special, parse_special, &ids, &n);
	if (rc < 0) {
		fprintf(stderr, "margin-worker tokenize: cannot tokenize the text: %s\n",
			strerror(-rc));
		goto out;
	}
	if (json) {
		fputs("{\"ids\":[", stdout);
		for (size_t i = 0; i < n; i++)
			printf(i ? ",%d" : "%d", ids[i]);
		fputs("]}\n", stdout);
	} else {
		char buf[256];
		for (size_t i = 0; i < n; i++) {
			int pl = tok_piece(t, ids[i], true, buf, sizeof(buf));
			printf("%6d -> ", ids[i]);
			print_piece(buf, pl < 0 ? 0 : (size_t)pl < sizeof(buf) ? (size_t)pl : sizeof(buf));
			putchar('\n');
		}
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "margin-worker tokenize: writing the output: %s\n", strerror(errno));
		goto out;
	}
	status = 0;
out:
	free(ids);
	free(owned);
	tok_destroy(&t);
	return status;
}

int cmd_tokenize(int argc, char **argv)
{
	tokenize_opts_t o = { 0 };
	mg_config_t *cfg = mg_config_new();
	int r = cfg == NULL ? -ENOMEM : mg_settings_parse_into(&tokenize_spec, cfg, argc, argv, &o);
	if (cfg == NULL)
		fprintf(stderr, "margin-worker tokenize: out of memory\n");
	if (r == 0 && (o.model == NULL || (o.text == NULL) == (o.file == NULL))) {
		fprintf(stderr, "margin-worker tokenize: needs --model and one of --text, --file\n");
		mg_settings_usage(&tokenize_spec, stderr);
		r = -EINVAL;
	}
	r = r == 0 ? tokenize(&o) : r == 1 ? 0 : r == -EINVAL ? 2 : 1;
	mg_config_destroy(&cfg);
	return r;
}
