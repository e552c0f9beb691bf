/* margind: the scheduler daemon. Parses settings, blocks the signals the
 * core loop reads from a signalfd, creates the ZeroMQ context every thread
 * of the daemon shares, and runs the core loop until drained. */
#include "core.h"
#include "mg_log.h"
#include "opts.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

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
		opts_done(&o);
		return 1;
	}
	/* The HTTP API (daemon/http.c) starts here, in this context, and talks
	 * to the core through CTL_INPROC_ENDPOINT; see docs/control.md. */
	int rc = core_run(core);
	core_destroy(&core);
	zmq_ctx_term(zctx);
	opts_done(&o);
	return rc;
}
