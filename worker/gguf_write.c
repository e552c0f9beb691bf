/* gguf_write: the GGUF v3 writer (see gguf.h; the file layout is
 * described in gguf.c). */
#include "gguf.h"
#include "gguf_priv.h"
#include "lib/mg_err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct wkv {
	char *key;	/* owned */
	uint32_t type;
	uint8_t *val;	/* owned: the serialized value (after the type) */
	size_t len;
};

struct wtensor {
	char *name;	/* owned */
	uint32_t type, n_dims;
	uint64_t ne[GGUF_MAX_DIMS];
	const void *data;	/* borrowed: caller's, until gguf_writer_write returns */
	gguf_writer_fill_fn fill;	/* or the data comes from fill(fill_ctx, ...) */
	void *fill_ctx;
	uint64_t nbytes;
	uint64_t offset;	/* in the data section, assigned at write */
};

struct gguf_writer {
	struct wkv *kv;	/* owned [n_kv] */
	size_t n_kv, cap_kv;
	struct wtensor *t;	/* owned [n_t] */
	size_t n_t, cap_t;
	uint32_t alignment;
};

gguf_writer_t *gguf_writer_new(void)
{
	gguf_writer_t *w = calloc(1, sizeof(*w));
	if (w != NULL)
		w->alignment = GGUF_DEFAULT_ALIGNMENT;
	return w;
}

void gguf_writer_destroy(gguf_writer_t **pw)
{
	if (pw == NULL || *pw == NULL)
		return;
	gguf_writer_t *w = *pw;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].val);
	}
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w);
	*pw = NULL;
}

static int grow(void **v, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	void *p = realloc(*v, nc * elem);
	if (p == NULL)
		return -ENOMEM;
	*v = p;
	*cap = nc;
	return 0;
}

/* Takes ownership of val (freed on failure too). */
static int add_kv(gguf_writer_t *w, const char *key, uint32_t type, uint8_t *val, size_t len)
{
	int rc = -EINVAL;
	char *k = NULL;
	if (w == NULL || key == NULL || key[0] == '\0' || strlen(key) > MAX_KEY_LEN)
		goto fail;
	for (size_t i = 0; i < w->n_kv; i++)
		if (strcmp(w->kv[i].key, key) == 0) {
			rc = -EEXIST;
			goto fail;
		}
	if (strcmp(key, "general.alignment") == 0) {
		uint32_t a;
		if (type != GGUF_VTYPE_UINT32)
			goto fail;
		memcpy(&a, val, 4);
		if (a == 0 || (a & (a - 1)) != 0)
			goto fail;
		w->alignment = a;
	}
	rc = -ENOMEM;
	if ((k = strdup(key)) == NULL)
		goto fail;
	if (grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof(*w->kv)) < 0)
		goto fail;
	w->kv[w->n_kv++] = (struct wkv){ k, type, val, len };
	return 0;
fail:
	free(k);
	free(val);
	return rc;
}

int gguf_writer_set_val(gguf_writer_t *w, const char *key, enum gguf_vtype t, const void *v)
{
	size_t sz = gguf_vtype_size(t);
	if (sz == 0 || v == NULL)
		return -EINVAL;
	if (t == GGUF_VTYPE_BOOL && *(const uint8_t *)v > 1)
		return -EINVAL;
	uint8_t *val = malloc(sz);
	if (val == NULL)
		return -ENOMEM;
	memcpy(val, v, sz);
	return add_kv(w, key, t, val, sz);
}

int gguf_writer_set_u32(gguf_writer_t *w, const char *key, uint32_t v)
{
	return gguf_writer_set_val(w, key, GGUF_VTYPE_UINT32, &v);
}

int gguf_writer_set_i32(gguf_writer_t *w, const char *key, int32_t v)
{
	return gguf_writer_set_val(w, key, GGUF_VTYPE_INT32, &v);
}

int gguf_writer_set_u64(gguf_writer_t *w, const char *key, uint64_t v)
{
	return gguf_writer_set_val(w, key, GGUF_VTYPE_UINT64, &v);
}

int gguf_writer_set_f32(gguf_writer_t *w, const char *key, float v)
{
	return gguf_writer_set_val(w, key, GGUF_VTYPE_FLOAT32, &v);
}

int gguf_writer_set_bool(gguf_writer_t *w, const char *key, bool v)
{
	uint8_t b = v ? 1 : 0;
	return gguf_writer_set_val(w, key, GGUF_VTYPE_BOOL, &b);
}

int gguf_writer_set_str(gguf_writer_t *w, const char *key, const char *v)
{
	if (v == NULL)
		return -EINVAL;
	uint64_t n = strlen(v);
	uint8_t *val = malloc(8 + (size_t)n);
	if (val == NULL)
		return -ENOMEM;
	memcpy(val, &n, 8);
	memcpy(val + 8, v, (size_t)n);
	return add_kv(w, key, GGUF_VTYPE_STRING, val, 8 + (size_t)n);
}

int gguf_writer_set_arr(gguf_writer_t *w, const char *key, enum gguf_vtype t,
			const void *data, uint64_t n)
{
	size_t sz = gguf_vtype_size(t);
	if (sz == 0 || (data == NULL && n > 0) || n > (SIZE_MAX - 12) / sz)
		return -EINVAL;
	if (t == GGUF_VTYPE_BOOL)
		for (uint64_t i = 0; i < n; i++)
			if (((const uint8_t *)data)[i] > 1)
				return -EINVAL;
	size_t len = 12 + (size_t)n * sz;
	uint8_t *val = malloc(len);
	if (val == NULL)
		return -ENOMEM;
	uint32_t t32 = t;
	memcpy(val, &t32, 4);
	memcpy(val + 4, &n, 8);
	if (n > 0)
		memcpy(val + 12, data, (size_t)n * sz);
	return add_kv(w, key, GGUF_VTYPE_ARRAY, val, len);
}

int gguf_writer_set_arr_str(gguf_writer_t *w, const char *key, const char *const *v, uint64_t n)
{
	if (v == NULL && n > 0)
		return -EINVAL;
	size_t len = 12;
	for (uint64_t i = 0; i < n; i++) {
		if (v[i] == NULL)
			return -EINVAL;
		size_t l = strlen(v[i]);
		if (l > SIZE_MAX - 8 - len)
			return -EINVAL;
		len += 8 + l;
	}
	uint8_t *val = malloc(len);
	if (val == NULL)
		return -ENOMEM;
	uint32_t t32 = GGUF_VTYPE_STRING;
	memcpy(val, &t32, 4);
	memcpy(val + 4, &n, 8);
	size_t pos = 12;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t l = strlen(v[i]);
		memcpy(val + pos, &l, 8);
		memcpy(val + pos + 8, v[i], (size_t)l);
		pos += 8 + (size_t)l;
	}
	return add_kv(w, key, GGUF_VTYPE_ARRAY, val, len);
}

static int add_tensor(gguf_writer_t *w, const char *name, uint32_t type, uint32_t n_dims,
		      const uint64_t *ne, const void *data, uint64_t nbytes,
		      gguf_writer_fill_fn fill, void *fill_ctx)
{
	if (w == NULL || name == NULL || name[0] == '\0' || strlen(name) > MAX_NAME_LEN ||
	    n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne == NULL || (data == NULL && fill == NULL))
		return -EINVAL;
	uint64_t n = 1;
	for (uint32_t d = 0; d < n_dims; d++) {
		if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX / n)
			return -EINVAL;
		n *= ne[d];
	}
	uint64_t want = gguf_ttype_nbytes(type, n);
	if (want == 0 || want != nbytes || ne[0] % gguf_ttype_block_size(type) != 0)
		return -EINVAL;
	for (size_t i = 0; i < w->n_t; i++)
		if (strcmp(w->t[i].name, name) == 0)
			return -EEXIST;
	if (grow((void **)&w->t, &w->cap_t, w->n_t, sizeof(*w->t)) < 0)
		return -ENOMEM;
	struct wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	if ((t->name = strdup(name)) == NULL)
		return -ENOMEM;
	t->type = type;
	t->n_dims = n_dims;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->data = data;
	t->fill = fill;
	t->fill_ctx = fill_ctx;
	t->nbytes = nbytes;
	w->n_t++;
	return 0;
}

int gguf_writer_add_tensor(gguf_writer_t *w, const char *name, uint32_t type,
			   uint32_t n_dims, const uint64_t *ne, const void *data, uint64_t nbytes)
{
	return add_tensor(w, name, type, n_dims, ne, data, nbytes, NULL, NULL);
}

int gguf_writer_add_tensor_fill(gguf_writer_t *w, const char *name, uint32_t type,
				uint32_t n_dims, const uint64_t *ne, uint64_t nbytes,
				gguf_writer_fill_fn fill, void *fill_ctx)
{
	if (fill == NULL)
		return -EINVAL;
	return add_tensor(w, name, type, n_dims, ne, NULL, nbytes, fill, fill_ctx);
}

/* Buffered output to an fd; the first error sticks in rc. */
typedef struct wout {
	int fd;
	int rc;
	size_t n;
	uint64_t pos;	/* bytes emitted so far */
	uint8_t buf[1 << 16];
} wout_t;

static void out_flush(wout_t *o)
{
	size_t off = 0;
	while (o->rc == 0 && off < o->n) {
		ssize_t k = write(o->fd, o->buf + off, o->n - off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			o->rc = -errno;
		} else {
			off += (size_t)k;
		}
	}
	o->n = 0;
}

static void out(wout_t *o, const void *p, size_t len)
{
	const uint8_t *s = p;
	o->pos += len;
	while (len > 0 && o->rc == 0) {
		size_t k = sizeof(o->buf) - o->n;
		if (k > len)
			k = len;
		memcpy(o->buf + o->n, s, k);
		o->n += k;
		s += k;
		len -= k;
		if (o->n == sizeof(o->buf))
			out_flush(o);
	}
}

static void out_u32(wout_t *o, uint32_t v) { out(o, &v, 4); }
static void out_u64(wout_t *o, uint64_t v) { out(o, &v, 8); }

static void out_pad(wout_t *o, uint32_t align)
{
	static const uint8_t zeros[64];
	uint64_t pad = (align - o->pos % align) % align;
	while (pad > 0 && o->rc == 0) {
		size_t k = pad > sizeof(zeros) ? sizeof(zeros) : (size_t)pad;
		out(o, zeros, k);
		pad -= k;
	}
}

static void emit(gguf_writer_t *w, wout_t *o)
{
	out(o, GGUF_MAGIC, 4);
	out_u32(o, 3);
	out_u64(o, w->n_t);
	out_u64(o, w->n_kv);
	for (size_t i = 0; i < w->n_kv; i++) {
		uint64_t kl = strlen(w->kv[i].key);
		out_u64(o, kl);
		out(o, w->kv[i].key, (size_t)kl);
		out_u32(o, w->kv[i].type);
		out(o, w->kv[i].val, w->kv[i].len);
	}
	uint64_t off = 0;
	for (size_t i = 0; i < w->n_t; i++) {
		struct wtensor *t = &w->t[i];
		t->offset = off;
		off += t->nbytes;
		off += (w->alignment - off % w->alignment) % w->alignment;
		uint64_t nl = strlen(t->name);
		out_u64(o, nl);
		out(o, t->name, (size_t)nl);
		out_u32(o, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			out_u64(o, t->ne[d]);
		out_u32(o, t->type);
		out_u64(o, t->offset);
	}
	out_pad(o, w->alignment);
	for (size_t i = 0; i < w->n_t; i++) {
		if (w->t[i].fill == NULL) {
			out(o, w->t[i].data, (size_t)w->t[i].nbytes);
		} else {
			/* produced straight into the output buffer, a piece at a time */
			for (uint64_t done = 0; done < w->t[i].nbytes && o->rc == 0;) {
				size_t k = sizeof(o->buf) - o->n;
				if (k > w->t[i].nbytes - done)
					k = (size_t)(w->t[i].nbytes - done);
				int r = w->t[i].fill(w->t[i].fill_ctx, o->buf + o->n, done, k);
				if (r < 0) {
					o->rc = r;
					break;
				}
				o->n += k;
				o->pos += k;
				done += k;
				if (o->n == sizeof(o->buf))
					out_flush(o);
			}
		}
		out_pad(o, w->alignment);
	}
	out_flush(o);
}

int gguf_writer_write(gguf_writer_t *w, const char *path, char *err, size_t errlen)
{
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (w == NULL || path == NULL)
		return mg_seterr(err, errlen, -EINVAL, "no writer or path");
	int rc;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	wout_t *o = malloc(sizeof(*o));
	if (tmp == NULL || o == NULL) {
		rc = mg_seterr(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto fail_free;
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", 12);
	o->fd = mkstemp(tmp);
	if (o->fd < 0) {
		rc = -errno;
		mg_seterr(err, errlen, rc, "cannot create a temporary file for %s: %s", path, strerror(-rc));
		goto fail_free;
	}
	o->rc = 0;
	o->n = 0;
	o->pos = 0;
	emit(w, o);
	if ((rc = o->rc) < 0) {
		mg_seterr(err, errlen, rc, "cannot write %s (temporary %s): %s", path, tmp, strerror(-rc));
		goto fail;
	}
	if (fchmod(o->fd, 0644) < 0 || fsync(o->fd) < 0) {
		rc = -errno;
		mg_seterr(err, errlen, rc, "cannot write %s (temporary %s): %s", path, tmp, strerror(-rc));
		goto fail;
	}
	int fd = o->fd;
	o->fd = -1;
	if (close(fd) < 0) {
		rc = -errno;
		mg_seterr(err, errlen, rc, "cannot write %s (temporary %s): %s", path, tmp, strerror(-rc));
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		rc = -errno;
		mg_seterr(err, errlen, rc, "cannot rename %s to %s: %s", tmp, path, strerror(-rc));
		goto fail;
	}
	free(tmp);
	free(o);
	return 0;
fail:
	if (o->fd >= 0)
		close(o->fd);
	unlink(tmp);
fail_free:
	free(tmp);
	free(o);
	return rc;
}
