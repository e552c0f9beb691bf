/* core: see core.h. */
#include "core.h"
#include "auth.h"
#include "ctl.h"
#include "htab.h"
#include "journal.h"
#include "lib/mg_clock.h"
#include "lib/mg_curve.h"
#include "lib/mg_log.h"
#include "lib/mg_notify.h"
#include "lib/mg_wire.h"
#include "registry.h"
#include "retain.h"
#include "sched.h"
#include "storage.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define MONITOR_ENDPOINT "inproc://margind-worker-monitor"
#define WORKER_BATCH 4096	/* worker messages per loop iteration */
#define CTL_BATCH 64
#define STATUS_PERIOD_NS (5 * MG_NS_PER_S)

/* The kinds of connection events logged at most once a minute. */
enum conn_log { CONN_REFUSED_PROTOCOL, CONN_REFUSED_AUTH, CONN_REFUSED_NO_DETAIL, CONN_CLOSED,
	       CONN_REFUSED_HELLO, N_CONN_LOGS };

struct core {
	const opts_t *o;	/* borrowed */
	void *zctx;		/* borrowed */
	journal_t *j;		/* owned */
	sched_t *s;		/* owned */
	auth_t *auth;		/* owned; NULL without CURVE */
	void *workers;		/* owned: ROUTER */
	void *ctl;		/* owned: ROUTER */
	void *mon;		/* owned: PAIR reading the worker socket's monitor */
	int sfd;		/* owned: signalfd */
	htab_t *peers;		/* owned: fd -> malloc'ed "ip:port" (monitor logs) */
	char workers_ep[256];	/* the bound endpoint (port resolved) */
	char ctl_ipc[PATH_MAX];
	bool draining, stop;
	int64_t drain_deadline, next_tick, next_wd, wd_period, next_status;
	int64_t next_meter;	/* monotonic: when the meter closes accounting windows next */
	int64_t next_retain;	/* monotonic: the next retention sweep (retain.h) */
	uint64_t answered_at_status;
	int64_t status_at;
	/* refused connections, by kind (protocol, auth, no detail), and closed
	 * ones: the first is logged, then one line a minute with how many were
	 * not (a misconfigured worker retries forever, a scanner faster; the
	 * scheduler logs each worker that leaves by name) */
	mg_log_throttle_t conn_log[N_CONN_LOGS];
};

/* Whether to log this refused connection; *quiet: how many were not
 * logged since the last line (to say so in this one). */
static bool log_refused(core_t *c, enum conn_log kind, uint64_t *quiet)
{
	return mg_log_throttle(&c->conn_log[kind], mg_clock_now_ns(), quiet);
}

static int send_worker(void *user, const uint8_t *ident, size_t len, const mg_msg_t *m)
{
	core_t *c = user;
	return mg_wire_send_to(c->workers, ident, len, m, ZMQ_DONTWAIT);
}

static int set_int(void *sock, int opt, int v)
{
	return zmq_setsockopt(sock, opt, &v, sizeof(v));
}

static int write_endpoints(core_t *c)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	snprintf(path, sizeof(path), "%s/endpoints", c->o->state_dir);
	snprintf(tmp, sizeof(tmp), "%s/endpoints.tmp", c->o->state_dir);
	FILE *f = fopen(tmp, "we");
	if (f == NULL)
		return -errno;
	fprintf(f, "workers=%s\nctl=%s\n", c->workers_ep, c->ctl_ipc[0] ? c->ctl_ipc : "");
	if (fclose(f) != 0 || rename(tmp, path) < 0)
		return -errno;
	return 0;
}

static int bind_workers(core_t *c, char *err, size_t errlen)
{
	const opts_t *o = c->o;
	int r;
	c->workers = zmq_socket(c->zctx, ZMQ_ROUTER);
	if (c->workers == NULL)
		goto zfail;
	/* ZMQ_MAXMSGSIZE is one limit for the whole ROUTER socket, so it is
	 * the largest message a worker sends: a Result, which the worker packs
	 * to at most MG_WIRE_MAX_FRAME (max_frame's default and ceiling); a
	 * larger frame makes libzmq close the connection before buffering it.
	 * Peers that have not said Hello are held to far less, before
	 * anything is decoded (admit()). */
	int64_t maxmsg = (int64_t)o->max_frame;
	if (set_int(c->workers, ZMQ_ROUTER_MANDATORY, 1) < 0 ||
	    set_int(c->workers, ZMQ_ROUTER_HANDOVER, 1) < 0 ||
	    set_int(c->workers, ZMQ_LINGER, 0) < 0 ||
	    set_int(c->workers, ZMQ_SNDHWM, 100000) < 0 ||
	    set_int(c->workers, ZMQ_RCVHWM, 100000) < 0 ||
	    zmq_setsockopt(c->workers, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) < 0)
		goto zfail;
	if (o->curve) {
		char z85[41], pub[41];
		if ((r = mg_curve_key_load(o->curve_secret, z85, NULL, err, errlen)) < 0)
			return r;
		if (zmq_curve_public(pub, z85) < 0) {
			snprintf(err, errlen, "%s: not a CURVE secret key", o->curve_secret);
			return -EINVAL;
		}
		/* The ZAP handler must be bound before the CURVE server binds. */
		if ((r = auth_new(c->zctx, o->curve_allow, &c->auth, err, errlen)) < 0)
			return r;
		if (set_int(c->workers, ZMQ_CURVE_SERVER, 1) < 0 ||
		    zmq_setsockopt(c->workers, ZMQ_CURVE_SECRETKEY, z85, 40) < 0 ||
		    zmq_setsockopt(c->workers, ZMQ_ZAP_DOMAIN, AUTH_DOMAIN, strlen(AUTH_DOMAIN)) < 0)
			goto zfail;
		memset(z85, 0, sizeof(z85));
		mg_log(MG_LOG_INFO, "core", "CURVE on the worker endpoint server_key=%s allowed_keys=%zu allow_dir=%s",
		       pub, auth_count(c->auth), o->curve_allow);
	} else {
		mg_log(MG_LOG_WARN, "core", "CURVE is off (--no-curve): worker traffic is plain TCP, unencrypted, and any peer that reaches the endpoint can take work endpoint=%s",
		       o->workers);
	}
	if (zmq_socket_monitor(c->workers, MONITOR_ENDPOINT,
			       ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
			       ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
			       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) < 0)
		goto zfail;
	c->mon = zmq_socket(c->zctx, ZMQ_PAIR);
	if (c->mon == NULL || set_int(c->mon, ZMQ_LINGER, 0) < 0 ||
	    zmq_connect(c->mon, MONITOR_ENDPOINT) < 0)
		goto zfail;
	if (zmq_bind(c->workers, o->workers) < 0) {
		r = -zmq_errno();
		snprintf(err, errlen, "--workers %s: cannot bind: %s", o->workers, zmq_strerror(-r));
		return r;
	}
	size_t len = sizeof(c->workers_ep);
	if (zmq_getsockopt(c->workers, ZMQ_LAST_ENDPOINT, c->workers_ep, &len) < 0)
		snprintf(c->workers_ep, sizeof(c->workers_ep), "%s", o->workers);
	return 0;
zfail:
	r = -zmq_errno();
	snprintf(err, errlen, "worker socket: %s", zmq_strerror(-r));
	return r;
}

static int bind_ctl(core_t *c, char *err, size_t errlen)
{
	int r;
	c->ctl = zmq_socket(c->zctx, ZMQ_ROUTER);
	if (c->ctl == NULL || set_int(c->ctl, ZMQ_LINGER, 0) < 0 ||
	    set_int(c->ctl, ZMQ_ROUTER_MANDATORY, 0) < 0) {
		r = -zmq_errno();
		snprintf(err, errlen, "control socket: %s", zmq_strerror(-r));
		return r;
	}
	int64_t maxmsg = CTL_MAX_REQUEST;
	zmq_setsockopt(c->ctl, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	if (zmq_bind(c->ctl, CTL_INPROC_ENDPOINT) < 0) {
		r = -zmq_errno();
		snprintf(err, errlen, "control socket: cannot bind %s: %s", CTL_INPROC_ENDPOINT, zmq_strerror(-r));
		return r;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/ctl.sock", c->o->state_dir);
	/* 108 bytes is the limit of an AF_UNIX path. */
	if (strlen(path) >= 100) {
		mg_log(MG_LOG_WARN, "core", "state directory path too long for an ipc control socket; only inproc control path=%s",
		       path);
		return 0;
	}
	/* We hold the state directory's lock: a socket file left there is stale. */
	unlink(path);
	snprintf(c->ctl_ipc, sizeof(c->ctl_ipc), "ipc://%s", path);
	if (zmq_bind(c->ctl, c->ctl_ipc) < 0) {
		r = -zmq_errno();
		snprintf(err, errlen, "control socket: cannot bind %s: %s", c->ctl_ipc, zmq_strerror(-r));
		return r;
	}
	return 0;
}

/* The retention sweep: at start, then every quarter of the retention
 * (at least every second, at most every hour). */
static void retain_tick(core_t *c, int64_t now)
{
	int64_t period = c->o->retention_s * MG_NS_PER_S / 4;
	if (period < MG_NS_PER_S)
		period = MG_NS_PER_S;
	if (period > 3600 * MG_NS_PER_S)
		period = 3600 * MG_NS_PER_S;
	c->next_retain = now + period;
	if (c->o->retention_s <= 0)
		return;
	retain_stats_t rs;
	int r = retain_sweep(c->j, c->o->state_dir, c->o->retention_s, journal_wall_ns(c->j) / MG_NS_PER_S,
			     &rs);
	if (r == -EBUSY)
		c->next_retain = now + MG_NS_PER_S;
	else if (r < 0)
		mg_log(MG_LOG_ERROR, "core", "retention sweep failed err=\"%s\" journal=\"%s\"", strerror(-r),
		       journal_errmsg(c->j));
	else if (rs.jobs > 0)
		mg_log(MG_LOG_INFO, "core", "retention sweep batches=%lld files=%lld file_bytes=%lld journal_bytes_freed=%lld retention_s=%lld",
		       (long long)rs.jobs, (long long)rs.files, (long long)rs.file_bytes,
		       (long long)rs.journal_bytes, (long long)c->o->retention_s);
}

int core_new(void *zctx, const opts_t *o, core_t **ret, char *err, size_t errlen)
{
	core_t *c = calloc(1, sizeof(*c));
	int r;
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->o = o;
	c->zctx = zctx;
	c->sfd = -1;
	c->peers = htab_new();
	if (c->peers == NULL) {
		r = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	c->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c->sfd < 0) {
		r = -errno;
		snprintf(err, errlen, "signalfd: %s", strerror(-r));
		goto fail;
	}
	/* The disk reserve goes first: room for the journal to open on a
	 * full disk (storage.h). */
	storage_start(o->state_dir);
	if ((r = journal_open(o->state_dir, o->journal_sync, &c->j, err, errlen)) < 0)
		goto fail;
	int64_t from, to;
	if (journal_converted(c->j, &from, &to))
		mg_log(MG_LOG_INFO, "core", "journal switched to incremental vacuum (one VACUUM) state_dir=%s bytes_before=%lld bytes_after=%lld",
		       o->state_dir, (long long)from, (long long)to);
	int64_t now = mg_clock_now_ns();
	if ((r = sched_new(c->j, &o->sched, send_worker, c, now, &c->s, err, errlen)) < 0)
		goto fail;
	/* Before the HTTP API writes there: what a crash left, then what
	 * retention lets go. */
	retain_stats_t rs;
	if ((r = retain_orphans(c->j, o->state_dir, &rs)) < 0) {
		snprintf(err, errlen, "sweeping %s for files no batch names: %s", o->state_dir, strerror(-r));
		goto fail;
	}
	if (rs.files > 0)
		mg_log(MG_LOG_WARN, "core", "start sweep removed files no batch names files=%lld bytes=%lld",
		       (long long)rs.files, (long long)rs.file_bytes);
	retain_tick(c, now);
	if ((r = bind_ctl(c, err, errlen)) < 0)
		goto fail;
	if ((r = bind_workers(c, err, errlen)) < 0)
		goto fail;
	if (write_endpoints(c) < 0)
		mg_log(MG_LOG_WARN, "core", "cannot write %s/endpoints", o->state_dir);
	*ret = c;
	return 0;
fail:
	core_destroy(&c);
	return r;
}

sched_t *core_sched(core_t *c)
{
	return c->s;
}

static int free_peer(void *user, const void *key, size_t len, void *val)
{
	free(val);
	return 0;
}

void core_destroy(core_t **p)
{
	if (p == NULL || *p == NULL)
		return;
	core_t *c = *p;
	if (c->workers) {
		zmq_socket_monitor(c->workers, NULL, 0);
		zmq_close(c->workers);
	}
	if (c->mon)
		zmq_close(c->mon);
	if (c->ctl)
		zmq_close(c->ctl);
	if (c->ctl_ipc[0])
		unlink(c->ctl_ipc + strlen("ipc://"));
	auth_destroy(&c->auth);
	sched_destroy(&c->s);
	journal_destroy(&c->j);
	if (c->sfd >= 0)
		close(c->sfd);
	if (c->peers) {
		htab_foreach(c->peers, free_peer, NULL);
		htab_destroy(&c->peers);
	}
	free(c);
	*p = NULL;
}

/* --- input ------------------------------------------------------------ */

static void send_bye(core_t *c, const uint8_t *ident, size_t len, const char *reason)
{
	Margin__V1__Bye b = MARGIN__V1__BYE__INIT;
	b.reason = (char *)reason;
	mg_msg_t m = MARGIN__V1__MSG__INIT;
	m.body_case = MARGIN__V1__MSG__BODY_BYE;
	m.bye = &b;
	mg_wire_send_to(c->workers, ident, len, &m, ZMQ_DONTWAIT);
}

/* A frame from a peer that has not said Hello (anyone who reaches the port
 * without CURVE; a worker that has not noticed a restart of margind). All
 * it may send is its Hello or a worker's small messages, none larger than
 * the largest Hello: a bigger frame is dropped without being decoded, and
 * a Hello beyond the protocol's limits is refused. Both are answered with
 * a Bye that says why (a worker waiting for Welcome ends with it; one that
 * missed a restart says Hello at once). True: hand it to the scheduler. */
static bool admit(core_t *c, const uint8_t *ident, size_t ident_len, const void *data, size_t len,
		  int64_t now)
{
	char err[256];
	if (len > MG_WIRE_MAX_HELLO_FRAME) {
		snprintf(err, sizeof(err), "a frame of %zu bytes before Hello: at most %u bytes until a Hello is accepted",
			 len, MG_WIRE_MAX_HELLO_FRAME);
		sched_on_garbage(c->s, ident, ident_len, err, now);
		send_bye(c, ident, ident_len, err);
		return false;
	}
	mg_msg_t *m = NULL;
	int r = mg_wire_unpack(data, len, MG_WIRE_MAX_HELLO_FRAME, &m, err, sizeof(err));
	if (r == -ERANGE) {
		uint64_t quiet;
		char idbuf[80];
		if (log_refused(c, CONN_REFUSED_HELLO, &quiet))
			mg_log(MG_LOG_WARN, "core", "refused a worker peer=%s reason=\"%s\" not_logged=%llu",
			       registry_ident_str(ident, ident_len, idbuf, sizeof(idbuf)), err,
			       (unsigned long long)quiet);
		send_bye(c, ident, ident_len, err);
		return false;
	}
	if (r < 0) {
		sched_on_garbage(c->s, ident, ident_len, err, now);
		return false;
	}
	mg_wire_free(&m);	/* the scheduler decodes it again: a few KiB at most */
	return true;
}

/* Everything read in one pass is one group commit (sched_group_begin):
 * one SQLite transaction for all the Results, not one each. */
static int read_workers(core_t *c, int64_t now)
{
	sched_group_begin(c->s);
	for (int i = 0; i < WORKER_BATCH; i++) {
		zmq_msg_t id, data;
		zmq_msg_init(&id);
		if (zmq_msg_recv(&id, c->workers, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&id);
			break;
		}
		if (!zmq_msg_more(&id)) {
			zmq_msg_close(&id);
			continue;
		}
		zmq_msg_init(&data);
		if (zmq_msg_recv(&data, c->workers, 0) < 0) {
			zmq_msg_close(&data);
			zmq_msg_close(&id);
			continue;
		}
		const uint8_t *ident = zmq_msg_data(&id);
		size_t ident_len = zmq_msg_size(&id);
		if (zmq_msg_more(&data)) {
			int parts = 2;
			while (zmq_msg_more(&data)) {
				zmq_msg_close(&data);
				zmq_msg_init(&data);
				if (zmq_msg_recv(&data, c->workers, 0) < 0)
					break;
				parts++;
			}
			char what[96];
			snprintf(what, sizeof(what), "a message of %d frames (the protocol sends one frame per message)",
				 parts - 1);
			sched_on_garbage(c->s, ident, ident_len, what, now);
		} else if (registry_find(sched_registry(c->s), ident, ident_len) != NULL ||
			   admit(c, ident, ident_len, zmq_msg_data(&data), zmq_msg_size(&data), now)) {
			/* With CURVE, the ZAP handler named the connection's key. */
			const char *key = c->auth ? zmq_msg_gets(&data, "User-Id") : NULL;
			sched_on_frame(c->s, ident, ident_len, zmq_msg_data(&data), zmq_msg_size(&data),
				       c->o->max_frame, key, now);
		}
		zmq_msg_close(&data);
		zmq_msg_close(&id);
	}
	return sched_group_end(c->s);
}

static void read_ctl(core_t *c, int64_t now)
{
	enum { MAX_FRAMES = 8 };
	for (int i = 0; i < CTL_BATCH; i++) {
		zmq_msg_t f[MAX_FRAMES];
		int n = 0;
		bool more = true, overflow = false;
		while (more) {
			zmq_msg_t m;
			zmq_msg_init(&m);
			if (zmq_msg_recv(&m, c->ctl, n == 0 && !overflow ? ZMQ_DONTWAIT : 0) < 0) {
				zmq_msg_close(&m);
				break;
			}
			more = zmq_msg_more(&m);
			if (n < MAX_FRAMES) {
				f[n++] = m;
			} else {
				overflow = true;
				zmq_msg_close(&m);
			}
		}
		if (n == 0)
			return;
		if (n >= 2 && !overflow) {
			/* Everything before the last frame is the envelope (routing id,
			 * and the empty delimiter a REQ client adds): echo it back. */
			size_t rlen = 0;
			const char *req = zmq_msg_data(&f[n - 1]);
			size_t len = zmq_msg_size(&f[n - 1]);
			char *reply = len > CTL_MAX_REQUEST ? NULL : ctl_handle(c->s, req, len, now, &rlen);
			static const char too_big[] = "{\"error\":{\"code\":\"too_large\",\"message\":\"request too large\"}}";
			static const char oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
			const char *out = reply ? reply : len > CTL_MAX_REQUEST ? too_big : oom;
			size_t olen = reply ? rlen : strlen(out);
			for (int k = 0; k < n - 1; k++)
				zmq_send(c->ctl, zmq_msg_data(&f[k]), zmq_msg_size(&f[k]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
			zmq_send(c->ctl, out, olen, ZMQ_DONTWAIT);
			free(reply);
		}
		for (int k = 0; k < n; k++)
			zmq_msg_close(&f[k]);
	}
}

static void read_monitor(core_t *c)
{
	for (int i = 0; i < 256; i++) {
		zmq_msg_t ev, addr;
		zmq_msg_init(&ev);
		if (zmq_msg_recv(&ev, c->mon, ZMQ_DONTWAIT) < 0) {
			zmq_msg_close(&ev);
			return;
		}
		zmq_msg_init(&addr);
		if (zmq_msg_more(&ev))
			zmq_msg_recv(&addr, c->mon, 0);
		if (zmq_msg_size(&ev) < 6) {
			zmq_msg_close(&ev);
			zmq_msg_close(&addr);
			continue;
		}
		const uint8_t *d = zmq_msg_data(&ev);
		uint16_t event;
		uint32_t value;
		memcpy(&event, d, 2);
		memcpy(&value, d + 2, 4);
		int fd = (int)value;
		char *peer;
		switch (event) {
		case ZMQ_EVENT_ACCEPTED: {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char host[INET6_ADDRSTRLEN] = "?", buf[80];
			int port = 0;
			if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
				if (ss.ss_family == AF_INET) {
					struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
					inet_ntop(AF_INET, &sa->sin_addr, host, sizeof(host));
					port = ntohs(sa->sin_port);
				} else if (ss.ss_family == AF_INET6) {
					struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
					inet_ntop(AF_INET6, &sa->sin6_addr, host, sizeof(host));
					port = ntohs(sa->sin6_port);
				}
			}
			snprintf(buf, sizeof(buf), "%s:%d", host, port);
			peer = strdup(buf);
			free(htab_remove(c->peers, &fd, sizeof(fd)));
			if (peer != NULL && htab_put(c->peers, &fd, sizeof(fd), peer) < 0)
				free(peer);
			mg_log(MG_LOG_DEBUG, "core", "worker connection accepted peer=%s", buf);
			break;
		}
		case ZMQ_EVENT_DISCONNECTED:
		{
			uint64_t quiet;
			peer = htab_remove(c->peers, &fd, sizeof(fd));
			if (log_refused(c, CONN_CLOSED, &quiet))
				mg_log(MG_LOG_INFO, "core", "worker connection closed peer=%s not_logged=%llu",
				       peer ? peer : "?", (unsigned long long)quiet);
			free(peer);
			break;
		}
		case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: {
			uint64_t quiet;
			if (log_refused(c, CONN_REFUSED_PROTOCOL, &quiet))
				mg_log(MG_LOG_WARN, "core", "refused a worker connection: ZMTP handshake failed protocol_error=0x%x reason=\"%s\" not_logged=%llu",
				       value, value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ?
				       (c->auth ? "no CURVE key (a plain connection to a CURVE endpoint)" :
					"the peer wants CURVE but this endpoint runs --no-curve") :
				       "malformed handshake (not a ZeroMQ peer, or bad keys)",
				       (unsigned long long)quiet);
			break;
		}
		case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: {
			uint64_t quiet;
			if (log_refused(c, CONN_REFUSED_AUTH, &quiet))
				mg_log(MG_LOG_WARN, "core", "refused a worker connection: authentication failed zap_status=%u not_logged=%llu",
				       value, (unsigned long long)quiet);
			break;
		}
		case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: {
			/* Which side notices a mechanism mismatch first is a race: when
			 * the plain peer hangs up first, we only see the broken pipe. */
			uint64_t quiet;
			if (!log_refused(c, CONN_REFUSED_NO_DETAIL, &quiet))
				break;
			if (c->auth != NULL)
				mg_log(MG_LOG_WARN, "core", "refused a worker connection: the peer dropped the CURVE handshake err=\"%s\" reason=\"a worker without CURVE keys, or one that does not trust this server key\" not_logged=%llu",
				       zmq_strerror((int)value), (unsigned long long)quiet);
			else
				mg_log(MG_LOG_WARN, "core", "a worker connection failed its handshake err=\"%s\" not_logged=%llu",
				       zmq_strerror((int)value), (unsigned long long)quiet);
			break;
		}
		default:
			break;
		}
		zmq_msg_close(&ev);
		zmq_msg_close(&addr);
	}
}

static void start_drain(core_t *c, int64_t now, const char *why)
{
	sched_stats_t st;
	sched_get_stats(c->s, &st);
	c->draining = true;
	c->drain_deadline = now + c->o->drain_timeout_ns;
	sched_set_draining(c->s, true);
	mg_notify_send("STOPPING=1");
	mg_log(MG_LOG_INFO, "core", "draining: no new shards, waiting for the shards in flight signal=%s shards=%lld timeout_ms=%lld",
	       why, (long long)st.shards_in_flight, (long long)(c->o->drain_timeout_ns / MG_NS_PER_MS));
}

static void reload(core_t *c)
{
	mg_notify_send("RELOADING=1");
	int r = mg_log_reopen(c->o->log_file);
	if (r < 0)
		mg_log(MG_LOG_ERROR, "core", "cannot reopen the log file path=%s err=\"%s\"",
		       c->o->log_file, strerror(-r));
	if (c->auth != NULL) {
		char err[512];
		if (auth_reload(c->auth, err, sizeof(err)) < 0)
			mg_log(MG_LOG_ERROR, "core", "cannot reload the CURVE allow directory; keeping the old keys err=\"%s\"", err);
		else
			mg_log(MG_LOG_INFO, "core", "reloaded allowed_keys=%zu", auth_count(c->auth));
	}
	mg_log(MG_LOG_INFO, "core", "SIGHUP: log reopened");
	mg_notify_send("READY=1");
}

static void read_signals(core_t *c, int64_t now)
{
	struct signalfd_siginfo si;
	while (read(c->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(c);
		} else if (!c->draining) {
			start_drain(c, now, si.ssi_signo == SIGTERM ? "TERM" : "INT");
		} else {
			mg_log(MG_LOG_WARN, "core", "second signal: stopping without waiting for the shards in flight");
			c->stop = true;
		}
	}
}

static void status(core_t *c, int64_t now)
{
	sched_stats_t st;
	sched_get_stats(c->s, &st);
	double dt = (double)(now - c->status_at) / 1e9;
	double rate = dt > 0 ? (double)(st.requests_answered - c->answered_at_status) / dt : 0;
	c->answered_at_status = st.requests_answered;
	c->status_at = now;
	mg_notify_sendf("STATUS=%s%zu batches active, %zu workers, %lld requests in flight, %.0f requests/s",
			st.draining ? "draining: " : "", st.jobs_active, st.workers,
			(long long)st.requests_in_flight, rate);
}

/* The meter's timer (journal_tick: the booking closes the accounting
 * windows that have ended or whose worker left). It tells the wall time
 * it wants to run again; a failure is logged and retried in a minute (the
 * next Result retries too). */
static void meter_tick(core_t *c, int64_t now)
{
	char err[512];
	int64_t next_wall = INT64_MAX, delay = 60 * MG_NS_PER_S;
	int r = journal_tick(c->j, &next_wall, err, sizeof(err));
	if (r < 0)
		mg_log(MG_LOG_ERROR, "core", "closing accounting windows failed (retried in a minute) err=\"%s\"", err);
	else if (next_wall != INT64_MAX) {
		int64_t d = next_wall - journal_wall_ns(c->j);
		delay = d < 0 ? 0 : d < delay ? d : delay;
	}
	c->next_meter = now + delay;
}

int core_run(core_t *c)
{
	int64_t now = mg_clock_now_ns();
	c->next_tick = now;
	c->status_at = now;
	c->next_status = now + STATUS_PERIOD_NS;
	c->wd_period = mg_notify_watchdog_ns() / 2;
	c->next_wd = now;
	sched_stats_t st;
	sched_get_stats(c->s, &st);
	mg_log(MG_LOG_INFO, "core", "margind ready version=%s state_dir=%s workers=%s ctl=%s curve=%s jobs_active=%zu",
	       MARGIN_VERSION, c->o->state_dir, c->workers_ep, c->ctl_ipc[0] ? c->ctl_ipc : CTL_INPROC_ENDPOINT,
	       c->auth ? "on" : "off", st.jobs_active);
	mg_notify_send("READY=1");
	status(c, now);
	meter_tick(c, now);	/* windows a restart left open, workers gone with it */

	zmq_pollitem_t items[] = {
		{ c->workers, 0, ZMQ_POLLIN, 0 },
		{ c->ctl, 0, ZMQ_POLLIN, 0 },
		{ c->mon, 0, ZMQ_POLLIN, 0 },
		{ NULL, c->sfd, ZMQ_POLLIN, 0 },
		{ c->auth ? auth_socket(c->auth) : NULL, 0, ZMQ_POLLIN, 0 },
	};
	int n_items = c->auth ? 5 : 4;
	bool ingesting = false;
	while (!c->stop) {
		now = mg_clock_now_ns();
		int64_t next = c->next_tick;
		if (c->next_status < next)
			next = c->next_status;
		if (c->next_meter < next)
			next = c->next_meter;
		if (c->next_retain < next)
			next = c->next_retain;
		if (c->wd_period > 0 && c->next_wd < next)
			next = c->next_wd;
		if (c->draining && c->drain_deadline < next)
			next = c->drain_deadline;
		long timeout = ingesting ? 0 : next <= now ? 0 : (long)((next - now + MG_NS_PER_MS - 1) / MG_NS_PER_MS);
		if (timeout > 1000)
			timeout = 1000;
		if (zmq_poll(items, n_items, timeout) < 0 && zmq_errno() != EINTR) {
			mg_log(MG_LOG_ERROR, "core", "zmq_poll failed err=\"%s\"", zmq_strerror(zmq_errno()));
			return 1;
		}
		now = mg_clock_now_ns();
		if (items[3].revents & ZMQ_POLLIN)
			read_signals(c, now);
		if (c->auth && (items[4].revents & ZMQ_POLLIN))
			auth_handle(c->auth);
		if (items[2].revents & ZMQ_POLLIN)
			read_monitor(c);
		if (items[1].revents & ZMQ_POLLIN)
			read_ctl(c, now);
		/* Look at the disk before Results commit: a filesystem filled
		 * since the last look gives the journal the reserve first. */
		if ((items[0].revents & ZMQ_POLLIN))
			storage_watch(c->o->state_dir, c->o->min_free, now, true);
		if ((items[0].revents & ZMQ_POLLIN) && read_workers(c, now) < 0) {
			/* Memory is ahead of the journal: stop, and let the restart
			 * (systemd Restart=on-failure) resume from the journal. */
			mg_log(MG_LOG_ERROR, "core", "stopping: the journal refused a commit");
			return 1;
		}
		/* A full disk: nothing new is validated or dispatched; the
		 * Results of what workers hold still commit (storage.h). */
		bool full = storage_watch(c->o->state_dir, c->o->min_free, now, false);
		ingesting = !c->draining && !full && sched_ingest(c->s, now) > 0;
		if (!full)
			sched_dispatch(c->s, now);
		if (now >= c->next_tick)
			c->next_tick = sched_tick(c->s, now);
		if (c->wd_period > 0 && now >= c->next_wd) {
			mg_notify_send("WATCHDOG=1");
			c->next_wd = now + c->wd_period;
		}
		if (now >= c->next_status) {
			status(c, now);
			c->next_status = now + STATUS_PERIOD_NS;
		}
		if (now >= c->next_meter)
			meter_tick(c, now);
		if (now >= c->next_retain)
			retain_tick(c, now);
		if (c->draining) {
			sched_get_stats(c->s, &st);
			if (st.shards_in_flight == 0) {
				mg_log(MG_LOG_INFO, "core", "drained: no shards in flight");
				break;
			}
			if (now >= c->drain_deadline) {
				mg_log(MG_LOG_WARN, "core", "drain timeout: stopping with shards in flight (they are requeued at the next start) shards=%lld",
				       (long long)st.shards_in_flight);
				break;
			}
		}
	}
	mg_log(MG_LOG_INFO, "core", "margind stopped");
	return 0;
}
