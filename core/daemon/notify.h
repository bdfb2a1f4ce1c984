/* SPDX-License-Identifier: MIT */
/* core/daemon/notify.h: systemd's readiness protocol for emhostd (no libsystemd needed). */
#ifndef EMH_DAEMON_NOTIFY_H
#define EMH_DAEMON_NOTIFY_H

/*
 * Send a printf-formatted notification ("READY=1", "RELOADING=1\n
 * MONOTONIC_USEC=...", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET.
 * Returns 0 (also when the variable is unset: not run by systemd) or a
 * negative errno.  Thread-safe.
 */
int emhd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it in MONOTONIC_USEC. */
unsigned long long emhd_monotonic_usec(void);

#endif
