#!/usr/bin/env bash
# tests/jepsen/worker_test.sh: sv-jepsen-worker against a real 3-node cluster
# (ports 7651..7653): register and big histories pass sv-check with ok reads
# and writes, the final set read holds every acknowledged add, history lines
# have the harness's field order and times that never go back, SIGTERM stops
# a run cleanly, bad arguments exit 2.
# usage: worker_test.sh DEPLOY_CLUSTER BIN_DIR SV_CHECK WORK_DIR
set -uo pipefail
cluster=${1:?usage: worker_test.sh DEPLOY_CLUSTER BIN_DIR SV_CHECK WORK_DIR}
bin=${2:?usage: worker_test.sh DEPLOY_CLUSTER BIN_DIR SV_CHECK WORK_DIR}
check=${3:?usage: worker_test.sh DEPLOY_CLUSTER BIN_DIR SV_CHECK WORK_DIR}
work=${4:?usage: worker_test.sh DEPLOY_CLUSTER BIN_DIR SV_CHECK WORK_DIR}
worker=$bin/sv-jepsen-worker

dir=$(mktemp -d /tmp/sv-jepsen-worker-test.XXXXXX) || exit 1
cleanup() {
    "$cluster" down --purge --dir "$dir" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

fails=0
checks=0
fail() {
    echo "FAIL: $*" >&2
    fails=$((fails + 1))
}
ok() { # ok DESCRIPTION COMMAND...: the command must succeed
    local what=$1
    shift
    checks=$((checks + 1))
    "$@" || fail "$what"
}
count() { # count PATTERN FILE: lines matching (grep -E), 0 when none
    grep -cE -- "$1" "$2" || true
}
positive() { # positive DESCRIPTION N
    checks=$((checks + 1))
    [[ $2 -gt 0 ]] || fail "$1 (got $2)"
}

rm -rf "$work"
mkdir -p "$work" || exit 1

checks=$((checks + 1))
if ! "$worker" --help >"$work/help.txt" 2>/dev/null || ! grep -q '^usage: sv-jepsen-worker' "$work/help.txt"; then
    fail "--help: exit 0 and usage on stdout"
fi
for bad in "--workload nope" "--workload register" "--workload set --endpoints a:1 --ca x --out y --rate -1" \
    "--workload big --endpoints a:1 --ca x --out y --bucket Bad_Name" \
    "--workload register --endpoints a:1 --ca x --out y --frob 1"; do
    checks=$((checks + 1))
    # shellcheck disable=SC2086 # the words are the arguments
    "$worker" $bad >/dev/null 2>&1
    rc=$?
    [[ $rc == 2 ]] || fail "'$bad' exited $rc, expected 2"
done

"$cluster" up --bin "$bin" --dir "$dir" --nodes 3 --base-port 7650 --shards 4 >"$work/cluster-up.log" 2>&1 ||
    {
        cat "$work/cluster-up.log" >&2
        echo "FAIL: deploy/cluster up"
        exit 1
    }
eval "$("$cluster" env --dir "$dir")"
common=(--endpoints "$SV_ENDPOINTS" --ca "$SV_CA")

checks=$((checks + 1))
"$worker" --workload register "${common[@]}" --out /nonexistent-dir/h.jsonl --time 1 \
    >/dev/null 2>&1
[[ $? == 2 ]] || fail "an out file that cannot be created exits 2"

# run NAME WORKLOAD SECONDS [OPTION...]: the ops phase then the final phase
# into $work/NAME.jsonl, with one t0 and the process base the ops phase printed
# (left in $next_process).
next_process=0
run() {
    local name=$1 workload=$2 seconds=$3
    shift 3
    local out=$work/$name.jsonl t0 next
    t0=$(date +%s%N)
    checks=$((checks + 1))
    next=$("$worker" --workload "$workload" "${common[@]}" --out "$out" --time "$seconds" \
        --t0 "$t0" --seed 42 --bucket "$name" "$@" 2>>"$work/$name.log") ||
        fail "$name: the ops phase exited non-zero"
    checks=$((checks + 1))
    [[ $next =~ ^next-process\ [0-9]+$ ]] || fail "$name: ops phase printed '$next'"
    next_process=${next#next-process }
    checks=$((checks + 1))
    "$worker" --workload "$workload" "${common[@]}" --out "$out" --phase final --t0 "$t0" \
        --process-base "$next_process" --bucket "$name" "$@" 2>>"$work/$name.log" ||
        fail "$name: the final phase exited non-zero"
    cat "$work/$name.log" >&2
}

# Every line: the harness's fields in order, and times that never go back.
lines_well_formed() {
    local f=$1 key='"[a-z]+/?[0-9]*"'
    local re='^\{"process": [0-9]+, "type": "(invoke|ok|fail|info)", "f": "(read|write|cas|add)", '
    re+="\"key\": $key, \"value\": .*, \"time\": [0-9]+(, \"error\": \"([^\"\\\\]|\\\\.)*\")?\\}\$"
    local bad
    bad=$(grep -cvE -- "$re" "$f")
    [[ $bad == 0 ]] || {
        echo "$f: $bad lines out of format, e.g.:" >&2
        grep -vE -- "$re" "$f" | head -3 >&2
        return 1
    }
    awk '{ match($0, /"time": [0-9]+/); t = substr($0, RSTART + 8, RLENGTH - 8) + 0;
           if (t < last) { print FILENAME ": line " NR ": time goes back"; exit 1 } last = t }' "$f"
}

run register register 8
h=$work/register.jsonl
ok "register: lines well formed" lines_well_formed "$h"
ok "register: sv-check says valid" "$check" "$h"
positive "register: ok writes" "$(count '"type": "ok", "f": "write"' "$h")"
positive "register: ok reads of a value" "$(count '"type": "ok", "f": "read", "key": "r[0-9]+", "value": [0-9]' "$h")"
positive "register: ok cas" "$(count '"type": "ok", "f": "cas"' "$h")"
# final_reads FILE: ok reads by the final phase's processes
final_reads() {
    awk -v base="$next_process" '/"type": "ok", "f": "read"/ {
        match($0, /"process": [0-9]+/); if (substr($0, RSTART + 11, RLENGTH - 11) + 0 >= base) n++ }
        END { print n + 0 }' "$1"
}
checks=$((checks + 1))
[[ $(final_reads "$h") == 5 ]] || fail "register: 5 final reads, got $(final_reads "$h")"

run big big 8 --big-bytes 2097152 --rate 10 --concurrency 4
h=$work/big.jsonl
ok "big: lines well formed" lines_well_formed "$h"
ok "big: sv-check says valid" "$check" "$h"
positive "big: ok writes" "$(count '"type": "ok", "f": "write", "key": "b[0-9]", "value": "[0-9a-f]{64}"' "$h")"
positive "big: ok reads of a value" "$(count '"type": "ok", "f": "read", "key": "b[0-9]", "value": "[0-9a-f]{64}"' "$h")"
checks=$((checks + 1))
[[ $(final_reads "$h") == 3 ]] || fail "big: 3 final reads, got $(final_reads "$h")"

run set set 5
h=$work/set.jsonl
ok "set: lines well formed" lines_well_formed "$h"
positive "set: ok adds" "$(count '"type": "ok", "f": "add"' "$h")"
# The last ok read is the final phase's: it must hold every acknowledged add.
checks=$((checks + 1))
awk '/"type": "ok", "f": "add"/ { match($0, /"value": [0-9]+/); added[substr($0, RSTART + 9, RLENGTH - 9)] = 1; n++ }
     /"type": "ok", "f": "read"/ { last = $0 }
     END {
         if (last == "") { print "no ok set read"; exit 1 }
         match(last, /"value": \[[^]]*\]/); s = substr(last, RSTART + 10, RLENGTH - 11)
         k = split(s, a, /, */); for (i = 1; i <= k; i++) seen[a[i]] = 1
         lost = 0; for (v in added) if (!(v in seen)) { lost++; if (lost < 4) print "lost add " v }
         printf "set: %d acknowledged adds, final read of %d elements, %d lost\n", n, k, lost
         exit lost > 0 }' "$h" >&2 || fail "set: the final read lacks an acknowledged add"

# SIGTERM: no new op, the run ends soon with exit 0 and a history still valid.
h=$work/sigterm.jsonl
"$worker" --workload register "${common[@]}" --out "$h" --time 120 --bucket sigterm \
    >/dev/null 2>"$work/sigterm.log" &
pid=$!
sleep 2
start=$(date +%s)
kill -TERM "$pid"
wait "$pid"
rc=$?
took=$(($(date +%s) - start))
checks=$((checks + 1))
[[ $rc == 0 && $took -le 10 ]] || fail "SIGTERM: exit $rc after ${took}s, expected 0 within 10s"
ok "SIGTERM: lines well formed" lines_well_formed "$h"
ok "SIGTERM: sv-check says valid" "$check" "$h"

echo "jepsen-worker-test: $checks checks, $fails failed" >&2
[[ $fails == 0 ]]
