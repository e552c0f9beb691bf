/* auth: margind's ZAP handler (RFC 27) for CURVE on the worker endpoint.
 *
 * libzmq 4.3.4 admits ANY client key to a CURVE server unless a ZAP handler
 * answers on inproc://zeromq.zap.01 in the same context, so this one is
 * mandatory with CURVE. It is a REP socket polled by the core loop (no
 * thread): a worker is allowed when its public key is one of the DIR/NAME.pub
 * files (Z85 text, as `marginctl keygen` writes them), and the key file's
 * name (without .pub) becomes the connection's ZAP user id, which margind
 * reads back as the "User-Id" property of the worker's messages.
 * Refusals are logged with the Z85 key and the peer address: the first,
 * then one a minute with how many were not (mg_log_throttle).
 *
 * Why not czmq's zauth: checked here (czmq 4.2.1) — it does serve a raw
 * libzmq socket created in czmq's context (zsys_init() returns it), but it
 * reads the allow directory as ZPL certificates (zcert_save_public), and a
 * bare Z85 .pub file as `marginctl keygen` writes (the command-line
 * contract) is "invalid syntax" to it: every key is denied. It also needs
 * czmq's global context, whose zsys installs its own SIGINT/SIGTERM
 * handlers (they fight the daemon's signalfd), and it is one more thread
 * and library for ~150 lines of protocol. Core thread only. */
#ifndef AUTH_H
#define AUTH_H

#include <stddef.h>

#define AUTH_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define AUTH_DOMAIN "margin"

typedef struct auth auth_t;

/* Binds the ZAP socket in zctx (call before the CURVE server binds) and
 * loads allow_dir. *ret owned by the caller. */
int auth_new(void *zctx, const char *allow_dir, auth_t **ret, char *err, size_t errlen);
/* NULL-safe; closes the socket. */
void auth_destroy(auth_t **a);

/* The socket to poll for ZMQ_POLLIN. */
void *auth_socket(const auth_t *a);
/* Answers every pending ZAP request (non-blocking). */
void auth_handle(auth_t *a);
/* Reads the directory again (SIGHUP); keeps the old set on error. */
int auth_reload(auth_t *a, char *err, size_t errlen);
size_t auth_count(const auth_t *a);


#endif
