#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/daemon/openapi.sh: GET /_emhost/openapi.json of an emhostd serving
# every bundled service (users, analytics, profile, shop) is valid OpenAPI
# 3.1, checked by a real validator: @apidevtools/swagger-parser (pinned),
# installed from the npm registry once into a cache,
# ${EMH_OPENAPI_VALIDATOR_DIR:-${XDG_CACHE_HOME:-~/.cache}/emhost/openapi-validator},
# as scripts/servers/mongo.sh installs its server.  The validator checks the
# document against the 3.1 schema and resolves every $ref; what it leaves
# out for 3.1 is checked here too: each {param} of a path template is a
# declared path parameter and the other way round, operationIds are unique.
# A broken copy of the document must fail, so the validator is known to
# look.  Without node/npm (or the registry) the test skips loudly, and fails
# under CI=true.
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

VALIDATOR=@apidevtools/swagger-parser@13.1.0
NTESTS=7
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-openapi.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
pid=""
cleanup() {
	[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v curl >/dev/null 2>&1 || { echo "1..0 # SKIP no curl program to talk to the daemon"; exit 0; }

# The validator, installed once: into a fresh directory renamed into place,
# so that two concurrent runs never see half of it.
install_validator() {
	base=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}
	dir=${EMH_OPENAPI_VALIDATOR_DIR:-$base/emhost/openapi-validator}
	if ! mkdir -p "$(dirname "$dir")" 2>/dev/null || [ ! -w "$(dirname "$dir")" ]; then
		dir=$tmp/openapi-validator
	fi
	if [ -f "$dir/installed" ] && [ "$(cat "$dir/installed")" = "$VALIDATOR" ]; then
		echo "$dir"
		return 0
	fi
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 1
	new=$(mktemp -d "$dir.tmp.XXXXXX") || return 1
	# npm keeps its cache in ~/.npm: a user without a writable home gets one here.
	if ! mkdir -p "${HOME:-/nonexistent}/.npm" 2>/dev/null || [ ! -w "${HOME:-/nonexistent}/.npm" ]; then
		export npm_config_cache="$tmp/npm-cache"
	fi
	if ! npm install --no-audit --no-fund --silent --prefix "$new" "$VALIDATOR" >"$tmp/npm.log" 2>&1; then
		sed 's/^/# npm: /' "$tmp/npm.log" | tail -5
		rm -rf "$new"
		return 1
	fi
	echo "$VALIDATOR" >"$new/installed"
	rm -rf "$dir.old"
	{ [ ! -e "$dir" ] || mv "$dir" "$dir.old"; } && mv "$new" "$dir" || { rm -rf "$new"; return 1; }
	rm -rf "$dir.old"
	echo "$dir"
}

if ! vdir=$(install_validator); then
	need_server "$NTESTS" "node and npm with the registry, to install $VALIDATOR"
	done_testing
	exit $?
fi

cat >"$tmp/validate.mjs" <<'JS'
// validate.mjs DOC: validate an OpenAPI document; print what is wrong.
import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
const file = process.argv[2];
const problems = [];
try {
  await SwaggerParser.validate(file);
} catch (e) {
  problems.push(e.message.split('\n').slice(0, 3).join(' '));
}
const doc = JSON.parse(readFileSync(file, 'utf8'));
const ids = new Set();
for (const [path, item] of Object.entries(doc.paths || {})) {
  const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort().join(',');
  for (const [method, op] of Object.entries(item)) {
    const declared = (op.parameters || []).filter((p) => p.in === 'path').map((p) => p.name).sort().join(',');
    if (declared !== inPath) problems.push(`${method} ${path}: path parameters [${declared}], template [${inPath}]`);
    if (ids.has(op.operationId)) problems.push(`operationId ${op.operationId} twice`);
    ids.add(op.operationId);
  }
}
if (problems.length) {
  console.log(problems.join('\n'));
  process.exit(1);
}
console.log(`valid: ${Object.keys(doc.paths).length} paths`);
JS
ln -s "$vdir/node_modules" "$tmp/node_modules"

cat >"$tmp/emhost.conf" <<EOF
plugin_dir = "$EMH_BUILDDIR/plugins-build";
service_dir = "$EMH_BUILDDIR/services/.libs";
contexts = (
  { name = "default"; driver = "sqlite"; path = "$tmp/app.db"; schema = "sync"; },
  { name = "analytics"; driver = "sqlite"; path = "$tmp/analytics.db"; schema = "sync"; },
  { name = "orders"; driver = "sqlite"; path = "$tmp/orders.db"; schema = "sync"; }
);
services = ( { name = "users"; }, { name = "analytics"; }, { name = "profile"; },
             { name = "shop"; contexts = { catalog = "default"; }; } );
server = { threads = 1; };
EOF
"$EMH_BUILDDIR/core/daemon/emhostd" -c "$tmp/emhost.conf" -l 127.0.0.1:0 --ready-file "$tmp/ready" \
	--pid-file "$tmp/pid" 2>"$tmp/log" &
pid=$!
i=0
while [ ! -s "$tmp/ready" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -s "$tmp/ready" ]; then
	ok 1 "emhostd starts"
	sed 's/^/# /' "$tmp/log" | tail -20
	done_testing
	exit $?
fi
url=$(cat "$tmp/ready")
code=$(curl -s -o "$tmp/doc.json" -w '%{http_code}' "$url/_emhost/openapi.json")
[ "$code" = 200 ]
ok $? "GET /_emhost/openapi.json -> 200 (got $code)"
out=$(cd "$tmp" && node validate.mjs doc.json 2>&1)
st=$?
diag "$out"
ok $st "the document is valid OpenAPI 3.1 ($VALIDATOR)"
for p in '"/users/{id}"' '"/analytics/counts"' '"/profile/{id}"' '"/shop/orders/{id}"'; do
	grep -q "$p" "$tmp/doc.json"
	ok $? "it describes $p"
done

# a broken copy must fail: the validator really looks
sed 's/"in":"path"/"in":"body"/' "$tmp/doc.json" >"$tmp/broken.json"
out=$(cd "$tmp" && node validate.mjs broken.json 2>&1)
st=$?
[ $st -ne 0 ]
ok $? "a broken copy (a parameter in 'body') is refused: $(echo "$out" | head -1)"
kill -TERM "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=""
done_testing
