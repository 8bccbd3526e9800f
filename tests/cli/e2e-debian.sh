# e2e-debian.slow.sh - debian-nginx through the whole flow: build (the
# Debian base comes from the shared cache after the first run), sign,
# publish, pull by URL, run with `appliance run` (QEMU here), fetch the
# page through the forwarded port with curl, stop cleanly.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
export APPLIANCE_CACHE=$T_TMP/cache APPLIANCE_TRUST_DIR=$T_TMP/trust \
	APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/trust

$A key generate --public k.pub --secret k.key --no-passphrase >/dev/null
$A trust add k.pub >/dev/null
t_run "build debian-nginx" $A build -q --cache "$CACHE" -o out "$TOP/recipes/debian-nginx/recipe.toml"
t_run "pack and sign" $A pack out -o nginx.appliance --sign k.key
t_run "publish" $A publish nginx.appliance --repo repo --key k.key
python3 -m http.server 0 --bind 127.0.0.1 --directory repo > http.log 2>&1 &
HTTP=$!
for i in $(seq 100); do grep -q "port" http.log && break; sleep 0.1; done
PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' http.log | head -n 1)
t_run "pull by URL" $A pull "http://127.0.0.1:$PORT/debian-nginx"

# Host port 8080 is the recipe's; use a free one in case 8080 is taken.
HOSTPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 900 $A run -p "$HOSTPORT:80" "http://127.0.0.1:$PORT/debian-nginx" > console.log 2>&1 &
VM=$!
ok=0
for i in $(seq 400); do
	if curl -sf --max-time 5 "http://127.0.0.1:$HOSTPORT/" > page.html 2>/dev/null; then ok=1; break; fi
	kill -0 $VM 2>/dev/null || break
	sleep 2
done
t_check "the page is served through the forwarded port" grep -q "Hello from debian-nginx" page.html
kill -TERM $VM 2>/dev/null
wait $VM
rc=$?
t_check "SIGTERM stops the VM cleanly (exit 0)" [ "$rc" = 0 ]
[ "$ok" = 1 ] || tail -n 30 console.log | sed 's/^/  console: /'
kill $HTTP 2>/dev/null

# A changed recipe (only a file differs) is rebuilt from the cached base:
# mmdebstrap does not run again, and the new file is in the new disk.
mkdir -p changed
sed 's/Hello from debian-nginx/Hello again, changed recipe/' \
	"$TOP/recipes/debian-nginx/recipe.toml" > changed/recipe.toml
t_run "rebuild the changed recipe" $A build -v --cache "$CACHE" -o changed.out changed/recipe.toml
t_check "  ... without running mmdebstrap again" sh -c '! grep -q "^\$ mmdebstrap" changed.out/build.log'
t_run "  ... into a disk we can read back" $A img convert -O raw changed.out/disk.avd changed.raw
t_check "  ... which holds the changed page" sh -c 'debugfs -R "cat /var/www/html/index.html" changed.raw 2>/dev/null | grep -q "Hello again, changed recipe"'
t_done
