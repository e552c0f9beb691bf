/* mg_wire: see mg_wire.h. */
#include "mg_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

int mg_wire_pack(const mg_msg_t *m, size_t cap, uint8_t **ret_buf, size_t *ret_len)
{
	if (m == NULL || m->body_case == MARGIN__V1__MSG__BODY__NOT_SET)
		return -EINVAL;
	size_t n = margin__v1__msg__get_packed_size(m);
	if (n > cap)
		return -EMSGSIZE;
	uint8_t *buf = malloc(n ? n : 1);
	if (buf == NULL)
		return -ENOMEM;
	size_t w = margin__v1__msg__pack(m, buf);
	if (w != n) {
		free(buf);
		return -EINVAL;
	}
	*ret_buf = buf;
	*ret_len = n;
	return 0;
}

int mg_wire_unpack(const void *buf, size_t len, size_t cap, mg_msg_t **ret,
		   char *err, size_t errlen)
{
	if (len > cap) {
		snprintf(err, errlen, "frame of %zu bytes exceeds the %zu-byte cap", len, cap);
		return -EMSGSIZE;
	}
	if (len == 0) {
		snprintf(err, errlen, "empty frame");
		return -EPROTO;
	}
	mg_msg_t *m = margin__v1__msg__unpack(NULL, len, buf);
	if (m == NULL) {
		snprintf(err, errlen, "frame of %zu bytes is not a margin.v1.Msg (protobuf decode failed)", len);
		return -EPROTO;
	}
	if (m->body_case == MARGIN__V1__MSG__BODY__NOT_SET) {
		snprintf(err, errlen, "frame of %zu bytes decodes to a Msg with no body", len);
		margin__v1__msg__free_unpacked(m, NULL);
		return -EPROTO;
	}
	*ret = m;
	return 0;
}

void mg_wire_free(mg_msg_t **m)
{
	if (m == NULL || *m == NULL)
		return;
	margin__v1__msg__free_unpacked(*m, NULL);
	*m = NULL;
}

const char *mg_wire_body_name(const mg_msg_t *m)
{
	if (m == NULL)
		return "none";
	switch (m->body_case) {
	case MARGIN__V1__MSG__BODY_HELLO: return "hello";
	case MARGIN__V1__MSG__BODY_CREDIT: return "credit";
	case MARGIN__V1__MSG__BODY_HEARTBEAT: return "heartbeat";
	case MARGIN__V1__MSG__BODY_RESULT: return "result";
	case MARGIN__V1__MSG__BODY_WELCOME: return "welcome";
	case MARGIN__V1__MSG__BODY_ASSIGN: return "assign";
	case MARGIN__V1__MSG__BODY_ACK: return "ack";
	case MARGIN__V1__MSG__BODY_CANCEL: return "cancel";
	case MARGIN__V1__MSG__BODY_BYE: return "bye";
	default: return "none";
	}
}

static int send_frame(void *sock, const mg_msg_t *m, int flags)
{
	uint8_t *buf;
	size_t len;
	int r = mg_wire_pack(m, MG_WIRE_MAX_FRAME, &buf, &len);
	if (r < 0)
		return r;
	r = zmq_send(sock, buf, len, flags);
	free(buf);
	return r < 0 ? -zmq_errno() : 0;
}

int mg_wire_send(void *sock, const mg_msg_t *m, int flags)
{
	return send_frame(sock, m, flags);
}

int mg_wire_send_to(void *sock, const void *id, size_t id_len, const mg_msg_t *m, int flags)
{
	if (zmq_send(sock, id, id_len, ZMQ_SNDMORE | (flags & ZMQ_DONTWAIT)) < 0)
		return -zmq_errno();
	return send_frame(sock, m, flags);
}
