/* notify: systemd readiness and watchdog (sd_notify(3)).
 *
 * With libsystemd (HAVE_SYSTEMD) the calls go to sd_notify(); without it
 * the same datagram is sent to $NOTIFY_SOCKET by hand. Without
 * $NOTIFY_SOCKET (not under systemd) every call is a no-op. Any thread. */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <stdint.h>

/* state: "READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...", several
 * separated by newlines. Returns > 0 when sent, 0 when there is no
 * notification socket, < 0 on error. */
int notify_send(const char *state);
/* printf-style STATUS= line. */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog interval systemd asked for (WatchdogSec=), 0 when off. */
int64_t notify_watchdog_ns(void);

#endif
