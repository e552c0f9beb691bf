/* core: margind's event loop — one thread, one zmq_poll over
 *
 *   - the worker ROUTER (tcp; CURVE server unless --no-curve;
 *     ROUTER_MANDATORY, ROUTER_HANDOVER, MAXMSGSIZE),
 *   - the control ROUTER (inproc://margind-ctl and ipc://STATE_DIR/ctl.sock),
 *   - the ZAP handler (auth) and the worker socket's monitor,
 *   - a signalfd (SIGTERM/SIGINT drain, SIGHUP reopens the log and
 *     re-reads the CURVE allow directory),
 *
 * and the timers of sched (heartbeats, liveness), the systemd watchdog and
 * STATUS line. It owns all scheduling state (sched) and the SQLite write
 * connection (journal). Other threads of the process talk to it only
 * through inproc://margind-ctl in the same ZeroMQ context. */
#ifndef CORE_H
#define CORE_H

#include <stddef.h>

#include "opts.h"
#include "sched.h"

typedef struct core core_t;

/* Opens the journal (locking the state directory), binds every socket in
 * zctx (borrowed; must outlive the core). The caller must have blocked
 * SIGTERM, SIGINT and SIGHUP in every thread (before creating zctx).
 * On failure err says what and where. */
int core_new(void *zctx, const opts_t *o, core_t **ret, char *err, size_t errlen);
/* Runs until drained after SIGTERM/SIGINT (or a second signal). Returns
 * the process exit status (0 after a drain). */
int core_run(core_t *c);
/* The scheduler (borrowed), e.g. to set an observer before core_run(). */
sched_t *core_sched(core_t *c);
/* NULL-safe: closes sockets (linger 0), the journal and the lock. */
void core_destroy(core_t **c);

#endif
