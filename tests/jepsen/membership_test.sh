#!/usr/bin/env bash
# tests/jepsen/membership_test.sh RUN BIN WORK SECONDS: one short jepsen/run
# with the membership nemesis and the register workload (ctest
# jepsen-membership-test): it must be valid, and the nemesis must have added
# a node and carried a drain (removed) or a kill (evicted, rebuilt, reset)
# through while the workload ran. Not root: skipped (exit 77).
set -uo pipefail
run=$1 bin=$2 work=$3 secs=$4

if ((EUID != 0)); then
    echo "jepsen-membership-test: SKIPPED: jepsen/run needs root (network namespaces, veth, iptables)"
    exit 77
fi
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
rm -rf "$work"
mkdir -p "$work"
dir=$work/register-membership

"$run" --nemesis membership,kill >/dev/null 2>&1
(($? == 2)) || fail "membership with another nemesis must be refused (exit 2)"

echo "== jepsen/run --workload register --nemesis membership --time $secs --seed 41"
"$run" --bin "$bin" --out "$dir" --workload register --nemesis membership --time "$secs" --seed 41 2>&1 |
    sed 's/^/   /'
rc=${PIPESTATUS[0]}
((rc == 0)) || fail "exit $rc, expected 0 (see $dir)"
grep -q '"valid": *true' "$dir/results.json" || fail "$dir/results.json is not valid"
grep -q '"detail": "add n[0-9]* in zone-' "$dir/nemesis.jsonl" || fail "no node was added"
grep -q -E '"detail": "(n[0-9]+ drained, removed, stopped|n[0-9]+ evicted, its replicas rebuilt)"' \
    "$dir/nemesis.jsonl" || fail "no drain or eviction was carried through (see $dir/nemesis.jsonl)"
grep -q -E '"detail": "n([6-9]|[1-9][0-9]) up"' "$dir/nemesis.jsonl" || fail "no added node came up"

((fails == 0)) || { echo "jepsen-membership-test: $fails failure(s)"; exit 1; }
echo "jepsen-membership-test: OK"
