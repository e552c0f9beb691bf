/* storage: the free-space watch of the state directory (storage.h). */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "lib/mg_clock.h"
#include "lib/mg_log.h"

#define STORAGE_PERIOD_NS (200 * MG_NS_PER_MS)

static atomic_bool full;
static int64_t next_look;
/* Two reserves, both counted as free (they are ours):
 * - "reserve" (min_free / 4), deleted the moment the disk is full, so a
 *   filesystem filled between two looks still has room for commits;
 * - "reserve.start" (min_free / 8), kept while margind runs and deleted only
 *   by storage_start: a writer that filled the disk to the last byte took
 *   the first reserve too (margind stopped on a failed commit), and the
 *   restart still has room to open the journal. */
static struct reserve {
	const char *name;
	unsigned div;		/* its size: min_free / div */
	uint64_t bytes;		/* the file's size on disk now */
} reserves[] = { { "reserve", 4, 0 }, { "reserve.start", 8, 0 } };
#define N_RESERVES (sizeof(reserves) / sizeof(reserves[0]))
static bool reserve_failed;	/* the filesystem cannot fallocate: logged once */

bool storage_full(void)
{
	return atomic_load(&full);
}

static void reserve_path(const char *state_dir, const struct reserve *rv, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", state_dir, rv->name);
}

static void reserve_drop(const char *state_dir, struct reserve *rv)
{
	char p[4200];
	reserve_path(state_dir, rv, p, sizeof(p));
	if (unlink(p) < 0 && errno != ENOENT)
		mg_log(MG_LOG_WARN, "core", "cannot delete the disk reserve path=%s err=\"%s\"", p, strerror(errno));
	rv->bytes = 0;
}

void storage_start(const char *state_dir)
{
	for (size_t i = 0; i < N_RESERVES; i++)
		reserve_drop(state_dir, &reserves[i]);
}

static void reserve_make(const char *state_dir, struct reserve *rv, uint64_t bytes)
{
	if (bytes == 0)
		return;
	char p[4200];
	reserve_path(state_dir, rv, p, sizeof(p));
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	int r = fd < 0 ? errno : fallocate(fd, 0, 0, (off_t)bytes) < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	if (r == 0) {
		rv->bytes = bytes;
		return;
	}
	unlink(p);
	if (!reserve_failed)
		mg_log(MG_LOG_WARN, "core", "no disk reserve: margind cannot set space aside in the state directory path=%s bytes=%llu err=\"%s\"",
		       p, (unsigned long long)bytes, strerror(r));
	reserve_failed = true;
}

bool storage_watch(const char *state_dir, uint64_t min_free, int64_t now, bool force)
{
	if (min_free == 0 || (!force && now < next_look))
		return atomic_load(&full);
	next_look = now + STORAGE_PERIOD_NS;
	struct statvfs st;
	if (statvfs(state_dir, &st) < 0) {
		mg_log(MG_LOG_WARN, "core", "cannot read the free space of the state directory state_dir=%s err=\"%s\"",
		       state_dir, strerror(errno));
		return atomic_load(&full);
	}
	/* The reserves are ours: they count as free. */
	uint64_t avail = (uint64_t)st.f_bavail * st.f_frsize;
	for (size_t i = 0; i < N_RESERVES; i++)
		avail += reserves[i].bytes;
	bool was = atomic_load(&full), now_full = avail < min_free;
	if (now_full && reserves[0].bytes > 0)
		reserve_drop(state_dir, &reserves[0]);
	for (size_t i = 0; !now_full && !reserve_failed && i < N_RESERVES; i++)
		if (reserves[i].bytes == 0)
			reserve_make(state_dir, &reserves[i], min_free / reserves[i].div);
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
