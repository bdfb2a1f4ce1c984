/* SPDX-License-Identifier: MIT */
/* emhost/emhost.h: umbrella header for applications. */
#ifndef EMHOST_EMHOST_H
#define EMHOST_EMHOST_H

#include <emhost/error.h>
#include <emhost/entity.h>
#include <emhost/query.h>
#include <emhost/host.h>
#include <emhost/em.h>
#include <emhost/service.h>

#define EMH_VERSION_STRING "0.1.0"

#endif
