#!/usr/bin/env bash
# jepsen-report-test: sv-report on small hand-made inputs (verdict, faults, escaping, malformed
# files) and on a generated 30,000-operation history (subsampled, bounded size).
# usage: report_test.sh SV_REPORT SV_CHECK SV_HISTGEN HISTORIES_DIR WORK_DIR
set -u
if [[ $# -ne 5 ]]; then
    echo "usage: $0 SV_REPORT SV_CHECK SV_HISTGEN HISTORIES_DIR WORK_DIR" >&2
    exit 2
fi
report=$1 check=$2 histgen=$3 dir=$4 work=$5
rm -rf "$work"
mkdir -p "$work"
failures=0
checks=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

expect() { # expect NAME DESCRIPTION TEST-RESULT(0 = holds)
    checks=$((checks + 1))
    if [[ $3 -ne 0 ]]; then
        fail "$1: $2 (exit $rc; stderr: $err)"
    fi
}

# run ARGS...: runs sv-report, sets rc, err and html (the report's text, if any).
run() {
    rm -f "$work/report.html"
    "$report" "$@" >"$work/out" 2>"$work/err"
    rc=$?
    err=$(cat "$work/err")
    html=$(cat "$work/report.html" 2>/dev/null)
}

has() { [[ $1 == *"$2"* ]]; }

# A register history over 1.2 s (ns times) with a fail and an info carrying
# client errors, faults (one never stopped) and the run's settings.
cat >"$work/history.jsonl" <<'JSONL'
{"process": 0, "type": "invoke", "f": "write", "key": "k1", "value": 1, "time": 1000000}
{"process": 0, "type": "ok", "f": "write", "key": "k1", "value": 1, "time": 9000000}
{"process": 1, "type": "invoke", "f": "read", "key": "k1", "value": null, "time": 20000000}
{"process": 1, "type": "ok", "f": "read", "key": "k1", "value": 1, "time": 25000000}
{"process": 2, "type": "invoke", "f": "write", "key": "k1", "value": 2, "time": 300000000}
{"process": 2, "type": "fail", "f": "write", "key": "k1", "value": 2, "time": 320000000, "error": "rejected <b>not leader</b>"}
{"process": 0, "type": "invoke", "f": "cas", "key": "k1", "value": [1, 3], "time": 400000000}
{"process": 0, "type": "info", "f": "cas", "key": "k1", "value": [1, 3], "time": 900000000, "error": "timeout"}
{"process": 1, "type": "invoke", "f": "read", "key": "k1", "value": null, "time": 1000000000}
{"process": 1, "type": "ok", "f": "read", "key": "k1", "value": 3, "time": 1100000000}
{"process": 3, "type": "invoke", "f": "read", "key": "k1", "value": null, "time": 1150000000}
JSONL
cat >"$work/nemesis.jsonl" <<'JSONL'
{"time": 350000000, "nemesis": "partition", "event": "start", "detail": "n1 | n2 n3 <script>alert(1)</script>"}
{"time": 800000000, "nemesis": "partition", "event": "stop", "detail": "healed"}
{"time": 1050000000, "nemesis": "kill", "event": "start", "detail": "n2"}
JSONL
cat >"$work/run.json" <<'JSON'
{
  "workload": "register",
  "nemesis": "partition,kill",
  "seed": 42,
  "concurrency": 4,
  "time": "2026-11-23T14:00:00Z <i>"
}
JSON
"$check" --out "$work/results.json" "$work/history.jsonl" >/dev/null 2>&1
rc=$?
err=""
expect "sv-check" "the hand-made history is valid" $([[ $rc -eq 0 ]]; echo $?)

args=(--history "$work/history.jsonl" --results "$work/results.json"
    --nemesis "$work/nemesis.jsonl" --run "$work/run.json" --out "$work/report.html")
run "${args[@]}"
expect "report" "exit 0" $([[ $rc -eq 0 ]]; echo $?)
expect "report" "file written" $([[ -s $work/report.html ]]; echo $?)
expect "report" "a page title" $(has "$html" "<title>ShardVault Jepsen: register run, valid</title>"; echo $?)
expect "report" "three SVG charts" $([[ $(grep -c '<svg xmlns' "$work/report.html") -eq 3 ]]; echo $?)
expect "report" "the verdict banner" $(has "$html" "<div class='banner valid'>VALID</div>"; echo $?)
expect "report" "the nemesis names" $(has "$html" ">partition" && has "$html" ">kill"; echo $?)
expect "report" "the fault detail, escaped" \
    $(has "$html" "n1 | n2 n3 &lt;script&gt;alert(1)&lt;/script&gt;"; echo $?)
expect "report" "no raw <script" $(! grep -qi '<script' "$work/report.html"; echo $?)
expect "report" "client errors, escaped, with counts" \
    $(has "$html" "<td>1</td><td>rejected &lt;b&gt;not leader&lt;/b&gt;</td>"; echo $?)
expect "report" "run.json values, escaped" \
    $(has "$html" "<th>seed</th><td>42</td>" && has "$html" "2026-11-23T14:00:00Z &lt;i&gt;"; echo $?)
expect "report" "the never-stopped fault is drawn to the end" \
    $(has "$html" "kill 1.050 s .. 1.150 s (no stop: to the end of the run)"; echo $?)
expect "report" "event counts" $(has "$html" "6 invoke, 3 ok, 1 fail, 1 info (6 operations, 1 never completed)"; echo $?)
expect "report" "no subsampling note" $(! has "$html" "1 in "; echo $?)

# An invalid run: a red banner and the anomalies.
"$check" --out "$work/results-lost.json" "$dir/invalid-set-lost.jsonl" >/dev/null 2>&1
run --history "$dir/invalid-set-lost.jsonl" --results "$work/results-lost.json" --out "$work/report.html"
expect "invalid" "exit 0" $([[ $rc -eq 0 ]]; echo $?)
expect "invalid" "red banner" $(has "$html" "<div class='banner invalid'>INVALID</div>"; echo $?)
expect "invalid" "the anomaly listed" $(has "$html" "{&quot;kind&quot;: &quot;lost&quot;"; echo $?)
expect "invalid" "set workload" $(has "$html" "set workload"; echo $?)

# Malformed or missing inputs: exit 2 naming the file (and the line).
printf '%s\n%s\n' '{"time": 1, "nemesis": "kill", "event": "start"}' \
    '{"time": 2, "nemesis": "kill", "event": "begin"}' >"$work/bad-nemesis.jsonl"
run --history "$work/history.jsonl" --results "$work/results.json" \
    --nemesis "$work/bad-nemesis.jsonl" --out "$work/report.html"
expect "bad nemesis" "exit 2 naming file and line 2" \
    $([[ $rc -eq 2 ]] && has "$err" "bad-nemesis.jsonl: line 2: \"event\" must be"; echo $?)
printf '{"nemesis": "kill", "event": "start"}\n' >"$work/no-time.jsonl"
run --history "$work/history.jsonl" --results "$work/results.json" \
    --nemesis "$work/no-time.jsonl" --out "$work/report.html"
expect "nemesis without time" "exit 2" $([[ $rc -eq 2 ]] && has "$err" 'line 1: missing "time"'; echo $?)
run --history "$dir/malformed-L3-double-invoke.jsonl" --results "$work/results.json" \
    --out "$work/report.html"
expect "bad history" "exit 2 naming file and line" \
    $([[ $rc -eq 2 ]] && has "$err" "malformed-L3-double-invoke.jsonl: line 3:"; echo $?)
printf '{\n  "seed": 1,\n  "nemesis": partition\n}\n' >"$work/bad-run.json"
run --history "$work/history.jsonl" --results "$work/results.json" --run "$work/bad-run.json" \
    --out "$work/report.html"
expect "bad run.json" "exit 2 naming file and line 3" \
    $([[ $rc -eq 2 ]] && has "$err" "bad-run.json: line 3:"; echo $?)
echo '{"ops": 1}' >"$work/no-valid.json"
run --history "$work/history.jsonl" --results "$work/no-valid.json" --out "$work/report.html"
expect "results without valid" "exit 2" $([[ $rc -eq 2 ]] && has "$err" 'no "valid"'; echo $?)
run --history "$work/missing.jsonl" --results "$work/results.json" --out "$work/report.html"
expect "missing history" "exit 2" $([[ $rc -eq 2 ]] && has "$err" "No such file"; echo $?)
expect "missing history" "no report written" $([[ ! -e $work/report.html ]]; echo $?)
run --help
expect "--help" "exit 0 with usage" $([[ $rc -eq 0 ]] && has "$(cat "$work/out")" "usage: sv-report"; echo $?)
run --history "$work/history.jsonl"
expect "missing options" "exit 2 with usage" $([[ $rc -eq 2 ]] && has "$err" "usage:"; echo $?)

# A big history: 30,000 operations are subsampled and the file stays small.
"$histgen" --seed 7 --ops 30000 --keys 5 --processes 10 "$work/big.jsonl" 2>/dev/null ||
    fail "sv-histgen"
"$check" --out "$work/big-results.json" "$work/big.jsonl" >/dev/null 2>&1
run --history "$work/big.jsonl" --results "$work/big-results.json" --nemesis "$work/nemesis.jsonl" \
    --out "$work/report.html"
size=$(stat -c %s "$work/report.html" 2>/dev/null || echo 0)
echo "30,000-operation report: $size bytes"
expect "big" "exit 0" $([[ $rc -eq 0 ]]; echo $?)
expect "big" "subsampling said on the page" \
    $(has "$html" "30000 operations: the timeline and latency charts show 1 in 2 operations (15000 of them)"; echo $?)
expect "big" "under 6 MB" $([[ $size -gt 0 && $size -lt 6000000 ]]; echo $?)

echo "$checks checks, $failures failure(s)"
[[ $failures -eq 0 ]]
