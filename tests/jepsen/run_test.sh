#!/usr/bin/env bash
# tests/jepsen/run_test.sh RUN BIN WORK SECONDS: the Jepsen harness end to end
# (ctest jepsen-run-test). As root: register under partitions, register under
# kills and set under pauses must be found valid; the same register run with
# stale reads under partitions must be found NOT linearizable (the checker has
# teeth); a harness killed mid-run (its fault loop orphaned) is cleaned up by
# `jepsen/run cleanup` (also the loop devices and mounts of the power
# nemesis's disks) and its fault loop ends by itself.
# Not root: skipped (exit 77) with the reason printed.
set -uo pipefail
run=$1 bin=$2 work=$3 secs=$4

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
jepsen_test_begin jepsen-run-test "$work"

# expect CODE NAME ARGS...: one run; its exit code must be CODE.
expect()
{
    local want=$1 name=$2 rc
    shift 2
    echo "== $name: jepsen/run $*"
    "$run" --bin "$bin" --out "$work/$name" "$@" 2>&1 | sed "s/^/   [$name] /"
    rc=${PIPESTATUS[0]}
    if ((rc != want)); then
        fail "$name: exit $rc, expected $want (see $work/$name)"
        return 1
    fi
    echo "== $name: exit $rc as expected"
}

# check_results DIR VALID: results.json says "valid": VALID, a report with a chart, faults injected.
check_results()
{
    local dir=$1 valid=$2
    grep -q "\"valid\": *$valid" "$dir/results.json" || fail "$dir/results.json is not \"valid\": $valid"
    [[ -s $dir/report.html ]] && grep -q '<svg' "$dir/report.html" || fail "$dir/report.html missing or without a chart"
    [[ -s $dir/nemesis.jsonl ]] || fail "$dir/nemesis.jsonl: no fault was injected"
}

# Usage errors and the non-root message need no cluster.
refused "an unknown nemesis" "$run" --nemesis bogus
"$run" --help | grep -q 'power' || fail "--help does not name the power nemesis"
for bad in 100 0 x; do
    refused "--disk-mib $bad" "$run" --nemesis power --disk-mib "$bad"
done
refused "sv-jepsen-godown without a mount point" "$bin/sv-jepsen-godown"
"$bin/sv-jepsen-godown" "$work/no-such-dir" >/dev/null 2>&1
(($? == 1)) || fail "sv-jepsen-godown of a missing directory must exit 1"
# Never the file system a directory merely sits on (an unmounted disk's mount point).
out=$("$bin/sv-jepsen-godown" "$work" 2>&1)
(($? == 1)) && grep -q 'not a mount point' <<<"$out" ||
    fail "sv-jepsen-godown of a directory that is no mount point must refuse: '$out'"
mkdir -p "$work/not-a-run/logs" && echo keep >"$work/not-a-run/logs/mine"
"$run" --bin "$bin" --out "$work/not-a-run" >/dev/null 2>&1
(($? == 2)) && [[ -s $work/not-a-run/logs/mine ]] || fail "--out with foreign files must exit 2 and delete nothing"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$run" --bin "$bin" 2>&1)
rc=$?
((rc == 2)) && grep -q "needs root" <<<"$out" || fail "not root: exit $rc, message '$out'"

expect 0 register-partition --workload register --nemesis partition --time "$secs" --seed 11 &&
    check_results "$work/register-partition" true &&
    { grep -q '"f": *"cas"' "$work/register-partition/history.jsonl" || fail "no cas in the register history"; }
expect 0 register-kill --workload register --nemesis kill --time "$secs" --seed 12 &&
    check_results "$work/register-kill" true
expect 0 set-pause --workload set --nemesis pause --time "$secs" --seed 13 --concurrency 8 &&
    check_results "$work/set-pause" true

# Teeth: stale reads are served by any replica, so under partitions (and even
# without: followers apply after the leader) a read misses an acknowledged
# write. Each seed must be caught.
for seed in 21 22; do
    expect 1 "stale-$seed" --workload register --nemesis partition --read-consistency stale \
        --time $((secs / 2)) --seed "$seed" &&
        check_results "$work/stale-$seed" false
done

# A harness killed mid-run leaves nodes, namespaces and (power) loop devices
# and mounts; cleanup removes them.
echo "== crash: jepsen/run killed with SIGKILL mid-run, then jepsen/run cleanup"
# our_loops: loop devices over this run's disk images; our_mounts: mounts in it.
our_loops() { losetup -nO NAME,BACK-FILE 2>/dev/null | grep -F " $work/crash/disks/"; }
our_mounts() { findmnt -rno TARGET 2>/dev/null | grep -F "$work/crash"; }
"$run" --bin "$bin" --out "$work/crash" --nemesis pause,power --time 60 --seed 31 \
    >"$work/crash.log" 2>&1 &
runner=$!
for _ in $(seq 120); do
    [[ -s $work/crash/run.json ]] && break
    sleep 0.5
done
[[ -s $work/crash/run.json ]] || fail "crash: the run did not start (see $work/crash.log)"
sleep 3
kill -KILL "$runner" 2>/dev/null # the harness alone: its nodes and worker live on
wait "$runner" 2>/dev/null
ip netns list | grep -q '^svj-' || fail "crash: no namespace left to clean up (the test proves nothing)"
pgrep -f -- "--config $work/crash/cluster/cluster.conf" >/dev/null ||
    fail "crash: no svd left to clean up (the test proves nothing)"
[[ -n $(our_loops) && -n $(our_mounts) ]] ||
    fail "crash: no loop device or mount left to clean up (the test proves nothing)"
"$run" cleanup || fail "cleanup exited non-zero"
if ip netns list | grep -q '^svj-'; then
    fail "namespaces remain after cleanup: $(ip netns list | tr '\n' ' ')"
fi
if pgrep -f -- "--config $work/crash/cluster/cluster.conf" >/dev/null; then
    fail "svd processes remain after cleanup"
fi
[[ -z $(our_loops) ]] || fail "loop devices remain after cleanup: $(our_loops | tr '\n' ' ')"
[[ -z $(our_mounts) ]] || fail "mounts remain after cleanup: $(our_mounts | tr '\n' ' ')"
[[ -s $work/crash/disks/svj-n1.img ]] || fail "cleanup deleted the run's disk images (it deletes nothing)"
# The orphaned fault loop notices the harness is gone after its current
# sleep (at most 10 s) and ends without touching anything.
for _ in $(seq 30); do
    pgrep -f -- "--out $work/crash " >/dev/null || break
    sleep 0.5
done
pgrep -f -- "--out $work/crash " >/dev/null && fail "harness processes outlive the killed harness"

jepsen_test_end
