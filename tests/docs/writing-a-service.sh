#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/docs/writing-a-service.sh: docs/writing-a-service.md's code is what
# an outside author builds.  Installs this build into a staging directory
# (make install DESTDIR=...), extracts the guide's notes.c and Makefile (the
# code blocks after its "writing-a-service.sh: FILE" markers, in order),
# builds the module with that Makefile and nothing but pkg-config on the
# staged emhost-web.pc, installs it into the staged service directory, and
# has the staged emhostd serve it: every route of the guide over HTTP, a bad
# body's per-field 400, and the OpenAPI document.  The compiler and flags
# are this build's (tests/abi/toolchain.env).
set -u
. "${EMH_SRCDIR:?EMH_SRCDIR is not set (run through make check)}/tests/stage.sh"
command -v curl >/dev/null 2>&1 || { echo "1..0 # SKIP no curl program to talk to the daemon"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-docsvc.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pid=""
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stage=$tmp/stage
work=$tmp/notes
mkdir "$work" || { echo "Bail out! mkdir $work"; exit 1; }

# ---- 1. install into a staging directory, pkg-config moved into it ----
stage_install "$stage" "$tmp/install.log" emhost-web.pc || { done_testing; exit 1; }
libdir=$($PKG_CONFIG --variable=libdir emhost)
servicedir=$($PKG_CONFIG --variable=servicedir emhost)
plugindir=$($PKG_CONFIG --variable=plugindir emhost)

# ---- 2. the guide's code, as written ----
awk -v dir="$work" '
	/<!-- writing-a-service.sh: / { file = $3; want = 1; next }
	want && /^```/ { if (inblock) { inblock = 0; want = 0 } else inblock = 1; next }
	inblock { print >> (dir "/" file) }' "$EMH_SRCDIR/docs/writing-a-service.md"
[ -s "$work/notes.c" ] && grep -q '^notes.so:' "$work/Makefile"
step $? /dev/null "the guide holds notes.c and a Makefile" || { done_testing; exit 1; }
diag "notes.c: $(wc -l <"$work/notes.c") lines"
make -C "$work" CC="$CC" CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" PKG_CONFIG="$PKG_CONFIG" >"$tmp/build.log" 2>&1
step $? "$tmp/build.log" "its Makefile builds notes.so with pkg-config alone" || { done_testing; exit 1; }
no_warnings "$tmp/build.log" "without a warning (-std=c11 -Wall -Wextra)"
exports=$(nm -D --defined-only "$work/notes.so" 2>/dev/null | awk '$3 !~ /^__(odr_)?asan/ { print $3 }' | tr '\n' ' ')
[ "$exports" = "emh_service_descriptor " ]
ok $? "notes.so exports only emh_service_descriptor ($exports)"
make -C "$work" install PKG_CONFIG="$PKG_CONFIG" DESTDIR= >"$tmp/install-svc.log" 2>&1 && [ -f "$servicedir/notes.so" ]
step $? "$tmp/install-svc.log" "make install puts it into the service directory"

# ---- 3. the staged emhostd serves it ----
emhostd=$(find "$stage" -type f -name emhostd | head -n 1)
cat >"$tmp/emhost.conf" <<EOF
plugin_dir = "$plugindir";
service_dir = "$servicedir";
contexts = ( { name = "default"; driver = "sqlite"; path = "$tmp/notes.db"; schema = "sync"; } );
services = ( { name = "notes"; } );
server = { threads = 2; };
EOF
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$emhostd" -c "$tmp/emhost.conf" -l 127.0.0.1:0 \
	--ready-file "$tmp/ready" 2>"$tmp/daemon.log" &
pid=$!
i=0
while [ ! -s "$tmp/ready" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$tmp/ready" ]
step $? "$tmp/daemon.log" "the installed emhostd starts with notes.so" || { done_testing; exit 1; }
url=$(cat "$tmp/ready")

# http METHOD PATH [BODY]: the status; the body in $tmp/out, headers in $tmp/hdr
http() {
	if [ $# -ge 3 ]; then
		curl -s -o "$tmp/out" -D "$tmp/hdr" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
			--data "$3" "$url$2"
	else
		curl -s -o "$tmp/out" -D "$tmp/hdr" -w '%{http_code}' -X "$1" "$url$2"
	fi
}
has() { grep -q "$1" "$tmp/out"; }

st=$(http POST /notes '{"title":"milk","body":"two litres","done":false}')
[ "$st" = 201 ] && has '"created_at":"20' && grep -qi '^location: /notes/1' "$tmp/hdr"
ok $? "POST /notes -> 201 with created_at and Location (got $st: $(cat "$tmp/out"))"
st=$(http GET /notes/1)
[ "$st" = 200 ] && has '"title":"milk"'
ok $? "GET /notes/1 -> 200 (got $st)"
st=$(http POST /notes '{"done":"no","colour":"red"}')
[ "$st" = 400 ] && has '"field":"title","problem":"missing"' && has '"problem":"unknown"' && has '"field":"done","problem":"type"'
ok $? "a bad body -> 400 listing every field (got $st: $(cat "$tmp/out"))"
st=$(http PATCH /notes/1 '{"done":true}')
[ "$st" = 200 ] && has '"done":true' && has '"title":"milk"'
ok $? "PATCH /notes/1 -> 200, the rest kept (got $st)"
http POST /notes '{"title":"eggs","done":false}' >/dev/null
st=$(http GET '/notes?limit=1&offset=1')
[ "$st" = 200 ] && has '"total":2' && has '"title":"eggs"'
ok $? "GET /notes?limit=1&offset=1 -> a page of the two (got $st: $(cat "$tmp/out"))"
st=$(http PUT /notes/1 '{}')
[ "$st" = 405 ] && grep -qi '^allow: GET, PATCH, DELETE' "$tmp/hdr"
ok $? "PUT /notes/1 -> 405 with Allow (got $st)"
st=$(http GET /notes/abc)
[ "$st" = 404 ]
ok $? "GET /notes/abc -> 404 (got $st)"
st=$(http DELETE /notes/1)
[ "$st" = 204 ] && [ "$(http GET /notes/1)" = 404 ]
ok $? "DELETE /notes/1 -> 204, then it is gone (got $st)"
st=$(http GET /_emhost/openapi.json)
[ "$st" = 200 ] && has '"/notes/{id}"' && has '"noteInput"'
ok $? "GET /_emhost/openapi.json describes it (got $st)"
kill -TERM "$pid" 2>/dev/null
wait "$pid"
st=$?
pid=""
[ $st -eq 0 ]
ok $? "emhostd stops cleanly (status $st)"
done_testing
