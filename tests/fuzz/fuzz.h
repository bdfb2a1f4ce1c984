/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz.h: what the fuzz targets share.  Each target defines
 * LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it needs set-up);
 * it is linked with libFuzzer into tests/fuzz/fuzz-<target> in a
 * --enable-fuzzing build, and with tests/fuzz/replay.c into
 * tests/fuzz/replay-<target> in every build, which feeds it the committed
 * corpus and the crash inputs in make check.
 *
 * The configuration targets read the drivers below: one of each URL form,
 * declared as plugins declare them (their keys, not their code).
 */
#ifndef EMH_TESTS_FUZZ_H
#define EMH_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <emhost/driver.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_UNUSED __attribute__((unused))

static const emh_param_spec fuzz_net_params[] = {
	{.key = "host", .kind = EMH_PARAM_STRING, .help = "host"},
	{.key = "port", .kind = EMH_PARAM_INT, .min = 1, .max = 65535, .help = "port"},
	{.key = "user", .kind = EMH_PARAM_STRING, .help = "user"},
	{.key = "database", .kind = EMH_PARAM_STRING, .help = "database"},
	{.key = "sslmode", .kind = EMH_PARAM_STRING, .def = "prefer", .help = "ssl"},
	{.key = "connect_timeout", .kind = EMH_PARAM_INT, .def = "5", .min = 0, .max = 3600, .help = "s"},
	{.key = "verbose", .kind = EMH_PARAM_BOOL, .help = "bool"},
	{.key = "api_key", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET, .help = "secret"},
	{.key = NULL},
};
static const char *const fuzz_net_schemes[] = {"postgres", "postgresql", "mysql", NULL};
static const emh_driver fuzz_net = {
	EMH_DRIVER_HEADER, .name = "net", .version = "1", .url_schemes = fuzz_net_schemes,
	.url_form = EMH_URL_NETWORK, .params = fuzz_net_params,
};

static const emh_param_spec fuzz_file_params[] = {
	{.key = "path", .kind = EMH_PARAM_STRING, .help = "file"},
	{.key = "busy_timeout_ms", .kind = EMH_PARAM_INT, .def = "5000", .min = 0, .max = 1000000, .help = "ms"},
	{.key = NULL},
};
static const char *const fuzz_file_schemes[] = {"sqlite", "sqlite3", NULL};
static const emh_driver fuzz_file = {
	EMH_DRIVER_HEADER, .name = "sqlite", .version = "1", .url_schemes = fuzz_file_schemes,
	.url_form = EMH_URL_FILE, .params = fuzz_file_params,
};

static const emh_param_spec fuzz_whole_params[] = {
	{.key = "replicaSet", .kind = EMH_PARAM_STRING, .help = "set"},
	{.key = "token", .kind = EMH_PARAM_STRING, .flags = EMH_PARAM_SECRET, .help = "secret"},
	{.key = NULL},
};
static const char *const fuzz_whole_schemes[] = {"mongodb", "mongodb+srv", NULL};
static const emh_driver fuzz_whole = {
	EMH_DRIVER_HEADER, .name = "mongo", .version = "1", .url_schemes = fuzz_whole_schemes,
	.url_form = EMH_URL_WHOLE, .params = fuzz_whole_params,
};

static FUZZ_UNUSED const emh_driver *const fuzz_drivers[] = {&fuzz_net, &fuzz_file, &fuzz_whole};
#define FUZZ_NDRIVERS 3

static FUZZ_UNUSED const emh_driver *fuzz_driver(const char *name)
{
	for (size_t i = 0; name && i < FUZZ_NDRIVERS; i++)
		if (strcmp(fuzz_drivers[i]->name, name) == 0)
			return fuzz_drivers[i];
	return NULL;
}

/* data as a NUL-terminated string (malloc'd; NULL when out of memory). */
static FUZZ_UNUSED char *fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/*
 * Split s in place at every '\n' into at most max NUL-terminated lines
 * (a '\r' before the '\n' dropped); returns how many.
 */
static FUZZ_UNUSED size_t fuzz_lines(char *s, char **lines, size_t max)
{
	size_t n = 0;
	while (s && *s && n < max) {
		char *nl = strchr(s, '\n');
		if (nl) {
			*nl = '\0';
			if (nl > s && nl[-1] == '\r')
				nl[-1] = '\0';
		}
		lines[n++] = s;
		s = nl ? nl + 1 : NULL;
	}
	return n;
}

#endif
