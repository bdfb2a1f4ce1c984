/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz_url.c: connection URLs (core/cfg_url.c) in the three
 * forms drivers declare.  Besides crashes, it checks what issue 11 item 4
 * promised: a URL that carried a password is a secret setting, and the
 * URL kept is the one given.  It found query keys "url" and "driver"
 * replacing the URL kept (and shown) and the driver (regress/url/crash-d155...,
 * url-in-query).  Two more inputs there broke an earlier, wrong form of the
 * check (a password of "//x" whose ":" + password + "@" was also the
 * scheme's; a password set by a bare "?password" query key).
 */
#include "config.h"

#include "cfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url = fuzz_str(data, size);
	if (!url)
		return 0;
	emh__ctxconf c = {0};
	emh_error err;
	if (!(c.name = strdup("fuzz"))) {
		free(url);
		return 0;
	}
	if (emh__url_apply(&c, url, "url (fuzz)", fuzz_drivers, FUZZ_NDRIVERS, &err) == 0) {
		const emh__setting *u = emh__settings_find(&c.s, "url"), *pw = emh__settings_find(&c.s, "password");
		/* the URL kept is the one given, and secret when it gave a password (its masked
		 * form is test_url's to check: a password can also come from a bare query key,
		 * which has nothing to mask) */
		if (!u || strcmp(u->value, url) != 0 || (pw && !u->secret))
			abort();
		for (size_t i = 0; i < c.s.n; i++)
			(void)strlen(emh__setting_shown(&c.s.v[i]));
	}
	emh__ctxconf_release(&c);
	free(url);
	return 0;
}
