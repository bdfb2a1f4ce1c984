# services: the bundled service modules (users, analytics, profile, and the
# shop example), built as
# modules into one directory, services/.libs/, which is the service_dir of a
# build-tree host (scripts/quickstart.sh, tests/daemon).  Installed into
# $(pkglibdir)/services, emh_services_load's default.
if HAVE_DAEMON
servicedir = $(pkglibdir)/services
service_LTLIBRARIES = services/users.la services/analytics.la services/profile.la services/shop.la
SERVICE_LDFLAGS = -module -avoid-version -no-undefined -export-symbols-regex '^emh_service_descriptor$$'
SERVICE_COMMON = services/common/entities.h

services_users_la_SOURCES = services/users/users.c $(SERVICE_COMMON)
services_users_la_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
services_users_la_LDFLAGS = $(SERVICE_LDFLAGS)
services_users_la_LIBADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)

services_analytics_la_SOURCES = services/analytics/analytics.c $(SERVICE_COMMON)
services_analytics_la_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
services_analytics_la_LDFLAGS = $(SERVICE_LDFLAGS)
services_analytics_la_LIBADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)

services_profile_la_SOURCES = services/profile/profile.c $(SERVICE_COMMON)
services_profile_la_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
services_profile_la_LDFLAGS = $(SERVICE_LDFLAGS)
services_profile_la_LIBADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)

# the shop example: the toolkit alone (emhost/web.h), no helper of its own
services_shop_la_SOURCES = services/shop/shop.c
services_shop_la_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
services_shop_la_LDFLAGS = $(SERVICE_LDFLAGS)
services_shop_la_LIBADD = core/web/libemhost-web.la core/libemhost.la $(MHD_LIBS)
endif
