/* SPDX-License-Identifier: MIT */
/* core/version.c: library version string. */
#include "config.h"

#include <emhost/emhost.h>

const char *emh_version(void);
const char *emh_version(void) { return EMH_VERSION_STRING; }
