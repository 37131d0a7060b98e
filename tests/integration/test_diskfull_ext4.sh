#!/usr/bin/env bash
# Integration (root only): disk full on real ext4. A 3-node cluster (3 zones),
# each node's data directory on its own small ext4 file system on a loop
# device, so that all replicas fill at the same rate. Six writers (three of
# 1 KiB objects, three of 2.5 MB chunked objects) put new keys through svctl
# until their writes are refused with "no space". Then: every svd must still
# run (none died of ENOSPC), every acknowledged object must read back
# byte-equal (SHA-256), and after deleting objects, writes must succeed again
# within a bounded wait (space returns through segment compaction, every
# 30 s, and snapshots that drop Raft payload files: node/README.md, "Space").
#
# usage: test_diskfull_ext4.sh BIN_DIR
#   DISK_MB=N     size of each node's file system (default 512)
#   SV_IT_KEEP=1  keep the work directory (/tmp/sv-it-diskfull-ext4-PID)
# Exit: 0 pass, 1 fail, 77 skipped (needs root and loop devices).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=loopfs.sh
source "$HERE/loopfs.sh"

BASE_PORT=17900 # nodes on 127.0.0.1:17901..17903 (it-powercut: 178xx)
NODES=3
SHARDS=8
BUCKET=full
SMALL=1024
BIG=2621440
DISK_MB=${DISK_MB:-512}
FILL_LIMIT_S=240 # longest time for the writers to fill the disks
STRAGGLER_S=45   # writers still going this long after the first "no space" are stopped
RECOVER_S=90     # longest wait for writes to succeed after the deletes

# ---------------------------------------------------------------------------
# Writer W (run as `bash test_diskfull_ext4.sh --writer ...`, in its own
# session): new keys wW-I of SIZE bytes until a put is refused with "no
# space" or STOP exists. Log lines: "A key sha" (acknowledged), "N key
# message" (refused: no space), "F key rc message" (another failure).
writer_main() {
    local bin=$1 log=$2 w=$3 size=$4 stop=$5 tmp=$6 i rc sha msg end
    mkdir -p "$tmp"
    end=$((SECONDS + FILL_LIMIT_S + 60))
    for ((i = 0; i < 1000000 && SECONDS < end; i++)); do
        [[ -e $stop ]] && break
        head -c "$size" /dev/urandom >"$tmp/obj"
        sha=$(sha256sum <"$tmp/obj")
        sha=${sha%% *}
        rc=0
        "$bin/svctl" --timeout 20 put "$BUCKET/w$w-$i" "$tmp/obj" >/dev/null 2>"$tmp/err" || rc=$?
        if ((rc == 0)); then
            printf 'A w%s-%s %s\n' "$w" "$i" "$sha" >>"$log"
            continue
        fi
        msg=$(head -c 300 "$tmp/err" | tr '\n' ' ')
        if [[ $msg == *"no space"* ]]; then
            printf 'N w%s-%s %s\n' "$w" "$i" "$msg" >>"$log"
            break
        fi
        printf 'F w%s-%s %s %s\n' "$w" "$i" "$rc" "$msg" >>"$log"
        sleep 0.2
    done
}

if [[ ${1:-} == --writer ]]; then
    shift
    writer_main "$@"
    exit 0
fi

# ---------------------------------------------------------------------------
usage() { echo "usage: test_diskfull_ext4.sh BIN_DIR   (env: DISK_MB, SV_IT_KEEP)" >&2; }

FAILS=0
fail() {
    echo "FAIL: $*"
    FAILS=$((FAILS + 1))
}

cluster() { "$ROOT/deploy/cluster" "$@" --dir "$CDIR"; }

# Each node's file system: used and available MiB.
disk_usage() {
    local n
    for ((n = 1; n <= NODES; n++)); do
        df -BM --output=used,avail "$CDIR/node$n/data" | awk -v n="$n" 'NR == 2 {printf "node%s: %s used, %s free; ", n, $1, $2}'
    done
    echo
}

# Every node still runs; for one that does not, its last error lines.
check_nodes_alive() {
    local when=$1 n
    for ((n = 1; n <= NODES; n++)); do
        if [[ -z $(lfs_node_pid "$CDIR" "$n") ]]; then
            fail "$when: node $n is not running; its log says:"
            grep -E 'ERROR|fatal' "$CDIR/node$n/svd.log" | tail -5 | sed 's/^/    /'
        fi
    done
}

# check_reads LIST NAME: every "key sha" of LIST reads back with that SHA-256;
# "key deleted" must be absent. Four readers in parallel.
check_reads() {
    local list=$1 name=$2 d=$WORK/reads-$2 part bad
    mkdir -p "$d"
    split -n r/4 "$list" "$d/part."
    for part in "$d"/part.*; do
        (
            tmpf=$(mktemp "$WORK/tmp/get.XXXXXX")
            while read -r k want; do
                got=deleted
                for ((try = 0; try < 3; try++)); do
                    rc=0
                    "$BIN/svctl" --timeout 30 get "$BUCKET/$k" "$tmpf" >/dev/null 2>>"$WORK/get.err" || rc=$?
                    ((rc == 0 || rc == 3)) && break
                    sleep 1
                done
                if ((rc == 0)); then
                    got=$(sha256sum <"$tmpf")
                    got=${got%% *}
                elif ((rc != 3)); then
                    got=error:$rc
                fi
                [[ $got == "$want" ]] || echo "$k: expected $want, read $got"
            done <"$part" >"$part.bad"
            rm -f "$tmpf"
        ) &
    done
    wait
    cat "$d"/part.*.bad >"$d/bad"
    bad=$(wc -l <"$d/bad")
    echo "reads ($name): $(wc -l <"$list") objects checked, $bad wrong"
    if ((bad > 0)); then
        head -10 "$d/bad"
        fail "reads ($name): $bad objects did not read back as acknowledged"
    fi
}

main() {
    [[ $# -eq 1 && -d $1 ]] || {
        usage
        exit 2
    }
    BIN=$(cd "$1" && pwd)
    lfs_require_root_and_loop
    lfs_private_mount_ns "$HERE/test_diskfull_ext4.sh" "$@"
    WORK=/tmp/sv-it-diskfull-ext4-$$
    CDIR=$WORK/cluster
    lfs_init "$WORK"
    lfs_cluster_dir "$CDIR"
    mkdir -p "$WORK/log" "$WORK/tmp" "$WORK/ram"
    local t0=$SECONDS n d w

    cluster up --bin "$BIN" --nodes "$NODES" --zones 3 --base-port "$BASE_PORT" \
        --shards "$SHARDS" >>"$WORK/cluster.log" 2>&1 || {
        tail -20 "$WORK/cluster.log"
        exit 1
    }
    cluster down >>"$WORK/cluster.log" 2>&1
    # The images live in a tmpfs (fast; the ext4 inside is what fills up).
    mount -t tmpfs -o size=$((NODES * DISK_MB + 256))m,mode=0700 tmpfs "$WORK/ram"
    LFS_MOUNTS+=("$WORK/ram")
    for ((n = 1; n <= NODES; n++)); do
        d=$CDIR/node$n
        lfs_make_image "$WORK/ram/node$n.img" "${DISK_MB}M"
        mv "$d/data" "$d/data.orig"
        lfs_mount "$WORK/ram/node$n.img" "$d/data"
        chmod 0700 "$d/data"
        cp -a "$d/data.orig/." "$d/data/"
        rm -rf "$d/data.orig"
    done
    SV_CLUSTER_TIMEOUT_S=90 cluster up --bin "$BIN" >>"$WORK/cluster.log" 2>&1 || {
        tail -20 "$WORK/cluster.log"
        exit 1
    }
    eval "$(cluster env)"
    export SV_ENDPOINTS SV_CA
    lfs_wait_leaders "$BIN/svctl" "$SHARDS" 90 || {
        echo "FAIL: no leader for every shard"
        exit 1
    }
    echo "each node's data on a ${DISK_MB} MiB ext4: $(disk_usage)"

    # Fill.
    local tf=$SECONDS first_ns="" stop=$WORK/stop size
    for ((w = 1; w <= 6; w++)); do
        if ((w <= 3)); then size=$SMALL; else size=$BIG; fi
        setsid bash "$HERE/test_diskfull_ext4.sh" --writer "$BIN" "$WORK/log/w$w" "$w" "$size" \
            "$stop" "$WORK/tmp/w$w" </dev/null &
        lfs_track_pgid $!
    done
    local running
    while :; do
        sleep 1
        running=0
        for ((w = 1; w <= 6; w++)); do
            grep -q '^N ' "$WORK/log/w$w" 2>/dev/null || running=$((running + 1))
        done
        if [[ -z $first_ns ]] && grep -q '^N ' "$WORK"/log/w* 2>/dev/null; then
            first_ns=$SECONDS
            echo "first \"no space\" after $((SECONDS - tf)) s: $(disk_usage)"
        fi
        ((running == 0)) && break
        if [[ -n $first_ns ]] && ((SECONDS - first_ns > STRAGGLER_S)); then
            echo "$running writers were not refused within ${STRAGGLER_S} s of the first \"no space\"; stopping them"
            break
        fi
        if ((SECONDS - tf > FILL_LIMIT_S)); then
            echo "writers still running after ${FILL_LIMIT_S} s; stopping them"
            break
        fi
        # A writer that ended without "no space" (node gone, time limit) counts as done.
        local p alive=0
        for p in "${LFS_PGIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
    done
    touch "$stop"
    sleep 2
    lfs_kill_tracked
    local fill_s=$((SECONDS - tf))
    cat "$WORK"/log/w* 2>/dev/null | awk '$1 == "A" {print $2, $3}' | sort >"$WORK/acked"
    local small_n big_n nospace_n other_n
    small_n=$(cat "$WORK"/log/w[123] 2>/dev/null | grep -c '^A ' || true)
    big_n=$(cat "$WORK"/log/w[456] 2>/dev/null | grep -c '^A ' || true)
    nospace_n=$(cat "$WORK"/log/w* 2>/dev/null | grep -c '^N ' || true)
    other_n=$(cat "$WORK"/log/w* 2>/dev/null | grep -c '^F ' || true)
    echo "fill: ${fill_s} s; acknowledged $small_n x 1 KiB and $big_n x 2.5 MB ($((big_n * BIG / 1048576)) MiB);" \
        "$nospace_n writers refused with \"no space\", $other_n other failures"
    echo "at full: $(disk_usage)"
    if ((nospace_n == 0)); then
        fail "no write was refused with \"no space\""
    else
        echo "refusal: $(grep -h '^N ' "$WORK"/log/w* | head -1 | cut -d' ' -f3-)"
        grep -h '^N ' "$WORK"/log/w* | grep -q 'disk full' || fail "the \"no space\" message does not say \"disk full\""
    fi
    if ((other_n > 0)); then
        echo "other failures (first 5):"
        grep -h '^F ' "$WORK"/log/w* | head -5 | sed 's/^/    /'
    fi
    check_nodes_alive "after the fill"

    # Everything acknowledged reads back.
    check_reads "$WORK/acked" full

    # Delete the big objects of writers 4 and 5; writes must work again.
    local td del_n=0 k
    td=$SECONDS
    grep -E '^w[45]-' "$WORK/acked" | cut -d' ' -f1 >"$WORK/to-delete" || true
    while read -r k; do
        if "$BIN/svctl" --timeout 30 rm "$BUCKET/$k" >/dev/null 2>>"$WORK/rm.err"; then
            del_n=$((del_n + 1))
        else
            fail "delete of $k refused: $(tail -1 "$WORK/rm.err")"
        fi
    done <"$WORK/to-delete"
    echo "deleted $del_n objects ($((del_n * BIG / 1048576)) MiB) in $((SECONDS - td)) s: $(disk_usage)"
    head -c "$BIG" /dev/urandom >"$WORK/tmp/after-big"
    head -c "$SMALL" /dev/urandom >"$WORK/tmp/after-small"
    local tr=$SECONDS ok=0 tries=0 last=""
    while ((SECONDS - tr < RECOVER_S)); do
        tries=$((tries + 1))
        if "$BIN/svctl" --timeout 20 put "$BUCKET/after-big" "$WORK/tmp/after-big" >/dev/null 2>"$WORK/tmp/after.err" &&
            "$BIN/svctl" --timeout 20 put "$BUCKET/after-small" "$WORK/tmp/after-small" >/dev/null 2>"$WORK/tmp/after.err"; then
            ok=1
            break
        fi
        last=$(head -1 "$WORK/tmp/after.err")
        sleep 3
    done
    if ((ok)); then
        echo "writes succeed again $((SECONDS - tr)) s after the deletes ($tries tries): $(disk_usage)"
        printf 'after-big %s\nafter-small %s\n' "$(sha256sum <"$WORK/tmp/after-big" | cut -c1-64)" \
            "$(sha256sum <"$WORK/tmp/after-small" | cut -c1-64)" >>"$WORK/acked"
    else
        fail "writes still refused ${RECOVER_S} s after deleting $del_n objects: $last"
    fi

    # The rest still reads back; the deleted objects are gone.
    {
        grep -vE '^w[45]-' "$WORK/acked" || true
        sed 's/$/ deleted/' "$WORK/to-delete"
    } | sort >"$WORK/expect-final"
    check_reads "$WORK/expect-final" final
    check_nodes_alive "at the end"
    cluster down >>"$WORK/cluster.log" 2>&1 || true
    echo "diskfull-ext4: $((SECONDS - t0)) s, $FAILS failures"
    if ((FAILS > 0)); then
        # shellcheck disable=SC2034  # read by lfs_cleanup
        LFS_KEEP_LOGS=/tmp/sv-it-diskfull-ext4-$$-logs
        echo FAIL
        exit 1
    fi
    echo PASS
}

main "$@"
