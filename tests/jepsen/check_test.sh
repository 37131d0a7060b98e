#!/usr/bin/env bash
# jepsen-check-test: sv-check (and the jepsen/check wrapper) against hand-made
# histories with known verdicts and generated 10,000-operation histories.
# usage: check_test.sh SV_CHECK SV_HISTGEN HISTORIES_DIR JEPSEN_CHECK WORK_DIR
# Hand-made files are named by their expected verdict: valid-*.jsonl (exit 0),
# invalid-*.jsonl (exit 1; invalid-corrupt-*: a "corrupt" error), malformed-L<N>-*.jsonl (exit 2, error on line N).
set -u
if [[ $# -ne 5 ]]; then
    echo "usage: $0 SV_CHECK SV_HISTGEN HISTORIES_DIR JEPSEN_CHECK WORK_DIR" >&2
    exit 2
fi
check=$1 histgen=$2 dir=$3 wrapper=$4 work=$5
mkdir -p "$work"
failures=0
checks=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# run FILE...: runs sv-check, sets rc, out, err.
run() {
    "$check" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}

expect() { # expect NAME CONDITION-DESCRIPTION TEST-RESULT(0 = holds)
    checks=$((checks + 1))
    if [[ $3 -ne 0 ]]; then
        fail "$1: $2 (exit $rc; stdout: $out; stderr: $err)"
    fi
}

has() { [[ $1 == *"$2"* ]]; }

n_valid=0 n_invalid=0 n_malformed=0
for f in "$dir"/*.jsonl; do
    name=$(basename "$f" .jsonl)
    run "$f"
    case $name in
    valid-*)
        n_valid=$((n_valid + 1))
        expect "$name" "exit 0" $([[ $rc -eq 0 ]]; echo $?)
        expect "$name" '"valid": true' $(has "$out" '"valid": true, '; echo $?)
        expect "$name" "no anomalies" $(has "$out" '"anomalies": [],'; echo $?)
        ;;
    invalid-corrupt-*)
        n_invalid=$((n_invalid + 1))
        expect "$name" "exit 1" $([[ $rc -eq 1 ]]; echo $?)
        expect "$name" '"valid": false' $(has "$out" '"valid": false, '; echo $?)
        expect "$name" "a corrupt anomaly naming line 4" \
            $(has "$out" '{"kind": "corrupt", "count": 1, "lines": [4], "error": "corrupt: no healthy'; echo $?)
        ;;
    invalid-set-*)
        n_invalid=$((n_invalid + 1))
        expect "$name" "exit 1" $([[ $rc -eq 1 ]]; echo $?)
        expect "$name" '"valid": false' $(has "$out" '"valid": false, "workload": "set", '; echo $?)
        expect "$name" "a set anomaly" $(has "$out" '"anomalies": [{"kind": "'; echo $?)
        ;;
    invalid-*)
        n_invalid=$((n_invalid + 1))
        expect "$name" "exit 1" $([[ $rc -eq 1 ]]; echo $?)
        expect "$name" '"valid": false' $(has "$out" '"valid": false, "workload": "register", '; echo $?)
        expect "$name" "a nonlinearizable anomaly" \
            $(has "$out" '"kind": "nonlinearizable"'; echo $?)
        ;;
    malformed-L*)
        n_malformed=$((n_malformed + 1))
        line=${name#malformed-L}
        line=${line%%-*}
        expect "$name" "exit 2" $([[ $rc -eq 2 ]]; echo $?)
        expect "$name" "error names line $line" $(has "$err" ": line $line: "; echo $?)
        expect "$name" "no verdict on stdout" $([[ -z $out ]]; echo $?)
        ;;
    *)
        fail "$name: file name does not say the expected verdict"
        ;;
    esac
done
echo "hand-made histories: $n_valid valid, $n_invalid invalid, $n_malformed malformed"
expect "corpus" "at least 15 valid, 15 invalid and 30 malformed files" \
    $([[ $n_valid -ge 15 && $n_invalid -ge 15 && $n_malformed -ge 30 ]]; echo $?)

# Set histories: each anomaly with its elements, and the counts.
run "$dir/valid-set.jsonl"
expect "set valid" "counts" $(has "$out" '"counts": {"invoke": 8, "ok": 5, "fail": 1, "info": 2}, '; echo $?)
expect "set valid" "set counts (one info add recovered)" \
    $(has "$out" '"set": {"attempted": 6, "acknowledged": 3, "final": 4, "lost": 0, "unexpected": 0, "duplicated": 0, "recovered": 1, "failed_visible": 0}, '; echo $?)
run "$dir/invalid-set-lost.jsonl"
expect "set lost" "element 1 lost" $(has "$out" '{"kind": "lost", "count": 1, "elements": [1]}'; echo $?)
expect "set lost" "lost counted" $(has "$out" '"final": 1, "lost": 1, '; echo $?)
run "$dir/invalid-set-lost-after-seen.jsonl"
expect "set lost after seen" "element 1 lost" $(has "$out" '{"kind": "lost", "count": 1, "elements": [1]}'; echo $?)
run "$dir/invalid-set-unexpected.jsonl"
expect "set unexpected" "element 7" $(has "$out" '{"kind": "unexpected", "count": 1, "elements": [7]}'; echo $?)
run "$dir/invalid-set-duplicated.jsonl"
expect "set duplicated" "element 1" $(has "$out" '{"kind": "duplicated", "count": 1, "elements": [1]}'; echo $?)
expect "set duplicated" "not lost" $(! has "$out" '"kind": "lost"'; echo $?)
run "$dir/invalid-set-failed-add-visible.jsonl"
expect "set failed add visible" "element 3" \
    $(has "$out" '{"kind": "failed-add-visible", "count": 1, "elements": [3]}'; echo $?)
run "$dir/invalid-set-no-final-read.jsonl"
expect "set no final read" "anomaly" $(has "$out" '"anomalies": [{"kind": "no-final-read"}]'; echo $?)

# A big set: one final read of 20,000 elements (one 130 kB line), then the
# same with 150 acknowledged adds missing (the list is capped at 100).
big_set() { # big_set N_MISSING
    for i in $(seq 1 20000); do
        echo "{\"process\": $((i % 10)), \"type\": \"invoke\", \"f\": \"add\", \"key\": \"set\", \"value\": $i, \"time\": $((2 * i))}"
        echo "{\"process\": $((i % 10)), \"type\": \"ok\", \"f\": \"add\", \"key\": \"set\", \"value\": $i, \"time\": $((2 * i + 1))}"
    done
    echo '{"process": 0, "type": "invoke", "f": "read", "key": "set", "value": null, "time": 50000}'
    printf '{"process": 0, "type": "ok", "f": "read", "key": "set", "value": [%s], "time": 50001}\n' \
        "$(seq -s ', ' $((1 + $1)) 20000)"
}
big_set 0 >"$work/big-set.jsonl"
run "$work/big-set.jsonl"
expect "big set" "valid, 20,000 in the final read" \
    $([[ $rc -eq 0 ]] && has "$out" '"acknowledged": 20000, "final": 20000, "lost": 0,'; echo $?)
big_set 150 >"$work/big-set-lost.jsonl"
run "$work/big-set-lost.jsonl"
expect "big set lost" "150 lost, 100 listed" \
    $([[ $rc -eq 1 ]] && has "$out" '{"kind": "lost", "count": 150, "elements": [1, 2, 3, ' &&
        has "$out" ', 99, 100], "truncated": true}'; echo $?)

# --out writes the same JSON to a file too.
run --out "$work/results.json" "$dir/invalid-set-lost.jsonl"
expect "--out" "same JSON in the file" \
    $([[ $rc -eq 1 && "$(cat "$work/results.json")" == "$out" ]]; echo $?)
run --out "$work/no-such-dir/results.json" "$dir/valid-set.jsonl"
expect "--out" "unwritable file: exit 2" $([[ $rc -eq 2 ]] && has "$err" "No such file"; echo $?)

# Every failing key is named, and only those.
run "$dir/invalid-two-keys-of-three.jsonl"
expect "two keys" 'key "b" reported' $(has "$out" '{"key": "b", "ops": 2, "kind": "nonlinearizable"}'; echo $?)
expect "two keys" 'key 3 reported' $(has "$out" '{"key": 3, "ops": 1, "kind": "nonlinearizable"}'; echo $?)
expect "two keys" 'key "a" not reported' $(! has "$out" '"key": "a"'; echo $?)
expect "two keys" 'counts' $(has "$out" '"ops": 5, "ok": 5, "fail": 0, "info": 0, "keys": 3,'; echo $?)

# Counting: fail and info completions and a never-completed invocation.
run "$dir/valid-failed-write-never-visible.jsonl"
expect "counts" "ops/ok/fail/info" $(has "$out" '"ops": 5, "ok": 2, "fail": 2, "info": 1, "keys": 1,'; echo $?)
expect "counts" "events by type" $(has "$out" '"counts": {"invoke": 5, "ok": 2, "fail": 2, "info": 1}'; echo $?)
run "$dir/valid-unfinished-write-happened.jsonl"
expect "unfinished" "counted as info" $(has "$out" '"ops": 3, "ok": 2, "fail": 0, "info": 1,'; echo $?)

# Files that cannot be read, a line that is too long, the command line.
run "$work/does-not-exist.jsonl"
expect "missing file" "exit 2 with the reason" $([[ $rc -eq 2 ]] && has "$err" "No such file"; echo $?)
{
    echo '{"process": 0, "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 1}'
    printf '{"process": 0, "type": "ok", "f": "write", "key": "x", "value": 1, "time": 2, "pad": "'
    head -c $((17 << 20)) /dev/zero | tr '\0' a
    echo '"}'
} >"$work/long.jsonl"
run "$work/long.jsonl"
expect "long line" "exit 2 at line 2" $([[ $rc -eq 2 ]] && has "$err" "line 2: longer than"; echo $?)
printf '{"process": 0, "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 1}\n{"process": 0, "type": "ok", "f": "write", "key": "x", "value": 1, "time": 2}' \
    >"$work/no-final-newline.jsonl"
run "$work/no-final-newline.jsonl"
expect "no final newline" "accepted" $([[ $rc -eq 0 ]] && has "$out" '"ok": 1,'; echo $?)
"$check" - <"$dir/invalid-stale-read.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "stdin" "reads - as stdin" $([[ $rc -eq 1 ]]; echo $?)
run --help
expect "--help" "exit 0 with usage" $([[ $rc -eq 0 ]] && has "$out" "usage: sv-check [--out RESULTS] FILE"; echo $?)
run
expect "no argument" "exit 2 with usage" $([[ $rc -eq 2 ]] && has "$err" "usage:"; echo $?)
run --bogus
expect "unknown option" "exit 2" $([[ $rc -eq 2 ]]; echo $?)

# The wrapper finds sv-check through SV_BIN.
bin_dir=$(dirname "$check")
SV_BIN=$bin_dir "$wrapper" "$dir/valid-cas.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "valid file: exit 0" $([[ $rc -eq 0 ]] && has "$out" '"valid": true'; echo $?)
SV_BIN=$bin_dir "$wrapper" "$dir/invalid-lost-write.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "invalid file: exit 1" $([[ $rc -eq 1 ]]; echo $?)
SV_BIN=$bin_dir "$wrapper" "$dir/malformed-L1-bad-f.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "malformed file: exit 2" $([[ $rc -eq 2 ]] && has "$err" "line 1:"; echo $?)
SV_BIN=$work/no-such-dir "$wrapper" "$dir/valid-cas.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "no sv-check: exit 2" $([[ $rc -eq 2 ]] && has "$err" "not found"; echo $?)
"$wrapper" --help >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "--help" $([[ $rc -eq 0 ]] && has "$out" "usage: jepsen/check [--out RESULTS] FILE"; echo $?)
SV_BIN=$bin_dir "$wrapper" --out "$work/wrapper-results.json" "$dir/valid-set.jsonl" >"$work/out" 2>"$work/err"
rc=$? out=$(cat "$work/out") err=$(cat "$work/err")
expect "wrapper" "--out, set history" \
    $([[ $rc -eq 0 ]] && has "$(cat "$work/wrapper-results.json")" '"workload": "set"'; echo $?)

# Generated histories: a correct register under random concurrency (5 keys,
# 10 processes, with fail and info completions), then the same history with
# one read made stale.
for seed in 1 2 3; do
    gen=$work/gen-$seed.jsonl
    stale=$work/gen-$seed-stale.jsonl
    "$histgen" --seed $seed --ops 10000 --keys 5 --processes 10 "$gen" ||
        fail "sv-histgen seed $seed"
    "$histgen" --seed $seed --ops 10000 --keys 5 --processes 10 --stale "$stale" ||
        fail "sv-histgen --stale seed $seed"
    lines=$(wc -l <"$gen")
    expect "generated $seed" "20,000 lines" $([[ $lines -eq 20000 ]]; echo $?)
    expect "generated $seed" "has info and fail completions" \
        $(grep -q '"type": "info"' "$gen" && grep -q '"type": "fail"' "$gen"; echo $?)
    expect "generated $seed" "stale copy differs in one line" \
        $([[ $(diff "$gen" "$stale" | grep -c '^<') -eq 1 ]]; echo $?)

    t0=$(date +%s%N)
    run "$gen"
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "generated history seed $seed (10,000 ops): exit $rc in $ms ms"
    expect "generated $seed" "valid" $([[ $rc -eq 0 ]] && has "$out" '"valid": true'; echo $?)
    expect "generated $seed" "10,000 ops on 5 keys" $(has "$out" '"ops": 10000,' && has "$out" '"keys": 5,'; echo $?)
    expect "generated $seed" "checked in under 10 s" $([[ $ms -lt 10000 ]]; echo $?)

    t0=$(date +%s%N)
    run "$stale"
    ms=$((($(date +%s%N) - t0) / 1000000))
    echo "same history with a stale read, seed $seed: exit $rc in $ms ms"
    expect "stale $seed" "invalid" $([[ $rc -eq 1 ]] && has "$out" '"kind": "nonlinearizable"'; echo $?)
    expect "stale $seed" "checked in under 10 s" $([[ $ms -lt 10000 ]]; echo $?)
done

echo "$checks checks, $failures failure(s)"
[[ $failures -eq 0 ]]
