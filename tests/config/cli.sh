#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/config/cli.sh: the emhost tool against fixture configurations and the real plugins.
#
# Runs in every `make check`.  Needs the SQLite plugin in $EMH_BUILDDIR/plugins-build
# (its absence is a failure, not a skip); the PostgreSQL parts need postgres.so
# but no server: those contexts point at port 1 on loopback, where nothing listens.
# EMH_TEST_WRAPPER runs emhost under a tool, e.g. from the build dir:
#   EMH_TEST_WRAPPER="$PWD/libtool --mode=execute valgrind -q --leak-check=full --error-exitcode=9" \
#     make check TESTS=tests/config/cli.sh
set -u
if [ -z "${EMH_BUILDDIR:-}" ] || [ -z "${EMH_SRCDIR:-}" ]; then
	echo "Bail out! EMH_BUILDDIR / EMH_SRCDIR are not set (run through make check)"
	exit 1
fi
. "$EMH_SRCDIR/tests/tap.sh"

emhost="$EMH_BUILDDIR/core/cli/emhost"
files="$EMH_SRCDIR/tests/config/files"
plugins="$EMH_BUILDDIR/plugins-build"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/emh-cli.XXXXXX") || { echo "Bail out! mktemp failed"; exit 1; }
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
EMH_TEST_TMP="$tmp"
export EMH_TEST_TMP EMH_BUILDDIR

# A clean environment for the tool: nothing of the caller's emhost settings leaks in.
for v in $(env | sed -n 's/^\(EMH_CONTEXT_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
unset EMH_CONFIG EMH_DEFAULT_CONTEXT EMH_PLUGIN_DIR EMH_TEST_CLI_PW 2>/dev/null || true

# The secrets the fixtures and the environment hold: none may ever be printed.
SECRETS="Sw0rdfish-In-File Url-Secret-42 Env-Secret-77 Env-Url-Secret-99 SEKRIT-Slash-55"

# run ARGS...: emhost with ARGS; stdout in $tmp/out, stderr in $tmp/err, status in $st.
# Everything printed is also kept in $tmp/all for the password check at the end.
run() {
	# shellcheck disable=SC2086 # the wrapper is a command line
	${EMH_TEST_WRAPPER:-} "$emhost" "$@" >"$tmp/out" 2>"$tmp/err"
	st=$?
	cat "$tmp/out" "$tmp/err" >>"$tmp/all"
}
# status N NAME: the last run exited with N.
status() {
	[ "$st" -eq "$1" ]; ok $? "$2 (exit $1)"
	[ "$st" -eq "$1" ] || { diag "exit status $st"; diag "stdout:"; diag "$(cat "$tmp/out")"; diag "stderr:"; diag "$(cat "$tmp/err")"; }
}
# out TEXT NAME / err TEXT NAME: the last run printed TEXT (fixed string) on stdout / stderr.
out() { grep -qF -- "$1" "$tmp/out"; ok $? "$2"; grep -qF -- "$1" "$tmp/out" || { diag "stdout lacks: $1"; diag "$(cat "$tmp/out")"; }; }
err() { grep -qF -- "$1" "$tmp/err"; ok $? "$2"; grep -qF -- "$1" "$tmp/err" || { diag "stderr lacks: $1"; diag "$(cat "$tmp/err")"; }; }
# outline REGEX NAME: some stdout line matches the extended regex.
outline() { grep -qE -- "$1" "$tmp/out"; ok $? "$2"; grep -qE -- "$1" "$tmp/out" || { diag "no stdout line matches: $1"; diag "$(cat "$tmp/out")"; }; }
nooutline() { ! grep -qE -- "$1" "$tmp/out"; ok $? "$2"; ! grep -qE -- "$1" "$tmp/out" || { diag "a stdout line matches: $1"; diag "$(cat "$tmp/out")"; }; }

# ---- the real SQLite plugin is a dependency of this test ----
[ -f "$plugins/sqlite.so" ]; ok $? "the sqlite plugin is built ($plugins/sqlite.so)"

# ---- usage ----
run --help
status 0 "--help"
out "usage: emhost" "--help prints the usage"
out "check-config" "--help lists check-config"
out "--offline" "--help lists --offline"
run -h
status 0 "-h"
run --version
status 0 "--version"
outline "^emhost [0-9]+\.[0-9]+\.[0-9]+ \(driver ABI 1\.[0-9]+\)$" "--version prints the version and ABI"
run
status 2 "no command"
err "emhost: no command given" "no command: says so"
run frobnicate
status 2 "unknown command"
err "emhost: unknown command 'frobnicate'" "unknown command named"
run --bogus check-config
status 2 "unknown long option"
err "emhost: unknown option '--bogus'" "unknown long option named"
run -x plugins
status 2 "unknown short option"
err "emhost: unknown option '-x'" "unknown short option named"
run check-config -c
status 2 "-c without its argument"
err "needs an argument" "missing argument reported"
run plugins extra
status 2 "extra argument"
err "unexpected argument 'extra'" "extra argument named"

# ---- check-config on a good file ----
run check-config -c "$files/good.conf"
status 0 "check-config good.conf"
out "configuration: $files/good.conf" "names the file"
out "default context: main" "names the default"
out "context main (driver sqlite, default)" "main context header"
outline "^  path +$tmp/main\.db +$files/good\.conf:5$" "path with its value and FILE:LINE"
outline "^  pool\.max +2 +$files/good\.conf:6$" "pool.max flattened with FILE:LINE"
outline "^  pool\.min +0 +default$" "defaults say so"
outline "^  busy_timeout_ms +5000 +default$" "an unset driver key with a default is shown, origin default"
outline "^  foreign_keys +true +default$" "a boolean default"
outline "^  log_queries +false +default$" "the query log's keys are shown with their defaults"
outline "^  slow_query_ms +0 +default$" "slow_query_ms too"
outline "^  statement_timeout_ms +30000 +default$" "the deadlines' keys are shown with their defaults"
outline "^  connect_timeout_ms +5000 +default$" "connect_timeout_ms too"
# server.threads defaults to the cores online, 1 to 8
nthreads=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
[ "$nthreads" -ge 1 ] 2>/dev/null || nthreads=1
[ "$nthreads" -le 8 ] || nthreads=8
[ "$nthreads" = 1 ] && tword=thread || tword=threads
out "server: listen 127.0.0.1:8080, $nthreads $tword, max body 1048576 bytes, shutdown timeout 10000 ms" \
	"the server section emhostd would use (its defaults: a thread per core, at most 8)"
out "context mem (driver sqlite)" "mem context header"
outline "^  path +:memory: +url \($files/good\.conf:7\)$" "url-derived key: origin url (FILE:LINE)"
outline "^  url +sqlite::memory: +$files/good\.conf:7$" "url itself: FILE:LINE"
out "configuration ok: 2 contexts" "says ok"

# EMH_CONFIG is the default -c; -p overrides plugin_dir
EMH_CONFIG="$files/good.conf" run check-config
status 0 "EMH_CONFIG names the file"
out "configuration: $files/good.conf" "EMH_CONFIG file used"
run -p "$tmp/no-such-dir" check-config -c "$files/good.conf"
status 1 "-p to a directory without the plugin"
err "emhost: " "error prefixed"
err "sqlite" "error names the missing driver"

# environment overrides and environment-only contexts
EMH_CONTEXT_MAIN_POOL_MAX=5 EMH_CONTEXT_EXTRA_URL="sqlite://$tmp/extra.db" run check-config -c "$files/good.conf"
status 0 "env override and env context"
outline "^  pool\.max +5 +env EMH_CONTEXT_MAIN_POOL_MAX$" "override: origin is the variable"
out "context extra (driver sqlite)" "a context from the environment"
outline "^  path +$tmp/extra\.db +url \(env EMH_CONTEXT_EXTRA_URL\)$" "env url origin"
EMH_CONTEXT_SOLO_DRIVER=sqlite EMH_CONTEXT_SOLO_PATH=":memory:" run -p "$plugins" check-config
status 0 "no file: contexts from the environment only"
out "configuration: (no file: environment only)" "says there is no file"
out "context solo (driver sqlite, default)" "the only context is the default"
outline "^  path +:memory: +env EMH_CONTEXT_SOLO_PATH$" "env key origin"
EMH_DEFAULT_CONTEXT=mem run check-config -c "$files/good.conf"
status 0 "EMH_DEFAULT_CONTEXT"
out "context mem (driver sqlite, default)" "EMH_DEFAULT_CONTEXT picks the default"
EMH_DEFAULT_CONTEXT=nope run check-config -c "$files/good.conf"
status 1 "EMH_DEFAULT_CONTEXT naming a missing context"
err "no context 'nope' (have: main, mem)" "lists the contexts"
EMH_CONTEXT_MAIN_BUSY_TIMEOUT_MS=-1 run check-config -c "$files/good.conf"
status 1 "a driver key outside its range"
err "env EMH_CONTEXT_MAIN_BUSY_TIMEOUT_MS: context 'main', key 'busy_timeout_ms': 'busy_timeout_ms' must be in [0, 2147483647], got -1" "names the variable, the key, the range and the value"
EMH_CONTEXT_MAIN_POOL_MAX=lots run check-config -c "$files/good.conf"
status 1 "bad integer from the environment"
err "env EMH_CONTEXT_MAIN_POOL_MAX" "names the variable"
err "expected integer, got 'lots'" "says what it expected"

# @include, relative to the including file
run check-config -c "$files/include.conf"
status 0 "@include"
outline "^  pool\.max +3 +$files/include-contexts\.inc:3$" "origin in the included file"

# ---- check-config on bad files: FILE:LINE: message, exit 1 ----
run check-config -c "$files/syntax.conf"
status 1 "syntax error"
err "emhost: $files/syntax.conf:4: syntax error" "syntax error at FILE:LINE"
run check-config -c "$files/typo-top.conf"
status 1 "misspelt top-level key"
err "emhost: $files/typo-top.conf:3: default_contxt: unknown top-level key 'default_contxt'" "unknown key at FILE:LINE"
err "did you mean 'default_context'?" "suggests the right key"
err "valid: plugin_dir, default_context, service_dir, log_level, contexts, services, server" "lists the valid keys"
run check-config -c "$files/typo-key.conf"
status 1 "misspelt driver key"
err "$files/typo-key.conf:5: contexts.[0].pth: unknown key 'pth' for driver 'sqlite'" "unknown driver key at FILE:LINE"
err "did you mean 'path'?" "suggests path"
err "busy_timeout_ms" "lists the driver's keys"
run check-config -c "$files/wrong-type.conf"
status 1 "wrong type"
err "$files/wrong-type.conf:6: contexts.[1].busy_timeout_ms: expected integer" "wrong type at FILE:LINE with path"
run check-config -c "$files/dup.conf"
status 1 "duplicate context"
err "$files/dup.conf:6: contexts.[1].name: duplicate context 'main' (first declared at $files/dup.conf:4)" "duplicate names both places"
run check-config -c "$files/missing-var.conf"
status 1 "missing variable"
err "$files/missing-var.conf:5: contexts.[0].path: environment variable 'EMH_TEST_SURELY_UNSET_VAR' is not set" "missing variable named at FILE:LINE"
run check-config -c "$files/no-driver.conf"
status 1 "unknown driver"
err "unknown driver 'nosuchdb'" "names the driver"
err "sqlite" "lists the loaded drivers"
run check-config -c "$tmp/nonexistent.conf"
status 1 "missing file"
err "$tmp/nonexistent.conf: cannot read the configuration file" "names the missing file"

# ---- plugins ----
run plugins -c "$files/good.conf"
status 0 "plugins"
outline "^NAME +VERSION +ABI +CAPABILITIES +FILE$" "header"
outline "^sqlite +[^ ]+ +1\.[0-9]+ +[a-z,-]*transactions[a-z,-]* +$plugins/sqlite\.so$" "sqlite: version, ABI, capabilities, file"
# refused files: a text file posing as a plugin, and a plugin writable by others
mkdir "$tmp/plugins" && cp "$plugins/sqlite.so" "$tmp/plugins/" && chmod 755 "$tmp/plugins"
echo "not an ELF object" >"$tmp/plugins/junk.so"
cp "$plugins/sqlite.so" "$tmp/plugins/open.so" && chmod 666 "$tmp/plugins/open.so"
run plugins -p "$tmp/plugins"
status 0 "plugins with refused files"
outline "^sqlite .* $tmp/plugins/sqlite\.so$" "the good plugin loads"
out "refused:" "refused section"
outline "^  $tmp/plugins/junk\.so: .+" "the junk file is refused with a reason"
outline "^  $tmp/plugins/open\.so: .*writable" "the world-writable file is refused as writable"
[ ! -s "$tmp/err" ]; ok $? "plugins: refusals are listed, not repeated as warnings"
run check-config -p "$tmp/plugins" -c "$files/good.conf"
status 0 "check-config with refused plugins still validates"
err "junk.so" "check-config warns about refused plugins on stderr"

# ---- contexts ----
run contexts -c "$files/good.conf"
status 0 "contexts, all reachable"
outline "^NAME +DRIVER +DEFAULT +OPEN +IDLE +IN-USE +STATUS$" "header"
outline "^main +sqlite +yes +1 +1 +0 +reachable$" "main: default, its ping's connection idle, reachable"
outline "^mem +sqlite +no +1 +1 +0 +reachable$" "mem: reachable"
outline "^budget: 2 of [0-9]+ connections open, 3 of [0-9]+ file descriptors \(max_connections: default; RLIMIT_NOFILE [0-9a-z]+\)$" "the host's budget: 2 connections, a file in WAL mode holding 3 descriptors, one in memory none"

# ---- secrets (PostgreSQL driver, no server needed) ----
if [ -f "$plugins/postgres.so" ]; then
	EMH_TEST_CLI_PW=Env-Secret-77 run check-config -c "$files/secrets.conf"
	status 0 "check-config with secrets"
	outline "^  password +\*{8} +$files/secrets\.conf:8$" "file password masked, origin kept"
	outline "^  url +postgres://bob:\*{8}@127\.0\.0\.1:1/db +$files/secrets\.conf:9$" "url shown with its password masked"
	outline "^  password +\*{8} +env EMH_TEST_CLI_PW$" "password_env resolved and masked"
	# postgres URLs are libpq's to read (EMH_URL_WHOLE): kept whole, nothing split out of them
	nooutline "^  (host|port|user|password|database) .*url \($files/secrets\.conf:9\)$" "no key is split out of a whole url"
	EMH_TEST_CLI_PW=Env-Secret-77 run contexts -c "$files/secrets.conf"
	status 1 "contexts with unreachable databases"
	outline "^main +sqlite +yes +1 +1 +0 +reachable$" "sqlite reachable"
	outline "^pgfile +postgres +no +0 +0 +0 +error: .+" "unreachable context shows its error"
	outline "^pgurl +postgres +no +0 +0 +0 +error: .+" "unreachable url context shows its error"
	run check-config -c "$files/secrets.conf"
	status 1 "password_env variable missing"
	err "$files/secrets.conf:11: contexts.[3].password_env: environment variable 'EMH_TEST_CLI_PW' is not set" "names the variable and FILE:LINE"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:1/x" run -p "$plugins" check-config
	status 0 "env url with a password"
	outline "^  url +postgresql://carl:\*{8}@127\.0\.0\.1:1/x +env EMH_CONTEXT_ENVPG_URL$" "env url shown with its password masked"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:1/x" run -p "$plugins" contexts
	status 1 "env url context unreachable"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:1/x" \
		EMH_CONTEXT_ENVPG_REPLICA_URLS="postgresql://carl:Env-Url-Secret-99@127.0.0.1:2/x" run -p "$plugins" contexts
	outline "^  replica 1  postgresql://carl:\*{8}@127\.0\.0\.1:2/x  open 0 idle 0 in-use 0  not pinged$" "contexts lists a replica under its context, its password masked"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:1/x" \
		EMH_CONTEXT_ENVPG_REPLICA_URLS="postgresql://carl:Env-Url-Secret-99@127.0.0.1:2/x" run -p "$plugins" check-config
	outline "^  replica_urls +postgresql://carl:\*{8}@127\.0\.0\.1:2/x +env EMH_CONTEXT_ENVPG_REPLICA_URLS$" "check-config shows replica_urls masked, with its origin"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:bad/x" run -p "$plugins" check-config
	status 1 "bad env url"
	err "context 'envpg': url: 'port' must be in [1, 65535], got 'bad'" "a bad port in the url is refused at start-up"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl@127.0.0.1:1/x?nosuchoption=1" run -p "$plugins" check-config
	status 1 "an option libpq does not know"
	err "context 'envpg': url: invalid URI query parameter: \"nosuchoption\"" "is refused at start-up with libpq's reason"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl:Env-Url-Secret-99@127.0.0.1:1/x?connect_timeout_ms=300" run -p "$plugins" check-config
	status 1 "an emhost key in a postgres url's query"
	err "context 'envpg': url: 'connect_timeout_ms' is an emhost key, not a libpq option" "is refused with a hint"
	EMH_CONTEXT_ENVPG_URL="postgresql://carl@127.0.0.1:1,127.0.0.1:2/x?target_session_attrs=read-write" \
		run -p "$plugins" check-config
	status 0 "a multi-host url with target_session_attrs is accepted"
	outline "^  url +postgresql://carl@127\.0\.0\.1:1,127\.0\.0\.1:2/x\?target_session_attrs=read-write +env EMH_CONTEXT_ENVPG_URL$" "and kept whole"
	EMH_CONTEXT_PGX_DRIVER=postgres EMH_CONTEXT_PGX_PORT=70000 run -p "$plugins" check-config
	status 1 "a port out of range"
	err "env EMH_CONTEXT_PGX_PORT: context 'pgx', key 'port': 'port' must be in [1, 65535], got 70000" "one message for every port"
	EMH_CONTEXT_PGX_URL="postgres://u@127.0.0.1:70000/x" run -p "$plugins" check-config
	status 1 "a url's port out of range"
	err "url: 'port' must be in [1, 65535], got '70000'" "the same message"
	# a '/' in the password (issue 11): libpq would read it as the path, so it is refused, unprinted
	EMH_CONTEXT_SLASH_URL="postgres://app:2024/SEKRIT-Slash-55@127.0.0.1:1/app" run -p "$plugins" check-config
	status 1 "a '/' in a whole url's password is refused"
	err "'/'" "saying why"
	EMH_CONTEXT_SLASH_URL="postgres://app:2024%2FSEKRIT-Slash-55@127.0.0.1:1/app" run -p "$plugins" check-config
	status 0 "percent-encoded, it is accepted"
	outline "^  url +postgres://app:\*{8}@127\.0\.0\.1:1/app +env EMH_CONTEXT_SLASH_URL$" "the url shown masked"
	EMH_CONTEXT_SLASH_URL="postgres://app:2024%2FSEKRIT-Slash-55@127.0.0.1:1/app" run -p "$plugins" contexts
	status 1 "its context is unreachable, and says so without the password"
else
	diag "SKIPPING the PostgreSQL secret tests: $plugins/postgres.so is not built (configure found no libpq)"
	skip 33 "postgres plugin not built"
fi

# ---- a MongoDB URL with several hosts (no server needed: the driver connects lazily) ----
if [ -f "$plugins/mongo.so" ]; then
	EMH_CONTEXT_DOCS_URL="mongodb://app:Env-Url-Secret-99@127.0.0.1:1,127.0.0.1:2/appdb?replicaSet=rs0" \
		run -p "$plugins" check-config
	status 0 "mongodb url with several hosts"
	nooutline "^  (host|port|user|password|database|replicaSet) .*url \(env EMH_CONTEXT_DOCS_URL\)$" "libmongoc's to read: nothing split out of it"
	outline "^  url +mongodb://app:\*{8}@127\.0\.0\.1:1,127\.0\.0\.1:2/appdb\?replicaSet=rs0 +env EMH_CONTEXT_DOCS_URL$" "the whole url kept, its password masked"
else
	diag "SKIPPING the MongoDB url tests: $plugins/mongo.so is not built (configure found no libmongoc)"
	skip 3 "mongo plugin not built"
fi

# ---- migrate/schema options with an argument may come before the command word (found by review) ----
mkdir -p "$tmp/mig"
printf 'plugin_dir = "%s";\ncontexts = ( { name = "main"; driver = "sqlite";\n  path = "%s/m.db"; migrations = "%s/mig"; } );\n' \
	"$plugins" "$tmp" "$tmp" >"$tmp/m.conf"
run -c "$tmp/m.conf" --context main migrate status
status 0 "--context before migrate"
out "context main (sqlite" "--context before migrate: the status of main"
run --context nope -c "$tmp/m.conf" migrate status
err "no context 'nope'" "--context before migrate is read as migrate's option"
run --to 0 -c "$tmp/m.conf" migrate down
status 0 "--to before migrate"
out "nothing to undo" "--to before migrate: down runs"
run --cont main -c "$tmp/m.conf" migrate status
status 0 "an abbreviated --context before migrate"

# ---- no terminal escape from a value, an origin or a message reaches the terminal (found by review) ----
esc=$(printf '\033]0;owned\007')
rawesc=$(printf '\033')
noesc() {
	! grep -qF -- "$rawesc" "$tmp/out" "$tmp/err"; ok $? "$1: no raw ESC printed"
	! grep -qF -- "$rawesc" "$tmp/out" "$tmp/err" || diag "$(cat -v "$tmp/out" "$tmp/err")"
}
EMH_CONTEXT_DEFAULT_DRIVER=sqlite EMH_CONTEXT_DEFAULT_PATH="$tmp/x${esc}.db" run -p "$plugins" check-config --offline
status 0 "check-config with an escape in a path"
noesc "check-config value"
outline '^  path +.*/x\\x1B\]0;owned\\x07\.db +env EMH_CONTEXT_DEFAULT_PATH$' "check-config shows it as \\xNN"
EMH_CONTEXT_DEFAULT_DRIVER=sqlite EMH_CONTEXT_DEFAULT_PATH="$tmp/nodir${esc}/x.db" run -p "$plugins" contexts
status 1 "contexts with a path that cannot open"
noesc "contexts ping error"
out 'nodir\x1B]0;owned\x07' "contexts shows the error's path as \\xNN"
EMH_CONTEXT_DEFAULT_DRIVER=sqlite EMH_CONTEXT_DEFAULT_PATH="$tmp/m2.db" \
	EMH_CONTEXT_DEFAULT_MIGRATIONS="$tmp/nomig${esc}" run -p "$plugins" migrate status
status 1 "migrate status with a missing folder"
noesc "migrate error"
err 'nomig\x1B]0;owned\x07' "migrate shows the folder as \\xNN"
run -c "$tmp/no-such${esc}.conf" check-config
status 1 "a config path with an escape"
noesc "error naming the config file"

# ---- no secret ever printed, by any command above ----
leaked=""
for s in $SECRETS; do
	if grep -qF -- "$s" "$tmp/all"; then leaked="$leaked $s"; fi
done
[ -z "$leaked" ]; ok $? "no password appears in any output"
[ -z "$leaked" ] || diag "leaked:$leaked"

done_testing
