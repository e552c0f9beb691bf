/* storage: the free-space watch of the state directory (storage.h). */
#include "storage.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/statvfs.h>

#include "mg_clock.h"
#include "mg_log.h"

#define STORAGE_PERIOD_NS (200 * MG_NS_PER_MS)

static atomic_bool full;
static int64_t next_look;

bool storage_full(void)
{
	return atomic_load(&full);
}

bool storage_watch(const char *state_dir, uint64_t min_free, int64_t now)
{
	if (min_free == 0 || now < next_look)
		return atomic_load(&full);
	next_look = now + STORAGE_PERIOD_NS;
	struct statvfs st;
	if (statvfs(state_dir, &st) < 0) {
		mg_log(MG_LOG_WARN, "core", "cannot read the free space of the state directory state_dir=%s err=\"%s\"",
		       state_dir, strerror(errno));
		return atomic_load(&full);
	}
	uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
	bool was = atomic_load(&full), now_full = avail < min_free;
	if (now_full == was)
		return was;
	atomic_store(&full, now_full);
	if (now_full)
		mg_log(MG_LOG_ERROR, "core", "storage low: refusing new work (HTTP 507) until space returns state_dir=%s free_bytes=%llu min_free=%llu",
		       state_dir, (unsigned long long)avail, (unsigned long long)min_free);
	else
		mg_log(MG_LOG_INFO, "core", "storage back: accepting new work state_dir=%s free_bytes=%llu min_free=%llu",
		       state_dir, (unsigned long long)avail, (unsigned long long)min_free);
	return now_full;
}
