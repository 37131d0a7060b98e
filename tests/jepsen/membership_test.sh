#!/usr/bin/env bash
# tests/jepsen/membership_test.sh RUN BIN WORK SECONDS: one short jepsen/run
# with the membership nemesis and the register workload (ctest
# jepsen-membership-test): it must be valid, and the nemesis must have added
# a node and carried a drain (removed) or a kill (evicted, rebuilt, reset)
# through while the workload ran. Not root: skipped (exit 77).
set -uo pipefail
run=$1 bin=$2 work=$3 secs=$4

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
jepsen_test_begin jepsen-membership-test "$work"
dir=$work/register-membership

refused "membership with another nemesis" "$run" --nemesis membership,kill

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

jepsen_test_end
