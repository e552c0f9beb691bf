/* mg_wire: one margin.v1.Msg <-> one ZeroMQ frame.
 *
 * Frames are capped (MG_WIRE_MAX_FRAME by default); a frame that is empty,
 * too big, does not decode, or decodes to a Msg with no body is an error
 * with a text that says which, never a crash. Pure functions: any thread. */
#ifndef MG_WIRE_H
#define MG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/margin.pb-c.h"

/* Bumped whenever the protocol changes incompatibly; Hello carries it. */
#define MG_PROTO_VERSION 1u
/* Default cap on one frame: a shard's Assign or Result. */
#define MG_WIRE_MAX_FRAME (64u * 1024u * 1024u)

/* What a Hello may hold (docs/protocol.md, "Limits"). The worker's own
 * options stay inside them; margind answers a Hello beyond them with a Bye
 * naming the field. Strings are counted in bytes, and must be UTF-8
 * without control characters. */
#define MG_HELLO_MAX_MODELS 16u
#define MG_HELLO_MAX_NAME 127u		/* worker_name, hardware_profile, models[].name */
#define MG_HELLO_MAX_SHORT 63u		/* build, models[].arch, models[].kv_type */
#define MG_HELLO_MAX_SLOTS 4096u	/* slots: 1 to this */
#define MG_HELLO_MAX_THREADS 4096u	/* threads: 0 to this */
/* A Hello within those limits packs to at most 5.3 KiB (the unit test packs
 * the largest one). Until margind has accepted a peer's Hello, that peer's
 * frames are held to this size and larger ones are dropped undecoded. */
#define MG_WIRE_MAX_HELLO_FRAME (8u * 1024u)

typedef Margin__V1__Msg mg_msg_t;

/* Encode m into a new buffer. On success *ret_buf (owned by the caller,
 * free()) and *ret_len are set. -EINVAL if m has no body, -EMSGSIZE if the
 * encoding exceeds cap, -ENOMEM. */
int mg_wire_pack(const mg_msg_t *m, size_t cap, uint8_t **ret_buf, size_t *ret_len);

/* Decode one frame. On success *ret is a new message the caller frees with
 * mg_wire_free(). Errors: -EMSGSIZE (len > cap), -EPROTO (empty frame, not
 * protobuf, no body), -ERANGE (a Hello beyond the limits above); err gets a
 * message naming the length and reason, or the field. */
int mg_wire_unpack(const void *buf, size_t len, size_t cap, mg_msg_t **ret,
		   char *err, size_t errlen);

/* 0 when h is within the MG_HELLO_ limits; else -ERANGE and err names the
 * field, its value (or length) and what is allowed. */
int mg_wire_check_hello(const Margin__V1__Hello *h, char *err, size_t errlen);

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
