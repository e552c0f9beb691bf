/* mg_jobstate: see mg_jobstate.h. */
#include "mg_jobstate.h"

#include <errno.h>
#include <string.h>

static const char *const names[MG_JOB_N_STATES] = {
	[MG_JOB_VALIDATING] = "validating",
	[MG_JOB_IN_PROGRESS] = "in_progress",
	[MG_JOB_CANCELLING] = "cancelling",
	[MG_JOB_COMPLETED] = "completed",
	[MG_JOB_FAILED] = "failed",
	[MG_JOB_CANCELLED] = "cancelled",
};

const char *mg_job_state_name(mg_job_state_t s)
{
	return (unsigned)s < MG_JOB_N_STATES ? names[s] : "unknown";
}

int mg_job_state_parse(const char *s)
{
	for (int i = 0; s != NULL && i < MG_JOB_N_STATES; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -EINVAL;
}

bool mg_job_state_terminal(mg_job_state_t s)
{
	return s == MG_JOB_COMPLETED || s == MG_JOB_FAILED || s == MG_JOB_CANCELLED;
}

bool mg_job_state_name_terminal(const char *s)
{
	int st = mg_job_state_parse(s);
	return st >= 0 && mg_job_state_terminal((mg_job_state_t)st);
}
