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
grep -q "Every shard$" /tmp/svctl-usage.$$.out && grep -q "is cut there: each write the primary stamped before it is kept," /tmp/svctl-usage.$$.out || { echo "FAIL: dr promote --help: the consistent cut"; fails=$((fails + 1)); }
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
for sub in failback switchover verify; do
    expect 0 dr $sub --help
    grep -q "svctl dr $sub --peer ENDPOINTS" /tmp/svctl-usage.$$.out || { echo "FAIL: dr $sub --help"; fails=$((fails + 1)); }
    expect 2 dr $sub
    grep -q -- "--peer ENDPOINTS" /tmp/svctl-usage.$$.err || { echo "FAIL: dr $sub: no --peer reason"; fails=$((fails + 1)); }
    expect 2 dr $sub --peer
    expect 2 dr $sub --peer 127.0.0.1:1 extra
    expect 2 dr $sub --peer 127.0.0.1:1 --bogus
done
expect 2 dr failback --peer 127.0.0.1:1 --wait 5
expect 2 dr switchover --peer 127.0.0.1:1 --wait 0
expect 2 dr verify --peer 127.0.0.1:1 --wait x
grep -q -- "--wait needs a number of seconds" /tmp/svctl-usage.$$.err || { echo "FAIL: dr verify --wait: no reason"; fails=$((fails + 1)); }
expect 2 dr diverged
expect 2 dr diverged frob
expect 2 dr diverged get
expect 2 dr diverged get a b
expect 2 dr diverged list extra
expect 0 dr diverged list --help
grep -q "svctl dr diverged get LEDGER-KEY" /tmp/svctl-usage.$$.out || { echo "FAIL: dr diverged --help"; fails=$((fails + 1)); }
# dr drill: help, and every argument error before anything runs.
err() { grep -q -- "$1" /tmp/svctl-usage.$$.err || { echo "FAIL: $2: no \"$1\""; fails=$((fails + 1)); }; }
expect 0 --help
grep -q "  dr drill --primary EPS --standby EPS --outage-cmd CMD --restore-cmd CMD --out DIR" /tmp/svctl-usage.$$.out || { echo "FAIL: --help: dr drill"; fails=$((fails + 1)); }
expect 0 dr --help
grep -q "svctl dr drill --primary EPS" /tmp/svctl-usage.$$.out || { echo "FAIL: dr --help: drill"; fails=$((fails + 1)); }
expect 0 dr drill --help
for w in "usage: svctl dr drill --primary HOST:PORT" "first-write  the first write the standby accepts" \
    "failback     svctl dr failback" "switchback   svctl dr switchover back" "DIR/drill.json" "self-contained" \
    "Exit status: 0 when every built step passed, 1 when a step failed"; do
    grep -qF -- "$w" /tmp/svctl-usage.$$.out || { echo "FAIL: dr drill --help: no \"$w\""; fails=$((fails + 1)); }
done
expect 0 dr drill --primary a:1 -h
d="dr drill --primary a:1 --standby b:1 --out /tmp/svctl-usage.$$.d"
expect 2 dr drill
err "primary and --standby are required" "dr drill"
# shellcheck disable=SC2086 # $d: the drill's other arguments
{
    expect 2 $d
    err "outage-cmd and --restore-cmd are required: the drill cannot take a site down" "dr drill without commands"
    expect 2 $d --outage-cmd true
    expect 2 $d --restore-cmd true
    expect 2 $d --outage-cmd "" --restore-cmd true
    expect 2 dr drill --primary a:1 --standby b:1 --outage-cmd true --restore-cmd true
    err "out DIR is required" "dr drill without --out"
    expect 2 dr drill --standby b:1 --outage-cmd true --restore-cmd true --out x
    for bad in "--load-clients 0" "--load-clients 65" "--load-clients x" "--warmup 0" "--warmup 601" \
        "--object-bytes 0" "--object-bytes 1048577" "--max-lag-ms 0" "--step-timeout 0" \
        "--step-timeout 3601" "--step-timeout" "--bucket Bad_Name" "--bucket -x" "--frob" "extra"; do
        expect 2 $d --outage-cmd true --restore-cmd true $bad
    done
    err "unexpected argument" "dr drill extra"
    expect 2 $d --outage-cmd true --restore-cmd true --load-clients 0
    err "load-clients needs a number in 1..64" "dr drill --load-clients 0"
}
# Valid arguments without a CA: a usage error (the drill opens its own clients: no --endpoints).
# shellcheck disable=SC2086 # $d: the drill's other arguments
SV_CA="" "$svctl" $d --outage-cmd true --restore-cmd true >/tmp/svctl-usage.$$.out 2>/tmp/svctl-usage.$$.err
rc=$?
[ "$rc" -eq 2 ] || { echo "FAIL: dr drill without --ca exited $rc, expected 2"; fails=$((fails + 1)); }
err "ca (or SV_CA) is required" "dr drill without --ca"
# An unusable CA: preflight fails, nothing else runs (not the outage command), and the
# report says so in every form; exit 1.
rm -rf /tmp/svctl-usage.$$.d
# shellcheck disable=SC2086 # $d: the drill's other arguments
expect 1 --ca /nonexistent $d --outage-cmd "touch /tmp/svctl-usage.$$.d/outage-ran" --restore-cmd true
[ ! -e /tmp/svctl-usage.$$.d/outage-ran ] || { echo "FAIL: dr drill ran the outage command after a failed preflight"; fails=$((fails + 1)); }
grep -q "FAILED" /tmp/svctl-usage.$$.out || { echo "FAIL: dr drill: no FAILED on stdout"; fails=$((fails + 1)); }
grep -q "^preflight    failed" /tmp/svctl-usage.$$.d/drill.txt || { echo "FAIL: dr drill: drill.txt"; fails=$((fails + 1)); }
grep -q '"passed":false' /tmp/svctl-usage.$$.d/drill.json || { echo "FAIL: dr drill: drill.json"; fails=$((fails + 1)); }
grep -q '"name":"outage","status":"skipped"' /tmp/svctl-usage.$$.d/drill.json || { echo "FAIL: dr drill: outage not skipped"; fails=$((fails + 1)); }
grep -q '"name":"failback","status":"skipped"' /tmp/svctl-usage.$$.d/drill.json || { echo "FAIL: dr drill: failback not skipped"; fails=$((fails + 1)); }
grep -q "</html>" /tmp/svctl-usage.$$.d/drill.html || { echo "FAIL: dr drill: drill.html"; fails=$((fails + 1)); }
rm -rf /tmp/svctl-usage.$$.d
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
