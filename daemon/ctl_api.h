/* ctl_api: the control commands and the scheduler hook that the HTTP API
 * needs beyond ctl.c's table. Runs in the core thread.
 *
 *   api.submit_sync {id, endpoint, requests:[line]}  -> {"id","state"}
 *       an inline job with SCHED_SUBMIT_PRIORITY (synchronous completions
 *       are dispatched before batch work)
 *   api.gauges {}  -> {"requests_queued","batches":{"validating","in_progress","cancelling"}}
 *       figures for /metrics that only the core can count
 *
 * and a sched observer that feeds each committed Result to a metrics_t
 * (requests and tokens by model, TTFT, per-worker step times). */
#ifndef CTL_API_H
#define CTL_API_H

#include "metrics.h"
#include "sched.h"

/* Registers the "api." control extension and the result observer on s.
 * m is borrowed (thread-safe; the HTTP threads render it) and must outlive
 * the core. Call once, after core_new() and before core_run(). -ENOSPC
 * when the control table has no room. */
int ctl_api_attach(sched_t *s, metrics_t *m);

#endif
