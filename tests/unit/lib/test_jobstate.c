/* mg_jobstate: every state maps to the name the journal and the API use and
 * back; unknown text is refused; exactly completed, failed and cancelled
 * are terminal. */
#include "tests.h"
#include "mg_jobstate.h"

#include <errno.h>
#include <string.h>

static void test_mapping(void)
{
	static const struct {
		mg_job_state_t s;
		const char *name;
		bool terminal;
	} want[] = {
		{ MG_JOB_VALIDATING, "validating", false },
		{ MG_JOB_IN_PROGRESS, "in_progress", false },
		{ MG_JOB_CANCELLING, "cancelling", false },
		{ MG_JOB_COMPLETED, "completed", true },
		{ MG_JOB_FAILED, "failed", true },
		{ MG_JOB_CANCELLED, "cancelled", true },
	};
	CU_ASSERT_EQUAL(sizeof(want) / sizeof(want[0]), MG_JOB_N_STATES);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CU_ASSERT_STRING_EQUAL(mg_job_state_name(want[i].s), want[i].name);
		CU_ASSERT_EQUAL(mg_job_state_parse(want[i].name), (int)want[i].s);
		CU_ASSERT_EQUAL(mg_job_state_terminal(want[i].s), want[i].terminal);
		CU_ASSERT_EQUAL(mg_job_state_name_terminal(want[i].name), want[i].terminal);
	}
}

static void test_unknown(void)
{
	/* the API's derived statuses and request states are not job states */
	const char *bad[] = { "finalizing", "expired", "queued", "done", "Completed", "completed ", "", NULL };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(mg_job_state_parse(bad[i]), -EINVAL);
		CU_ASSERT_FALSE(mg_job_state_name_terminal(bad[i]));
	}
	CU_ASSERT_STRING_EQUAL(mg_job_state_name(MG_JOB_N_STATES), "unknown");
	CU_ASSERT_STRING_EQUAL(mg_job_state_name((mg_job_state_t)-1), "unknown");
}

const cu_test_t jobstate_tests[] = {
	{ "every state to its name and back; terminal ones", test_mapping },
	{ "unknown names refused", test_unknown },
	{ NULL, NULL },
};
