/* mg_jobstate: a batch job's state, one enum for the scheduler, the journal,
 * the API and marginctl.
 *
 * The journal stores and the control socket and the API print the names
 * (docs/api.md, docs/control.md): "validating", "in_progress", "cancelling",
 * "completed", "failed", "cancelled". The API's "finalizing" and "expired"
 * are derived from a terminal state and the output files (api_batches.c);
 * they are not job states. Any thread may call these. */
#ifndef MG_JOBSTATE_H
#define MG_JOBSTATE_H

#include <stdbool.h>

typedef enum mg_job_state {
	MG_JOB_VALIDATING,	/* reading and checking the input file */
	MG_JOB_IN_PROGRESS,	/* requests being dispatched */
	MG_JOB_CANCELLING,	/* cancel asked, shards still out */
	MG_JOB_COMPLETED,	/* terminal */
	MG_JOB_FAILED,		/* terminal: the input was refused */
	MG_JOB_CANCELLED,	/* terminal */
	MG_JOB_N_STATES,
} mg_job_state_t;

/* The stored and printed name; "unknown" outside the enum. Static. */
const char *mg_job_state_name(mg_job_state_t s);
/* The state named s (>= 0), or -EINVAL for NULL or any other text. */
int mg_job_state_parse(const char *s);
/* Whether nothing more happens to the job: completed, failed, cancelled. */
bool mg_job_state_terminal(mg_job_state_t s);
/* The same for a state's name (a JSON field): false for NULL or unknown. */
bool mg_job_state_name_terminal(const char *s);

#endif
