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

#endif
