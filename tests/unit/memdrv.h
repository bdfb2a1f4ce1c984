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
 */
#ifndef EMH_TESTS_MEMDRV_H
#define EMH_TESTS_MEMDRV_H

#include <stdatomic.h>

#include <emhost/driver.h>

typedef struct memdrv_state {
	atomic_int live, max_live, opened, pings, down, generation, hold_us, nofd, conn_fds;
} memdrv_state;

extern memdrv_state md;
extern const emh_driver memdrv;

#endif
