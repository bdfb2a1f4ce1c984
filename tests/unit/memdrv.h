/* SPDX-License-Identifier: MIT */
/*
 * tests/unit/memdrv.h: a statically registered test driver whose connections
 * the tests can watch and break: it counts live connections, can refuse new
 * ones ("server down") or fail them as a process out of file descriptors
 * would (nofd: EMH_ENOFD), can make every existing one stale ("server
 * restarted"), and says how many descriptors a connection holds (conn_fds,
 * 0 = 1).  execute() understands a few words:
 *   "hold"  sleep md.hold_us then succeed   "fail"  EMH_EDRIVER
 *   "lose"  EMH_EUNAVAILABLE (connection lost)
 *   "slow"  EMH_ETIMEOUT (the call passed its deadline)
 * With md.busy set, new connections are refused with EMH_ETIMEOUT, as a
 * server with no connection slot free refuses them (back-pressure); with
 * md.slow_ping set, pings time out (EMH_ETIMEOUT).
 */
#ifndef EMH_TESTS_MEMDRV_H
#define EMH_TESTS_MEMDRV_H

#include <stdatomic.h>

#include <emhost/driver.h>

typedef struct memdrv_state {
	atomic_int live, max_live, opened, pings, down, generation, hold_us, nofd, conn_fds, busy, slow_ping;
} memdrv_state;

extern memdrv_state md;
extern const emh_driver memdrv;

#endif
