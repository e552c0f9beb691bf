/* mg_wire: see mg_wire.h. */
#include "mg_wire.h"
#include "mg_utf8.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Well-formed UTF-8 (mg_utf8_seq) without C0/C1 control characters or DEL;
 * *ret_at is the byte offset of the first bad one. */
static bool printable_utf8(const char *s, size_t len, size_t *ret_at)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t n = mg_utf8_seq(p + i, len - i);
		if (n == 0 || (n == 1 && (p[i] < 0x20 || p[i] == 0x7f)) ||
		    (n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0))	/* U+0080..U+009F */
			goto bad;
		i += n;
	}
	return true;
bad:
	*ret_at = i;
	return false;
}

static int check_str(const char *what, const char *s, size_t min, size_t max, char *err, size_t errlen)
{
	size_t len = s ? strlen(s) : 0, at;
	if (len < min || len > max) {
		snprintf(err, errlen, "Hello: %s is %zu bytes long: expected %zu to %zu", what, len, min, max);
		return -ERANGE;
	}
	if (len > 0 && !printable_utf8(s, len, &at)) {
		snprintf(err, errlen, "Hello: %s: byte %zu is a control character or not UTF-8", what, at);
		return -ERANGE;
	}
	return 0;
}

int mg_wire_check_hello(const Margin__V1__Hello *h, char *err, size_t errlen)
{
	int r;
	if (h->n_models > MG_HELLO_MAX_MODELS) {
		snprintf(err, errlen, "Hello: %zu models: at most %u", h->n_models, MG_HELLO_MAX_MODELS);
		return -ERANGE;
	}
	if (h->slots < 1 || h->slots > MG_HELLO_MAX_SLOTS) {
		snprintf(err, errlen, "Hello: slots = %u: expected 1 to %u", h->slots, MG_HELLO_MAX_SLOTS);
		return -ERANGE;
	}
	if (h->threads > MG_HELLO_MAX_THREADS) {
		snprintf(err, errlen, "Hello: threads = %u: expected 0 to %u", h->threads, MG_HELLO_MAX_THREADS);
		return -ERANGE;
	}
	if ((r = check_str("worker_name", h->worker_name, 1, MG_HELLO_MAX_NAME, err, errlen)) < 0 ||
	    (r = check_str("hardware_profile", h->hardware_profile, 0, MG_HELLO_MAX_NAME, err, errlen)) < 0 ||
	    (r = check_str("build", h->build, 0, MG_HELLO_MAX_SHORT, err, errlen)) < 0)
		return r;
	for (size_t i = 0; i < h->n_models; i++) {
		const Margin__V1__ModelInfo *m = h->models[i];
		char what[48];
		snprintf(what, sizeof(what), "models[%zu].name", i);
		if ((r = check_str(what, m->name, 1, MG_HELLO_MAX_NAME, err, errlen)) < 0)
			return r;
		snprintf(what, sizeof(what), "models[%zu].arch", i);
		if ((r = check_str(what, m->arch, 0, MG_HELLO_MAX_SHORT, err, errlen)) < 0)
			return r;
		snprintf(what, sizeof(what), "models[%zu].kv_type", i);
		if ((r = check_str(what, m->kv_type, 0, MG_HELLO_MAX_SHORT, err, errlen)) < 0)
			return r;
		snprintf(what, sizeof(what), "models[%zu].arith", i);
		if ((r = check_str(what, m->arith, 0, MG_HELLO_MAX_SHORT, err, errlen)) < 0)
			return r;
	}
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
	int r;
	if (m->body_case == MARGIN__V1__MSG__BODY_HELLO &&
	    (r = mg_wire_check_hello(m->hello, err, errlen)) < 0) {
		margin__v1__msg__free_unpacked(m, NULL);
		return r;
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
