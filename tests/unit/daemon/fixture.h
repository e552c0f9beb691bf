/* Test fixture for the daemon suites: a journal in a fresh directory, a
 * sched whose send callback captures every message, and a fake clock. */
#ifndef DAEMON_FIXTURE_H
#define DAEMON_FIXTURE_H

#include "cu_main.h"
#include "journal.h"
#include "lib/mg_clock.h"
#include "lib/mg_wire.h"
#include "sched.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sent {
	char ident[64];
	mg_msg_t *m;		/* owned: an unpacked copy */
} sent_t;

typedef struct fx {
	char dir[512];
	journal_t *j;
	sched_t *s;
	sched_params_t p;
	int64_t now;		/* the fake clock, ns: sched's and the journal's wall clock */
	sent_t *sent;
	size_t n_sent, cap_sent;
	size_t read_pos;	/* fx_next() cursor */
	int fail_sends_to;	/* -errno returned for sends to unreach_ident */
	char unreach_ident[64];
} fx_t;

/* A fresh directory under the test's temp dir. */
const char *fx_newdir(char *buf, size_t len);
/* A job `name` on `endpoint` (model "m", in progress) with requests
 * c1..cn on lines 1..n, straight into journal j; returns its id. */
int64_t fx_job_new(journal_t *j, const char *name, int n, const char *endpoint);
/* An in-flight shard of job id's lines first..last, into j. */
void fx_shard_new(journal_t *j, int64_t id, int64_t first, int64_t last, journal_shard_t *ret);

/* Opens the journal and a sched with params p (NULL: defaults). */
void fx_open(fx_t *f, const sched_params_t *p);
/* Destroys sched then journal, as a crash would leave the files. */
void fx_close(fx_t *f);
/* Reopen journal + sched on the same directory (recovery). */
void fx_reopen(fx_t *f);

/* Worker -> daemon frames (packed and fed through sched_on_frame). */
void fx_hello(fx_t *f, const char *ident, const char *model, uint64_t instance);
void fx_hello_v(fx_t *f, const char *ident, const char *model, uint64_t instance, uint32_t version);
/* A worker whose ModelInfo embeds with model: embed_dims, "mean", cuttable. */
void fx_hello_embed(fx_t *f, const char *ident, const char *model, uint64_t instance, uint32_t embed_dims);
void fx_credit(fx_t *f, const char *ident, uint32_t n);
/* Any message, packed and fed as from ident. */
void fx_feed(fx_t *f, const char *ident, const mg_msg_t *m);
void fx_heartbeat(fx_t *f, const char *ident);
void fx_bye(fx_t *f, const char *ident);
void fx_frame(fx_t *f, const char *ident, const void *data, size_t len);
/* Answers an Assign: one Output per request, text = "out:<custom_id>". */
void fx_result(fx_t *f, const char *ident, const Margin__V1__Assign *a);
/* Same, with `drop` outputs left out (malformed). */
void fx_result_opts(fx_t *f, const char *ident, const Margin__V1__Assign *a, size_t drop,
		    uint32_t attempt_override);

/* Captured daemon -> worker messages. fx_next returns the next message
 * (any ident) of that body case after the cursor, or NULL; fx_count counts
 * all captured ones of a case for an ident (NULL: any). */
const mg_msg_t *fx_next(fx_t *f, int body_case, char *ret_ident);
size_t fx_count(const fx_t *f, const char *ident, int body_case);
void fx_clear(fx_t *f);

/* Lines of an OpenAI batch input. */
json_t *fx_lines(int n, const char *model, const char *prefix, int max_tokens);
/* Submit inline; asserts success; returns the job name in ret (80 bytes). */
void fx_submit(fx_t *f, const char *name, json_t *lines, char *ret);
void fx_job(fx_t *f, const char *name, journal_job_t *ret);
/* Drives ticks over dt ns in steps (heartbeats flow from idents listed). */
void fx_advance(fx_t *f, int64_t dt);

#endif
