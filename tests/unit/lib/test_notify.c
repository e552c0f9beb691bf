/* mg_notify: the datagrams systemd reads from $NOTIFY_SOCKET (a path and
 * the abstract namespace), nothing without it, and the watchdog interval
 * from $WATCHDOG_USEC for this process only. The same code serves margind
 * and margin-worker serve, with or without libsystemd. */
#include "tests.h"
#include "mg_notify.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int bind_dgram(const char *name, int abstract)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(name);
	memcpy(sa.sun_path + (abstract ? 1 : 0), name, len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 1 : 0));
	if (bind(fd, (struct sockaddr *)&sa, salen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void recv_text(int fd, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = '\0';
}

static void test_send(void)
{
	char path[PATH_MAX], buf[600], env[PATH_MAX + 2];
	snprintf(path, sizeof(path), "%s/notify.sock", cu_tmpdir());
	unlink(path);
	int fd = bind_dgram(path, 0);
	CU_ASSERT_FATAL(fd >= 0);

	unsetenv("NOTIFY_SOCKET");
	CU_ASSERT_EQUAL(mg_notify_send("READY=1"), 0);	/* not under systemd: nothing */

	setenv("NOTIFY_SOCKET", path, 1);
	CU_ASSERT(mg_notify_send("READY=1") > 0);
	recv_text(fd, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "READY=1");
	CU_ASSERT(mg_notify_sendf("READY=1\nSTATUS=serving %s for %s", "m", "tcp://h:1") > 0);
	recv_text(fd, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "READY=1\nSTATUS=serving m for tcp://h:1");
	close(fd);
	unlink(path);

	/* the abstract namespace, as systemd names it: '@' */
	char name[64];
	snprintf(name, sizeof(name), "margin-test-notify-%ld", (long)getpid());
	fd = bind_dgram(name, 1);
	CU_ASSERT_FATAL(fd >= 0);
	snprintf(env, sizeof(env), "@%s", name);
	setenv("NOTIFY_SOCKET", env, 1);
	CU_ASSERT(mg_notify_send("WATCHDOG=1") > 0);
	recv_text(fd, buf, sizeof(buf));
	CU_ASSERT_STRING_EQUAL(buf, "WATCHDOG=1");
	close(fd);
	unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog(void)
{
	char pid[32];
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	CU_ASSERT_EQUAL(mg_notify_watchdog_ns(), 0);
	setenv("WATCHDOG_USEC", "2000000", 1);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	CU_ASSERT_EQUAL(mg_notify_watchdog_ns(), 2000000000LL);
	/* meant for another process (a parent's environment): off */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	setenv("WATCHDOG_PID", pid, 1);
	CU_ASSERT_EQUAL(mg_notify_watchdog_ns(), 0);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

const cu_test_t notify_tests[] = {
	{ "send: a path, the abstract namespace, nothing without NOTIFY_SOCKET", test_send },
	{ "watchdog: WATCHDOG_USEC for this pid only", test_watchdog },
	{ NULL, NULL },
};
