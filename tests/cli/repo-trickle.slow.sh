# repo-trickle.slow.sh - a server that trickles (a slow-retrieval attack):
# 2 bytes a second, forever, for the index and for a package.  The pull
# must fail within about a minute (1 KiB/s over 60 s, appliances/FORMAT.md
# "Transfers"), naming the cause, with nothing in the cache.  Slow by
# nature: the limit is a minute.
. "$TOP/tests/cli/lib.sh"
A=$APPLIANCE
export APPLIANCE_CACHE=$T_TMP/cache APPLIANCE_TRUST_DIR=$T_TMP/trust \
	APPLIANCE_SYSTEM_TRUST_DIR=$T_TMP/systrust
mkdir -p repo
python3 "$TOP/tests/cli/repo_server.py" repo port &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$T_TMP"' EXIT
for i in $(seq 100); do [ -f port ] && break; sleep 0.05; done
URL="http://127.0.0.1:$(cat port)"

start=$(date +%s)
timeout 200 $A pull "$URL/trickle/tiny" >idx.out 2>&1; rc=$?
took=$(($(date +%s) - start))
t_check "a trickled index fails the pull (exit $rc)" [ "$rc" = 1 ]
t_check "  ... within the minute's limit, not the test's timeout ($took s)" [ "$took" -lt 120 ]
t_check "  ... saying why" grep -qi 'too slow\|speed' idx.out

start=$(date +%s)
timeout 200 $A pull "$URL/trickle/packages/tiny-1.0.appliance" >pkg.out 2>&1; rc=$?
took=$(($(date +%s) - start))
t_check "a trickled package fails the pull (exit $rc)" [ "$rc" = 1 ]
t_check "  ... within the minute's limit ($took s)" [ "$took" -lt 120 ]
t_check "  ... and nothing is cached" [ -z "$(ls "$APPLIANCE_CACHE/packages" 2>/dev/null)" ]
t_done
