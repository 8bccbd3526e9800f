#!/bin/sh
# scripts/demo.sh - the main job, end to end, as a user lives it:
# build recipes/busybox-hello, sign it with a development key that we
# trust, publish it to a repository served over HTTP on 127.0.0.1, pull it
# by URL into an empty cache, and run it (the builtin KVM monitor on a
# hardware-KVM host, QEMU where KVM is missing or emulated).
#
#   sh scripts/demo.sh            (make demo runs it after make deps all)
# Environment: APPLIANCE (the program, default build/appliance), DEMO_DIR
# (work directory, default build/demo), RECIPE (default busybox-hello),
# DEMO_ENGINE (auto, builtin or qemu).  Trust store and cache live in
# DEMO_DIR so the demo never touches your own.
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
A=${APPLIANCE:-$TOP/build/appliance}
WORK=${DEMO_DIR:-$TOP/build/demo}
RECIPE=${RECIPE:-$TOP/recipes/busybox-hello/recipe.toml}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export APPLIANCE_CACHE="$WORK/cache" APPLIANCE_TRUST_DIR="$WORK/trust" \
	APPLIANCE_SYSTEM_TRUST_DIR="$WORK/trust"
rm -rf "$WORK/cache" "$WORK/repo" "$WORK/build" "$WORK"/*.appliance
step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "A development signing key, trusted on this machine"
[ -f "$WORK/dev.key" ] || run "$A" key generate --no-passphrase \
	--public "$WORK/dev.pub" --secret "$WORK/dev.key" --comment "demo key"
run "$A" trust add "$WORK/dev.pub"

step "Build the appliance from its recipe"
run "$A" build "$RECIPE" --sign "$WORK/dev.key" -o "$WORK/app.appliance" \
	${BUILD_CACHE:+--cache "$BUILD_CACHE"}
run "$A" inspect "$WORK/app.appliance"

step "Publish it to a static repository"
run "$A" publish "$WORK/app.appliance" --repo "$WORK/repo" --key "$WORK/dev.key"
NAME=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$WORK/repo/index.toml" | head -n 1)

step "Serve the repository over HTTP on 127.0.0.1"
rm -f "$WORK/port"
python3 -c '
import functools, http.server, os, sys
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
h = functools.partial(Quiet, directory=sys.argv[1])
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(sys.argv[2] + ".tmp", "w").write(str(s.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
s.serve_forever()' "$WORK/repo" "$WORK/port" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT INT TERM
for i in $(seq 100); do [ -f "$WORK/port" ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat "$WORK/port")"
echo "repository: $URL"

step "Pull it by URL into an empty cache"
run "$A" pull "$URL/$NAME"

step "Run it"
run "$A" run --engine "${DEMO_ENGINE:-auto}" "$URL/$NAME"
echo
echo "demo: the appliance ran and powered off cleanly."
