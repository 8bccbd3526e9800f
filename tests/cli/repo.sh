# repo.sh - publish, pull and the cache against a real (and a misbehaving)
# HTTP server on 127.0.0.1; every refusal must name its reason and leave
# nothing in the cache.
. "$TOP/tests/cli/lib.sh"
. "$TOP/tests/cli/lib-pkg.sh"
A=$APPLIANCE
export APPLIANCE_CACHE=$T_TMP/cache APPLIANCE_TRUST_DIR=$T_TMP/trust \
	APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/systrust

cached() { ls "$APPLIANCE_CACHE/packages" 2>/dev/null | wc -l; }

$A key generate --public k1.pub --secret k1.key --no-passphrase >/dev/null
$A key generate --public k2.pub --secret k2.key --no-passphrase >/dev/null
mkbuild b1 1.0
mkbuild b2 2.0
t_run "pack and sign 1.0" $A pack b1 -o tiny-1.0.appliance --sign k1.key
t_run "pack and sign 2.0" $A pack b2 -o tiny-2.0.appliance --sign k1.key
# Without -o the package is named from its manifest, and nothing else is
# left beside it; a name that could not be a package's is refused.
mkdir -p packdir
t_check "pack without -o names the file NAME-VERSION.appliance" sh -c \
	"cd packdir && $A pack ../b1 --sign ../k1.key | grep -qx tiny-1.0.appliance && [ \"\$(ls)\" = tiny-1.0.appliance ]"
t_check "  ... the same bytes as with -o" cmp packdir/tiny-1.0.appliance tiny-1.0.appliance
cp -r b1 bad-name && sed -i 's|^name = "tiny"|name = "../evil"|' bad-name/manifest.toml
t_fail "pack refuses a manifest whose name is not valid" 1 $A pack bad-name
t_check "  ... and writes nothing" [ ! -e ../evil-1.0.appliance ]
rm -rf packdir bad-name

# The disk's leaves, checked by hand with stock tools (appliances/FORMAT.md):
# `tar -xf`, the disk as raw, then b3sum (or sha256sum) of each cluster.
leaves_match() { # PKG HASHCMD
	rm -rf lv && mkdir lv && tar -xf "$1" -C lv disk.avd disk.hashes &&
	$A img convert -O raw lv/disk.avd lv/disk.raw >/dev/null || return 1
	n=$(($(stat -c %s lv/disk.hashes) / 32)) i=0
	[ "$n" = 64 ] || return 1   # a 4 MiB disk in 64 KiB clusters
	while [ $i -lt $n ]; do
		want=$(dd if=lv/disk.hashes bs=32 skip=$i count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \n')
		got=$(dd if=lv/disk.raw bs=65536 skip=$i count=1 2>/dev/null | $2 | cut -c1-64)
		[ "$want" = "$got" ] || { echo "leaf $i: $want != $got"; return 1; }
		i=$((i + 1))
	done
}
t_check "leaves are b3sum of each cluster" leaves_match tiny-1.0.appliance b3sum
t_check "  ... and the manifest says blake3" sh -c "$A inspect tiny-1.0.appliance | grep -q 'clusters (blake3), small reads in 4096-byte parts'"
t_check "  ... with 16 part CVs of 32 bytes per cluster" sh -c "tar -xOf tiny-1.0.appliance disk.subtrees | wc -c | grep -qx 32768"
t_run "pack --leaf-hash sha256" $A pack b1 -o sha.appliance --sign k1.key --leaf-hash sha256
t_check "  ... leaves are sha256sum of each cluster" leaves_match sha.appliance sha256sum
t_check "  ... inspect --json names the algorithm" sh -c "$A inspect --json sha.appliance | grep -q '\"algorithm\": \"sha256\", \"subtree_size\": 0'"
t_check "  ... and has no part CVs (SHA-256 is not a tree)" sh -c "! tar -tf sha.appliance | grep -q subtrees"
t_run "  ... and it verifies" $A verify --full --key k1.pub sha.appliance
t_fail "pack --leaf-hash md5 is refused" 2 $A pack b1 -o md5.appliance --leaf-hash md5
t_check "  ... leaving no file" [ ! -e md5.appliance ]
# Two publishes into one repository at once (parallel CI jobs): each
# adds its package to the index, neither drops the other's.
$A publish tiny-1.0.appliance --repo repo-both --key k1.key >/dev/null 2>&1 &
p1=$!
$A publish tiny-2.0.appliance --repo repo-both --key k1.key >/dev/null 2>&1
wait $p1
t_check "two publishes at once: both packages are in the index" [ "$(grep -c '^\[\[appliance' repo-both/index.toml)" = 2 ]
t_check "  ... whose version counts both" grep -q '^version = 2$' repo-both/index.toml
t_run "  ... and whose signature verifies" minisign -Vm repo-both/index.toml -p k1.pub
t_run "publish 1.0" $A publish tiny-1.0.appliance --repo repo --key k1.key
t_check "index is signed" [ -s repo/index.toml.minisig ]
t_run "stock minisign verifies the index" minisign -Vm repo/index.toml -p k1.pub
mkdir -p repo/old && cp repo/index.toml repo/index.toml.minisig repo/old/

python3 "$TOP/tests/cli/repo_server.py" repo port &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$T_TMP"' EXIT
for i in $(seq 100); do [ -f port ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat port)"

t_fail "pull with an untrusted key is refused" 1 $A pull "$URL/ok/tiny"
t_check "  ... naming the key" sh -c "$A pull '$URL/ok/tiny' 2>&1 | grep -q 'not trusted'"
t_check "  ... and nothing is cached" [ "$(cached)" = 0 ]
t_run "trust the publisher" $A trust add k1.pub
t_run "pull by repository URL" $A pull "$URL/ok/tiny"
t_check "package is in the cache" [ -f "$APPLIANCE_CACHE/packages/tiny-1.0.appliance" ]
: > repo/requests.log
t_run "pulling it again" $A pull "$URL/ok/tiny"
t_check "  ... checks the index but does not download the package again" sh -c "grep -q index.toml repo/requests.log && ! grep -q 'packages/' repo/requests.log"
t_check "list shows it" sh -c "$A list | grep -q '^tiny .*1.0'"
t_check "pull NAME finds the cached one" sh -c "$A pull tiny | grep -q tiny-1.0.appliance"
t_run "inspect says trusted" sh -c "$A inspect '$APPLIANCE_CACHE/packages/tiny-1.0.appliance' | grep -q 'trusted$'"
t_run "verify --full of the cached package" $A verify --full "$APPLIANCE_CACHE/packages/tiny-1.0.appliance"

# The cache's file system refuses the download mid-way (a file size
# limit stands in for a full disk): the error names the file, nothing
# enters the cache, and the next pull completes.
: > repo/requests.log
APPLIANCE_CACHE=$T_TMP/cache-full \
	sh -c "trap '' XFSZ; ulimit -f 40; exec $A pull '$URL/ok/tiny'" >full.out 2>&1
t_check "a download the disk cannot hold fails, naming the partial file" \
	grep -q 'partial/.*\.part: writing the download: File too large' full.out
t_check "  ... nothing entered the cache" [ -z "$(ls "$T_TMP/cache-full/packages" 2>/dev/null)" ]
t_run "  ... the next pull completes" env APPLIANCE_CACHE=$T_TMP/cache-full $A pull "$URL/ok/tiny"
t_run "  ... and the package verifies" $A verify --full "$T_TMP/cache-full/packages/tiny-1.0.appliance"

# Three pulls of the same package at once, into an empty cache, with the
# download slow enough that they overlap: all succeed, one downloads.
: > repo/requests.log
(APPLIANCE_CACHE=$T_TMP/cache-twice $A pull "$URL/slow/tiny" >twice1.out 2>&1; echo $? >twice1.st) &
p1=$!
(APPLIANCE_CACHE=$T_TMP/cache-twice $A pull "$URL/slow/tiny" >twice2.out 2>&1; echo $? >twice2.st) &
p2=$!
(APPLIANCE_CACHE=$T_TMP/cache-twice $A pull "$URL/slow/tiny" >twice3.out 2>&1; echo $? >twice3.st) &
wait $p1 $p2 $!
t_check "three pulls of one package at once all succeed" [ "$(cat twice1.st twice2.st twice3.st | tr -d '\n')" = 000 ]
t_check "  ... the package is downloaded once" [ "$(grep -c 'slow/packages/' repo/requests.log)" = 1 ]
t_check "  ... the others saying they wait for it" sh -c "[ \$(cat twice1.out twice2.out twice3.out | grep -c 'waiting for another pull of') -ge 2 ]"
t_run "  ... and verifies" $A verify --full "$T_TMP/cache-twice/packages/tiny-1.0.appliance"
t_check "  ... and their lock files are gone" [ -z "$(ls "$T_TMP/cache-twice/locks")" ]

# Version 2 published: pulls see it, and version 1's index is then a rollback.
t_run "publish 2.0" $A publish tiny-2.0.appliance --repo repo --key k1.key
t_check "index version went up" grep -q '^version = 2' repo/index.toml
t_run "pull picks the newest version" sh -c "$A pull '$URL/ok/tiny' | grep -q tiny-2.0"
t_run "pull NAME:VERSION" sh -c "$A pull '$URL/ok/tiny:1.0' | grep -q tiny-1.0"
# A publish landing between the index and signature requests: the first
# pair does not match (1.0's index, 2.0's signature); the pull fetches
# the pair again and goes on.
: > repo/requests.log
t_run "an index and signature of two publishes: fetched again, pulled" sh -c "APPLIANCE_CACHE=$T_TMP/cache-racy $A pull '$URL/racy/tiny' | grep -q tiny-2.0"
t_check "  ... after asking for the index twice" [ "$(grep -c 'racy/index.toml ' repo/requests.log)" = 2 ]
touch repo/replay
t_check "a replayed older index is refused as a rollback" sh -c "! $A pull '$URL/ok/tiny' 2>cerr; grep -q 'older than version 2' cerr"
rm repo/replay

# An expired index, properly signed.
mkdir -p exp/packages && cp repo/packages/* exp/packages/
sed 's/^expires = .*/expires = 1000/' repo/index.toml > exp/index.toml
$A sign --key k1.key exp/index.toml >/dev/null
rm -rf repo/old && cp -r exp repo/old
rm -rf "$APPLIANCE_CACHE/state"
t_check "an expired index is refused" sh -c "! $A pull '$URL/old/tiny' 2>cerr; grep -q expired cerr"

# A signature by a key that is not trusted.
$A publish tiny-1.0.appliance --repo other --key k2.key >/dev/null
rm -rf repo/old && cp -r other repo/old
rm -rf "$APPLIANCE_CACHE/state"
t_check "an index signed by an untrusted key is refused" sh -c "! $A pull '$URL/old/tiny' 2>cerr; grep -q 'not trusted' cerr"

# Tampered package on the server.
$A rm tiny >/dev/null
rm -rf repo/old && cp -r repo repo.save && mv repo.save repo/old
flip_byte repo/old/packages/tiny-2.0.appliance 5000
rm -rf "$APPLIANCE_CACHE/state"
t_check "a tampered package is refused by its digest" sh -c "! $A pull '$URL/old/tiny' 2>cerr; grep -q 'SHA-256 does not match' cerr"
t_check "  ... and nothing is cached or left partial" sh -c "[ \$(ls '$APPLIANCE_CACHE/packages' | wc -l) = 0 ] && [ \$(ls '$APPLIANCE_CACHE/partial' | wc -l) = 0 ]"

# Endless data.
t_check "a server sending more than announced is cut off" sh -c "! $A pull '$URL/endless/tiny' 2>cerr; grep -q 'more data than announced' cerr"
t_check "  ... and nothing is cached" [ "$(cached)" = 0 ]

# A connection cut mid-file: the retry resumes with a Range request.
: > repo/requests.log
t_fail "a cut download fails" 1 $A pull "$URL/cut/tiny"
t_check "  ... keeping the partial file" [ "$(ls "$APPLIANCE_CACHE/partial" | wc -l)" = 1 ]
t_run "the retry completes" $A pull "$URL/cut/tiny"
t_check "  ... by resuming (Range request)" grep -q 'tiny-2.0.appliance bytes=[1-9]' repo/requests.log
t_run "  ... and the result verifies" $A verify --full "$APPLIANCE_CACHE/packages/tiny-2.0.appliance"
# An unfinished download no pull comes back for (the pull killed here):
# list says what it holds, rm --partial removes it (and the killed pull's
# lock file), but never the one a pull is writing.
PC=$T_TMP/cache-partial
wait_partial() { for i in $(seq 200); do [ -n "$(ls "$PC/partial" 2>/dev/null)" ] && return; sleep 0.05; done; }
APPLIANCE_CACHE=$PC $A pull "$URL/slow/tiny" >/dev/null 2>&1 &
p=$!; wait_partial; kill -KILL $p; wait $p 2>/dev/null
t_check "list shows an unfinished download" sh -c \
	"APPLIANCE_CACHE=$PC $A list | grep -q '^(1 unfinished download, .*: .appliance rm --partial. removes them)'"
t_check "rm --partial removes it" sh -c "APPLIANCE_CACHE=$PC $A rm --partial | grep -q '^removed 1 unfinished download ('"
t_check "  ... with the killed pull's lock file" [ -z "$(ls "$PC/partial")$(ls "$PC/locks")" ]
t_check "  ... and list no longer mentions any" sh -c "! APPLIANCE_CACHE=$PC $A list | grep -q unfinished"
APPLIANCE_CACHE=$PC $A pull "$URL/slow/tiny" >/dev/null 2>&1 &
p=$!; wait_partial
t_check "rm --partial leaves the download a pull is writing" sh -c \
	"APPLIANCE_CACHE=$PC $A rm --partial | grep -q '^removed 0 unfinished downloads .*; left 1 a pull is writing'"
wait $p; st=$?
t_check "  ... and that pull completes" [ "$st" = 0 ]
t_run "  ... with a package that verifies" $A verify --full "$PC/packages/tiny-2.0.appliance"
# A server that ignores the Range of the retry sends the whole file: the
# client starts over instead of appending it to the partial one.
$A rm tiny >/dev/null
t_fail "a cut download fails (server without Range)" 1 $A pull "$URL/norange/tiny"
t_run "  ... the retry gets the whole file and completes" $A pull "$URL/norange/tiny"
t_check "  ... after asking for the rest" grep -q 'norange/packages/tiny-2.0.appliance bytes=[1-9]' repo/requests.log
t_run "  ... and the result verifies" $A verify --full "$APPLIANCE_CACHE/packages/tiny-2.0.appliance"

# One package by URL, and file:// repositories.
$A rm tiny >/dev/null
t_run "pull a package by URL" $A pull "$URL/ok/packages/tiny-1.0.appliance"
t_run "pull from a file:// repository" $A pull "file://$T_TMP/repo/tiny:2.0"
t_fail "an unknown appliance" 1 $A pull "$URL/ok/nothere"
t_check "rm removes" sh -c "$A rm tiny:1.0 && ! ls '$APPLIANCE_CACHE/packages' | grep -q 1.0"

# https: the certificate is checked (a self-signed one is refused) unless
# its CA is named in APPLIANCE_CA_BUNDLE.
$A rm tiny >/dev/null 2>&1 || true
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout tls.key -out tls.crt -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 2>/dev/null
cat tls.key tls.crt > tls.pem
python3 "$TOP/tests/cli/repo_server.py" repo tlsport tls.pem &
TLS_SERVER=$!
trap 'kill $SERVER $TLS_SERVER 2>/dev/null; rm -rf "$T_TMP"' EXIT
for i in $(seq 100); do [ -f tlsport ] && break; sleep 0.05; done
TLS_URL="https://127.0.0.1:$(cat tlsport)"
t_check "https with an unknown CA is refused" sh -c "! $A pull '$TLS_URL/ok/tiny' 2>cerr; grep -qi 'certificate' cerr"
t_check "  ... and nothing is cached" [ "$(cached)" = 0 ]
t_run "https with the CA named in APPLIANCE_CA_BUNDLE" env APPLIANCE_CA_BUNDLE="$PWD/tls.crt" $A pull "$TLS_URL/ok/tiny"
t_run "  ... and the result verifies" $A verify --full "$APPLIANCE_CACHE/packages/tiny-2.0.appliance"
t_done
