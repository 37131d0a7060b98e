#!/usr/bin/env bash
# tests/jepsen/site_check_test.sh SV_CHECK HISTORIES_DIR WORK_DIR: sv-check's
# site failover mode (--cut/--promote/--open, jepsen/run --nemesis site; ctest
# jepsen-site-check-test) against hand-made histories in tests/jepsen/site-histories,
# all split at cut 100, promote 200, open 300: valid-* must be accepted (exit
# 0), invalid-* rejected (exit 1); then the lost_after_cut and seen_after_cut
# lists and counts, and the option errors.
set -u
check=$1 dir=$2 work=$3
mkdir -p "$work"
fails=0 checks=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
SITE=(--cut 100 --promote 200 --open 300)

# run ARGS...: sv-check; rc, out, err.
run()
{
    "$check" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out") err=$(cat "$work/err")
}
# expect NAME WHAT: the last command's status ($?) must be 0.
expect()
{
    local ok=$?
    checks=$((checks + 1))
    ((ok == 0)) || fail "$1: $2 (exit $rc; stdout: $out; stderr: $err)"
}
has() { [[ $out == *"$1"* ]]; }

n_valid=0 n_invalid=0
for f in "$dir"/*.jsonl; do
    name=$(basename "$f" .jsonl)
    run "${SITE[@]}" "$f"
    case $name in
    valid-site-*)
        n_valid=$((n_valid + 1))
        [[ $rc -eq 0 ]] && has '"valid": true, ' && has '"anomalies": [],'
        expect "$name" "accepted"
        ;;
    invalid-site-*)
        n_invalid=$((n_invalid + 1))
        [[ $rc -eq 1 ]] && has '"valid": false, '
        expect "$name" "rejected"
        ;;
    *) fail "$name: the file name does not say the expected verdict" ;;
    esac
done
[[ $n_valid -ge 9 && $n_invalid -ge 11 ]]
expect corpus "at least 9 valid and 11 invalid site histories ($n_valid, $n_invalid)"

# Only writes acknowledged after the cut may be missing, and each one missing is listed.
run "${SITE[@]}" "$dir/valid-site-after-cut-write-missing.jsonl"
has '"lost_after_cut": {"count": 1, "writes": [{"line": 3, "f": "write", "key": "x", "value": 2, "acked": 150}]}' &&
    has '"acked_before_cut": 1, "acked_after_cut": 1, "acked_promoted": 0' &&
    [[ $err == *"1 of 1 writes acknowledged after the cut"* ]] &&
    has '"seen_after_cut": {"count": 0, "writes": []}'
expect "register after cut" "the missing write listed, counted, and named on stderr"
run "${SITE[@]}" "$dir/valid-site-after-cut-write-kept.jsonl"
has '"lost_after_cut": {"count": 0, "writes": []}' && [[ -z $err ]] &&
    has '"acked_after_cut": 1,' && has '"seen_after_cut": {"count": 0, "writes": []}'
expect "register after cut kept" "invoked before the cut, acked after it, read after open: nothing missing, nothing seen"
run "${SITE[@]}" "$dir/valid-site-after-cut-cas-missing.jsonl"
has '"lost_after_cut": {"count": 1, "writes": [{"line": 3, "f": "cas", "key": "x", "value": [1, 3], "acked": 130}]}'
expect "cas after cut" "listed with its pair"
run "${SITE[@]}" "$dir/valid-site-old-primary-read-left-out.jsonl"
has '"reads_left_out": 2,' && has '"lost_after_cut": {"count": 1,'
expect "old primary's read" "left out"
run "${SITE[@]}" "$dir/valid-site-set-after-cut-add-missing.jsonl"
has '"lost": 0,' && has '"lost_after_cut": {"count": 1, "writes": [{"line": 3, "f": "add", "key": "set", "value": 2, "acked": 150}]}' &&
    has '"acked_before_cut": 1, "acked_after_cut": 1, "acked_promoted": 1'
expect "set after cut" "the missing add listed, not lost"
run "${SITE[@]}" "$dir/invalid-site-set-before-cut-add-missing.jsonl"
has '{"kind": "lost", "count": 1, "elements": [1]}' && has '"lost_after_cut": {"count": 0,'
expect "set before cut" "element 1 lost"
run "${SITE[@]}" "$dir/invalid-site-set-promoted-add-missing.jsonl"
has '{"kind": "lost", "count": 1, "elements": [3]}'
expect "set promoted" "element 3 lost"
run "${SITE[@]}" "$dir/invalid-site-set-final-read-before-open.jsonl"
has '{"kind": "no-final-read"}'
expect "set final read before open" "no final read"

# Writes invoked between cut and promote went to the old primary and were
# stamped after the cut: the promotion drops them, so a read after open must
# not return them, whatever their outcome.
run "${SITE[@]}" "$dir/invalid-site-after-cut-write-seen.jsonl"
[[ $rc -eq 1 ]] &&
    has '"seen_after_cut": {"count": 1, "writes": [{"line": 3, "f": "write", "key": "x", "value": 2, "invoked": 140, "outcome": "ok", "seen_at": 410}]}' &&
    has '"lost_after_cut": {"count": 0,' && has '"anomalies": [{"kind": "seen-after-cut", "count": 1}]' &&
    [[ $err == *"1 of 1 writes invoked after the cut"*"seen_after_cut"* ]]
expect "register seen after cut" "the acked write read after open: listed, counted, named on stderr"
run "${SITE[@]}" "$dir/invalid-site-after-cut-write-info-seen.jsonl"
has '"seen_after_cut": {"count": 1, "writes": [{"line": 3, "f": "write", "key": "x", "value": 2, "invoked": 140, "outcome": "info", "seen_at": 410}]}'
expect "register info seen after cut" "an indeterminate write is not excused"
run "${SITE[@]}" "$dir/invalid-site-after-cut-cas-seen.jsonl"
has '"seen_after_cut": {"count": 1, "writes": [{"line": 3, "f": "cas", "key": "x", "value": [1, 3], "invoked": 120, "outcome": "ok", "seen_at": 410}]}'
expect "cas seen after cut" "the value it set, read after open"
run "${SITE[@]}" "$dir/valid-site-after-cut-value-also-before.jsonl"
has '"seen_after_cut": {"count": 0,'
expect "register value also written before the cut" "not only the dropped write's: not seen"
run "${SITE[@]}" "$dir/valid-site-promoted-write-seen.jsonl"
has '"seen_after_cut": {"count": 0,' && has '"acked_promoted": 1,'
expect "register invoked after promote" "the promoted site's write"
run "${SITE[@]}" "$dir/valid-site-old-primary-read-left-out.jsonl"
has '"seen_after_cut": {"count": 0,'
expect "old primary's read" "a read before open seeing the dropped write does not count"
run "${SITE[@]}" "$dir/invalid-site-set-after-cut-add-seen.jsonl"
has '"lost": 0,' && has '"seen_after_cut": {"count": 1, "writes": [{"line": 3, "f": "add", "key": "set", "value": 2, "invoked": 140, "outcome": "ok", "seen_at": 410}]}' &&
    has '"anomalies": [{"kind": "seen-after-cut", "count": 1}]'
expect "set seen after cut" "the add in the final read"
run "${SITE[@]}" "$dir/invalid-site-set-after-cut-add-seen-earlier.jsonl"
has '"seen_after_cut": {"count": 1, "writes": [{"line": 3, "f": "add", "key": "set", "value": 2, "invoked": 140, "outcome": "info", "seen_at": 320}]}'
expect "set seen after cut, not in the final read" "a read after open held it"
run "${SITE[@]}" "$dir/valid-site-set-after-cut-add-missing.jsonl"
has '"seen_after_cut": {"count": 0,'
expect "set after cut missing" "not seen"
run "${SITE[@]}" "$dir/valid-site-set-add-acked-after-cut-seen.jsonl"
has '"acked_after_cut": 1,' && has '"seen_after_cut": {"count": 0,'
expect "set add invoked before the cut" "acked after it and read: kept"
run "${SITE[@]}" "$dir/valid-site-set-old-primary-read-holds-after-cut-add.jsonl"
has '"seen_after_cut": {"count": 0,' && has '"lost_after_cut": {"count": 1,'
expect "set old primary's read" "a read before open holding the dropped add does not count"

# Without the split the same histories are invalid: the options are what accepts them.
run "$dir/valid-site-after-cut-write-missing.jsonl"
[[ $rc -eq 1 ]] && ! has '"site"' && ! has 'lost_after_cut' && ! has 'seen_after_cut'
expect "no split" "register: a lost write"
run "$dir/valid-site-set-after-cut-add-missing.jsonl"
[[ $rc -eq 1 ]]
expect "no split" "set: a lost add"

# Option errors: all three or none, in order of time, integers.
run --cut 100 --promote 200 "$dir/valid-site-after-cut-write-kept.jsonl"
[[ $rc -eq 2 ]] && [[ $err == *"go together"* ]]
expect options "two of three: exit 2"
run --cut 300 --promote 200 --open 400 "$dir/valid-site-after-cut-write-kept.jsonl"
[[ $rc -eq 2 ]]
expect options "cut after promote: exit 2"
run --cut x --promote 200 --open 300 "$dir/valid-site-after-cut-write-kept.jsonl"
[[ $rc -eq 2 ]]
expect options "not an integer: exit 2"
run --cut -5 --promote 200 --open 300 "$dir/invalid-site-before-cut-write-missing.jsonl"
[[ $rc -eq 0 ]] && has '"cut": -5,' && has '"lost_after_cut": {"count": 1,'
expect options "a negative cut (before the run began) is a time: the write at 50 is after it"
run --help
has '--cut T --promote T --open T'
expect options "--help names them"

((fails == 0)) || { echo "jepsen-site-check-test: $fails of $checks checks failed"; exit 1; }
echo "jepsen-site-check-test: $checks checks OK ($n_valid valid, $n_invalid invalid histories)"
