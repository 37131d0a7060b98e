#!/bin/sh
# svctl-usage-test: svctl's exit codes for help, usage errors (operator and dr commands too)
# and an unusable CA.
# Usage: svctl_usage.sh PATH/TO/svctl
svctl=$1
fails=0
expect() {
    want=$1
    shift
    "$svctl" "$@" >/tmp/svctl-usage.$$.out 2>/tmp/svctl-usage.$$.err
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: svctl $* exited $got, expected $want"
        cat /tmp/svctl-usage.$$.err
        fails=$((fails + 1))
    else
        echo "ok   svctl $* -> $got"
    fi
}
expect 0 --help
grep -q "usage: svctl" /tmp/svctl-usage.$$.out || { echo "FAIL: --help prints no usage"; fails=$((fails + 1)); }
grep -q "7 read only" /tmp/svctl-usage.$$.out || { echo "FAIL: --help: exit 7"; fails=$((fails + 1)); }
grep -q "  dr status  " /tmp/svctl-usage.$$.out || { echo "FAIL: --help: dr"; fails=$((fails + 1)); }
grep -q "  dr promote \[--force\] \[--wait S\]  " /tmp/svctl-usage.$$.out || { echo "FAIL: --help: dr promote"; fails=$((fails + 1)); }
grep -q "  dr demote  " /tmp/svctl-usage.$$.out || { echo "FAIL: --help: dr demote"; fails=$((fails + 1)); }
expect 0 put --help
grep -q "usage: svctl put" /tmp/svctl-usage.$$.out || { echo "FAIL: put --help"; fails=$((fails + 1)); }
for c in get rm ls stat status; do
    expect 0 "$c" --help
done
# Operator commands: help, and every usage error exits 2 before any cluster is needed.
expect 0 node --help
grep -q "usage: svctl node list" /tmp/svctl-usage.$$.out || { echo "FAIL: node --help"; fails=$((fails + 1)); }
grep -q "Ctrl-C only stops the waiting" /tmp/svctl-usage.$$.out || { echo "FAIL: node --help: Ctrl-C"; fails=$((fails + 1)); }
for a in "node list" "node drain" "node remove" "cluster" "cluster set" "cluster show" "sched" "sched log"; do
    # shellcheck disable=SC2086 # "node list" is a command and a subcommand
    expect 0 $a --help
done
expect 0 cluster --help
grep -q "repair-rate BYTES" /tmp/svctl-usage.$$.out || { echo "FAIL: cluster --help"; fails=$((fails + 1)); }
expect 0 sched --help
expect 0 dr --help
grep -q "usage: svctl dr status" /tmp/svctl-usage.$$.out || { echo "FAIL: dr --help"; fails=$((fails + 1)); }
expect 0 dr status --help
grep -q '"last_contact_ms"' /tmp/svctl-usage.$$.out || { echo "FAIL: dr status --help: JSON keys"; fails=$((fails + 1)); }
expect 0 dr promote --help
grep -q "usage: svctl dr status" /tmp/svctl-usage.$$.out || { echo "FAIL: dr promote --help"; fails=$((fails + 1)); }
grep -q '"rpo_ms","open_after_ms"' /tmp/svctl-usage.$$.out || { echo "FAIL: dr promote --help: JSON keys"; fails=$((fails + 1)); }
grep -q "The cut is per shard" /tmp/svctl-usage.$$.out || { echo "FAIL: dr promote --help: per-shard cut"; fails=$((fails + 1)); }
expect 0 dr promote --force -h
expect 0 dr demote --help
grep -q "svctl dr demote" /tmp/svctl-usage.$$.out || { echo "FAIL: dr demote --help"; fails=$((fails + 1)); }
expect 2 node
expect 2 node frob
expect 2 node list extra
expect 2 node drain
expect 2 node drain x
expect 2 node drain 0
expect 2 node drain 3 --timeout 0
expect 2 node drain 3 --timeout
expect 2 node drain 3 --no-wait --timeout 5
expect 2 node drain 3 --bogus
expect 2 node remove
expect 2 node remove 3 4
expect 2 node remove 3 --force=yes
expect 2 cluster
expect 2 cluster frob
expect 2 cluster set
expect 2 cluster set down-after
expect 2 cluster set down-after 0
expect 2 cluster set down-after 86401
expect 2 cluster set down-after 2d
expect 2 cluster set evict-after -5
expect 2 cluster set auto-evict maybe
expect 2 cluster set repair-rate 0
expect 2 cluster set repair-rate 64XB
expect 2 cluster set moves-per-node 0
expect 2 cluster set moves-per-node 65
expect 2 cluster set rebalance maybe
expect 2 cluster set frob 1
grep -q 'unknown setting "frob"' /tmp/svctl-usage.$$.err || { echo "FAIL: cluster set frob: no reason"; fails=$((fails + 1)); }
expect 2 cluster show extra
expect 2 sched
expect 2 sched frob
expect 2 sched log extra
expect 2 dr
expect 2 dr frob
grep -q 'unknown subcommand "frob"' /tmp/svctl-usage.$$.err || { echo "FAIL: dr frob: no reason"; fails=$((fails + 1)); }
expect 2 dr status extra
expect 2 dr status --bogus
expect 2 dr promote extra
expect 2 dr promote --bogus
expect 2 dr promote --force=yes
expect 2 dr promote --wait
expect 2 dr promote --wait 0
expect 2 dr promote --wait -1
expect 2 dr promote --wait x
expect 2 dr promote --wait 86401
grep -q -- "--wait needs a number of seconds" /tmp/svctl-usage.$$.err || { echo "FAIL: dr promote --wait: no reason"; fails=$((fails + 1)); }
expect 2 dr demote extra
expect 2 dr demote --force
# Valid arguments get as far as needing a cluster (exit 2 for the missing --endpoints).
for a in "node list" "node drain 3 --timeout 5" "node remove 3 --force" "cluster show" \
    "cluster set repair-rate 64MiB" "cluster set down-after 5m" "cluster set auto-evict off" "sched log" \
    "dr status" "dr status -o json" "dr promote" "dr promote --force --wait 5" "dr promote --wait=0.5" \
    "dr demote" "dr demote -o json"; do
    # shellcheck disable=SC2086
    expect 2 $a
    grep -q "are required" /tmp/svctl-usage.$$.err || { echo "FAIL: svctl $a: not a missing-endpoints error"; fails=$((fails + 1)); }
done
expect 2 bogus
expect 2
expect 2 put
expect 2 get
expect 2 put a/b --if-version x
expect 2 -o xml status
expect 2 --timeout -3 status
expect 2 ls a --limit 0
expect 1 --endpoints 127.0.0.1:1 --ca /nonexistent stat a/b
if ! grep -q "^svctl: stat a/b: " /tmp/svctl-usage.$$.err; then
    echo "FAIL: no one-line error message for an unusable CA:"
    cat /tmp/svctl-usage.$$.err
    fails=$((fails + 1))
fi
rm -f /tmp/svctl-usage.$$.out /tmp/svctl-usage.$$.err
[ "$fails" -eq 0 ]
