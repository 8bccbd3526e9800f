# e2e-busybox.sh - the project's main job as a user lives it (make demo):
# build busybox-hello, sign, publish, serve over HTTP, pull by URL into an
# empty cache, run (QEMU here: this machine's KVM is emulated), see the
# greeting and a clean exit; then the cases that must be refused.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
export BUILD_CACHE=${APPLIANCE_TEST_CACHE:-/var/tmp/appliance-test-cache}
D=$T_TMP/demo

APPLIANCE=$A DEMO_DIR=$D sh "$TOP/scripts/demo.sh" > demo.log 2>&1
rc=$?
t_check "demo exits 0" [ "$rc" = 0 ]
t_check "the guest printed its greeting" grep -q "Hello from busybox-hello!" demo.log
t_check "the engine choice is explained" grep -Eq "using the (builtin|QEMU)" demo.log
t_check "the signature was checked before boot" grep -q "signed by trusted key" demo.log
[ "$rc" = 0 ] || tail -n 40 demo.log

export APPLIANCE_CACHE=$D/cache APPLIANCE_TRUST_DIR=$D/trust APPLIANCE_SYSTEM_TRUST_DIR=$D/trust
PKG=$D/cache/packages/busybox-hello-1.0.appliance
before=$(sha256sum "$PKG" | cut -c1-64)
t_run "run again keeping the disk changes" timeout 300 $A run --persist ov.avd "$PKG"
after=$(sha256sum "$PKG" | cut -c1-64)
t_check "the signed package is unchanged by running it" [ "$before" = "$after" ]
t_check "the guest's writes are in the overlay" sh -c "$A img map --json ov.avd | grep -q '\"kind\": \"data\"'"
t_check "the overlay names its package" sh -c "$A img info ov.avd | grep -q 'appliance:busybox-hello-1.0'"
t_run "a second run reuses the overlay" timeout 300 $A run --persist ov.avd "$PKG"
# Looking inside a downloaded appliance without booting it: img commands
# open the package's disk verified (libguestfs reads it over our NBD).
t_check "img cat reads a file from the signed package" sh -c "LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=\${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg} timeout 300 $A img cat '$PKG' /etc/hostname | grep -qx busybox-hello"

# Refusals, each before anything boots.
cp "$PKG" bad.appliance
off=$(( $($A inspect --json bad.appliance | sed -n 's/.*"name": "vmlinuz".*"offset": \([0-9]*\).*/\1/p') + 1000 ))
flip_byte bad.appliance $off
t_check "a tampered package is refused before boot" sh -c "! timeout 60 $A run bad.appliance >out 2>&1; grep -q 'does not match the SHA-256' out && ! grep -q 'Linux version' out"
APPLIANCE_TRUST_DIR=$T_TMP/empty APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/empty \
	t_check "an untrusted key is refused" sh -c "! timeout 60 $A run '$PKG' >out 2>&1; grep -q 'not in the trust store' out"
t_run "--insecure runs it anyway, with a warning" sh -c "APPLIANCE_TRUST_DIR=$T_TMP/empty APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/empty timeout 300 $A run --insecure '$PKG' 2>&1 | grep -q WARNING"
# The same package tampered with on the server: `run URL` refuses it
# before anything boots, and nothing enters the (fresh) cache.
PKGS=$D/repo/packages
f=$(ls "$PKGS" | head -n 1)
flip_byte "$PKGS/$f" 200000
python3 -m http.server 0 --bind 127.0.0.1 --directory "$D/repo" > http.log 2>&1 &
HTTP=$!
for i in $(seq 100); do grep -q "port" http.log && break; sleep 0.1; done
PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' http.log | head -n 1)
t_check "a package tampered with on the server is refused before boot" sh -c "! APPLIANCE_CACHE=$T_TMP/cache2 timeout 120 $A run 'http://127.0.0.1:$PORT/busybox-hello' >out 2>&1; grep -q 'SHA-256 does not match' out && ! grep -q 'Linux version' out"
t_check "  ... and nothing of it is cached" sh -c "[ -z \"\$(ls $T_TMP/cache2/packages 2>/dev/null)\" ]"
kill $HTTP 2>/dev/null

sed 's/^cpus = 1$/cpus = "one"/' "$TOP/recipes/busybox-hello/recipe.toml" > broken.toml
t_check "a recipe error stops the build with line:col" sh -c "! $A build broken.toml -o x > out 2>&1; grep -Eq 'broken.toml:[0-9]+:[0-9]+:' out && [ ! -e x ]"
t_done
