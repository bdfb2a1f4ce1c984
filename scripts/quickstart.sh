#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/quickstart.sh: install what is missing, build emhost, and start
# emhostd with etc/emhost.conf (SQLite, the bundled services users, analytics,
# profile and the shop example), printing its URL, three curl commands to try
# and where the routes are described.
#
# usage: scripts/quickstart.sh
#   EMH_BUILD_DIR  build directory (default: ./_build in the source tree)
#   EMH_DATA       data directory for the SQLite files (default: ./var)
#   EMH_LISTEN     listen address (default: 127.0.0.1:8080)
# As root, missing Debian packages are installed with apt-get; as another
# user the script lists them and stops.  Stop the server with Ctrl-C.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
bdir=${EMH_BUILD_DIR:-$src/_build}

"$src/scripts/deps.sh" build
echo "quickstart: building in $bdir (first time: a minute or two)" >&2
"$src/scripts/build.sh" "$bdir"
[ -x "$bdir/core/daemon/emhostd" ] || {
	echo "quickstart: emhostd was not built (configure found no libmicrohttpd/jansson?): see $bdir/configure.out" >&2
	exit 1
}

# etc/emhost.conf names no plugin or service directory: the compiled-in ones
# are where `make install` puts them, so point the host at the build instead.
export EMH_PLUGIN_DIR="$bdir/plugins-build"
export EMH_SERVICE_DIR="$bdir/services/.libs"
export EMH_DATA="${EMH_DATA:-$src/var}"
export EMH_LISTEN="${EMH_LISTEN:-127.0.0.1:8080}"
mkdir -p "$EMH_DATA"
url="http://$EMH_LISTEN"

cat <<MSG

emhostd is starting on $url  (data: $EMH_DATA; stop with Ctrl-C)
In another terminal:

  curl -s -X POST $url/users -d '{"name":"Ada","email":"ada@example.com"}'
  curl -s -X POST $url/analytics/events -d '{"user_id":1,"type":"signup"}'
  curl -s $url/profile/1

Every route of the loaded services (users, analytics, profile, shop):
  curl -s $url/_emhost/openapi.json

MSG
exec "$bdir/core/daemon/emhostd" -c "$src/etc/emhost.conf"
