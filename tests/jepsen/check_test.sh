#!/usr/bin/env bash
# jepsen-check-test: sv-check (and the jepsen/check wrapper) against hand-made
# histories with known verdicts and generated 10,000-operation histories.
# usage: check_test.sh SV_CHECK SV_HISTGEN HISTORIES_DIR JEPSEN_CHECK WORK_DIR
# Hand-made files are named by their expected verdict: valid-*.jsonl (exit 0),
# invalid-*.jsonl (exit 1), malformed-L<N>-*.jsonl (exit 2, error on line N).
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
    invalid-*)
        n_invalid=$((n_invalid + 1))
        expect "$name" "exit 1" $([[ $rc -eq 1 ]]; echo $?)
        expect "$name" '"valid": false' $(has "$out" '"valid": false, '; echo $?)
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
expect "corpus" "at least 10 valid, 10 invalid and 20 malformed files" \
    $([[ $n_valid -ge 10 && $n_invalid -ge 10 && $n_malformed -ge 20 ]]; echo $?)

# Every failing key is named, and only those.
run "$dir/invalid-two-keys-of-three.jsonl"
expect "two keys" 'key "b" reported' $(has "$out" '{"key": "b", "ops": 2, "kind": "nonlinearizable"}'; echo $?)
expect "two keys" 'key 3 reported' $(has "$out" '{"key": 3, "ops": 1, "kind": "nonlinearizable"}'; echo $?)
expect "two keys" 'key "a" not reported' $(! has "$out" '"key": "a"'; echo $?)
expect "two keys" 'counts' $(has "$out" '"ops": 5, "ok": 5, "fail": 0, "info": 0, "keys": 3,'; echo $?)

# Counting: fail and info completions and a never-completed invocation.
run "$dir/valid-failed-write-never-visible.jsonl"
expect "counts" "ops/ok/fail/info" $(has "$out" '"ops": 5, "ok": 2, "fail": 2, "info": 1, "keys": 1,'; echo $?)
run "$dir/valid-unfinished-write-happened.jsonl"
expect "unfinished" "counted as info" $(has "$out" '"ops": 3, "ok": 2, "fail": 0, "info": 1,'; echo $?)

# Files that cannot be read, a line that is too long, the command line.
run "$work/does-not-exist.jsonl"
expect "missing file" "exit 2 with the reason" $([[ $rc -eq 2 ]] && has "$err" "No such file"; echo $?)
{
    echo '{"process": 0, "type": "invoke", "f": "write", "key": "x", "value": 1, "time": 1}'
    printf '{"process": 0, "type": "ok", "f": "write", "key": "x", "value": 1, "time": 2, "pad": "'
    head -c 70000 /dev/zero | tr '\0' a
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
expect "--help" "exit 0 with usage" $([[ $rc -eq 0 ]] && has "$out" "usage: sv-check FILE"; echo $?)
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
expect "wrapper" "--help" $([[ $rc -eq 0 ]] && has "$out" "usage: jepsen/check FILE"; echo $?)

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
