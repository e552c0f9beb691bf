/* api_files: the OpenAI Files endpoints over STATE_DIR/files.
 *
 * A file is two entries: `<id>.jsonl` (the bytes, immutable) and `<id>.json`
 * (its File object: id, filename, purpose, bytes, created_at). The metadata
 * is written last, atomically, so a file exists exactly when its metadata
 * does; a crash mid-upload leaves only a temporary `.upload-*` or a data
 * file without metadata, which api_files_sweep() removes at start.
 *
 * Uploads (multipart/form-data, fields `file` and `purpose`) stream through
 * libmicrohttpd's post processor straight to the temporary file: memory is
 * bounded by the post processor's buffer whatever the size. The line-length
 * limit is checked on the fly, so an oversized line stops the upload early.
 * Data and metadata are fsync'd, and the directory too, before the reply. */
#include "api.h"
#include "batchfmt.h"
#include "lib/mg_clock.h"
#include "lib/mg_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PP_BUFFER (64 * 1024)

typedef struct upload {
	struct MHD_PostProcessor *pp;	/* owned */
	int fd;				/* owned: the temporary file, -1 before the file field */
	char tmp[4200];			/* its path */
	bool committed;			/* renamed into the store */
	bool have_file;
	char filename[256];
	char purpose[64];
	uint64_t bytes;
	uint64_t line_no, line_len;	/* the line being received */
	uint64_t file_next_off;		/* the file part's bytes so far */
	char delim[80];			/* CRLF "--" boundary "--": the close delimiter */
	size_t delim_len;
	size_t delim_match;		/* its bytes matched so far across chunks */
	bool closed;			/* the close delimiter was received */
	int err_status;			/* an error found by the iterator */
	char err_code[48];
	char err_msg[512];
} upload_t;

static void upload_cleanup(http_req_t *r)
{
	upload_t *up = r->user;
	if (up == NULL)
		return;
	if (up->pp != NULL)
		MHD_destroy_post_processor(up->pp);
	if (up->fd >= 0)
		close(up->fd);
	if (!up->committed && up->tmp[0] != '\0')
		unlink(up->tmp);
	free(up);
	r->user = NULL;
}

__attribute__((format(printf, 4, 5)))
static enum MHD_Result up_fail(upload_t *up, int status, const char *code, const char *fmt, ...)
{
	if (up->err_status == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(up->err_msg, sizeof(up->err_msg), fmt, ap);
		va_end(ap);
		snprintf(up->err_code, sizeof(up->err_code), "%s", code);
		up->err_status = status;
	}
	return MHD_NO;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The file's name as stored: valid UTF-8 (the File object is JSON), cut to
 * the buffer on a character boundary. */
static int set_filename(upload_t *up, const char *filename)
{
	if (filename == NULL || filename[0] == '\0') {
		snprintf(up->filename, sizeof(up->filename), "upload.jsonl");
		return 0;
	}
	json_t *s = json_string(filename);	/* NULL: not UTF-8 */
	if (s == NULL) {
		up_fail(up, 400, "invalid_request",
			"filename: not valid UTF-8 (a name cut mid-character, or in another encoding)");
		return -EINVAL;
	}
	json_decref(s);
	size_t n = strlen(filename);
	if (n >= sizeof(up->filename)) {
		n = sizeof(up->filename) - 1;
		while (n > 0 && ((unsigned char)filename[n] & 0xc0) == 0x80)
			n--;	/* filename[n] would start the next character */
	}
	memcpy(up->filename, filename, n);
	up->filename[n] = '\0';
	return 0;
}

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key,
				const char *filename, const char *content_type,
				const char *transfer_encoding, const char *data, uint64_t off,
				size_t size)
{
	http_req_t *r = cls;
	upload_t *up = r->user;
	if (key == NULL)
		return MHD_YES;
	if (strcmp(key, "purpose") == 0) {
		size_t have = strlen(up->purpose);
		if (have + size >= sizeof(up->purpose))
			return up_fail(up, 400, "invalid_purpose", "purpose: expected \"batch\"");
		memcpy(up->purpose + have, data, size);
		up->purpose[have + size] = '\0';
		return MHD_YES;
	}
	if (strcmp(key, "file") != 0)
		return MHD_YES;		/* expires_after[...] and friends: not used */
	/* Each part's first call has offset 0 (an empty part gets just that
	 * one call, of size 0); a second file part's bytes would be appended
	 * to the first one's. */
	if (up->have_file && (off == 0 || off < up->file_next_off))
		return up_fail(up, 400, "invalid_request",
			       "more than one \"file\" field: send one file per upload");
	up->file_next_off = off + size;
	if (up->fd < 0) {
		up->have_file = true;
		if (set_filename(up, filename) < 0)
			return MHD_NO;
		char id[64];
		http_random_id(".upload-", id, sizeof(id));
		snprintf(up->tmp, sizeof(up->tmp), "%s/%s", r->h->files_dir, id);
		up->fd = open(up->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (up->fd < 0) {
			int e = errno;
			mg_log(MG_LOG_ERROR, "http", "cannot store an upload path=%s err=\"%s\"", up->tmp, strerror(e));
			up->tmp[0] = '\0';
			return up_fail(up, 500, "internal_error", "cannot store the upload: %s", strerror(e));
		}
		up->line_no = 1;
	}
	/* Line lengths across chunk boundaries: a line that grows past the
	 * limit stops the upload here, not after 200 MB. */
	const char *p = data, *end = data + size;
	uint64_t max = r->h->cfg.max_line_bytes;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		up->line_len += n;
		if (up->line_len > max)
			return up_fail(up, 400, "line_too_long",
				       "line %llu of the file is longer than %llu bytes (the server's [http] max_line_bytes)",
				       (unsigned long long)up->line_no, (unsigned long long)max);
		if (nl == NULL)
			break;
		up->line_no++;
		up->line_len = 0;
		p = nl + 1;
	}
	int w = write_all(up->fd, data, size);
	if (w < 0)
		return up_fail(up, w == -ENOSPC ? 507 : 500, "internal_error", "writing the upload: %s",
			       strerror(-w));
	up->bytes += size;
	return MHD_YES;
}

static void reply_upload_error(http_req_t *r, upload_t *up)
{
	http_reply_error(r, (unsigned)up->err_status, up->err_code, NULL, "%s", up->err_msg);
}

/* The boundary parameter of a multipart Content-Type (RFC 2046: 1 to 70
 * characters, maybe quoted). */
static int multipart_boundary(const char *ct, char *out, size_t outlen)
{
	const char *p = strcasestr(ct, "boundary=");
	if (p == NULL)
		return -EINVAL;
	p += 9;
	size_t n;
	if (*p == '"') {
		p++;
		const char *q = strchr(p, '"');
		if (q == NULL)
			return -EINVAL;
		n = (size_t)(q - p);
	} else {
		n = strcspn(p, "; \t");
	}
	if (n == 0 || n > 70 || n >= outlen)
		return -EINVAL;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* Looks for the close delimiter in the raw body, across chunks. The body
 * before it ends the last part; a body without it was cut short. Returns
 * how many bytes of data come before the end of the close delimiter: what
 * follows it is the epilogue (RFC 2046 5.1.1: ignored; clients send a
 * CR LF or more there, which libmicrohttpd's post processor refuses). */
static size_t scan_close(upload_t *up, const char *data, size_t len)
{
	size_t i = 0;
	for (; i < len && !up->closed; i++) {
		for (;;) {
			if (data[i] == up->delim[up->delim_match]) {
				up->delim_match++;
				break;
			}
			if (up->delim_match == 0)
				break;
			/* The delimiter starts with CR LF and has no other CR: a
			 * mismatch restarts at this byte. */
			up->delim_match = 0;
		}
		if (up->delim_match == up->delim_len)
			up->closed = true;
	}
	return i;
}

int api_files_upload_begin(http_req_t *r)
{
	const char *ct = http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		http_reply_error(r, 400, "invalid_request", NULL,
				 "POST /v1/files takes multipart/form-data with the fields \"file\" and \"purpose\"");
		return -EINVAL;
	}
	upload_t *up = calloc(1, sizeof(*up));
	if (up == NULL) {
		http_reply_error(r, 500, "internal_error", NULL, "out of memory");
		return -ENOMEM;
	}
	up->fd = -1;
	r->user = up;
	r->cleanup = upload_cleanup;
	char boundary[70];
	if (multipart_boundary(ct, boundary, sizeof(boundary)) < 0) {
		http_reply_error(r, 400, "invalid_request", NULL,
				 "Content-Type: multipart/form-data needs a boundary of 1 to 70 characters");
		return -EINVAL;
	}
	up->delim_len = (size_t)snprintf(up->delim, sizeof(up->delim), "\r\n--%s--", boundary);
	up->pp = MHD_create_post_processor(r->conn, PP_BUFFER, on_field, r);
	if (up->pp == NULL) {
		http_reply_error(r, 400, "invalid_request", NULL,
				 "cannot read the multipart body (is the boundary missing from Content-Type?)");
		return -EINVAL;
	}
	return 0;
}

int api_files_upload_data(http_req_t *r, const char *data, size_t len)
{
	upload_t *up = r->user;
	bool was_closed = up->closed;
	size_t body = scan_close(up, data, len);
	if (was_closed)
		return 0;	/* the epilogue */
	if (MHD_post_process(up->pp, data, body) != MHD_YES || up->err_status != 0) {
		if (up->err_status == 0)
			up_fail(up, 400, "invalid_request", "the multipart body is malformed");
		reply_upload_error(r, up);
		return -EINVAL;
	}
	return 0;
}

static json_t *file_json(const api_file_t *f)
{
	batchfmt_file_t bf = { f->id, f->filename, f->purpose, f->bytes, f->created_at, 0 };
	return batchfmt_file_json(&bf);
}

static int write_meta(http_t *h, const api_file_t *f)
{
	json_t *o = file_json(f);
	char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	if (text == NULL)
		return -ENOMEM;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s.json", h->files_dir, f->id);
	int r = http_write_atomic(path, text, strlen(text));
	free(text);
	return r;
}

/* Moves path (in the store's directory) under id (a new one when NULL)
 * and writes its metadata. */
static int commit(http_t *h, const char *path, const char *id, const char *filename,
		  const char *purpose, uint64_t bytes, api_file_t *ret)
{
	api_file_t f = { 0 };
	if (id != NULL)
		snprintf(f.id, sizeof(f.id), "%s", id);
	else
		http_random_id("file-", f.id, sizeof(f.id));
	snprintf(f.filename, sizeof(f.filename), "%s", filename);
	snprintf(f.purpose, sizeof(f.purpose), "%s", purpose);
	f.bytes = (int64_t)bytes;
	f.created_at = mg_clock_wall_ns() / MG_NS_PER_S;
	snprintf(f.path, sizeof(f.path), "%s/%s.jsonl", h->files_dir, f.id);
	if (rename(path, f.path) < 0)
		return -errno;
	int r = write_meta(h, &f);	/* fsyncs the directory: the rename too */
	if (r < 0) {
		unlink(f.path);
		return r;
	}
	*ret = f;
	return 0;
}

void api_files_upload(http_req_t *r)
{
	upload_t *up = r->user;
	if (up->err_status == 0 && MHD_post_process(up->pp, NULL, 0) != MHD_YES && up->err_status == 0)
		up_fail(up, 400, "invalid_request", "the multipart body is malformed");
	if (up->err_status != 0) {
		reply_upload_error(r, up);
		return;
	}
	if (!up->closed) {
		http_reply_error(r, 400, "invalid_request", "file",
				 "the multipart body ends before its closing boundary (--%.*s--): the upload was cut short",
				 (int)(up->delim_len - 6), up->delim + 4);
		return;
	}
	if (!up->have_file) {
		http_reply_error(r, 400, "invalid_request", "file", "file: missing (send the JSONL as the multipart field \"file\")");
		return;
	}
	if (strcmp(up->purpose, "batch") != 0) {
		http_reply_error(r, 400, "invalid_request", "purpose",
				 up->purpose[0] ? "purpose \"%s\": only \"batch\" is supported" :
						  "purpose: missing (send purpose=batch)%s", up->purpose);
		return;
	}
	if (up->bytes == 0) {
		http_reply_error(r, 400, "invalid_request", "file", "file: the file is empty");
		return;
	}
	if (fsync(up->fd) < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "fsync of the upload: %s", strerror(errno));
		return;
	}
	close(up->fd);
	up->fd = -1;
	api_file_t f;
	int rc = commit(r->h, up->tmp, NULL, up->filename, up->purpose, up->bytes, &f);
	if (rc < 0) {
		mg_log(MG_LOG_ERROR, "http", "cannot store an upload dir=%s err=\"%s\"", r->h->files_dir,
		       strerror(-rc));
		http_reply_error(r, 500, "internal_error", NULL, "storing the upload: %s", strerror(-rc));
		return;
	}
	up->committed = true;
	mg_log(MG_LOG_INFO, "http", "file uploaded file=%s bytes=%llu lines=%llu filename=\"%s\"", f.id,
	       (unsigned long long)up->bytes,
	       (unsigned long long)(up->line_len ? up->line_no : up->line_no - 1), f.filename);
	http_reply_json(r, 200, file_json(&f));
}

static bool valid_id(const char *id)
{
	if (id == NULL || id[0] == '\0' || id[0] == '.' || strlen(id) >= 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_' || *p == '-' || *p == '.'))
			return false;
	return true;
}

int api_files_find(http_t *h, const char *id, api_file_t *ret)
{
	if (!valid_id(id))
		return -ENOENT;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s.json", h->files_dir, id);
	json_t *o = json_load_file(path, 0, NULL);
	if (o == NULL)
		return access(path, F_OK) == 0 ? -EBADMSG : -ENOENT;
	api_file_t f = { 0 };
	const char *fid = json_string_value(json_object_get(o, "id"));
	if (fid == NULL || strcmp(fid, id) != 0 || !json_is_integer(json_object_get(o, "bytes"))) {
		json_decref(o);
		return -EBADMSG;
	}
	snprintf(f.id, sizeof(f.id), "%s", id);
	const char *filename = json_string_value(json_object_get(o, "filename"));
	const char *purpose = json_string_value(json_object_get(o, "purpose"));
	snprintf(f.filename, sizeof(f.filename), "%s", filename != NULL ? filename : "");
	snprintf(f.purpose, sizeof(f.purpose), "%s", purpose != NULL ? purpose : "batch");
	f.bytes = json_integer_value(json_object_get(o, "bytes"));
	f.created_at = json_integer_value(json_object_get(o, "created_at"));
	snprintf(f.path, sizeof(f.path), "%s/%s.jsonl", h->files_dir, id);
	json_decref(o);
	*ret = f;
	return 0;
}

int api_files_adopt(http_t *h, const char *tmp_path, const char *id, const char *filename,
		    const char *purpose)
{
	struct stat st;
	if (stat(tmp_path, &st) < 0)
		return -errno;
	api_file_t f;
	return commit(h, tmp_path, id, filename, purpose, (uint64_t)st.st_size, &f);
}

void api_files_sweep(http_t *h)
{
	DIR *d = opendir(h->files_dir);
	if (d == NULL)
		return;
	struct dirent *e;
	char path[4200], meta[4200];
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		snprintf(path, sizeof(path), "%s/%s", h->files_dir, n);
		if (strncmp(n, ".upload-", 8) == 0 || strncmp(n, ".out-", 5) == 0 ||
		    (len > 4 && strcmp(n + len - 4, ".tmp") == 0)) {
			unlink(path);
			continue;
		}
		if (len > 6 && strcmp(n + len - 6, ".jsonl") == 0) {
			snprintf(meta, sizeof(meta), "%s/%.*s.json", h->files_dir, (int)(len - 6), n);
			if (access(meta, F_OK) < 0 && errno == ENOENT) {
				mg_log(MG_LOG_WARN, "http", "removing a file left without metadata by a crash path=%s",
				       path);
				unlink(path);
			}
		}
	}
	closedir(d);
}

/* --- list, get, content, delete --------------------------------------- */

static int cmp_newest(const void *a, const void *b)
{
	const api_file_t *x = a, *y = b;
	if (x->created_at != y->created_at)
		return x->created_at > y->created_at ? -1 : 1;
	return strcmp(y->id, x->id);
}

void api_files_list(http_req_t *r)
{
	const char *purpose = http_query(r, "purpose");
	const char *after = http_query(r, "after");
	const char *order = http_query(r, "order");
	const char *ls = http_query(r, "limit");
	long limit = 10000;
	if (ls != NULL) {
		char *end;
		limit = strtol(ls, &end, 10);
		if (*ls == '\0' || *end != '\0' || limit < 1 || limit > 10000) {
			http_reply_error(r, 400, "invalid_request", "limit", "limit: expected 1 to 10000");
			return;
		}
	}
	bool asc = order != NULL && strcmp(order, "asc") == 0;
	if (order != NULL && !asc && strcmp(order, "desc") != 0) {
		http_reply_error(r, 400, "invalid_request", "order", "order: expected \"asc\" or \"desc\"");
		return;
	}
	DIR *d = opendir(r->h->files_dir);
	if (d == NULL) {
		int e = errno;
		mg_log(MG_LOG_ERROR, "http", "cannot list the files dir=%s err=\"%s\"", r->h->files_dir, strerror(e));
		http_reply_error(r, 500, "internal_error", NULL, "cannot list the files: %s", strerror(e));
		return;
	}
	api_file_t *all = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		char id[64];
		if (len - 5 >= sizeof(id))
			continue;
		snprintf(id, sizeof(id), "%.*s", (int)(len - 5), e->d_name);
		api_file_t f;
		if (api_files_find(r->h, id, &f) < 0 || (purpose && strcmp(purpose, f.purpose) != 0))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			api_file_t *na = realloc(all, nc * sizeof(*na));
			if (na == NULL) {
				closedir(d);
				free(all);
				http_reply_error(r, 500, "internal_error", NULL, "out of memory");
				return;
			}
			all = na;
			cap = nc;
		}
		all[n++] = f;
	}
	closedir(d);
	if (n > 0)
		qsort(all, n, sizeof(*all), cmp_newest);
	json_t *data = json_array();
	size_t start = 0;
	if (after != NULL) {
		/* The page after the file named by the cursor, in the asked order. */
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			if (strcmp(all[asc ? n - 1 - i : i].id, after) == 0) {
				start = i + 1;
				found = true;
			}
		if (!found)
			start = n;
	}
	size_t i;
	for (i = start; i < n && data != NULL && (long)(i - start) < limit; i++)
		json_array_append_new(data, file_json(&all[asc ? n - 1 - i : i]));
	bool more = i < n;
	free(all);
	http_reply_json(r, 200, batchfmt_list(data, more));
}

static bool find_or_404(http_req_t *r, api_file_t *f)
{
	int rc = api_files_find(r->h, r->param[0], f);
	if (rc == -ENOENT) {
		http_reply_error(r, 404, "not_found", "file_id", "no file with id \"%s\"", r->param[0]);
		return false;
	}
	if (rc < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "the metadata of file %s is damaged",
				 r->param[0]);
		return false;
	}
	return true;
}

void api_files_get(http_req_t *r)
{
	api_file_t f;
	if (find_or_404(r, &f))
		http_reply_json(r, 200, file_json(&f));
}

void api_files_content(http_req_t *r)
{
	api_file_t f;
	if (!find_or_404(r, &f))
		return;
	int fd = open(f.path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		http_reply_error(r, errno == ENOENT ? 404 : 500, "not_found", "file_id",
				 "the content of file %s is gone: %s", f.id, strerror(errno));
		return;
	}
	http_reply_fd(r, 200, "application/octet-stream", fd, (uint64_t)st.st_size);
	char name[256], disp[400];
	snprintf(name, sizeof(name), "%s", f.filename);
	for (char *p = name; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '_';
	snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", name);
	http_reply_header(r, "Content-Disposition", disp);
}

void api_files_delete(http_req_t *r)
{
	api_file_t f;
	if (!find_or_404(r, &f))
		return;
	char meta[4200];
	snprintf(meta, sizeof(meta), "%s/%s.json", r->h->files_dir, f.id);
	/* Metadata first: the file disappears at once, the bytes follow. A
	 * batch that reads this file has its own hard link. */
	if (unlink(meta) < 0) {
		http_reply_error(r, 500, "internal_error", NULL, "deleting file %s: %s", f.id, strerror(errno));
		return;
	}
	unlink(f.path);
	http_fsync_dir(r->h->files_dir);
	mg_log(MG_LOG_INFO, "http", "file deleted file=%s", f.id);
	http_reply_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", f.id, "object", "file", "deleted", 1));
}
