/* tok: see tok.h.
 *
 * Both tokenizers follow llama.cpp's llama-vocab.cpp (commit c392e50, the
 * one that produced shared/testdata/vocab) step for step, because the ids
 * must match its test vectors exactly:
 *
 *   1. partition the text on special tokens (tokenizer_st_partition):
 *      user-defined tokens always, control/unknown ones only with
 *      parse_special; longer tokens first;
 *   2. SPM: each text fragment gets the dummy-prefix space (first fragment
 *      and any fragment right after a special token), ' ' -> U+2581, then
 *      greedy bigram merging by score (llm_tokenizer_spm_session), symbols
 *      that form no token fall back to <0xNN> byte tokens;
 *   3. BPE: the pre-tokenizer regex splits each fragment into words, each
 *      word's bytes become GPT-2 byte-level characters, then greedy merging
 *      by merge rank (llm_tokenizer_bpe_session).
 *
 * Lookups are hash tables (token text -> id, "left right" -> rank), so a
 * 150k-token vocabulary with 280k merges loads in milliseconds and encoding
 * is O(n log n) in the text length (a binary heap of candidate merges). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tok.h"
#include "lib/mg_err.h"
#include "lib/mg_hash.h"

#include <errno.h>
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pre {
	PRE_GPT2 = 0,
	PRE_LLAMA3,
	PRE_QWEN2,
};

/* The pre-tokenizer regexes of llama.cpp (llm_tokenizer_bpe), with \s and
 * \S spelled out as the Unicode White_Space set that llama.cpp's own
 * unicode tables use (so the result does not depend on which characters the
 * installed PCRE2 counts as space). PCRE2 handles the lookahead \s+(?!\S)
 * natively, which llama.cpp has to emulate. */
#define WS "\\t\\n\\x{0b}\\f\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}" \
	   "\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

static const struct {
	const char *name;	/* canonical tokenizer.ggml.pre */
	const char *regex;
} pre_types[] = {
	[PRE_GPT2] = { "gpt2",
		"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
		"|[" WS "]+(?![^" WS "])" },
	[PRE_LLAMA3] = { "llama-bpe",
		CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
		"| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+"
		"|[" WS "]+(?![^" WS "])|[" WS "]+" },
	[PRE_QWEN2] = { "qwen2",
		CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
		"| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+"
		"|[" WS "]+(?![^" WS "])|[" WS "]+" },
};

/* tokenizer.ggml.pre values and the pre-tokenizer each selects (the
 * aliases llama.cpp accepts for the same regex). */
static const struct {
	const char *name;
	enum pre pre;
} pre_names[] = {
	{ "default", PRE_GPT2 },
	{ "gpt2", PRE_GPT2 },
	{ "llama-bpe", PRE_LLAMA3 },
	{ "llama3", PRE_LLAMA3 },
	{ "llama-v3", PRE_LLAMA3 },
	{ "falcon3", PRE_LLAMA3 },
	{ "qwen2", PRE_QWEN2 },
	{ "deepseek-r1-qwen", PRE_QWEN2 },
};

/* Texts of tokens that end a turn: llama.cpp's end-of-generation list (plus
 * Llama 3's <|end_of_text|>). Like llama.cpp, such a token is treated as a
 * control token whatever type the file gives it. */
static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81" "of\xe2\x96\x81" "sentence\xef\xbd\x9c>",
};

struct merge {
	uint32_t off;		/* of "left right" in merge_text */
	uint32_t llen, rlen;
	uint32_t rank;
};

/* Special-token trie: the root is a 256-entry table, deeper levels are
 * child/sibling lists (few specials share long prefixes). */
struct trie_node {
	int32_t child, sibling;
	int32_t rank;		/* index into special[] of the token ending here, or -1 */
	uint8_t byte;
};

struct tok {
	enum tok_kind kind;
	enum pre pre;
	uint32_t n;
	char *text;		/* owned: every token's text, NUL-terminated */
	uint32_t *text_off;	/* owned [n] */
	uint32_t *text_len;	/* owned [n] */
	float *score;		/* owned [n] */
	uint8_t *type;		/* owned [n] enum tok_type */
	uint8_t *eog;		/* owned [n] 1 = ends generation */
	char *piece;		/* owned: each token as tok_piece(special=true) gives it */
	uint32_t *piece_off;	/* owned [n] */
	uint32_t *piece_len;	/* owned [n] */
	uint32_t *map;		/* owned [map_mask + 1]: text -> id + 1, 0 = empty */
	uint32_t map_mask;

	char *merge_text;	/* owned */
	struct merge *merges;	/* owned [n_merges] */
	uint32_t n_merges;
	uint32_t *merge_map;	/* owned [merge_mask + 1]: index + 1 into merges */
	uint32_t merge_mask;

	int32_t *special;	/* owned [n_special]: control/user-defined/unknown ids,
				 * longest text first (llama.cpp's match order) */
	uint32_t n_special;
	struct trie_node *trie;	/* owned [n_trie] */
	uint32_t n_trie;
	int32_t trie_root[256];

	int32_t byte_tok[256];	/* SPM byte fallback: id of <0xNN>, or -1 */
	char b2u[256][3];	/* GPT-2 byte -> UTF-8 of its printable stand-in */
	uint8_t b2u_len[256];
	int16_t u2b[324];	/* stand-in code point -> byte, -1 if none */

	int32_t bos, eos, unk, pad;
	bool add_bos, add_eos, add_space_prefix, ignore_merges;
	char *chat_template;	/* owned, or NULL */
	pcre2_code *re;		/* owned: BPE pre-tokenizer, NULL for SPM */
};

/* What both constructors hand to build(): lengths explicit, because GGUF
 * strings are not NUL-terminated. */
struct src {
	enum tok_kind kind;
	const char *pre;	/* NUL-terminated or NULL */
	uint32_t n_tokens;
	const char **tok;	/* [n_tokens] */
	uint32_t *tok_len;	/* [n_tokens] */
	const float *scores;	/* [n_tokens] or NULL */
	const int32_t *types;	/* [n_tokens] or NULL */
	uint32_t n_merges;
	const char **merge;	/* [n_merges] */
	uint32_t *merge_len;	/* [n_merges] */
	int32_t bos, eos, unk, pad, eot, eom;	/* -1 none */
	int add_bos, add_eos, add_space_prefix;	/* -1 vocabulary default */
	const char *chat_template;	/* or NULL */
	size_t chat_template_len;
};

/* ---- hashing ---- */

/* The vocabulary and the merges come from the model file, which the user
 * chooses: keyed SipHash (mg_hash), so a file cannot be built whose strings
 * share one chain. Its output bits are all mixed; the low ones are the slot. */
static uint32_t text_slot(const char *p, size_t n, uint32_t mask)
{
	return (uint32_t)mg_hash(p, n) & mask;
}

/* A merge (left, right): two keyed hashes, the right one remixed so that
 * (a, b) and (b, a), or (a, a) and (b, b), do not meet by construction. */
static uint32_t merge_slot(const char *l, size_t ln, const char *r, size_t rn, uint32_t mask)
{
	return (uint32_t)(mg_hash(l, ln) ^ mg_mix64(mg_hash(r, rn))) & mask;
}

/* Table of at least 2n slots (load factor <= 1/2). */
static int table_new(uint32_t n, uint32_t **ret, uint32_t *ret_mask)
{
	uint64_t cap = 16;
	while (cap < 2 * (uint64_t)n)
		cap *= 2;
	if (cap > ((uint64_t)1 << 31))
		return -E2BIG;
	uint32_t *t = calloc(cap, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	*ret = t;
	*ret_mask = (uint32_t)(cap - 1);
	return 0;
}

static int32_t find_text(const tok_t *t, const char *p, size_t n)
{
	uint32_t i = text_slot(p, n, t->map_mask);
	for (; t->map[i] != 0; i = (i + 1) & t->map_mask) {
		uint32_t id = t->map[i] - 1;
		if (t->text_len[id] == n && memcmp(t->text + t->text_off[id], p, n) == 0)
			return (int32_t)id;
	}
	return -1;
}

/* Rank of the merge (left, right), or -1. */
static int64_t find_merge(const tok_t *t, const char *l, size_t ln, const char *r, size_t rn)
{
	if (t->merge_map == NULL)
		return -1;
	for (uint32_t i = merge_slot(l, ln, r, rn, t->merge_mask); t->merge_map[i] != 0;
	     i = (i + 1) & t->merge_mask) {
		const struct merge *m = &t->merges[t->merge_map[i] - 1];
		const char *s = t->merge_text + m->off;
		if (m->llen == ln && m->rlen == rn && memcmp(s, l, ln) == 0 &&
		    memcmp(s + ln + 1, r, rn) == 0)
			return m->rank;
	}
	return -1;
}

/* ---- UTF-8 ---- */

/* llama.cpp's unicode_len_utf8: length from the lead byte alone. */
static size_t utf8_len(unsigned char c)
{
	static const uint8_t lookup[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4 };
	return lookup[c >> 4];
}

static size_t utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* One code point as llama.cpp's unicode_cpt_from_utf8 reads it: the lead
 * byte gives the length, continuation bytes must be 10xxxxxx; anything else
 * is one invalid byte. Returns the length consumed, *cp = 0xFFFD if
 * invalid. */
static size_t utf8_get(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0x40) == 0)
		goto bad;
	if ((c & 0x20) == 0) {
		len = 2;
		v = c & 0x1f;
	} else if ((c & 0x10) == 0) {
		len = 3;
		v = c & 0x0f;
	} else if ((c & 0x08) == 0) {
		len = 4;
		v = c & 0x07;
	} else {
		goto bad;
	}
	if (len > n)
		goto bad;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		v = (v << 6) | (s[i] & 0x3f);
	}
	*cp = v;
	return len;
bad:
	*cp = 0xfffd;
	return 1;
}

/* The text as llama.cpp's BPE path sees it: decoded to code points (an
 * invalid byte becomes U+FFFD) and encoded again. Overlong forms come out
 * canonical, as in llama.cpp; surrogates and values above U+10FFFF, which
 * PCRE2 cannot take, become U+FFFD too. out holds 3 * n bytes. */
static size_t utf8_clean(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		i += utf8_get((const unsigned char *)s + i, n - i, &cp);
		if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			cp = 0xfffd;
		o += utf8_put(out + o, cp);
	}
	return o;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 are mapped to U+0100.. in byte order. */
static void byte_map_init(tok_t *t)
{
	uint32_t next = 256;
	for (int i = 0; i < 324; i++)
		t->u2b[i] = -1;
	for (int b = 0; b < 256; b++) {
		uint32_t cp = ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
			? (uint32_t)b : next++;
		t->b2u_len[b] = (uint8_t)utf8_put(t->b2u[b], cp);
		t->u2b[cp] = (int16_t)b;
	}
}

/* ---- construction ---- */

void tok_destroy(tok_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	tok_t *t = *p;
	free(t->text);
	free(t->text_off);
	free(t->text_len);
	free(t->score);
	free(t->type);
	free(t->eog);
	free(t->piece);
	free(t->piece_off);
	free(t->piece_len);
	free(t->map);
	free(t->merge_text);
	free(t->merges);
	free(t->merge_map);
	free(t->special);
	free(t->trie);
	free(t->chat_template);
	pcre2_code_free(t->re);
	free(t);
	*p = NULL;
}

static int build_tokens(tok_t *t, const struct src *s, char *err, size_t errlen)
{
	uint32_t n = t->n;
	uint64_t total = 0;
	char empty[32];
	for (uint32_t i = 0; i < n; i++) {
		/* llama.cpp renames an empty token so that it cannot match */
		total += s->tok_len[i] ? s->tok_len[i] + 1 : sizeof(empty);
	}
	if (total > UINT32_MAX) {
		return mg_seterr(err, errlen, -E2BIG, "tokenizer: token texts too large (%llu bytes)",
		       (unsigned long long)total);
	}
	t->text = malloc(total ? total : 1);
	t->text_off = malloc(n * sizeof(uint32_t));
	t->text_len = malloc(n * sizeof(uint32_t));
	t->score = malloc(n * sizeof(float));
	t->type = malloc(n);
	t->eog = calloc(n, 1);
	if (!t->text || !t->text_off || !t->text_len || !t->score || !t->type || !t->eog)
		return -ENOMEM;
	int rc = table_new(n, &t->map, &t->map_mask);
	if (rc < 0)
		return rc;
	uint32_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		const char *p = s->tok[i];
		uint32_t len = s->tok_len[i];
		if (len == 0) {
			len = (uint32_t)snprintf(empty, sizeof(empty), "[EMPTY_%u]", i);
			p = empty;
		}
		memcpy(t->text + off, p, len);
		t->text[off + len] = '\0';
		t->text_off[i] = off;
		t->text_len[i] = len;
		off += len + 1;
		t->score[i] = s->scores ? s->scores[i] : 0.0f;
		int32_t ty = s->types ? s->types[i] : TOK_TYPE_NORMAL;
		t->type[i] = (ty >= TOK_TYPE_NORMAL && ty <= TOK_TYPE_BYTE) ? (uint8_t)ty
			: TOK_TYPE_UNDEFINED;
		/* a later token with the same text wins, as in llama.cpp */
		uint32_t j = text_slot(t->text + t->text_off[i], len, t->map_mask);
		for (; t->map[j] != 0; j = (j + 1) & t->map_mask) {
			uint32_t id = t->map[j] - 1;
			if (t->text_len[id] == len &&
			    memcmp(t->text + t->text_off[id], t->text + t->text_off[i], len) == 0)
				break;
		}
		t->map[j] = i + 1;
	}
	return 0;
}

static int build_merges(tok_t *t, const struct src *s, char *err, size_t errlen)
{
	uint64_t total = 0;
	for (uint32_t i = 0; i < s->n_merges; i++)
		total += s->merge_len[i];
	if (total > UINT32_MAX) {
		return mg_seterr(err, errlen, -E2BIG, "tokenizer: merges too large (%llu bytes)",
		       (unsigned long long)total);
	}
	t->merge_text = malloc(total ? total : 1);
	t->merges = malloc((s->n_merges ? s->n_merges : 1) * sizeof(struct merge));
	if (t->merge_text == NULL || t->merges == NULL)
		return -ENOMEM;
	int rc = table_new(s->n_merges, &t->merge_map, &t->merge_mask);
	if (rc < 0)
		return rc;
	uint32_t off = 0;
	for (uint32_t i = 0; i < s->n_merges; i++) {
		const char *m = s->merge[i];
		uint32_t len = s->merge_len[i];
		/* "left right", split at the first space after the first byte
		 * (a left part may be a lone space in other vocabularies) */
		const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
		if (sp == NULL)
			continue;	/* llama.cpp files it under ("", ""), never matched */
		uint32_t ln = (uint32_t)(sp - m);
		uint32_t j = merge_slot(m, ln, sp + 1, len - ln - 1, t->merge_mask);
		bool dup = false;
		for (; t->merge_map[j] != 0; j = (j + 1) & t->merge_mask) {
			const struct merge *o = &t->merges[t->merge_map[j] - 1];
			if (o->llen == ln && o->llen + 1 + o->rlen == len &&
			    memcmp(t->merge_text + o->off, m, len) == 0) {
				dup = true;	/* the first rank stays */
				break;
			}
		}
		if (dup)
			continue;
		memcpy(t->merge_text + off, m, len);
		t->merges[t->n_merges] = (struct merge){ off, ln, len - ln - 1, i };
		t->merge_map[j] = ++t->n_merges;
		off += len;
	}
	return 0;
}

struct special_key {
	uint32_t len;
	int32_t id;
};

static int cmp_special(const void *a, const void *b)
{
	const struct special_key *x = a, *y = b;
	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int build_specials(tok_t *t)
{
	struct special_key *keys = NULL;
	uint32_t n = 0;
	uint64_t nodes = 0;
	for (uint32_t i = 0; i < t->n; i++)
		if (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED ||
		    t->type[i] == TOK_TYPE_UNKNOWN) {
			n++;
			nodes += t->text_len[i];
		}
	for (int b = 0; b < 256; b++)
		t->trie_root[b] = -1;
	if (n == 0)
		return 0;
	if (nodes > INT32_MAX)
		return -E2BIG;
	keys = malloc(n * sizeof(*keys));
	t->special = malloc(n * sizeof(int32_t));
	t->trie = malloc(nodes * sizeof(struct trie_node));
	if (keys == NULL || t->special == NULL || t->trie == NULL) {
		free(keys);
		return -ENOMEM;
	}
	n = 0;
	for (uint32_t i = 0; i < t->n; i++)
		if (t->type[i] == TOK_TYPE_CONTROL || t->type[i] == TOK_TYPE_USER_DEFINED ||
		    t->type[i] == TOK_TYPE_UNKNOWN)
			keys[n++] = (struct special_key){ t->text_len[i], (int32_t)i };
	qsort(keys, n, sizeof(*keys), cmp_special);
	for (uint32_t r = 0; r < n; r++) {
		int32_t id = keys[r].id;
		const unsigned char *p = (const unsigned char *)t->text + t->text_off[id];
		int32_t *link = &t->trie_root[p[0]];
		int32_t node = -1;
		for (uint32_t k = 0; k < keys[r].len; k++) {
			while (*link >= 0 && t->trie[*link].byte != p[k])
				link = &t->trie[*link].sibling;
			if (*link < 0) {
				struct trie_node *nn = &t->trie[t->n_trie];
				*nn = (struct trie_node){ -1, -1, -1, p[k] };
				*link = (int32_t)t->n_trie++;
			}
			node = *link;
			link = &t->trie[node].child;
		}
		/* two specials with one text: the first in match order takes
		 * every occurrence, as in llama.cpp */
		if (t->trie[node].rank < 0)
			t->trie[node].rank = (int32_t)r;
		t->special[r] = id;
	}
	t->n_special = n;
	free(keys);
	return 0;
}

/* The piece of each token as token_to_piece(special=true, lstrip=0) gives it. */
static int build_pieces(tok_t *t)
{
	uint32_t total = t->text_off[t->n - 1] + t->text_len[t->n - 1] + 1;
	t->piece = malloc(total);
	t->piece_off = malloc(t->n * sizeof(uint32_t));
	t->piece_len = malloc(t->n * sizeof(uint32_t));
	if (t->piece == NULL || t->piece_off == NULL || t->piece_len == NULL)
		return -ENOMEM;
	uint32_t off = 0;
	for (uint32_t id = 0; id < t->n; id++) {
		const char *s = t->text + t->text_off[id];
		uint32_t len = t->text_len[id], o = 0;
		char *out = t->piece + off;
		switch (t->type[id]) {
		case TOK_TYPE_CONTROL:
		case TOK_TYPE_UNKNOWN:
		case TOK_TYPE_USER_DEFINED:
			memcpy(out, s, len);
			o = len;
			break;
		case TOK_TYPE_NORMAL:
			if (t->kind == TOK_KIND_SPM) {
				for (uint32_t i = 0; i < len; i++) {
					if (i + 2 < len && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
						out[o++] = ' ';
						i += 2;
					} else {
						out[o++] = s[i];
					}
				}
			} else {
				for (uint32_t i = 0; i < len;) {
					uint32_t cp;
					size_t l = utf8_get((const unsigned char *)s + i, len - i, &cp);
					if (cp < 324 && t->u2b[cp] >= 0) {
						out[o++] = (char)t->u2b[cp];
					} else {
						/* not a byte-level character: kept as
						 * is (llama.cpp prints [UNK_BYTE_..]) */
						memcpy(out + o, s + i, l);
						o += (uint32_t)l;
					}
					i += (uint32_t)l;
				}
			}
			break;
		case TOK_TYPE_BYTE:
			if (t->kind == TOK_KIND_SPM && len == 6 && memcmp(s, "<0x", 3) == 0 &&
			    s[5] == '>') {
				char hex[3] = { s[3], s[4], 0 }, *end;
				unsigned long v = strtoul(hex, &end, 16);
				if (*end == '\0')
					out[o++] = (char)v;
			}
			break;
		default:	/* unused, undefined: print nothing */
			break;
		}
		t->piece_off[id] = off;
		t->piece_len[id] = o;
		off += o;
	}
	return 0;
}

static int build_regex(tok_t *t, char *err, size_t errlen)
{
	int ec;
	PCRE2_SIZE eo;
	t->re = pcre2_compile((PCRE2_SPTR)pre_types[t->pre].regex, PCRE2_ZERO_TERMINATED,
			      PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
	if (t->re == NULL) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		return mg_seterr(err, errlen, -EINVAL, "tokenizer: pre-tokenizer '%s' regex does not compile at %zu: %s",
		       pre_types[t->pre].name, (size_t)eo, (const char *)msg);
	}
	/* JIT is an optimisation only: without it pcre2_match interprets */
	(void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
	return 0;
}

static int build(const struct src *s, tok_t **ret, char *err, size_t errlen)
{
	tok_t *t = NULL;
	int rc;
	if (s->n_tokens == 0 || s->n_tokens > INT32_MAX) {
		return mg_seterr(err, errlen, -EINVAL, "tokenizer: bad vocabulary size %u", s->n_tokens);
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->kind = s->kind;
	t->n = s->n_tokens;
	t->pre = PRE_GPT2;
	if (s->kind == TOK_KIND_BPE && s->pre != NULL) {
		size_t i;
		for (i = 0; i < sizeof(pre_names) / sizeof(pre_names[0]); i++)
			if (strcmp(s->pre, pre_names[i].name) == 0)
				break;
		if (i == sizeof(pre_names) / sizeof(pre_names[0])) {
			rc = mg_seterr(err, errlen, -ENOTSUP, "tokenizer: pre-tokenizer '%s' (tokenizer.ggml.pre) is "
			       "not supported (gpt2, llama-bpe, qwen2 are)", s->pre);
			goto fail;
		}
		t->pre = pre_names[i].pre;
	}
	const int32_t ids[] = { s->bos, s->eos, s->unk, s->pad, s->eot, s->eom };
	static const char *const id_names[] = { "bos", "eos", "unknown", "padding", "eot", "eom" };
	for (int i = 0; i < 6; i++)
		if (ids[i] < -1 || ids[i] >= (int64_t)s->n_tokens) {
			rc = mg_seterr(err, errlen, -EINVAL, "tokenizer: %s token id %d outside the vocabulary of %u",
			       id_names[i], ids[i], s->n_tokens);
			goto fail;
		}
	t->bos = s->bos;
	t->eos = s->eos;
	t->unk = s->unk;
	t->pad = s->pad;
	if (s->kind == TOK_KIND_SPM) {
		t->add_bos = s->add_bos != 0;	/* default: add */
		t->add_space_prefix = s->add_space_prefix != 0;
	} else {
		t->add_bos = s->add_bos < 0 ? t->pre == PRE_LLAMA3 : s->add_bos != 0;
		t->add_space_prefix = s->add_space_prefix > 0;
		t->ignore_merges = t->pre == PRE_LLAMA3;
	}
	t->add_eos = s->add_eos > 0;

	rc = build_tokens(t, s, err, errlen);
	if (rc < 0)
		goto fail;
	for (size_t i = 0; i < sizeof(eog_texts) / sizeof(eog_texts[0]); i++) {
		int32_t id = find_text(t, eog_texts[i], strlen(eog_texts[i]));
		if (id >= 0) {
			t->eog[id] = 1;
			t->type[id] = TOK_TYPE_CONTROL;
		}
	}
	for (int i = 0; i < 6; i++)
		if ((i == 1 || i >= 4) && ids[i] >= 0)
			t->eog[ids[i]] = 1;	/* eos, eot, eom */
	if (s->kind == TOK_KIND_BPE) {
		rc = build_merges(t, s, err, errlen);
		if (rc < 0)
			goto fail;
		byte_map_init(t);
		rc = build_regex(t, err, errlen);
		if (rc < 0)
			goto fail;
	} else {
		for (int b = 0; b < 256; b++) {
			char hex[8];
			snprintf(hex, sizeof(hex), "<0x%02X>", b);
			t->byte_tok[b] = find_text(t, hex, 6);
			if (t->byte_tok[b] < 0) {
				char c = (char)b;
				t->byte_tok[b] = find_text(t, &c, 1);
			}
		}
	}
	rc = build_specials(t);
	if (rc < 0)
		goto fail;
	rc = build_pieces(t);
	if (rc < 0)
		goto fail;
	if (s->chat_template != NULL) {
		t->chat_template = strndup(s->chat_template, s->chat_template_len);
		if (t->chat_template == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	*ret = t;
	return 0;
fail:
	if (rc == -ENOMEM)
		mg_seterr(err, errlen, rc, "tokenizer: out of memory for a vocabulary of %u tokens",
			  s->n_tokens);
	tok_destroy(&t);
	return rc;
}

int tok_new(const tok_vocab_t *v, tok_t **ret, char *err, size_t errlen)
{
	struct src s = { 0 };
	int rc = -ENOMEM;
	if (v == NULL || ret == NULL || v->tokens == NULL || v->n_tokens == 0 ||
	    v->n_tokens > INT32_MAX || (v->n_merges > 0 && v->merges == NULL) ||
	    (v->kind != TOK_KIND_SPM && v->kind != TOK_KIND_BPE)) {
		return mg_seterr(err, errlen, -EINVAL, "tokenizer: incomplete vocabulary (kind, tokens, merges)");
	}
	s.kind = v->kind;
	s.pre = v->pre;
	s.n_tokens = v->n_tokens;
	s.scores = v->scores;
	s.types = v->types;
	s.n_merges = v->n_merges;
	s.bos = v->bos;
	s.eos = v->eos;
	s.unk = v->unk;
	s.pad = v->pad;
	s.eot = s.eom = -1;
	s.add_bos = v->add_bos;
	s.add_eos = v->add_eos;
	s.add_space_prefix = -1;
	s.chat_template = v->chat_template;
	s.chat_template_len = v->chat_template ? strlen(v->chat_template) : 0;
	s.tok = malloc(v->n_tokens * sizeof(char *));
	s.tok_len = malloc(v->n_tokens * sizeof(uint32_t));
	s.merge = malloc((v->n_merges ? v->n_merges : 1) * sizeof(char *));
	s.merge_len = malloc((v->n_merges ? v->n_merges : 1) * sizeof(uint32_t));
	if (!s.tok || !s.tok_len || !s.merge || !s.merge_len)
		goto fail;
	for (uint32_t i = 0; i < v->n_tokens; i++) {
		size_t len = v->tokens[i] ? strlen(v->tokens[i]) : 0;
		if (v->tokens[i] == NULL || len > UINT32_MAX) {
			rc = mg_seterr(err, errlen, -EINVAL, "tokenizer: token %u is %s", i,
			       v->tokens[i] ? "too long" : "NULL");
			goto fail;
		}
		s.tok[i] = v->tokens[i];
		s.tok_len[i] = (uint32_t)len;
	}
	for (uint32_t i = 0; i < v->n_merges; i++) {
		size_t len = v->merges[i] ? strlen(v->merges[i]) : 0;
		if (v->merges[i] == NULL || len > UINT32_MAX) {
			rc = mg_seterr(err, errlen, -EINVAL, "tokenizer: merge %u is %s", i,
			       v->merges[i] ? "too long" : "NULL");
			goto fail;
		}
		s.merge[i] = v->merges[i];
		s.merge_len[i] = (uint32_t)len;
	}
	rc = build(&s, ret, err, errlen);
	goto out;
fail:
	if (rc == -ENOMEM)
		mg_seterr(err, errlen, rc, "tokenizer: out of memory");
out:
	free(s.tok);
	free(s.tok_len);
	free(s.merge);
	free(s.merge_len);
	return rc;
}

/* ---- GGUF ---- */

/* A string array from the GGUF into (pointer, length) arrays (borrowed from
 * the mapping). -ENOENT if absent. */
static int gguf_strings(const gguf_t *g, const char *key, const char ***ret_p, uint32_t **ret_len,
			uint32_t *ret_n, char *err, size_t errlen)
{
	enum gguf_vtype ty;
	uint64_t n;
	const void *data;
	int rc = gguf_get_arr(g, key, &ty, &n, &data);
	if (rc == -ENOENT)
		return rc;
	if (rc < 0 || ty != GGUF_VTYPE_STRING || n > INT32_MAX) {
		return mg_seterr(err, errlen, -EBADMSG, "GGUF key %s: expected an array of at most 2^31 strings", key);
	}
	const char **p = malloc((n ? n : 1) * sizeof(char *));
	uint32_t *len = malloc((n ? n : 1) * sizeof(uint32_t));
	if (p == NULL || len == NULL) {
		free(p);
		free(len);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n; i++) {
		gguf_str_t s;
		rc = gguf_get_arr_str(g, key, i, &s);
		if (rc < 0 || s.len > UINT32_MAX) {
			free(p);
			free(len);
			return mg_seterr(err, errlen, -EBADMSG, "GGUF key %s: element %llu unreadable", key,
					 (unsigned long long)i);
		}
		p[i] = s.data;
		len[i] = (uint32_t)s.len;
	}
	*ret_p = p;
	*ret_len = len;
	*ret_n = (uint32_t)n;
	return 0;
}

/* A numeric array of exactly n elements of type want, copied out (the
 * mapping may be unaligned). NULL with 0 if absent. */
static int gguf_numbers(const gguf_t *g, const char *key, enum gguf_vtype want, uint32_t n,
			void **ret, char *err, size_t errlen)
{
	enum gguf_vtype ty;
	uint64_t cnt;
	const void *data;
	*ret = NULL;
	int rc = gguf_get_arr(g, key, &ty, &cnt, &data);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0 || ty != want || cnt != n) {
		return mg_seterr(err, errlen, -EBADMSG, "GGUF key %s: expected an array of %u %s, found %llu %s", key, n,
		       gguf_vtype_name(want), rc < 0 ? 0ULL : (unsigned long long)cnt,
		       rc < 0 ? "(unreadable)" : gguf_vtype_name(ty));
	}
	void *p = malloc((size_t)n * 4 + 1);	/* both types are 4 bytes */
	if (p == NULL)
		return -ENOMEM;
	memcpy(p, data, (size_t)n * 4);
	*ret = p;
	return 0;
}

/* A token id key: absent or out of range (4294967295 = none) keeps *id. */
static int gguf_token_id(const gguf_t *g, const char *key, uint32_t n, int32_t *id, char *err,
			 size_t errlen)
{
	uint32_t v;
	int rc = gguf_get_u32(g, key, &v);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		int32_t sv;
		if (gguf_get_i32(g, key, &sv) == 0 && sv < 0)
			return 0;	/* -1 stored signed: none */
		return mg_seterr(err, errlen, -EBADMSG, "GGUF key %s: expected an unsigned integer token id", key);
	}
	if (v < n)
		*id = (int32_t)v;
	return 0;
}

static int gguf_flag(const gguf_t *g, const char *key, int *flag, char *err, size_t errlen)
{
	bool b;
	int rc = gguf_get_bool(g, key, &b);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		return mg_seterr(err, errlen, -EBADMSG, "GGUF key %s: expected a bool", key);
	}
	*flag = b;
	return 0;
}

int tok_new_from_gguf(const gguf_t *g, tok_t **ret, char *err, size_t errlen)
{
	struct src s = { 0 };
	char *model = NULL, *pre = NULL;
	void *scores = NULL, *types = NULL;
	gguf_str_t str;
	int rc;

	s.bos = s.eos = s.unk = s.pad = s.eot = s.eom = -1;
	s.add_bos = s.add_eos = s.add_space_prefix = -1;
	rc = gguf_get_str(g, "tokenizer.ggml.model", &str);
	if (rc < 0) {
		return mg_seterr(err, errlen, -EBADMSG, "GGUF key tokenizer.ggml.model: %s",
		       rc == -ENOENT ? "missing (the file has no tokenizer)" : "not a string");
	}
	model = strndup(str.data, str.len);
	if (model == NULL)
		return -ENOMEM;
	if (strcmp(model, "llama") == 0) {
		s.kind = TOK_KIND_SPM;
	} else if (strcmp(model, "gpt2") == 0) {
		s.kind = TOK_KIND_BPE;
	} else {
		rc = mg_seterr(err, errlen, -ENOTSUP, "GGUF key tokenizer.ggml.model: '%s' is not supported "
		       "(llama, gpt2 are)", model);
		goto out;
	}
	rc = gguf_get_str(g, "tokenizer.ggml.pre", &str);
	if (rc == 0) {
		pre = strndup(str.data, str.len);
		if (pre == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		s.pre = pre;
	} else if (rc != -ENOENT) {
		rc = mg_seterr(err, errlen, -EBADMSG, "GGUF key tokenizer.ggml.pre: not a string");
		goto out;
	}
	rc = gguf_strings(g, "tokenizer.ggml.tokens", &s.tok, &s.tok_len, &s.n_tokens, err, errlen);
	if (rc == -ENOENT || (rc == 0 && s.n_tokens == 0)) {
		rc = mg_seterr(err, errlen, -EBADMSG, "GGUF key tokenizer.ggml.tokens: missing or empty");
	}
	if (rc < 0)
		goto out;
	rc = gguf_numbers(g, "tokenizer.ggml.scores", GGUF_VTYPE_FLOAT32, s.n_tokens, &scores,
			  err, errlen);
	if (rc < 0)
		goto out;
	s.scores = scores;
	rc = gguf_numbers(g, "tokenizer.ggml.token_type", GGUF_VTYPE_INT32, s.n_tokens, &types,
			  err, errlen);
	if (rc < 0)
		goto out;
	s.types = types;
	if (s.kind == TOK_KIND_BPE) {
		rc = gguf_strings(g, "tokenizer.ggml.merges", &s.merge, &s.merge_len, &s.n_merges,
				  err, errlen);
		if (rc == -ENOENT) {
			rc = mg_seterr(err, errlen, -EBADMSG, "GGUF key tokenizer.ggml.merges: missing (a gpt2 "
			       "tokenizer needs its merges)");
		}
		if (rc < 0)
			goto out;
	} else {
		/* llama.cpp's defaults for SentencePiece vocabularies */
		s.bos = s.n_tokens > 1 ? 1 : -1;
		s.eos = s.n_tokens > 2 ? 2 : -1;
		s.unk = 0;
	}
	static const char *const id_keys[] = {
		"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
		"tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
		"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id",
	};
	int32_t *id_dst[] = { &s.bos, &s.eos, &s.unk, &s.pad, &s.eot, &s.eom };
	for (int i = 0; i < 6; i++) {
		rc = gguf_token_id(g, id_keys[i], s.n_tokens, id_dst[i], err, errlen);
		if (rc < 0)
			goto out;
	}
	if ((rc = gguf_flag(g, "tokenizer.ggml.add_bos_token", &s.add_bos, err, errlen)) < 0 ||
	    (rc = gguf_flag(g, "tokenizer.ggml.add_eos_token", &s.add_eos, err, errlen)) < 0 ||
	    (rc = gguf_flag(g, "tokenizer.ggml.add_space_prefix", &s.add_space_prefix, err,
			    errlen)) < 0)
		goto out;
	rc = gguf_get_str(g, "tokenizer.chat_template", &str);
	if (rc == 0) {
		s.chat_template = str.data;
		s.chat_template_len = str.len;
	} else if (rc != -ENOENT) {
		rc = mg_seterr(err, errlen, -EBADMSG, "GGUF key tokenizer.chat_template: not a string");
		goto out;
	}
	rc = build(&s, ret, err, errlen);
out:
	if (rc == -ENOMEM)
		mg_seterr(err, errlen, rc, "tokenizer: out of memory reading the GGUF vocabulary");
	free(model);
	free(pre);
	free(scores);
	free(types);
	free(s.tok);
	free(s.tok_len);
	free(s.merge);
	free(s.merge_len);
	return rc;
}

/* ---- encoding ---- */

struct ids {
	int32_t *v;
	size_t n, cap;
};

static int ids_push(struct ids *o, int32_t id)
{
	if (o->n == o->cap) {
		size_t nc = o->cap ? o->cap * 2 : 64;
		int32_t *nv = realloc(o->v, nc * sizeof(*nv));
		if (nv == NULL)
			return -ENOMEM;
		o->v = nv;
		o->cap = nc;
	}
	o->v[o->n++] = id;
	return 0;
}

/* A symbol is a run of bytes of the working text; merging a right symbol
 * into its left neighbour empties it (n = 0) and unlinks it. */
struct sym {
	uint32_t start, n;
	int32_t prev, next;
};

/* A candidate merge of two adjacent symbols. Lower prio first (SPM: -score,
 * BPE: merge rank), ties to the leftmost, as llama.cpp's comparators. */
struct bigram {
	double prio;
	int32_t left, right;
	uint32_t size;
};

/* Scratch space of one tok_encode call (a tok_t is shared by threads). */
struct work {
	char *buf;		/* working text of a fragment / word */
	size_t cap_buf;
	char *clean;		/* sanitized UTF-8 of a BPE fragment */
	size_t cap_clean;
	struct sym *sym;
	size_t cap_sym;
	struct bigram *heap;
	size_t n_heap, cap_heap;
	pcre2_match_data *md;
	struct ids out;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 64;
	while (nc < need) {
		if (nc > SIZE_MAX / 2 / elem)
			return -ENOMEM;
		nc *= 2;
	}
	void *np = realloc(*p, nc * elem);
	if (np == NULL)
		return -ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}

static bool better(const struct bigram *a, const struct bigram *b)
{
	return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(struct work *w, struct bigram b)
{
	if (grow((void **)&w->heap, &w->cap_heap, w->n_heap + 1, sizeof(b)) < 0)
		return -ENOMEM;
	size_t i = w->n_heap++;
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!better(&b, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = b;
	return 0;
}

static struct bigram heap_pop(struct work *w)
{
	struct bigram top = w->heap[0], last = w->heap[--w->n_heap];
	size_t i = 0, n = w->n_heap;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && better(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!better(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (n > 0)
		w->heap[i] = last;
	return top;
}

/* Splits w->buf[0..len) into one symbol per UTF-8 character. */
static int make_symbols(struct work *w, size_t len, size_t *ret_n)
{
	size_t n = 0;
	if (grow((void **)&w->sym, &w->cap_sym, len, sizeof(struct sym)) < 0)
		return -ENOMEM;
	for (size_t off = 0; off < len; n++) {
		size_t l = utf8_len((unsigned char)w->buf[off]);
		if (l > len - off)
			l = len - off;
		w->sym[n] = (struct sym){ (uint32_t)off, (uint32_t)l, (int32_t)n - 1,
					  off + l == len ? -1 : (int32_t)n + 1 };
		off += l;
	}
	*ret_n = n;
	return 0;
}

static int spm_try_bigram(const tok_t *t, struct work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return 0;
	uint32_t size = w->sym[l].n + w->sym[r].n;
	int32_t id = find_text(t, w->buf + w->sym[l].start, size);
	if (id < 0)
		return 0;
	return heap_push(w, (struct bigram){ -(double)t->score[id], l, r, size });
}

static int bpe_try_bigram(const tok_t *t, struct work *w, int32_t l, int32_t r)
{
	if (l < 0 || r < 0)
		return 0;
	const struct sym *a = &w->sym[l], *b = &w->sym[r];
	int64_t rank = find_merge(t, w->buf + a->start, a->n, w->buf + b->start, b->n);
	if (rank < 0)
		return 0;
	return heap_push(w, (struct bigram){ (double)rank, l, r, a->n + b->n });
}

/* Greedy merging of w->sym[0..n) until no candidate is left. */
static int merge_all(const tok_t *t, struct work *w, size_t n,
		     int (*try_bigram)(const tok_t *, struct work *, int32_t, int32_t))
{
	int rc = 0;
	w->n_heap = 0;
	for (size_t i = 1; i < n && rc == 0; i++)
		rc = try_bigram(t, w, (int32_t)i - 1, (int32_t)i);
	while (rc == 0 && w->n_heap > 0) {
		struct bigram b = heap_pop(w);
		struct sym *l = &w->sym[b.left], *r = &w->sym[b.right];
		/* stale: one side was merged away or has grown since */
		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = b.left;
		rc = try_bigram(t, w, l->prev, b.left);
		if (rc == 0)
			rc = try_bigram(t, w, b.left, l->next);
	}
	return rc;
}

/* One SPM text fragment: dummy prefix, ' ' -> U+2581, merges, byte fallback. */
static int spm_fragment(const tok_t *t, struct work *w, const char *s, size_t len, bool prefix)
{
	size_t n = 0, sz = 0;
	int rc;
	if (len > (SIZE_MAX - 3) / 3 || len > UINT32_MAX / 4)
		return -ENOMEM;
	if (grow((void **)&w->buf, &w->cap_buf, 3 * len + 3, 1) < 0)
		return -ENOMEM;
	if (prefix) {
		memcpy(w->buf, "\xe2\x96\x81", 3);
		sz = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (s[i] == ' ') {
			memcpy(w->buf + sz, "\xe2\x96\x81", 3);
			sz += 3;
		} else {
			w->buf[sz++] = s[i];
		}
	}
	if (sz == 0)
		return 0;
	if ((rc = make_symbols(w, sz, &n)) < 0 || (rc = merge_all(t, w, n, spm_try_bigram)) < 0)
		return rc;
	for (int32_t i = 0; i != -1; i = w->sym[i].next) {
		const struct sym *y = &w->sym[i];
		int32_t id = find_text(t, w->buf + y->start, y->n);
		if (id >= 0) {
			if ((rc = ids_push(&w->out, id)) < 0)
				return rc;
			continue;
		}
		for (uint32_t k = 0; k < y->n; k++) {
			id = t->byte_tok[(unsigned char)w->buf[y->start + k]];
			if (id < 0)
				id = t->unk;
			if (id < 0)
				return -EILSEQ;
			if ((rc = ids_push(&w->out, id)) < 0)
				return rc;
		}
	}
	return 0;
}

/* One BPE pre-token: bytes -> byte-level characters, then merges. */
static int bpe_word(const tok_t *t, struct work *w, const char *s, size_t len)
{
	size_t sz = 0, n = 0;
	int rc;
	if (len == 0)
		return 0;
	if (len > UINT32_MAX / 4)
		return -ENOMEM;
	if (grow((void **)&w->buf, &w->cap_buf, 2 * len, 1) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char b = (unsigned char)s[i];
		memcpy(w->buf + sz, t->b2u[b], t->b2u_len[b]);
		sz += t->b2u_len[b];
	}
	if (t->ignore_merges) {
		int32_t id = find_text(t, w->buf, sz);
		if (id >= 0)
			return ids_push(&w->out, id);
	}
	if ((rc = make_symbols(w, sz, &n)) < 0 || (rc = merge_all(t, w, n, bpe_try_bigram)) < 0)
		return rc;
	for (int32_t i = 0; i != -1; i = w->sym[i].next) {
		const struct sym *y = &w->sym[i];
		int32_t id = find_text(t, w->buf + y->start, y->n);
		if (id >= 0) {
			if ((rc = ids_push(&w->out, id)) < 0)
				return rc;
			continue;
		}
		/* no such token: llama.cpp emits whichever single bytes of
		 * the symbol are tokens, and drops the rest */
		for (uint32_t k = 0; k < y->n; k++) {
			id = find_text(t, w->buf + y->start + k, 1);
			if (id >= 0 && (rc = ids_push(&w->out, id)) < 0)
				return rc;
		}
	}
	return 0;
}

/* One BPE text fragment: split by the pre-tokenizer regex; text between
 * matches is a word of its own. */
static int bpe_fragment(const tok_t *t, struct work *w, const char *s, size_t len)
{
	int rc;
	if (len > SIZE_MAX / 3 || grow((void **)&w->clean, &w->cap_clean, 3 * len, 1) < 0)
		return -ENOMEM;
	size_t n = utf8_clean(s, len, w->clean);
	const char *c = w->clean;
	if (w->md == NULL) {
		w->md = pcre2_match_data_create_from_pattern(t->re, NULL);
		if (w->md == NULL)
			return -ENOMEM;
	}
	size_t start = 0, pos = 0;
	while (pos < n) {
		int m = pcre2_match(t->re, (PCRE2_SPTR)c, n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
		if (m == PCRE2_ERROR_JIT_STACKLIMIT)
			m = pcre2_match(t->re, (PCRE2_SPTR)c, n, pos,
					PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
		if (m == PCRE2_ERROR_NOMATCH)
			break;
		if (m < 0)
			return m == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EINVAL;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
		size_t ms = ov[0], me = ov[1];
		if (me <= ms) {
			/* an empty match (none of our regexes has one): step
			 * over one character, it stays in the gap */
			pos = ms + utf8_len((unsigned char)c[ms]);
			continue;
		}
		if (ms > start && (rc = bpe_word(t, w, c + start, ms - start)) < 0)
			return rc;
		if ((rc = bpe_word(t, w, c + ms, me - ms)) < 0)
			return rc;
		start = pos = me;
	}
	if (start < n && (rc = bpe_word(t, w, c + start, n - start)) < 0)
		return rc;
	return 0;
}

/* A piece of the input after special-token partitioning. */
struct frag {
	size_t off, len;
	int32_t id;		/* special token, or -1 for raw text */
};

struct occ {
	uint32_t rank;		/* index into t->special: match order */
	size_t pos;
};

static int cmp_occ(const void *a, const void *b)
{
	const struct occ *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_occ_pos(const void *a, const void *b)
{
	const struct occ *x = a, *y = b;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static bool special_active(const tok_t *t, int32_t id, bool parse_special)
{
	return t->type[id] == TOK_TYPE_USER_DEFINED || parse_special;
}

/* llama.cpp's tokenizer_st_partition: for each special token in match
 * order (longest text first), every leftmost non-overlapping occurrence
 * that lies wholly inside text not yet claimed becomes that token. Done
 * here in one pass over the text (a trie finds every occurrence of every
 * special), then the occurrences are taken in llama.cpp's order. *ret
 * (free()) holds the fragments in text order. */
static int partition(const tok_t *t, const char *text, size_t len, bool parse_special,
		     const uint8_t *plain, struct frag **ret, size_t *ret_n)
{
	struct occ *occ = NULL;
	size_t n_occ = 0, cap_occ = 0, n_taken = 0, n_frag = 0;
	uint8_t *claimed = NULL;
	struct frag *frag = NULL;
	int rc = -ENOMEM;
	const unsigned char *u = (const unsigned char *)text;

	if (t->n_special > 0) {
		for (size_t i = 0; i < len; i++) {
			int32_t node = t->trie_root[u[i]];
			for (size_t j = i; node >= 0;) {
				const struct trie_node *nd = &t->trie[node];
				if (nd->rank >= 0 &&
				    special_active(t, t->special[nd->rank], parse_special) &&
				    (plain == NULL || t->type[t->special[nd->rank]] == TOK_TYPE_USER_DEFINED ||
				     memchr(plain + i, 1, j + 1 - i) == NULL)) {
					if (grow((void **)&occ, &cap_occ, n_occ + 1, sizeof(*occ)) < 0)
						goto fail;
					occ[n_occ++] = (struct occ){ (uint32_t)nd->rank, i };
				}
				if (++j == len)
					break;
				for (node = nd->child; node >= 0 && t->trie[node].byte != u[j];)
					node = t->trie[node].sibling;
			}
		}
	}
	if (n_occ > 0) {
		claimed = calloc(len, 1);
		if (claimed == NULL)
			goto fail;
		qsort(occ, n_occ, sizeof(*occ), cmp_occ);
		size_t last_end = 0;
		uint32_t last_rank = UINT32_MAX;
		for (size_t k = 0; k < n_occ; k++) {
			uint32_t tl = t->text_len[t->special[occ[k].rank]];
			size_t p = occ[k].pos;
			if (occ[k].rank != last_rank) {
				last_rank = occ[k].rank;
				last_end = 0;
			}
			if (p < last_end || memchr(claimed + p, 1, tl) != NULL)
				continue;
			memset(claimed + p, 1, tl);
			last_end = p + tl;
			occ[n_taken++] = occ[k];
		}
		qsort(occ, n_taken, sizeof(*occ), cmp_occ_pos);
	}
	frag = malloc((2 * n_taken + 1) * sizeof(*frag));
	if (frag == NULL)
		goto fail;
	size_t at = 0;
	for (size_t k = 0; k < n_taken; k++) {
		int32_t id = t->special[occ[k].rank];
		if (occ[k].pos > at)
			frag[n_frag++] = (struct frag){ at, occ[k].pos - at, -1 };
		frag[n_frag++] = (struct frag){ occ[k].pos, t->text_len[id], id };
		at = occ[k].pos + t->text_len[id];
	}
	if (at < len)
		frag[n_frag++] = (struct frag){ at, len - at, -1 };
	*ret = frag;
	*ret_n = n_frag;
	rc = 0;
fail:
	free(occ);
	free(claimed);
	return rc;
}

static int encode(const tok_t *t, const char *text, size_t len, bool add_special, bool parse_special,
		  const uint8_t *plain, int32_t **ret_ids, size_t *ret_n);

int tok_encode(const tok_t *t, const char *text, size_t len, bool add_special,
	       bool parse_special, int32_t **ret_ids, size_t *ret_n)
{
	return encode(t, text, len, add_special, parse_special, NULL, ret_ids, ret_n);
}

int tok_encode_plain(const tok_t *t, const char *text, size_t len, bool add_special,
		     const tok_span_t *plain, size_t n_plain, int32_t **ret_ids, size_t *ret_n)
{
	if (t == NULL || (text == NULL && len > 0) || (plain == NULL && n_plain > 0))
		return -EINVAL;
	uint8_t *mask = NULL;
	if (n_plain > 0 && len > 0) {
		mask = calloc(len, 1);
		if (mask == NULL)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n_plain; i++) {
		if (plain[i].off > len || plain[i].len > len - plain[i].off) {
			free(mask);
			return -EINVAL;
		}
		if (plain[i].len > 0)
			memset(mask + plain[i].off, 1, plain[i].len);
	}
	int rc = encode(t, text, len, add_special, true, mask, ret_ids, ret_n);
	free(mask);
	return rc;
}

static int encode(const tok_t *t, const char *text, size_t len, bool add_special, bool parse_special,
		  const uint8_t *plain, int32_t **ret_ids, size_t *ret_n)
{
	struct work w = { 0 };
	struct frag *frag = NULL;
	size_t n_frag = 0;
	int rc = 0;

	if (t == NULL || (text == NULL && len > 0) || ret_ids == NULL || ret_n == NULL)
		return -EINVAL;
	if (grow((void **)&w.out.v, &w.out.cap, 16, sizeof(int32_t)) < 0)
		return -ENOMEM;
	if (len > 0 && (rc = partition(t, text, len, parse_special, plain, &frag, &n_frag)) < 0)
		goto fail;
	if (add_special && t->add_bos && t->bos >= 0 && (rc = ids_push(&w.out, t->bos)) < 0)
		goto fail;
	/* SPM: the dummy prefix goes before the first fragment and after each
	 * special token (llama.cpp's is_prev_special) */
	bool prev_special = true;
	for (size_t i = 0; i < n_frag; i++) {
		const struct frag *f = &frag[i];
		if (f->id >= 0) {
			rc = ids_push(&w.out, f->id);
			prev_special = true;
		} else if (t->kind == TOK_KIND_SPM) {
			rc = spm_fragment(t, &w, text + f->off, f->len,
					  t->add_space_prefix && prev_special);
			prev_special = false;
		} else {
			rc = bpe_fragment(t, &w, text + f->off, f->len);
		}
		if (rc < 0)
			goto fail;
	}
	if (add_special && t->add_eos && t->eos >= 0 && (rc = ids_push(&w.out, t->eos)) < 0)
		goto fail;
	*ret_ids = w.out.v;
	*ret_n = w.out.n;
	w.out.v = NULL;
fail:
	free(frag);
	free(w.buf);
	free(w.clean);
	free(w.sym);
	free(w.heap);
	pcre2_match_data_free(w.md);
	free(w.out.v);
	return rc;
}

/* ---- decoding and accessors ---- */

int tok_piece(const tok_t *t, int32_t id, bool special, char *buf, size_t len)
{
	if (t == NULL || id < 0 || (uint32_t)id >= t->n)
		return -EINVAL;
	if (!special && (t->type[id] == TOK_TYPE_CONTROL || t->type[id] == TOK_TYPE_UNKNOWN))
		return 0;
	uint32_t n = t->piece_len[id];
	if (buf != NULL && len > 0)
		memcpy(buf, t->piece + t->piece_off[id], n < len ? n : len);
	return (int)n;
}

int tok_decode(const tok_t *t, const int32_t *ids, size_t n, bool special, char **ret,
	       size_t *ret_len)
{
	size_t total = 0;
	if (t == NULL || (ids == NULL && n > 0) || ret == NULL)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int r = tok_piece(t, ids[i], special, NULL, 0);
		if (r < 0)
			return r;
		total += (size_t)r;
	}
	char *s = malloc(total + 1);
	if (s == NULL)
		return -ENOMEM;
	size_t o = 0;
	for (size_t i = 0; i < n; i++)
		o += (size_t)tok_piece(t, ids[i], special, s + o, total - o);
	s[o] = '\0';
	*ret = s;
	if (ret_len != NULL)
		*ret_len = o;
	return 0;
}

enum tok_kind tok_kind(const tok_t *t)
{
	return t->kind;
}

uint32_t tok_n_vocab(const tok_t *t)
{
	return t->n;
}

int32_t tok_bos(const tok_t *t)
{
	return t->bos;
}

int32_t tok_eos(const tok_t *t)
{
	return t->eos;
}

bool tok_add_bos(const tok_t *t)
{
	return t->add_bos && t->bos >= 0;
}

bool tok_is_eog(const tok_t *t, int32_t id)
{
	return id >= 0 && (uint32_t)id < t->n && t->eog[id];
}

const char *tok_chat_template(const tok_t *t)
{
	return t->chat_template;
}

const char *tok_text(const tok_t *t, int32_t id)
{
	if (t == NULL || id < 0 || (uint32_t)id >= t->n)
		return NULL;
	return t->text + t->text_off[id];
}

int32_t tok_find(const tok_t *t, const char *text, size_t len)
{
	return find_text(t, text, len);
}

int tok_type(const tok_t *t, int32_t id)
{
	if (t == NULL || id < 0 || (uint32_t)id >= t->n)
		return -EINVAL;
	return t->type[id];
}

const char *tok_pre(const tok_t *t)
{
	return t->kind == TOK_KIND_BPE ? pre_types[t->pre].name : NULL;
}
