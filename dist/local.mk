# dist: what make install puts outside the program directories -- the
# configuration ($(sysconfdir)/emhost/emhost.conf, the SQLite default with
# its data under $(localstatedir)/lib/emhost), the systemd unit, and the man
# pages (man/local.mk).  Install paths are substituted at make time, as the
# GNU standards want (they may be overridden then: make prefix=...).
emh_subst = sed -e 's|@bindir[@]|$(bindir)|g' -e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' -e 's|@pkglibdir[@]|$(pkglibdir)|g' \
	-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g'

# The shipped etc/emhost.conf with its data directory made the installed one.
emhconfdir = $(sysconfdir)/emhost
emhdatadir = $(localstatedir)/lib/emhost
dist/emhost.conf: $(srcdir)/etc/emhost.conf Makefile
	$(AM_V_GEN)$(MKDIR_P) dist && \
	sed -e 's|\$${EMH_DATA:-var}|$${EMH_DATA:-$(emhdatadir)}|g' $(srcdir)/etc/emhost.conf >$@.tmp && mv $@.tmp $@
noinst_DATA += dist/emhost.conf
CLEANFILES += dist/emhost.conf

# An edited configuration is never overwritten: a reinstall puts the new
# default beside it as emhost.conf.default.
install-data-local: dist/emhost.conf
	$(MKDIR_P) '$(DESTDIR)$(emhconfdir)' '$(DESTDIR)$(emhdatadir)'
	@if test -f '$(DESTDIR)$(emhconfdir)/emhost.conf'; then \
	  echo " keeping $(DESTDIR)$(emhconfdir)/emhost.conf; the shipped one is emhost.conf.default"; \
	  echo " $(INSTALL_DATA) dist/emhost.conf '$(DESTDIR)$(emhconfdir)/emhost.conf.default'"; \
	  $(INSTALL_DATA) dist/emhost.conf '$(DESTDIR)$(emhconfdir)/emhost.conf.default'; \
	else \
	  echo " $(INSTALL_DATA) dist/emhost.conf '$(DESTDIR)$(emhconfdir)/emhost.conf'"; \
	  $(INSTALL_DATA) dist/emhost.conf '$(DESTDIR)$(emhconfdir)/emhost.conf'; \
	fi
# Only what is still the shipped text goes; an edited file stays.
uninstall-local:
	rm -f '$(DESTDIR)$(emhconfdir)/emhost.conf.default'
	@if cmp -s dist/emhost.conf '$(DESTDIR)$(emhconfdir)/emhost.conf'; then \
	  echo " rm -f '$(DESTDIR)$(emhconfdir)/emhost.conf'"; rm -f '$(DESTDIR)$(emhconfdir)/emhost.conf'; fi

# The systemd unit (--with-systemdsystemunitdir=DIR, default PREFIX/lib/systemd/system).
if HAVE_SYSTEMD_UNIT
systemdsystemunit_DATA = dist/emhostd.service
dist/emhostd.service: $(srcdir)/dist/emhostd.service.in Makefile
	$(AM_V_GEN)$(MKDIR_P) dist && $(emh_subst) $(srcdir)/dist/emhostd.service.in >$@.tmp && mv $@.tmp $@
CLEANFILES += dist/emhostd.service
endif
EXTRA_DIST += dist/emhostd.service.in LICENSE
