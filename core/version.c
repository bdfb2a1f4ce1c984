/* SPDX-License-Identifier: MIT */
/* core/version.c: the library's version, as configure wrote it into emhost/version.h. */
#include "config.h"

#include <emhost/emhost.h>

const char *emh_version(void) { return EMH_VERSION_STRING; }
