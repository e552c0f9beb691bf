/* margind: the scheduler daemon. Parses settings, blocks the signals the
 * core loop reads from a signalfd, creates the ZeroMQ context every thread
 * of the daemon shares, and runs the core loop until drained. */
#include "api.h"
#include "api_cost.h"
#include "apikeys.h"
#include "booking.h"
#include "core.h"
#include "ctl_api.h"
#include "http.h"
#include "metrics.h"
#include "lib/mg_log.h"
#include "opts.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

/* The HTTP API: [http] settings, API keys, the metrics the core feeds
 * (ctl_api_attach) and the HTTP threads render. An explicit --http that
 * cannot be served is fatal; the default address (127.0.0.1:8080) only
 * warns when taken, so a second daemon on the host still schedules. */
static int start_http(const opts_t *o, void *zctx, core_t *core, metrics_t **ret_metrics,
		      apikeys_t **ret_keys, http_t **ret_http, char *err, size_t errlen)
{
	http_config_t hc;
	http_config_default(&hc);
	opts_http_config(o, &hc);
	int r;
	bool explicit_listen = o->http != NULL && *o->http != '\0';
	if (explicit_listen && strcmp(o->http, "none") == 0)
		return 0;
	hc.state_dir = o->state_dir;
	hc.service = &api_service;
	if (o->api_keys != NULL && *o->api_keys != '\0') {
		if ((r = apikeys_load(o->api_keys, ret_keys, err, errlen)) < 0)
			return r;
		hc.keys = *ret_keys;
	}
	if ((*ret_metrics = metrics_new()) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	hc.metrics = *ret_metrics;
	if ((r = ctl_api_attach(core_sched(core), *ret_metrics)) < 0) {
		snprintf(err, errlen, "cannot register the api. control commands: %s", strerror(-r));
		return r;
	}
	r = http_new(&hc, zctx, NULL, NULL, ret_http, err, errlen);
	if (r == -EADDRINUSE && !explicit_listen) {
		mg_log(MG_LOG_WARN, "main", "HTTP API not started: the default address is taken err=\"%s\"", err);
		return 0;
	}
	return r;
}

int main(int argc, char **argv)
{
	char err[1024];
	opts_t o;
	int r = opts_parse(&o, argc, argv, err, sizeof(err));
	if (r == 1) {
		opts_done(&o);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "margind: %s\n", err);
		if (r == -EINVAL)
			fprintf(stderr, "margind --help for the options\n");
		opts_done(&o);
		return r == -EINVAL ? 2 : 1;
	}
	mg_log_set_level(o.log_level);
	if (mg_log_init_from_env() < 0)
		fprintf(stderr, "margind: ignoring a bad MARGIN_LOG_LEVEL\n");
	if (o.log_file != NULL && (r = mg_log_reopen(o.log_file)) < 0) {
		fprintf(stderr, "margind: --log-file %s: %s\n", o.log_file, strerror(-r));
		opts_done(&o);
		return 1;
	}
	booking_conf_t meter;
	if ((r = booking_conf_load(&meter, o.cfg, err, sizeof(err))) < 0) {
		fprintf(stderr, "margind: %s\n", err);
		opts_done(&o);
		return r == -EINVAL ? 2 : 1;
	}

	/* Blocked before any thread exists (ZeroMQ's I/O threads inherit the
	 * mask), so the signals reach only the core loop's signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	void *zctx = zmq_ctx_new();
	if (zctx == NULL) {
		fprintf(stderr, "margind: zmq_ctx_new: %s\n", zmq_strerror(zmq_errno()));
		opts_done(&o);
		return 1;
	}
	core_t *core = NULL;
	r = core_new(zctx, &o, &core, err, sizeof(err));
	if (r < 0) {
		mg_log(MG_LOG_ERROR, "main", "cannot start err=\"%s\"", err);
		fprintf(stderr, "margind: %s\n", err);
		zmq_ctx_term(zctx);
		booking_conf_done(&meter);
		opts_done(&o);
		return 1;
	}
	/* The meter books every Result in the journal's transaction; its
	 * reports read the journal on their own connections. */
	booking_t *booking = NULL;
	if ((r = booking_new(&meter, &booking)) < 0)
		snprintf(err, sizeof(err), "out of memory");
	if (r == 0)
		r = booking_attach(booking, core_sched(core), o.state_dir, err, sizeof(err));
	if (r == 0)
		r = api_cost_start(&meter, o.state_dir, err, sizeof(err));
	if (r < 0) {
		mg_log(MG_LOG_ERROR, "main", "cannot start the meter err=\"%s\"", err);
		fprintf(stderr, "margind: %s\n", err);
		core_destroy(&core);
		zmq_ctx_term(zctx);
		booking_destroy(&booking);
		booking_conf_done(&meter);
		opts_done(&o);
		return 1;
	}
	/* The HTTP API (daemon/http.c) starts here, in this context, and talks
	 * to the core through CTL_INPROC_ENDPOINT; see docs/control.md. */
	metrics_t *metrics = NULL;
	apikeys_t *keys = NULL;
	http_t *http = NULL;
	if ((r = start_http(&o, zctx, core, &metrics, &keys, &http, err, sizeof(err))) < 0) {
		mg_log(MG_LOG_ERROR, "main", "cannot start the HTTP API err=\"%s\"", err);
		fprintf(stderr, "margind: %s\n", err);
		core_destroy(&core);
		zmq_ctx_term(zctx);
		apikeys_destroy(&keys);
		metrics_destroy(&metrics);
		booking_destroy(&booking);
		booking_conf_done(&meter);
		opts_done(&o);
		/* A malformed --http or a public address without keys: usage. */
		return r == -EINVAL || r == -EPERM ? 2 : 1;
	}
	int rc = core_run(core);
	/* Before the core goes: HTTP threads still waiting on it fail fast. */
	http_destroy(&http);
	core_destroy(&core);
	zmq_ctx_term(zctx);
	apikeys_destroy(&keys);
	metrics_destroy(&metrics);
	booking_destroy(&booking);
	booking_conf_done(&meter);
	opts_done(&o);
	return rc;
}
