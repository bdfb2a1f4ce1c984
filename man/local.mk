# man: emhost(1), emhostd(8), emhost.conf(5), roff with the install paths
# substituted at make time (emh_subst, dist/local.mk).
man_MANS = man/emhost.1 man/emhostd.8 man/emhost.conf.5
MAN_IN = man/emhost.1.in man/emhostd.8.in man/emhost.conf.5.in
man/emhost.1: $(srcdir)/man/emhost.1.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(emh_subst) $(srcdir)/man/emhost.1.in >$@.tmp && mv $@.tmp $@
man/emhostd.8: $(srcdir)/man/emhostd.8.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(emh_subst) $(srcdir)/man/emhostd.8.in >$@.tmp && mv $@.tmp $@
man/emhost.conf.5: $(srcdir)/man/emhost.conf.5.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(emh_subst) $(srcdir)/man/emhost.conf.5.in >$@.tmp && mv $@.tmp $@
CLEANFILES += $(man_MANS)
EXTRA_DIST += $(MAN_IN)
