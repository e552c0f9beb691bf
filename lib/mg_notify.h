/* mg_notify: systemd readiness and watchdog (sd_notify(3)), for margind and
 * margin-worker serve alike.
 *
 * With libsystemd (HAVE_SYSTEMD) the calls go to sd_notify(); without it
 * the same datagram is sent to $NOTIFY_SOCKET by hand. Without
 * $NOTIFY_SOCKET (not under systemd) every call is a no-op. Any thread. */
#ifndef MG_NOTIFY_H
#define MG_NOTIFY_H

#include <stdint.h>

/* state: "READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...", several
 * separated by newlines. Returns > 0 when sent, 0 when there is no
 * notification socket, < 0 on error. */
int mg_notify_send(const char *state);
/* printf-style state, e.g. "READY=1\nSTATUS=serving %s" (up to 511 bytes). */
int mg_notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog interval systemd asked for (WatchdogSec=), 0 when off. */
int64_t mg_notify_watchdog_ns(void);

#endif
