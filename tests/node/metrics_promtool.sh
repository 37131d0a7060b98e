#!/usr/bin/env bash
# tests/node/metrics_promtool.sh: `promtool check metrics` (Debian package
# prometheus, installed by deploy/lib/deps.sh) on the exposition metrics-expo
# prints, which holds every kind of series with escaped label values. Fails
# when promtool is missing, when it reports anything (parse errors or lint
# problems), or when it accepts a deliberately broken copy (so that a
# promtool that checks nothing cannot pass the test).
#
# usage: metrics_promtool.sh PATH-TO-metrics-expo
set -euo pipefail
expo=${1:?usage: metrics_promtool.sh PATH-TO-metrics-expo}

if ! command -v promtool >/dev/null 2>&1; then
    echo "FAIL: promtool not found: install the Debian package prometheus (deploy/lib/deps.sh does)"
    exit 1
fi

tmp=$(mktemp -d /tmp/sv-metrics-promtool.XXXXXX)
trap 'rm -rf -- "$tmp"' EXIT
failures=0

"$expo" >"$tmp/good.prom" || { echo "FAIL: metrics-expo failed"; exit 1; }

# Sanity: the exposition holds what it is meant to (else promtool would be
# checking something smaller than claimed).
for want in '^# TYPE sv_requests_total counter$' '^# TYPE sv_raft_term gauge$' \
    '^# TYPE sv_request_duration_seconds histogram$' '^sv_build_info\{version=".*\\".*\\n.*"\} 1$' \
    'le="\+Inf"' '_sum\{' '_count ' '\\\\' '^sv_segment_bytes\{what="nan"\} NaN$'; do
    if ! grep -qE -- "$want" "$tmp/good.prom"; then
        echo "FAIL: the exposition has no line matching $want"
        failures=$((failures + 1))
    fi
done

rc=0
promtool check metrics <"$tmp/good.prom" >"$tmp/good.out" 2>&1 || rc=$?
if ((rc != 0)) || [[ -s $tmp/good.out ]]; then
    echo "FAIL: promtool check metrics: exit $rc:"
    cat "$tmp/good.out"
    failures=$((failures + 1))
fi

# Broken copies: an unescaped quote in a label value, a counter without
# _total, a family shown twice. promtool must refuse each.
sed 's/type=\"get\",result=\"not \\\"found/type="get",result="not "found/' "$tmp/good.prom" >"$tmp/bad1.prom"
sed 's/sv_process_restarts_total/sv_process_restarts/g' "$tmp/good.prom" >"$tmp/bad2.prom"
printf '# HELP sv_requests_total Again.\n# TYPE sv_requests_total counter\nsv_requests_total 1\n' |
    cat "$tmp/good.prom" - >"$tmp/bad3.prom"
for bad in bad1 bad2 bad3; do
    if cmp -s "$tmp/good.prom" "$tmp/$bad.prom"; then
        echo "FAIL: $bad: the broken copy is not broken (the sed found nothing)"
        failures=$((failures + 1))
    elif promtool check metrics <"$tmp/$bad.prom" >"$tmp/$bad.out" 2>&1; then
        echo "FAIL: promtool accepted $bad:"
        cat "$tmp/$bad.out"
        failures=$((failures + 1))
    fi
done

lines=$(wc -l <"$tmp/good.prom")
if ((failures)); then
    echo "metrics-promtool: $failures failed"
    exit 1
fi
echo "metrics-promtool: promtool accepts the exposition ($lines lines) and refuses 3 broken copies"
