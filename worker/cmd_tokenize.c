/* margin-worker tokenize --model FILE.gguf (--text TEXT | --file PATH) [--json]:
 * the token ids of a text as llama.cpp's tokenizer tests count them (no
 * BOS/EOS, special-token text not parsed, unless asked). Reads only the
 * vocabulary from the GGUF, never the weights. */
#include "cmds.h"
#include "gguf.h"
#include "tok.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: margin-worker tokenize --model FILE.gguf (--text TEXT | --file PATH) [--json]\n\n"
		   "Print the token ids of a text: one per line with its piece, or with --json\n"
		   "exactly {\"ids\":[...]}. By default no BOS/EOS is added and the text of\n"
		   "special tokens (<|im_end|>, <s>, ...) is tokenized as plain text.\n\n"
		   "  --model FILE     GGUF file whose tokenizer to use (only the vocabulary is read)\n"
		   "  --text TEXT      the text\n"
		   "  --file PATH      read the text from a file ('-' = stdin) instead\n"
		   "  --json           print {\"ids\":[...]}\n"
		   "  --add-special    add BOS/EOS as the model does for generation\n"
		   "  --parse-special  turn special-token text into those tokens\n"
		   "  --help           this text\n");
}

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

int cmd_tokenize(int argc, char **argv)
{
	const char *model = NULL, *text = NULL, *file = NULL;
	bool json = false, add_special = false, parse_special = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			json = true;
		} else if (strcmp(a, "--add-special") == 0) {
			add_special = true;
		} else if (strcmp(a, "--parse-special") == 0) {
			parse_special = true;
		} else if ((strcmp(a, "--model") == 0 || strcmp(a, "--text") == 0 ||
			    strcmp(a, "--file") == 0) && i + 1 < argc) {
			const char **dst = a[2] == 'm' ? &model : a[2] == 't' ? &text : &file;
			*dst = argv[++i];
		} else {
			fprintf(stderr, "margin-worker tokenize: %s '%s'\n",
				a[0] == '-' ? "unknown option or missing value" : "unexpected argument", a);
			usage(stderr);
			return 2;
		}
	}
	if (model == NULL || (text == NULL) == (file == NULL)) {
		fprintf(stderr, "margin-worker tokenize: needs --model and one of --text, --file\n");
		usage(stderr);
		return 2;
	}

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
