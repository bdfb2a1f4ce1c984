/* SPDX-License-Identifier: MIT */
/*
 * tests/build/version_print.c: print the version as the headers and the
 * library see it, one "what value" line each, for tests/build/version.sh
 * to hold against configure's.
 */
#include <stdio.h>

#include <emhost/emhost.h>

int main(void)
{
	printf("emh_version %s\n", emh_version());
	printf("EMH_VERSION_STRING %s\n", EMH_VERSION_STRING);
	printf("EMH_VERSION_MAJOR.MINOR.PATCH %d.%d.%d\n", EMH_VERSION_MAJOR, EMH_VERSION_MINOR, EMH_VERSION_PATCH);
	printf("EMH_VERSION_NUMBER %ld\n", (long)EMH_VERSION_NUMBER);
	return 0;
}
