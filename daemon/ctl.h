/* ctl: margind's control interface — one JSON object in, one JSON object out.
 *
 * The core thread receives requests on a ROUTER bound to
 * inproc://margind-ctl (threads of the daemon, e.g. the HTTP API) and to
 * ipc://STATE_DIR/ctl.sock (marginctl on this host), and answers each with
 * ctl_handle(). Commands are a table (submit, status, results, cancel,
 * list, workers, health); docs/control.md describes every field. Core
 * thread only. */
#ifndef CTL_H
#define CTL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "sched.h"

#define CTL_INPROC_ENDPOINT "inproc://margind-ctl"
/* Largest request accepted (an inline submit): bigger jobs use input_path. */
#define CTL_MAX_REQUEST (64u * 1024u * 1024u)
/* results: default and largest page. */
#define CTL_RESULTS_PAGE 1000
#define CTL_RESULTS_PAGE_MAX 10000

/* Answers one request (req: len bytes of JSON). Returns the reply as a
 * malloc'ed NUL-terminated JSON text (caller frees; *ret_len its length),
 * or NULL when out of memory. Never fails on bad input: that is an
 * {"error":{"code":..,"message":..}} reply. */
char *ctl_handle(sched_t *s, const char *req, size_t len, int64_t now, size_t *ret_len);

/* An extension of the command table: a request whose "cmd" starts with
 * prefix (e.g. "api.") goes to fn, in the core thread, with the decoded
 * request (borrowed); fn sets *ret_reply to a new object (the reply) and
 * returns 0, or returns a negative errno (an "internal" error reply).
 * Register before core_run(); at most CTL_MAX_EXTENSIONS. -ENOSPC. */
#define CTL_MAX_EXTENSIONS 8
typedef int (*ctl_ext_fn)(void *user, sched_t *s, const char *cmd, json_t *req, int64_t now,
			  json_t **ret_reply);
int ctl_add_extension(const char *prefix, ctl_ext_fn fn, void *user);

#endif
