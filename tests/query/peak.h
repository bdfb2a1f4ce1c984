/* SPDX-License-Identifier: MIT */
/*
 * tests/query/peak.h: how much memory a piece of code needs at its peak,
 * for the constant-memory tests: the process's peak RSS (VmHWM, reset
 * through /proc/self/clear_refs) and the live heap sampled by a thread
 * while the code runs.  Under AddressSanitizer RSS says nothing (freed
 * blocks wait in its quarantine, up to 256 MB): the live heap is then the
 * sanitizer allocator's own count.
 */
#ifndef EMH_TESTS_PEAK_H
#define EMH_TESTS_PEAK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* True in a build with AddressSanitizer. */
bool peak_asan(void);

/* Restart the peak RSS at the current RSS; false when the kernel cannot. */
bool peak_rss_reset(void);
/* VmRSS and VmHWM in bytes; -1 when unreadable. */
long long peak_rss_now(void);
long long peak_rss_hwm(void);

/* Bytes allocated and not freed (malloc's in-use count, or the sanitizer's). */
size_t peak_heap_live(void);

/* A thread sampling peak_heap_live every millisecond. */
typedef struct peak_sampler {
	pthread_t t;
	pthread_mutex_t mu;
	bool stop;
	size_t max;
} peak_sampler;
void peak_sampler_start(peak_sampler *p);
/* Stop it; the largest live heap seen (including one last sample). */
size_t peak_sampler_stop(peak_sampler *p);

/*
 * One measurement around a piece of code: start, run it, stop.  Then
 * heap_growth is the sampled live heap's peak over its start, and
 * rss_growth the peak RSS over the RSS at the start -- or -1 with rss_why
 * saying why RSS says nothing here (AddressSanitizer, no /proc support).
 */
typedef struct peak_measure {
	peak_sampler sampler;
	size_t heap0;
	long long rss0;
	bool reset;
	long long heap_growth, rss_growth;
	const char *rss_why;
} peak_measure;
void peak_measure_start(peak_measure *pm);
void peak_measure_stop(peak_measure *pm);

#endif
