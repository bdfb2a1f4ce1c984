/* SPDX-License-Identifier: MIT */
/* tests/query/peak.c: peak RSS and live-heap sampling for the constant-memory tests. */
#include "config.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peak.h"

#if defined(__SANITIZE_ADDRESS__)
#define PEAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PEAK_ASAN 1
#endif
#endif

#ifdef PEAK_ASAN
/* The sanitizer runtime's own count (sanitizer/allocator_interface.h, which
 * not every compiler installation ships). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

bool peak_asan(void)
{
#ifdef PEAK_ASAN
	return true;
#else
	return false;
#endif
}

bool peak_rss_reset(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (!f)
		return false;
	bool ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

static long long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long long kb = -1;
	size_t n = strlen(key);
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			kb = strtoll(line + n + 1, NULL, 10);
			break;
		}
	if (f)
		fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

long long peak_rss_now(void) { return status_kb("VmRSS"); }
long long peak_rss_hwm(void) { return status_kb("VmHWM"); }

size_t peak_heap_live(void)
{
#ifdef PEAK_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd; /* small blocks in use + mmapped ones */
#endif
}

static void *sampler(void *arg)
{
	peak_sampler *p = arg;
	struct timespec ms = {0, 1000000};
	for (;;) {
		size_t live = peak_heap_live();
		pthread_mutex_lock(&p->mu);
		if (live > p->max)
			p->max = live;
		bool stop = p->stop;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return NULL;
		nanosleep(&ms, NULL);
	}
}

void peak_sampler_start(peak_sampler *p)
{
	pthread_mutex_init(&p->mu, NULL);
	p->stop = false;
	p->max = peak_heap_live();
	if (pthread_create(&p->t, NULL, sampler, p) != 0) {
		fprintf(stderr, "peak: cannot start the sampler thread\n");
		abort();
	}
}

size_t peak_sampler_stop(peak_sampler *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->t, NULL);
	size_t live = peak_heap_live();
	if (live > p->max)
		p->max = live;
	pthread_mutex_destroy(&p->mu);
	return p->max;
}

void peak_measure_start(peak_measure *pm)
{
	pm->rss0 = peak_rss_now();
	pm->reset = peak_rss_reset();
	pm->heap0 = peak_heap_live();
	peak_sampler_start(&pm->sampler);
}

void peak_measure_stop(peak_measure *pm)
{
	size_t heap = peak_sampler_stop(&pm->sampler);
	long long hwm = peak_rss_hwm();
	pm->heap_growth = (long long)heap - (long long)pm->heap0;
	pm->rss_growth = -1;
	if (peak_asan())
		pm->rss_why = "AddressSanitizer keeps freed memory in its quarantine: RSS is not the program's";
	else if (!pm->reset || pm->rss0 < 0 || hwm < 0)
		pm->rss_why = "/proc/self/clear_refs or VmHWM is not available";
	else
		pm->rss_why = NULL, pm->rss_growth = hwm - pm->rss0;
}
