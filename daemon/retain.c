/* retain: see retain.h. */
#include "retain.h"
#include "lib/mg_log.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RETIRE_MAX 1000		/* jobs per sweep: the rest go at the next one */

typedef struct sweep {
	const char *state_dir;
	retain_stats_t *st;
} sweep_t;

static void remove_file(sweep_t *w, const char *path)
{
	struct stat s;
	if (lstat(path, &s) < 0)
		return;
	if (unlink(path) < 0) {
		mg_log(MG_LOG_WARN, "retain", "cannot remove path=\"%s\" err=\"%s\"", path, strerror(errno));
		return;
	}
	w->st->files++;
	w->st->file_bytes += (int64_t)s.st_size;
}

/* A file of the Files API store: its content and its metadata. */
static void remove_stored(sweep_t *w, const char *file_id)
{
	char path[4200];
	if (file_id == NULL || file_id[0] == '\0' || strchr(file_id, '/') != NULL)
		return;
	snprintf(path, sizeof(path), "%s/files/%s.json", w->state_dir, file_id);
	remove_file(w, path);
	snprintf(path, sizeof(path), "%s/files/%s.jsonl", w->state_dir, file_id);
	remove_file(w, path);
}

static int on_retire(void *user, const char *name, const char *state)
{
	sweep_t *w = user;
	char path[4200];
	snprintf(path, sizeof(path), "%s/batches/%s.json", w->state_dir, name);
	json_t *side = json_load_file(path, 0, NULL);
	if (side != NULL && json_integer_value(json_object_get(side, "finalized_at")) == 0) {
		json_decref(side);
		return 1;	/* its output files are not written yet */
	}
	remove_stored(w, json_string_value(json_object_get(side, "output_file_id")));
	remove_stored(w, json_string_value(json_object_get(side, "error_file_id")));
	json_decref(side);
	snprintf(path, sizeof(path), "%s/batches/%s.input.jsonl", w->state_dir, name);
	remove_file(w, path);
	snprintf(path, sizeof(path), "%s/batches/%s.rejects.jsonl", w->state_dir, name);
	remove_file(w, path);
	mg_log(MG_LOG_DEBUG, "retain", "batch retired batch=%s state=%s", name, state);
	w->st->jobs++;
	return 0;
}

int retain_sweep(journal_t *j, const char *state_dir, int64_t retention_s, int64_t now_s,
		 retain_stats_t *ret)
{
	retain_stats_t st = { 0 };
	if (retention_s <= 0) {
		*ret = st;
		return 0;
	}
	sweep_t w = { state_dir, &st };
	int r = journal_jobs_retire(j, now_s - retention_s, RETIRE_MAX, on_retire, &w);
	if (r > 0)
		r = journal_vacuum(j, &st.journal_bytes);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}

/* The batch a file of batches/ belongs to: its name up to the first dot
 * (<id>.json, <id>.input.jsonl, <id>.rejects.jsonl, <id>.json.tmp). */
static int batch_of(const char *file, char *buf, size_t len)
{
	const char *dot = strchr(file, '.');
	size_t n = dot ? (size_t)(dot - file) : strlen(file);
	if (n == 0 || n >= len)
		return -EINVAL;
	memcpy(buf, file, n);
	buf[n] = '\0';
	return 0;
}

/* 1: the job is unknown (the file is an orphan), 0: known, < 0: error. */
static int unknown(journal_t *j, const char *batch)
{
	int r = journal_job_exists(j, batch);
	return r < 0 ? r : !r;
}

/* Calls FN with each entry of STATE_DIR/SUB but . and .., its name and its
 * path, until FN returns < 0. That, or 0 (also when SUB does not exist), or
 * -errno when SUB cannot be read. */
static int each_entry(journal_t *j, sweep_t *w, const char *sub,
		      int (*fn)(journal_t *j, sweep_t *w, const char *name, const char *path))
{
	char dir[4200], path[4600];
	snprintf(dir, sizeof(dir), "%s/%s", w->state_dir, sub);
	DIR *d = opendir(dir);
	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	struct dirent *e;
	int r = 0;
	while ((e = readdir(d)) != NULL && r >= 0) {
		if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		r = fn(j, w, e->d_name, path);
	}
	closedir(d);
	return r;
}

/* A file of batches/ that no batch of the journal names, or a write cut
 * short. */
static int sweep_batch(journal_t *j, sweep_t *w, const char *name, const char *path)
{
	char batch[JOURNAL_NAME_MAX];
	size_t n = strlen(name);
	bool tmp = n > 4 && strcmp(name + n - 4, ".tmp") == 0;	/* a write cut short */
	int r = 0;
	if (tmp || batch_of(name, batch, sizeof(batch)) < 0 || (r = unknown(j, batch)) > 0) {
		int64_t before = w->st->file_bytes;
		remove_file(w, path);
		mg_log(MG_LOG_WARN, "retain", "removed a file no batch names (left by a crash) path=\"%s\" bytes=%lld",
		       path, (long long)(w->st->file_bytes - before));
		r = 0;
	}
	return r;
}

/* An output or error file of files/ whose batch the journal does not know. */
static int sweep_file(journal_t *j, sweep_t *w, const char *name, const char *path)
{
	char batch[JOURNAL_NAME_MAX];
	size_t n = strlen(name);
	if (name[0] == '.' || n <= 5 || strcmp(name + n - 5, ".json") != 0)
		return 0;
	int r = 0;
	json_t *meta = json_load_file(path, 0, NULL);
	const char *purpose = json_string_value(json_object_get(meta, "purpose"));
	const char *fname = json_string_value(json_object_get(meta, "filename"));
	const char *us = fname ? strrchr(fname, '_') : NULL;
	bool output = purpose != NULL && strcmp(purpose, "batch_output") == 0 && us != NULL &&
		      (strcmp(us, "_output.jsonl") == 0 || strcmp(us, "_error.jsonl") == 0) &&
		      (size_t)(us - fname) < sizeof(batch);
	if (output) {
		snprintf(batch, sizeof(batch), "%.*s", (int)(us - fname), fname);
		if ((r = unknown(j, batch)) > 0) {
			char id[256];
			snprintf(id, sizeof(id), "%.*s", (int)(n - 5), name);
			int64_t before = w->st->file_bytes;
			remove_stored(w, id);
			mg_log(MG_LOG_WARN, "retain", "removed an output file of a batch the journal does not know (left by a crash) file=%s batch=%s bytes=%lld",
			       id, batch, (long long)(w->st->file_bytes - before));
			r = 0;
		}
	}
	json_decref(meta);
	return r;
}

int retain_orphans(journal_t *j, const char *state_dir, retain_stats_t *ret)
{
	retain_stats_t st = { 0 };
	sweep_t w = { state_dir, &st };
	int r = each_entry(j, &w, "batches", sweep_batch);
	if (r == 0)
		r = each_entry(j, &w, "files", sweep_file);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}
