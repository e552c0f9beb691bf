/* mg_wire: one margin.v1.Msg <-> one ZeroMQ frame.
 *
 * Frames are capped (MG_WIRE_MAX_FRAME by default); a frame that is empty,
 * too big, does not decode, or decodes to a Msg with no body is an error
 * with a text that says which, never a crash. Pure functions: any thread. */
#ifndef MG_WIRE_H
#define MG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "margin.pb-c.h"

/* Bumped whenever the protocol changes incompatibly; Hello carries it. */
#define MG_PROTO_VERSION 1u
/* Default cap on one frame: a shard's Assign or Result. */
#define MG_WIRE_MAX_FRAME (64u * 1024u * 1024u)

typedef Margin__V1__Msg mg_msg_t;

/* Encode m into a new buffer. On success *ret_buf (owned by the caller,
 * free()) and *ret_len are set. -EINVAL if m has no body, -EMSGSIZE if the
 * encoding exceeds cap, -ENOMEM. */
int mg_wire_pack(const mg_msg_t *m, size_t cap, uint8_t **ret_buf, size_t *ret_len);

/* Decode one frame. On success *ret is a new message the caller frees with
 * mg_wire_free(). Errors: -EMSGSIZE (len > cap), -EPROTO (empty frame, not
 * protobuf, no body); err gets a message naming the length and reason. */
int mg_wire_unpack(const void *buf, size_t len, size_t cap, mg_msg_t **ret,
		   char *err, size_t errlen);

/* NULL-safe; sets *m = NULL. */
void mg_wire_free(mg_msg_t **m);

/* "hello", "credit", ... or "none". */
const char *mg_wire_body_name(const mg_msg_t *m);

/* Send m as one frame on a ZeroMQ socket (flags as zmq_send). Returns 0 or
 * a negative errno (e.g. -EHOSTUNREACH, -EAGAIN). */
int mg_wire_send(void *sock, const mg_msg_t *m, int flags);

/* Send an identity frame then m (ROUTER side). */
int mg_wire_send_to(void *sock, const void *id, size_t id_len, const mg_msg_t *m, int flags);

#endif
