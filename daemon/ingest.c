/* ingest: see ingest.h. */
#include "ingest.h"
#include "lib/mg_hash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STOP_MAX 4
#define MESSAGES_MAX 4096

uint64_t ingest_seed(const char *job, const char *custom_id)
{
	uint64_t h = mg_fnv1a64(MG_FNV1A64_OFFSET, job, strlen(job) + 1);	/* with its NUL */
	h = mg_fnv1a64(h, custom_id, strlen(custom_id));
	return mg_mix64(h + MG_SPLITMIX64_GAMMA);
}

void ingest_line_done(ingest_line_t *l)
{
	if (l == NULL)
		return;
	free(l->custom_id);
	free(l->model);
	free(l->body);
	memset(l, 0, sizeof(*l));
}

/* Content of a chat message: a string, or an array of parts of which the
 * "text" ones are concatenated (images and audio are refused). Returns a
 * new string reference or NULL with err set. */
static json_t *message_text(json_t *content, size_t i, char *err, size_t errlen)
{
	if (json_is_string(content))
		return json_incref(content);
	if (!json_is_array(content)) {
		snprintf(err, errlen, "body.messages[%zu].content: expected a string or an array of text parts", i);
		return NULL;
	}
	size_t n = 0, k;
	json_t *part;
	json_array_foreach(content, k, part) {
		json_t *t = json_object_get(part, "text");
		const char *type = json_string_value(json_object_get(part, "type"));
		if (!json_is_object(part) || type == NULL || strcmp(type, "text") != 0 || !json_is_string(t)) {
			snprintf(err, errlen, "body.messages[%zu].content[%zu]: only {\"type\":\"text\",\"text\":\"...\"} parts are supported",
				 i, k);
			return NULL;
		}
		n += json_string_length(t);
	}
	char *buf = malloc(n + 1);
	if (buf == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t off = 0;
	json_array_foreach(content, k, part) {
		json_t *t = json_object_get(part, "text");
		memcpy(buf + off, json_string_value(t), json_string_length(t));
		off += json_string_length(t);
	}
	json_t *s = json_stringn_nocheck(buf, n);
	free(buf);
	if (s == NULL)
		snprintf(err, errlen, "out of memory");
	return s;
}

static int get_number(json_t *body, const char *key, double lo, double hi, double *v,
		      char *err, size_t errlen)
{
	json_t *x = json_object_get(body, key);
	if (x == NULL || json_is_null(x))
		return 0;
	if (!json_is_number(x) || json_number_value(x) < lo || json_number_value(x) > hi) {
		snprintf(err, errlen, "body.%s: expected a number from %g to %g", key, lo, hi);
		return -EINVAL;
	}
	*v = json_number_value(x);
	return 0;
}

static int get_int(json_t *body, const char *key, json_int_t lo, json_int_t hi, json_int_t *v,
		   char *err, size_t errlen)
{
	json_t *x = json_object_get(body, key);
	if (x == NULL || json_is_null(x))
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi) {
		snprintf(err, errlen, "body.%s: expected an integer from %lld to %lld", key,
			 (long long)lo, (long long)hi);
		return -EINVAL;
	}
	*v = json_integer_value(x);
	return 1;
}

/* --- embeddings -------------------------------------------------------- */

/* One array of token ids as {"tokens":[...]}; where names it in errors
 * ("body.input", "body.input[2]"). New reference or NULL with err set. */
static json_t *token_input(json_t *arr, const char *where, int64_t *n_tokens, char *err,
			   size_t errlen)
{
	if (json_array_size(arr) == 0) {
		snprintf(err, errlen, "%s: expected a non-empty array of token ids", where);
		return NULL;
	}
	size_t k;
	json_t *t;
	json_array_foreach(arr, k, t) {
		if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX) {
			snprintf(err, errlen, "%s[%zu]: expected a token id (an integer from 0 to %d)", where, k,
				 INT32_MAX);
			return NULL;
		}
	}
	*n_tokens += (int64_t)json_array_size(arr);
	json_t *o = json_pack("{s:O}", "tokens", arr);
	if (o == NULL)
		snprintf(err, errlen, "out of memory");
	return o;
}

static json_t *text_input(json_t *s, int64_t *n_tokens, char *err, size_t errlen)
{
	/* ~4 bytes a token, and the BOS the model adds */
	*n_tokens += (int64_t)json_string_length(s) / 4 + 1;
	json_t *o = json_pack("{s:O}", "text", s);
	if (o == NULL)
		snprintf(err, errlen, "out of memory");
	return o;
}

/* body.input in its four shapes (a string, strings, token ids, arrays of
 * token ids) -> [{"text"}|{"tokens"}, ...]. The shape is set by the value
 * (an array: by its first element); every element must have it. */
static json_t *embed_inputs(json_t *in, int64_t *n_tokens, char *err, size_t errlen)
{
	json_t *out = json_array(), *e = NULL;
	if (out == NULL)
		goto nomem;
	if (json_is_string(in)) {
		if (json_string_length(in) == 0) {
			snprintf(err, errlen, "body.input: expected a non-empty string");
			goto fail;
		}
		if ((e = text_input(in, n_tokens, err, errlen)) == NULL || json_array_append_new(out, e) < 0)
			goto fail;
		return out;
	}
	if (!json_is_array(in) || json_array_size(in) == 0) {
		snprintf(err, errlen, "body.input: expected a non-empty string, an array of strings, an array of token ids, or an array of such arrays");
		goto fail;
	}
	json_t *first = json_array_get(in, 0);
	if (json_is_integer(first)) {
		if ((e = token_input(in, "body.input", n_tokens, err, errlen)) == NULL ||
		    json_array_append_new(out, e) < 0)
			goto fail;
		return out;
	}
	if (json_array_size(in) > INGEST_EMBED_INPUTS_MAX) {
		snprintf(err, errlen, "body.input: %zu inputs; at most %d per request", json_array_size(in),
			 INGEST_EMBED_INPUTS_MAX);
		goto fail;
	}
	bool strings = json_is_string(first);
	if (!strings && !json_is_array(first)) {
		snprintf(err, errlen, "body.input[0]: expected a string, a token id or an array of token ids");
		goto fail;
	}
	size_t i;
	json_t *x;
	json_array_foreach(in, i, x) {
		char where[48];
		snprintf(where, sizeof(where), "body.input[%zu]", i);
		if (strings && (!json_is_string(x) || json_string_length(x) == 0)) {
			snprintf(err, errlen, "%s: expected a %sstring (the inputs are strings)", where,
				 json_is_string(x) ? "non-empty " : "");
			goto fail;
		}
		if (!strings && !json_is_array(x)) {
			snprintf(err, errlen, "%s: expected an array of token ids (the inputs are arrays of token ids)",
				 where);
			goto fail;
		}
		e = strings ? text_input(x, n_tokens, err, errlen) : token_input(x, where, n_tokens, err, errlen);
		if (e == NULL || json_array_append_new(out, e) < 0)
			goto fail;
	}
	return out;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	json_decref(out);
	return NULL;
}

/* A /v1/embeddings line: body {model, input, encoding_format, dimensions,
 * user (ignored), truncate (an extension)}. The model's limits (does it
 * embed, dimensions it can be cut to, context) are batchfmt's checks. */
static int parse_embed(const char *custom_id, json_t *body, ingest_line_t *ret, char *err,
		       size_t errlen)
{
	ingest_line_t l = { .endpoint = INGEST_EP_EMBEDDINGS };
	json_t *norm = NULL;
	const char *model = json_string_value(json_object_get(body, "model"));
	if (model == NULL || *model == '\0' || strlen(model) >= 256) {
		snprintf(err, errlen, "body.model: expected a non-empty string");
		return -EINVAL;
	}
	json_t *fmt = json_object_get(body, "encoding_format");
	const char *enc = "float";
	if (fmt != NULL && !json_is_null(fmt)) {
		enc = json_string_value(fmt);
		if (enc == NULL || (strcmp(enc, "float") != 0 && strcmp(enc, "base64") != 0)) {
			snprintf(err, errlen, "body.encoding_format: expected \"float\" or \"base64\"");
			return -EINVAL;
		}
	}
	json_int_t dims = 0;
	if (get_int(body, "dimensions", 1, INGEST_EMBED_DIMS_MAX, &dims, err, errlen) < 0)
		return -EINVAL;
	json_t *tr = json_object_get(body, "truncate");
	if (tr != NULL && !json_is_null(tr) && !json_is_boolean(tr)) {
		snprintf(err, errlen, "body.truncate: expected true or false");
		return -EINVAL;
	}
	int64_t n_tokens = 0;
	json_t *inputs = embed_inputs(json_object_get(body, "input"), &n_tokens, err, errlen);
	if (inputs == NULL)
		return -EINVAL;
	norm = json_pack("{s:b, s:o, s:s, s:I, s:b}", "embed", 1, "inputs", inputs, "encoding_format",
			 enc, "dimensions", dims, "truncate", json_is_true(tr));
	if (norm == NULL)
		goto nomem;
	l.custom_id = strdup(custom_id);
	l.model = strdup(model);
	l.body = json_dumps(norm, JSON_COMPACT);
	if (l.custom_id == NULL || l.model == NULL || l.body == NULL)
		goto nomem;
	l.est_tokens = n_tokens;
	json_decref(norm);
	*ret = l;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	json_decref(norm);
	ingest_line_done(&l);
	return -ENOMEM;
}

/* The envelope of a batch line, {custom_id, method, url, body}: returns
 * the body (borrowed from obj) with *ret_cid and *ret_url (borrowed), or
 * NULL with err. */
static json_t *envelope(json_t *obj, const char **ret_cid, const char **ret_url, char *err,
			size_t errlen)
{
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "expected a JSON object");
		return NULL;
	}
	json_t *cid = json_object_get(obj, "custom_id");
	if (!json_is_string(cid) || json_string_length(cid) == 0 ||
	    json_string_length(cid) > INGEST_CUSTOM_ID_MAX ||
	    strlen(json_string_value(cid)) != json_string_length(cid)) {
		snprintf(err, errlen, "custom_id: expected a non-empty string of at most %d bytes",
			 INGEST_CUSTOM_ID_MAX);
		return NULL;
	}
	json_t *method = json_object_get(obj, "method");
	if (method != NULL && (!json_is_string(method) || strcmp(json_string_value(method), "POST") != 0)) {
		snprintf(err, errlen, "method: expected \"POST\"");
		return NULL;
	}
	const char *url = json_string_value(json_object_get(obj, "url"));
	if (url == NULL || (strcmp(url, INGEST_EP_EMBEDDINGS) != 0 &&
			    strcmp(url, "/v1/chat/completions") != 0 && strcmp(url, "/v1/completions") != 0)) {
		snprintf(err, errlen, "url: expected \"/v1/chat/completions\", \"/v1/completions\" or \"%s\"",
			 INGEST_EP_EMBEDDINGS);
		return NULL;
	}
	json_t *body = json_object_get(obj, "body");
	if (!json_is_object(body)) {
		snprintf(err, errlen, "body: expected an object");
		return NULL;
	}
	*ret_cid = json_string_value(cid);
	*ret_url = url;
	return body;
}

/* The prompt into norm: "messages" (chat: [{role, content}], each content
 * flattened to its text) or "prompt". *ret_bytes gets the text's length.
 * 0, -EINVAL or -ENOMEM with err. */
static int put_prompt(json_t *norm, json_t *body, bool chat, int64_t *ret_bytes, char *err,
		      size_t errlen)
{
	if (!chat) {
		json_t *pr = json_object_get(body, "prompt");
		if (json_is_array(pr) && json_array_size(pr) == 1)
			pr = json_array_get(pr, 0);
		if (!json_is_string(pr)) {
			snprintf(err, errlen, "body.prompt: expected a string");
			return -EINVAL;
		}
		*ret_bytes = (int64_t)json_string_length(pr);
		json_object_set(norm, "prompt", pr);
		return 0;
	}
	json_t *m = json_object_get(body, "messages");
	if (!json_is_array(m) || json_array_size(m) == 0 || json_array_size(m) > MESSAGES_MAX) {
		snprintf(err, errlen, "body.messages: expected a non-empty array of messages");
		return -EINVAL;
	}
	int r = -ENOMEM;
	int64_t text_bytes = 0;
	json_t *msgs = json_array();
	if (msgs == NULL)
		goto nomem;
	size_t i;
	json_t *msg;
	json_array_foreach(m, i, msg) {
		const char *role = json_string_value(json_object_get(msg, "role"));
		if (role == NULL || *role == '\0') {
			snprintf(err, errlen, "body.messages[%zu].role: expected a string", i);
			r = -EINVAL;
			goto fail;
		}
		json_t *text = message_text(json_object_get(msg, "content"), i, err, errlen);
		if (text == NULL) {
			r = -EINVAL;
			goto fail;
		}
		text_bytes += (int64_t)json_string_length(text) + 16;
		json_t *o = json_pack("{s:s, s:o}", "role", role, "content", text);
		if (o == NULL || json_array_append_new(msgs, o) < 0)
			goto nomem;
	}
	json_object_set_new(norm, "messages", msgs);
	*ret_bytes = text_bytes;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	json_decref(msgs);
	return r;
}

/* The stop strings of body (a string, an array of them, or none) as a new
 * array; NULL with err (-ENOMEM: *ret_nomem). */
static json_t *stop_strings(json_t *body, bool *ret_nomem, char *err, size_t errlen)
{
	json_t *stops = json_array();
	if (stops == NULL) {
		*ret_nomem = true;
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	json_t *st = json_object_get(body, "stop");
	if (json_is_string(st)) {
		json_array_append(stops, st);
	} else if (json_is_array(st)) {
		size_t i;
		json_t *s;
		if (json_array_size(st) > STOP_MAX) {
			snprintf(err, errlen, "body.stop: at most %d stop strings", STOP_MAX);
			goto fail;
		}
		json_array_foreach(st, i, s) {
			if (!json_is_string(s) || json_string_length(s) == 0) {
				snprintf(err, errlen, "body.stop[%zu]: expected a non-empty string", i);
				goto fail;
			}
			json_array_append(stops, s);
		}
	} else if (st != NULL && !json_is_null(st)) {
		snprintf(err, errlen, "body.stop: expected a string or an array of strings");
		goto fail;
	}
	return stops;
fail:
	json_decref(stops);
	return NULL;
}

/* The sampling settings into norm: max_tokens (max_completion_tokens
 * first, the job's default when neither), temperature, top_p, top_k, seed
 * (absent: ingest_seed of the job and custom_id) and stop. 0, -EINVAL or
 * -ENOMEM with err; *ret_max_tokens on success. */
static int put_sampling(json_t *norm, json_t *body, const ingest_params_t *p, const char *cid,
			json_int_t *ret_max_tokens, char *err, size_t errlen)
{
	json_int_t max_tokens = p->default_max_tokens;
	int g = get_int(body, "max_completion_tokens", 1, p->max_tokens_cap, &max_tokens, err, errlen);
	if (g < 0 || (g == 0 && get_int(body, "max_tokens", 1, p->max_tokens_cap, &max_tokens, err, errlen) < 0))
		return -EINVAL;
	double temperature = 1.0, top_p = 1.0;
	if (get_number(body, "temperature", 0, 2, &temperature, err, errlen) < 0 ||
	    get_number(body, "top_p", 0, 1, &top_p, err, errlen) < 0)
		return -EINVAL;
	json_int_t top_k = 0, seed = 0;
	if (get_int(body, "top_k", 0, 1 << 20, &top_k, err, errlen) < 0)
		return -EINVAL;
	g = get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, err, errlen);
	if (g < 0)
		return -EINVAL;
	uint64_t useed = g > 0 ? (uint64_t)seed : ingest_seed(p->job, cid);
	bool nomem = false;
	json_t *stops = stop_strings(body, &nomem, err, errlen);
	if (stops == NULL)
		return nomem ? -ENOMEM : -EINVAL;
	if (json_object_set_new(norm, "max_tokens", json_integer(max_tokens)) < 0 ||
	    json_object_set_new(norm, "temperature", json_real(temperature)) < 0 ||
	    json_object_set_new(norm, "top_p", json_real(top_p)) < 0 ||
	    json_object_set_new(norm, "top_k", json_integer(top_k)) < 0 ||
	    json_object_set_new(norm, "seed", json_integer((json_int_t)useed)) < 0) {
		json_decref(stops);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (json_object_set_new(norm, "stop", stops) < 0) {	/* stops freed */
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*ret_max_tokens = max_tokens;
	return 0;
}

int ingest_line_parse_json(json_t *obj, const ingest_params_t *p, ingest_line_t *ret,
			   char *err, size_t errlen)
{
	ingest_line_t l = { 0 };
	json_t *norm = NULL;
	int r = -EINVAL;
	int64_t text_bytes = 0;
	json_int_t max_tokens = 0;
	const char *cid, *url;

	json_t *body = envelope(obj, &cid, &url, err, errlen);
	if (body == NULL)
		return -EINVAL;
	if (strcmp(url, INGEST_EP_EMBEDDINGS) == 0)
		return parse_embed(cid, body, ret, err, errlen);
	bool chat = strcmp(url, "/v1/chat/completions") == 0;
	l.endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
	const char *model = json_string_value(json_object_get(body, "model"));
	if (model == NULL || *model == '\0' || strlen(model) >= 256) {
		snprintf(err, errlen, "body.model: expected a non-empty string");
		goto fail;
	}
	json_t *stream = json_object_get(body, "stream");
	if (json_is_true(stream)) {
		snprintf(err, errlen, "body.stream: streaming is not available in a batch");
		goto fail;
	}
	json_int_t n = 1;
	if (get_int(body, "n", 1, 1, &n, err, errlen) < 0)
		goto fail;

	norm = json_object();
	if (norm == NULL)
		goto nomem;
	json_object_set_new(norm, "chat", json_boolean(chat));
	if ((r = put_prompt(norm, body, chat, &text_bytes, err, errlen)) < 0 ||
	    (r = put_sampling(norm, body, p, cid, &max_tokens, err, errlen)) < 0)
		goto fail;

	l.custom_id = strdup(cid);
	l.model = strdup(model);
	l.body = json_dumps(norm, JSON_COMPACT | JSON_REAL_PRECISION(9));
	if (l.custom_id == NULL || l.model == NULL || l.body == NULL)
		goto nomem;
	/* A rough token count: ~4 bytes a token for prompts, plus the budget. */
	l.est_tokens = text_bytes / 4 + 1 + max_tokens;
	json_decref(norm);
	*ret = l;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
fail:
	json_decref(norm);
	ingest_line_done(&l);
	return r;
}

int ingest_line_parse(const char *text, size_t len, const ingest_params_t *p,
		      ingest_line_t *ret, char *err, size_t errlen)
{
	json_error_t je;
	json_t *obj = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (obj == NULL) {
		snprintf(err, errlen, "not valid JSON at column %d: %s", je.column, je.text);
		return -EINVAL;
	}
	int r = ingest_line_parse_json(obj, p, ret, err, errlen);
	json_decref(obj);
	return r;
}

void ingest_req_done(ingest_req_t *r)
{
	if (r == NULL)
		return;
	json_decref(r->root);
	free(r->custom_id);
	free(r->msgs);
	free(r->msgp);
	free(r->stop);
	free(r->inputs);
	free(r->inputp);
	free(r->tokens);
	memset(r, 0, sizeof(*r));
}

/* The embedding fields of r->pb from a normalized body (r->root). */
static int fill_embed(ingest_req_t *r)
{
	json_t *in = json_object_get(r->root, "inputs");
	size_t n = json_array_size(in), n_tok = 0, i, k;
	json_t *x, *t;
	if (n == 0)
		return -EBADMSG;
	json_array_foreach(in, i, x)
		n_tok += json_array_size(json_object_get(x, "tokens"));
	r->inputs = calloc(n, sizeof(*r->inputs));
	r->inputp = calloc(n, sizeof(*r->inputp));
	r->tokens = calloc(n_tok ? n_tok : 1, sizeof(*r->tokens));
	if (r->inputs == NULL || r->inputp == NULL || r->tokens == NULL)
		return -ENOMEM;
	size_t off = 0;
	json_array_foreach(in, i, x) {
		Margin__V1__EmbedInput *e = &r->inputs[i];
		margin__v1__embed_input__init(e);
		json_t *text = json_object_get(x, "text"), *toks = json_object_get(x, "tokens");
		if (json_is_string(text)) {
			e->text = (char *)json_string_value(text);
		} else if (json_array_size(toks) > 0) {
			e->tokens = r->tokens + off;
			e->n_tokens = json_array_size(toks);
			json_array_foreach(toks, k, t)
				r->tokens[off++] = (int32_t)json_integer_value(t);
		} else {
			return -EBADMSG;
		}
		r->inputp[i] = e;
	}
	r->pb.embed = true;
	r->pb.n_inputs = n;
	r->pb.inputs = r->inputp;
	r->pb.dimensions = (uint32_t)json_integer_value(json_object_get(r->root, "dimensions"));
	r->pb.truncate = json_is_true(json_object_get(r->root, "truncate"));
	return 0;
}

int ingest_req_fill(ingest_req_t *r, int64_t line_no, const char *custom_id, const char *body)
{
	memset(r, 0, sizeof(*r));
	margin__v1__request__init(&r->pb);
	r->root = json_loads(body, 0, NULL);
	r->custom_id = strdup(custom_id);
	if (r->root == NULL || r->custom_id == NULL || !json_is_object(r->root))
		goto bad;
	json_t *root = r->root;
	r->pb.line_no = (uint64_t)line_no;
	r->pb.custom_id = r->custom_id;
	if (json_is_true(json_object_get(root, "embed"))) {
		if (fill_embed(r) < 0)
			goto bad;
		return 0;
	}
	r->pb.chat = json_is_true(json_object_get(root, "chat"));
	r->pb.max_tokens = (uint32_t)json_integer_value(json_object_get(root, "max_tokens"));
	r->pb.temperature = (float)json_number_value(json_object_get(root, "temperature"));
	r->pb.top_p = (float)json_number_value(json_object_get(root, "top_p"));
	r->pb.top_k = (uint32_t)json_integer_value(json_object_get(root, "top_k"));
	r->pb.seed = (uint64_t)json_integer_value(json_object_get(root, "seed"));
	if (r->pb.chat) {
		json_t *m = json_object_get(root, "messages");
		size_t n = json_array_size(m), i;
		if (n == 0)
			goto bad;
		r->msgs = calloc(n, sizeof(*r->msgs));
		r->msgp = calloc(n, sizeof(*r->msgp));
		if (r->msgs == NULL || r->msgp == NULL)
			goto bad;
		json_t *msg;
		json_array_foreach(m, i, msg) {
			margin__v1__chat_message__init(&r->msgs[i]);
			const char *role = json_string_value(json_object_get(msg, "role"));
			const char *content = json_string_value(json_object_get(msg, "content"));
			if (role == NULL || content == NULL)
				goto bad;
			r->msgs[i].role = (char *)role;
			r->msgs[i].content = (char *)content;
			r->msgp[i] = &r->msgs[i];
		}
		r->pb.n_messages = n;
		r->pb.messages = r->msgp;
	} else {
		const char *prompt = json_string_value(json_object_get(root, "prompt"));
		if (prompt == NULL)
			goto bad;
		r->pb.prompt = (char *)prompt;
	}
	json_t *st = json_object_get(root, "stop");
	size_t ns = json_array_size(st);
	if (ns > 0) {
		r->stop = calloc(ns, sizeof(*r->stop));
		if (r->stop == NULL)
			goto bad;
		for (size_t i = 0; i < ns; i++) {
			const char *s = json_string_value(json_array_get(st, i));
			if (s == NULL)
				goto bad;
			r->stop[i] = (char *)s;
		}
		r->pb.n_stop = ns;
		r->pb.stop = r->stop;
	}
	return 0;
bad:
	ingest_req_done(r);
	return -EBADMSG;
}

/* --- input files ------------------------------------------------------ */

struct ingest_file {
	FILE *f;		/* owned */
	char *buf;		/* owned: the current line */
	size_t cap;
	int64_t offset, line;
};

int ingest_file_open(const char *path, int64_t offset, int64_t line, ingest_file_t **ret,
		     char *err, size_t errlen)
{
	ingest_file_t *f = calloc(1, sizeof(*f));
	if (f == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	f->f = fopen(path, "re");
	if (f->f == NULL) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		free(f);
		return -e;
	}
	if (offset > 0 && fseeko(f->f, offset, SEEK_SET) < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: cannot seek to byte %lld: %s", path, (long long)offset,
			 strerror(e));
		ingest_file_close(&f);
		return -e;
	}
	f->offset = offset;
	f->line = line;
	*ret = f;
	return 0;
}

void ingest_file_close(ingest_file_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	if ((*p)->f)
		fclose((*p)->f);
	free((*p)->buf);
	free(*p);
	*p = NULL;
}

int64_t ingest_file_offset(const ingest_file_t *f) { return f->offset; }
int64_t ingest_file_line(const ingest_file_t *f) { return f->line; }

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

int ingest_file_next(ingest_file_t *f, const char **ret_text, size_t *ret_len,
		     int64_t *ret_line_no)
{
	for (;;) {
		size_t n = 0;
		bool too_long = false, got = false;
		int c;
		while ((c = getc_unlocked(f->f)) != EOF) {
			got = true;
			f->offset++;
			if (c == '\n')
				break;
			if (too_long)
				continue;
			if (n + 1 >= f->cap) {
				size_t nc = f->cap ? f->cap * 2 : 4096;
				if (nc > INGEST_LINE_MAX + 2)
					nc = INGEST_LINE_MAX + 2;
				if (n + 1 >= nc) {
					too_long = true;
					continue;
				}
				char *nb = realloc(f->buf, nc);
				if (nb == NULL)
					return -ENOMEM;
				f->buf = nb;
				f->cap = nc;
			}
			f->buf[n++] = (char)c;
		}
		if (ferror(f->f))
			return -EIO;
		if (!got)
			return 0;
		f->line++;
		if (too_long) {
			*ret_line_no = f->line;
			return -EFBIG;
		}
		if (blank(f->buf, n))
			continue;
		while (n > 0 && f->buf[n - 1] == '\r')
			n--;
		f->buf[n] = '\0';
		*ret_text = f->buf;
		*ret_len = n;
		*ret_line_no = f->line;
		return 1;
	}
}
