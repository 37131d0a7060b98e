#!/usr/bin/env bash
# tests/jepsen/site_test.sh RUN BIN WORK SECONDS: one short jepsen/run with the
# site nemesis (ctest jepsen-site-test): register, seed 2 (the primary site cut
# off by iptables, then the standby promoted, then the old primary unblocked).
# It must be valid, within 60 s of wall time in all (setup included), with a
# promotion, a cut and the fence check refused READ_ONLY; when writes
# acknowledged after the cut are missing, the same history with the cut moved
# to the fault must be invalid; site with another nemesis and a --time too
# short must be refused. Not root: skipped (exit 77).
set -uo pipefail
run=$1 bin=$2 work=$3 secs=$4

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
jepsen_test_begin jepsen-site-test "$work"
dir=$work/register-site

refused "site with another nemesis" "$run" --nemesis site,kill
refused "site with --time 10" "$run" --nemesis site --time 10
"$run" --help | grep -q 'site (alone)' || fail "--help does not describe the site nemesis"

echo "== jepsen/run --workload register --nemesis site --time $secs --seed 2"
start=$SECONDS
"$run" --bin "$bin" --out "$dir" --workload register --nemesis site --time "$secs" --seed 2 2>&1 |
    sed 's/^/   /'
rc=${PIPESTATUS[0]} took=$((SECONDS - start))
echo "== exit $rc after $took s"
((rc == 0)) || fail "exit $rc, expected 0 (see $dir)"
((took <= 60)) || fail "took $took s, more than 60 s"
grep -q '"valid": *true' "$dir/results.json" || fail "$dir/results.json is not valid"
grep -q '"lost_after_cut": {"count": [0-9]' "$dir/results.json" || fail "results.json has no lost_after_cut"
grep -q '"acked_promoted": [1-9]' "$dir/results.json" || fail "no write acknowledged by the promoted site"
grep -q '"nemesis": "site", "event": "start", "detail": "primary site cut off' "$dir/nemesis.jsonl" ||
    fail "seed 2 must cut the primary site off (see $dir/nemesis.jsonl)"
grep -q '"nemesis": "site-promote", "event": "stop", "detail": "promoted' "$dir/nemesis.jsonl" ||
    fail "no promotion (see $dir/nemesis.jsonl)"
grep -q '"fence": "refused"' "$dir/site.json" || fail "the fence check did not see READ_ONLY (see $dir/site.json)"
jq -e '.ledger == "ok"' "$dir/ledger-check.json" >/dev/null 2>&1 ||
    fail "the failback's divergence ledger does not hold every write lost after the cut (see $dir/ledger-check.json)"
cut=$(jq '.cut_ns' "$dir/site.json") fault=$(jq '.fault_ns' "$dir/site.json")
[[ $cut =~ ^[0-9]+$ && $fault =~ ^[0-9]+$ ]] && ((cut <= fault)) ||
    fail "the cut ($cut ns) must be known and not after the fault ($fault ns)"

# Teeth: the writes the old primary acknowledged after the cut and the
# promoted site lacks are missing from the history for real; with the cut
# moved to the fault (as if the standby had everything before the fault), the
# same history must be found invalid.
lost=$(jq '.lost_after_cut.count' "$dir/results.json")
if [[ $lost =~ ^[1-9][0-9]*$ ]]; then
    "$bin/sv-check" --cut "$fault" --promote "$(jq '.promote_ns' "$dir/site.json")" \
        --open "$(jq '.open_ns' "$dir/site.json")" "$dir/history.jsonl" >"$work/moved.json" 2>/dev/null
    (($? == 1)) || fail "$lost writes lost after the cut, but with the cut at the fault the history is not invalid"
    echo "== $lost writes acknowledged after the cut are missing; with the cut at the fault: $(jq -c '.anomalies' "$work/moved.json")"
else
    echo "== no write acknowledged after the cut is missing (lost_after_cut: ${lost:-none}): no teeth check this time"
fi

jepsen_test_end "$took s"
