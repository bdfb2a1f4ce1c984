# core/web: the service toolkit, libemhost-web (emhost/web.h): JSON mapping of
# entities, standard answers, listings, retries, OpenAPI.  Its own library
# (libemhost stays free of HTTP and JSON), linking jansson; described by
# emhost-web.pc.  Built with the daemon, which needs the same jansson.
if HAVE_DAEMON
lib_LTLIBRARIES += core/web/libemhost-web.la
core_web_libemhost_web_la_SOURCES = core/web/json.c core/web/answer.c core/web/openapi.c core/web/web_int.h
core_web_libemhost_web_la_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS)
core_web_libemhost_web_la_LIBADD = core/libemhost.la $(MHD_LIBS)
core_web_libemhost_web_la_LDFLAGS = -no-undefined -version-info 0:0:0 -export-symbols-regex '^emh_(web|json)_'
emhostinclude_HEADERS += include/emhost/web.h
pkgconfig_DATA += emhost-web.pc
DISTCLEANFILES += emhost-web.pc
endif
EXTRA_DIST += emhost-web.pc.in
