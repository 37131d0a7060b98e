#!/usr/bin/env bash
# Integration (root only): power cuts. A 3-node cluster (3 zones), each node's
# data directory on its own ext4 file system on a loop device. Writers put
# small (1 KiB) and chunked (2.5 MB) objects and delete their own earlier
# keys through svctl, logging each operation's intent before the command and
# its acknowledgement after it succeeded; sv-pc-filler (pc_filler.c) adds
# small puts under long keys in another bucket so that the state machines'
# LevelDB flushes table files (*.ldb) every few seconds.
# At a moment chosen from the seed (a random time, or just after a new .ldb
# appears in some node's data/meta), every svd is SIGKILLed at once and the
# "host disk" holding the nodes' image files is frozen: the copies made then
# hold exactly what had reached the loop devices, not what was still in the
# page cache of the nodes' file systems, as after a power failure. The
# copies are mounted (ext4 replays its journal), the cluster restarts on
# them, and every key is checked: it must read back as its last
# acknowledged state (SHA-256 compared; a deleted key must be absent), or as
# the state of an operation that was in flight or failed after it.
#
# usage: test_powercut.sh BIN_DIR
#   SEED=N      reproduce a run's schedule (cut modes, times, operations); printed at start
#   CYCLES=N    power cuts (default 2)
#   SV_IT_KEEP=1  keep the work directory (/tmp/sv-it-powercut-PID)
# Exit: 0 nothing acknowledged was lost, 1 a loss or a broken run, 77 skipped
# (needs root and loop devices).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=loopfs.sh
source "$HERE/loopfs.sh"

BASE_PORT=17800 # nodes on 127.0.0.1:17801..17803 (other tests: 171xx..177xx, it-diskfull-ext4 179xx)
NODES=3
SHARDS=8
WRITERS=4
BUCKET=pc
SMALL=1024
BIG=2621440 # 2.5 MB: three chunks of at most 1 MiB
NODE_IMG=3G  # sparse; 2.5 MB objects add up over cycles
HOST_IMG=12G # sparse; holds the three node images
RAM_SIZE=16g # the tmpfs holding the two host images (only what is written uses memory)
LDB_WAIT_S=40 # longest wait for a new .ldb before cutting anyway
FILLER_THREADS=${FILLER_THREADS:-8}

# ---------------------------------------------------------------------------
# Writer (run as `bash test_powercut.sh --writer ...` in its own session, so
# that the cut kills it and its svctl with one kill of the process group).
# Log lines: "I op key state" before the command, then "A op key state" once
# it succeeded or "F op key state rc" once it failed; state is the SHA-256 of
# the content put, or "deleted".
writer_main() {
    local bin=$1 log=$2 seed=$3 prefix=$4 tmp=$5
    local live=() i op key state size r n idx rc end
    mkdir -p "$tmp"
    RANDOM=$seed
    end=$((SECONDS + 600))
    for ((i = 0; i < 100000 && SECONDS < end; i++)); do
        r=$((RANDOM % 100))
        n=${#live[@]}
        idx=-1
        if ((r < 20 && n > 0)); then
            op=del idx=$((RANDOM % n)) size=0
        elif ((r < 35 && n > 0)); then
            op=over idx=$((RANDOM % n)) size=$SMALL
        elif ((r < 50)); then
            op=big size=$BIG
        else
            op=small size=$SMALL
        fi
        if ((idx >= 0)); then key=${live[idx]}; else key=$prefix-$i; fi
        if [[ $op == del ]]; then
            state=deleted
        else
            head -c "$size" /dev/urandom >"$tmp/obj"
            state=$(sha256sum <"$tmp/obj")
            state=${state%% *}
        fi
        printf 'I %s %s %s\n' "$op" "$key" "$state" >>"$log"
        rc=0
        if [[ $op == del ]]; then
            "$bin/svctl" --timeout 10 rm "$BUCKET/$key" >/dev/null 2>>"$tmp/err" || rc=$?
        else
            "$bin/svctl" --timeout 10 put "$BUCKET/$key" "$tmp/obj" >/dev/null 2>>"$tmp/err" || rc=$?
        fi
        if ((rc == 0)); then
            printf 'A %s %s %s\n' "$op" "$key" "$state" >>"$log"
            case $op in
            small | big) live+=("$key") ;;
            del) unset 'live[idx]' && live=("${live[@]}") ;;
            esac
        else
            # The outcome is unknown: the key is left alone from now on.
            printf 'F %s %s %s %s\n' "$op" "$key" "$state" "$rc" >>"$log"
            if ((idx >= 0)); then unset 'live[idx]' && live=("${live[@]}"); fi
        fi
    done
}

if [[ ${1:-} == --writer ]]; then
    shift
    writer_main "$@"
    exit 0
fi

# ---------------------------------------------------------------------------
usage() { echo "usage: test_powercut.sh BIN_DIR   (env: SEED, CYCLES, SV_IT_KEEP)" >&2; }

cluster() { "$ROOT/deploy/cluster" "$@" --dir "$CDIR"; }

# sleep that a signal interrupts at once (bash runs traps only between commands).
nap() {
    sleep "$1" &
    wait $!
}

# Every ldb file now in the nodes' data/meta directories, one per line.
meta_ldbs() {
    local f
    for f in "$CDIR"/node*/data/meta/*.ldb; do [[ -e $f ]] && echo "$f"; done
    return 0
}

# wait_new_ldb BEFORE_FILE TIMEOUT_S: poll every 20 ms until an ldb file not
# listed in BEFORE_FILE exists; prints it. Returns 1 on timeout.
wait_new_ldb() {
    local before=$1 timeout_s=$2 f deadline
    declare -A seen=()
    while read -r f; do seen[$f]=1; done <"$before"
    deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        for f in "$CDIR"/node*/data/meta/*.ldb; do
            if [[ -e $f && -z ${seen[$f]:-} ]]; then
                echo "$f"
                return 0
            fi
        done
        sleep 0.02
    done
    return 1
}

start_cluster() {
    if ! SV_CLUSTER_TIMEOUT_S=90 cluster up --bin "$BIN" >>"$WORK/cluster.log" 2>&1; then
        lfs_log "deploy/cluster up failed; see below"
        tail -20 "$WORK/cluster.log" >&2
        return 1
    fi
    if ! lfs_wait_leaders "$BIN/svctl" "$SHARDS" 90; then
        lfs_log "no leader for every shard within 90 s"
        "$BIN/svctl" --timeout 5 status >&2 || true
        return 1
    fi
}

# Put every node's data directory on its own ext4 image in host file system $1.
move_nodes_onto_images() {
    local host=$1 n d
    for ((n = 1; n <= NODES; n++)); do
        d=$CDIR/node$n
        lfs_make_image "$host/node$n.img" "$NODE_IMG"
        mv "$d/data" "$d/data.orig"
        lfs_mount "$host/node$n.img" "$d/data"
        chmod 0700 "$d/data"
        cp -a "$d/data.orig/." "$d/data/"
        rm -rf "$d/data.orig"
    done
}

# Start the writers and the filler for cycle $1.
start_load() {
    local c=$1 w wseed
    for ((w = 1; w <= WRITERS; w++)); do
        wseed=$(((SEED * 31 + c * 1000 + w) % 32768))
        setsid bash "$HERE/test_powercut.sh" --writer "$BIN" "$WORK/log/c$c-w$w" "$wseed" \
            "c$c-w$w" "$WORK/tmp/w$w" </dev/null &
        lfs_track_pgid $!
    done
    # The filler: small puts under 1000-byte keys (bucket "fill"), so that the
    # state machines' LevelDB flushes a table file every few seconds.
    "$BIN/sv-pc-filler" --threads "$FILLER_THREADS" --seconds 600 >>"$WORK/filler.log" 2>&1 </dev/null &
    lfs_track_pid $!
}

# The cut: SIGKILL every svd at once, freeze the host file system holding
# their images (from here on nothing reaches the "disks"), stop the load,
# copy the images to the other host file system, thaw, unmount the originals
# and mount the copies in their place.
power_cut() {
    local pids=$1 n
    # shellcheck disable=SC2086
    kill -KILL $pids
    lfs_freeze "$WORK/host$CUR"
    lfs_kill_tracked
    for ((n = 1; n <= NODES; n++)); do
        cp --sparse=always "$WORK/host$CUR/node$n.img" "$WORK/host$NEXT/node$n.img" &
    done
    wait
    lfs_thaw "$WORK/host$CUR"
    local p i
    for p in $pids; do
        for ((i = 0; i < 100; i++)); do
            [[ -d /proc/$p ]] || break
            sleep 0.1
        done
    done
    for ((n = 1; n <= NODES; n++)); do lfs_umount "$CDIR/node$n/data"; done
    rm -f "$WORK/host$CUR"/node*.img
    for ((n = 1; n <= NODES; n++)); do lfs_mount "$WORK/host$NEXT/node$n.img" "$CDIR/node$n/data"; done
    local t=$CUR
    CUR=$NEXT
    NEXT=$t
}

# get_states KEYS_FILE OUT_FILE: for each key, "key sha" (svctl get) or
# "key error:RC" after three failed tries; "deleted" when not found.
get_states() {
    local keys=$1 out=$2 k rc try s tmpf
    tmpf=$(mktemp "$WORK/tmp/get.XXXXXX")
    while read -r k; do
        for ((try = 0; try < 3; try++)); do
            rc=0
            "$BIN/svctl" --timeout 20 get "$BUCKET/$k" "$tmpf" >/dev/null 2>>"$WORK/get.err" || rc=$?
            ((rc == 0 || rc == 3)) && break
            sleep 1
        done
        if ((rc == 0)); then
            s=$(sha256sum <"$tmpf")
            echo "$k ${s%% *}"
        elif ((rc == 3)); then
            echo "$k deleted"
        else
            echo "$k error:$rc"
        fi
    done <"$keys" >"$out"
    rm -f "$tmpf"
}

# verify C: check every key ever written against the ledger (the settled
# states of earlier cycles, then this cycle's writer logs). Sets LOST,
# CHECKED, ACKED and INDOUBT (keys with an operation in flight or failed).
verify() {
    local c=$1 part
    local v=$WORK/verify-c$c
    mkdir -p "$v"
    # key base cand1 cand2 ...: base is the last acknowledged (or settled) state,
    # "deleted" for a key never acknowledged; the others are states of
    # operations after it that were in flight or failed.
    cat "$WORK/settled" "$WORK"/log/c"$c"-w* 2>/dev/null | awk '
        $1 == "S" { base[$2] = $3; pend[$2] = ""; next }
        $1 == "I" { if (!($3 in base)) base[$3] = "deleted"; pend[$3] = pend[$3] " " $4; next }
        $1 == "A" { base[$3] = $4; pend[$3] = ""; next }
        END { for (k in base) print k, base[k] pend[k] }' | sort >"$v/expect"
    ACKED=$(cat "$WORK"/log/c"$c"-w* 2>/dev/null | grep -c '^A ' || true)
    CHECKED=$(wc -l <"$v/expect")
    INDOUBT=$(awk 'NF > 2' "$v/expect" | wc -l)
    # Present keys: one linearizable listing; then a get of each present key.
    local try rc=1
    for ((try = 0; try < 5 && rc != 0; try++)); do
        rc=0
        "$BIN/svctl" --timeout 30 ls "$BUCKET" >"$v/ls" 2>>"$WORK/get.err" || { rc=$?; sleep 2; }
    done
    if ((rc != 0)); then
        lfs_log "svctl ls failed (exit $rc)"
        LOST=-1
        return
    fi
    awk '{print $NF}' "$v/ls" | sort >"$v/present"
    split -n r/4 "$v/present" "$v/part."
    for part in "$v"/part.*; do get_states "$part" "$part.out" & done
    wait
    cat "$v"/part.*.out 2>/dev/null | sort >"$v/observed"
    # A key not listed is "deleted" (absent). Compare with the acceptable states.
    awk -v obsfile="$v/observed" -v settled="$v/settled" '
        BEGIN { while ((getline line < obsfile) > 0) { split(line, a, " "); obs[a[1]] = a[2] } }
        {
            o = ($1 in obs) ? obs[$1] : "deleted"
            ok = 0
            for (i = 2; i <= NF; i++) if ($i == o) ok = 1
            if (!ok) {
                if ($2 == "deleted") what = "acknowledged delete undone"
                else if (o == "deleted") what = "acknowledged write lost"
                else what = "content differs"
                others = ""
                for (i = 3; i <= NF; i++) others = others " " $i
                printf "LOST %s: %s: last acknowledged %s, read %s, in flight or failed after it:%s\n", $1, what, $2, o, (others == "" ? " none" : others) > "/dev/stderr"
                lost++
            }
            print "S", $1, o > settled
        }
        END { print lost + 0 }' "$v/expect" >"$v/lost"
    LOST=$(cat "$v/lost")
    cp "$v/settled" "$WORK/settled"
}

main() {
    [[ $# -eq 1 && -d $1 ]] || {
        usage
        exit 2
    }
    BIN=$(cd "$1" && pwd)
    lfs_require_root_and_loop
    lfs_private_mount_ns "$HERE/test_powercut.sh" "$@"
    local prog
    for prog in svd svctl sv-pc-filler; do
        [[ -x $BIN/$prog ]] || {
            echo "FAIL: $BIN/$prog is missing (build the svd, svctl and sv-pc-filler targets)"
            exit 1
        }
    done
    SEED=${SEED:-$(((RANDOM << 15 | RANDOM) % 1000000000))}
    local cycles=${CYCLES:-2}
    echo "seed $SEED, $cycles cycles (SEED=$SEED CYCLES=$cycles reproduces the schedule)"
    RANDOM=$SEED
    WORK=/tmp/sv-it-powercut-$$
    CDIR=$WORK/cluster
    lfs_init "$WORK"
    lfs_cluster_dir "$CDIR"
    mkdir -p "$WORK/log" "$WORK/tmp"
    : >"$WORK/settled"
    local t0=$SECONDS

    # Two "host disks", ext4 file systems on images in a tmpfs (fast, and
    # unlike tmpfs they can be frozen): the nodes' images live on one; a cut
    # freezes it and copies them onto the other.
    mkdir -p "$WORK/ram"
    mount -t tmpfs -o size="$RAM_SIZE",mode=0700 tmpfs "$WORK/ram"
    LFS_MOUNTS+=("$WORK/ram")
    lfs_make_image "$WORK/ram/hostA.img" "$HOST_IMG"
    lfs_make_image "$WORK/ram/hostB.img" "$HOST_IMG"
    lfs_mount "$WORK/ram/hostA.img" "$WORK/hostA"
    lfs_mount "$WORK/ram/hostB.img" "$WORK/hostB"
    CUR=A NEXT=B

    cluster up --bin "$BIN" --nodes "$NODES" --zones 3 --base-port "$BASE_PORT" \
        --shards "$SHARDS" >>"$WORK/cluster.log" 2>&1 || {
        tail -20 "$WORK/cluster.log" >&2
        exit 1
    }
    cluster down >>"$WORK/cluster.log" 2>&1
    move_nodes_onto_images "$WORK/host$CUR"
    eval "$(cluster env)"
    export SV_ENDPOINTS SV_CA
    start_cluster || exit 1

    local c failed=0 total_lost=0 mode wait_s delay_ms pids ldb tc
    for ((c = 1; c <= cycles; c++)); do
        tc=$SECONDS
        # Schedule from the seed: 2 of 3 cuts aim just after a new .ldb in data/meta.
        if ((RANDOM % 3 == 0)); then mode=random; else mode=ldb; fi
        wait_s=$((3 + RANDOM % 15))
        delay_ms=$((RANDOM % 200))
        pids=$(lfs_node_pids "$CDIR")
        [[ $(wc -w <<<"$pids") -eq $NODES ]] || {
            lfs_log "cycle $c: not every node runs"
            exit 1
        }
        meta_ldbs >"$WORK/ldb-before"
        start_load "$c"
        local what
        if [[ $mode == random ]]; then
            nap "$wait_s"
            what="at ${wait_s} s"
        else
            nap $((2 + wait_s / 3))
            if ldb=$(wait_new_ldb "$WORK/ldb-before" "$LDB_WAIT_S"); then
                sleep "$(printf '0.%03d' "$delay_ms")"
                what="${delay_ms} ms after ${ldb#"$CDIR"/} appeared"
            else
                what="after no new .ldb within $LDB_WAIT_S s"
            fi
        fi
        lfs_log "cycle $c: power cut ($mode) $what"
        power_cut "$pids"
        lfs_log "cycle $c: images copied; restarting on the copies"
        start_cluster || {
            failed=1
            break
        }
        verify "$c"
        if ((LOST != 0)); then failed=1; fi
        ((LOST > 0)) && total_lost=$((total_lost + LOST))
        local nfail
        nfail=$(cat "$WORK"/log/c"$c"-w* | grep -c '^F ' || true)
        if ((nfail > 0)); then
            lfs_log "cycle $c: $nfail writer operations failed before the cut; the last messages:"
            tail -q -n 1 "$WORK"/tmp/w*/err >&2 || true
        fi
        echo "cycle $c: seed $SEED, cut $mode $what, $ACKED acknowledged ops, $CHECKED keys checked ($INDOUBT in doubt: in flight at the cut or failed), $nfail failed ops, lost $LOST ($((SECONDS - tc)) s)"
        ((LOST < 0)) && break
    done
    cluster down >>"$WORK/cluster.log" 2>&1 || true
    echo "powercut: seed $SEED, $((c > cycles ? cycles : c)) cycles, $total_lost lost, $((SECONDS - t0)) s"
    if ((failed)); then
        # shellcheck disable=SC2034  # read by lfs_cleanup
        LFS_KEEP_LOGS=/tmp/sv-it-powercut-$$-logs
        echo "FAIL (SEED=$SEED CYCLES=$cycles to replay the schedule)"
        exit 1
    fi
    echo "PASS"
}

main "$@"
