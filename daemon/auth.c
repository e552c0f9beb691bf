/* auth: see auth.h. */
#include "auth.h"
#include "lib/mg_clock.h"
#include "lib/mg_curve.h"
#include "lib/mg_log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct key {
	unsigned char bin[32];
	char name[128];		/* file name without .pub: the ZAP user id */
};

struct auth {
	void *sock;		/* owned: REP bound to inproc://zeromq.zap.01 */
	char *dir;		/* owned */
	struct key *keys;	/* owned */
	size_t n;
	/* Refusals are logged the first time, then once a minute with a count:
	 * anyone who reaches the port can present a new key per connection. */
	mg_log_throttle_t refused_mech, refused_key;
};

static int load_dir(const char *dir, struct key **ret, size_t *ret_n, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (d == NULL) {
		int e = errno;
		snprintf(err, errlen, "--curve-allow %s: %s", dir, strerror(e));
		return -e;
	}
	struct key *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len <= 4 || strcmp(de->d_name + len - 4, ".pub") != 0 || de->d_name[0] == '.')
			continue;
		char path[PATH_MAX], z85[41], e2[512];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct key k;
		if (mg_curve_key_read(path, z85, k.bin, e2, sizeof(e2)) < 0) {
			/* One bad file must not lock every worker out. */
			mg_log(MG_LOG_WARN, "auth", "skipping a key file err=\"%s\"", e2);
			continue;
		}
		snprintf(k.name, sizeof(k.name), "%.*s", (int)(len - 4), de->d_name);
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct key *nv = realloc(v, nc * sizeof(*nv));
			if (nv == NULL) {
				r = -ENOMEM;
				snprintf(err, errlen, "out of memory");
				break;
			}
			v = nv;
			cap = nc;
		}
		v[n++] = k;
	}
	closedir(d);
	if (r < 0) {
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

int auth_new(void *zctx, const char *allow_dir, auth_t **ret, char *err, size_t errlen)
{
	auth_t *a = calloc(1, sizeof(*a));
	int r;
	if (a == NULL || (a->dir = strdup(allow_dir)) == NULL) {
		free(a);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = load_dir(allow_dir, &a->keys, &a->n, err, errlen)) < 0)
		goto fail;
	a->sock = zmq_socket(zctx, ZMQ_REP);
	int linger = 0;
	if (a->sock == NULL || zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof(linger)) < 0 ||
	    zmq_bind(a->sock, AUTH_ZAP_ENDPOINT) < 0) {
		r = -zmq_errno();
		snprintf(err, errlen, "ZAP handler: cannot bind %s: %s", AUTH_ZAP_ENDPOINT, zmq_strerror(-r));
		goto fail;
	}
	*ret = a;
	return 0;
fail:
	auth_destroy(&a);
	return r;
}

void auth_destroy(auth_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	auth_t *a = *p;
	if (a->sock)
		zmq_close(a->sock);
	free(a->keys);
	free(a->dir);
	free(a);
	*p = NULL;
}

void *auth_socket(const auth_t *a)
{
	return a->sock;
}

size_t auth_count(const auth_t *a)
{
	return a->n;
}

int auth_reload(auth_t *a, char *err, size_t errlen)
{
	struct key *v;
	size_t n;
	int r = load_dir(a->dir, &v, &n, err, errlen);
	if (r < 0)
		return r;
	free(a->keys);
	a->keys = v;
	a->n = n;
	return 0;
}

static const struct key *find_key(const auth_t *a, const unsigned char *bin)
{
	for (size_t i = 0; i < a->n; i++)
		if (memcmp(a->keys[i].bin, bin, 32) == 0)
			return &a->keys[i];
	return NULL;
}

/* One ZAP request: version, request id, domain, address, routing id,
 * mechanism, credentials... Reply: version, request id, status code,
 * status text, user id, metadata. */
static void handle_one(auth_t *a)
{
	enum { F_VERSION, F_ID, F_DOMAIN, F_ADDRESS, F_IDENTITY, F_MECH, F_CRED, N_F };
	zmq_msg_t f[N_F];
	int n = 0;
	bool more = true;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, a->sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
			zmq_msg_close(&m);
			if (n == 0)
				return;
			break;
		}
		more = zmq_msg_more(&m);
		if (n < N_F)
			f[n++] = m;
		else
			zmq_msg_close(&m);
	}
	const char *status = "400", *text = "not allowed", *user = "";
	char address[64] = "", mech[16] = "", z85[41] = "";
	if (n >= F_MECH + 1) {
		snprintf(address, sizeof(address), "%.*s", (int)zmq_msg_size(&f[F_ADDRESS]),
			 (const char *)zmq_msg_data(&f[F_ADDRESS]));
		snprintf(mech, sizeof(mech), "%.*s", (int)zmq_msg_size(&f[F_MECH]),
			 (const char *)zmq_msg_data(&f[F_MECH]));
	}
	if (n < F_MECH + 1 || zmq_msg_size(&f[F_VERSION]) != 3 ||
	    memcmp(zmq_msg_data(&f[F_VERSION]), "1.0", 3) != 0) {
		status = "500";
		text = "malformed ZAP request";
	} else if (strcmp(mech, "CURVE") != 0) {
		text = "only CURVE is accepted";
		uint64_t quiet;
		if (mg_log_throttle(&a->refused_mech, mg_clock_now_ns(), &quiet))
			mg_log(MG_LOG_WARN, "auth", "refused a worker connection address=%s mechanism=%s reason=\"CURVE required\" not_logged=%llu",
			       address, mech, (unsigned long long)quiet);
	} else if (n < F_CRED + 1 || zmq_msg_size(&f[F_CRED]) != 32) {
		status = "500";
		text = "malformed CURVE credentials";
	} else {
		const unsigned char *key = zmq_msg_data(&f[F_CRED]);
		zmq_z85_encode(z85, key, 32);
		const struct key *k = find_key(a, key);
		if (k != NULL) {
			status = "200";
			text = "OK";
			user = k->name;
			mg_log(MG_LOG_INFO, "auth", "allowed a worker connection address=%s key=%s key_name=%s",
			       address, z85, k->name);
		} else {
			text = "unknown CURVE key";
			uint64_t quiet;
			if (mg_log_throttle(&a->refused_key, mg_clock_now_ns(), &quiet))
				mg_log(MG_LOG_WARN, "auth", "refused a worker connection: unknown CURVE key key=%s address=%s allow_dir=%s not_logged=%llu",
				       z85, address, a->dir, (unsigned long long)quiet);
		}
	}
	/* Reply: echo version and request id. */
	const char *ver = "1.0";
	if (n >= 2)
		zmq_send(a->sock, zmq_msg_data(&f[F_VERSION]), zmq_msg_size(&f[F_VERSION]), ZMQ_SNDMORE);
	else
		zmq_send(a->sock, ver, 3, ZMQ_SNDMORE);
	if (n >= 2)
		zmq_send(a->sock, zmq_msg_data(&f[F_ID]), zmq_msg_size(&f[F_ID]), ZMQ_SNDMORE);
	else
		zmq_send(a->sock, "", 0, ZMQ_SNDMORE);
	zmq_send(a->sock, status, 3, ZMQ_SNDMORE);
	zmq_send(a->sock, text, strlen(text), ZMQ_SNDMORE);
	zmq_send(a->sock, user, strlen(user), ZMQ_SNDMORE);
	zmq_send(a->sock, "", 0, 0);
	for (int i = 0; i < n; i++)
		zmq_msg_close(&f[i]);
}

void auth_handle(auth_t *a)
{
	int events = 0;
	size_t len = sizeof(events);
	/* Requests are one at a time on REP; go on while more are queued. */
	for (int i = 0; i < 256; i++) {
		if (zmq_getsockopt(a->sock, ZMQ_EVENTS, &events, &len) < 0 || !(events & ZMQ_POLLIN))
			return;
		handle_one(a);
	}
}
