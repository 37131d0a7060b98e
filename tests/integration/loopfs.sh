# shellcheck shell=bash
# tests/integration/loopfs.sh: shared pieces of the root-only integration
# tests that put each svd's data directory on its own ext4 file system on a
# loop device (test_powercut.sh, test_diskfull_ext4.sh).
#
# Usage, from a test script (bash, set -euo pipefail):
#   source "$(dirname "${BASH_SOURCE[0]}")/loopfs.sh"
#   lfs_require_root_and_loop          # exit 77 (skipped) unless root with usable loop devices
#   lfs_private_mount_ns SCRIPT ARGS...  # re-run SCRIPT in its own mount namespace (see below)
#   lfs_init /tmp/sv-it-NAME-$$        # work directory; installs the cleanup trap
#   lfs_make_image FILE SIZE           # sparse FILE, then mkfs.ext4 -q
#   lfs_mount FILE DIR                 # attach FILE to a new loop device, mount it on DIR
#   lfs_umount DIR                     # unmount DIR, detach its loop device
#   lfs_freeze DIR / lfs_thaw DIR      # fsfreeze a mounted file system (thawed by cleanup too)
#   lfs_track_pid PID / lfs_track_pgid PGID   # killed (SIGKILL) by cleanup
#   lfs_cluster_dir DIR                # svd nodes of this deploy/cluster DIR are killed by cleanup
#
# The cleanup (on every exit: normal, error, INT, TERM) thaws what is frozen,
# kills the tracked processes and the cluster's svd processes by PID (only
# processes whose command line is svd with this cluster's cluster.conf),
# unmounts in reverse order, detaches only the loop devices this script
# attached, and deletes the work directory (kept when $SV_IT_KEEP is set).
# Only this script's own processes, mounts and loop devices are touched.
#
# Why a private mount namespace: a program that makes a new mount namespace
# (`ip netns exec`, `unshare -m`: the Jepsen harness, for one) copies every
# mount that exists at that moment; with / private (no systemd here) our
# unmounts do not reach the copy, which then keeps our file systems and loop
# devices busy until that program ends. Mounted only in our own namespace,
# they are invisible to others, and they go away with our last process.

LFS_WORK=""
LFS_CLUSTER=""
LFS_MOUNTS=()  # mount points, in the order they were mounted
LFS_FROZEN=()  # frozen mount points
LFS_PIDS=()    # processes to SIGKILL on cleanup
LFS_PGIDS=()   # process groups to SIGKILL on cleanup
LFS_CLEANED=0
LFS_KEEP_LOGS=""  # when set, cleanup copies the nodes' logs there

lfs_log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Exit 77 (ctest: skipped) unless we are root and can attach a loop device.
lfs_require_root_and_loop() {
    local why=""
    if [[ $(id -u) != 0 ]]; then
        why="not root"
    elif ! command -v losetup >/dev/null || ! command -v mkfs.ext4 >/dev/null ||
        ! command -v fsfreeze >/dev/null; then
        why="losetup, mkfs.ext4 or fsfreeze missing"
    else
        local probe dev
        probe=$(mktemp /tmp/sv-lfs-probe.XXXXXX)
        truncate -s 16M "$probe"
        if dev=$(losetup --find --show "$probe" 2>/dev/null); then
            losetup -d "$dev" || true
        else
            why="losetup cannot attach a loop device"
        fi
        rm -f "$probe"
    fi
    if [[ -n $why ]]; then
        echo "skipped: needs root and loop devices ($why)"
        exit 77
    fi
}

# lfs_private_mount_ns SCRIPT ARGS...: unless already done, exec SCRIPT again
# in a new mount namespace whose mounts do not propagate anywhere.
lfs_private_mount_ns() {
    [[ -n ${LFS_IN_PRIVATE_NS:-} ]] && return 0
    export LFS_IN_PRIVATE_NS=1
    exec unshare --mount --propagation private -- bash "$@"
}

# lfs_init WORKDIR: create the work directory and install the cleanup trap.
lfs_init() {
    LFS_WORK=$1
    rm -rf "$LFS_WORK"
    mkdir -p "$LFS_WORK"
    trap lfs_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

lfs_cluster_dir() { LFS_CLUSTER=$1; }
lfs_track_pid() { LFS_PIDS+=("$1"); }
lfs_track_pgid() { LFS_PGIDS+=("$1"); }

# lfs_make_image FILE SIZE: a sparse image file holding a fresh ext4.
lfs_make_image() {
    rm -f "$1"
    truncate -s "$2" "$1"
    mkfs.ext4 -q -F "$1"
}

# lfs_mount FILE DIR: attach FILE to a free loop device and mount it on DIR.
lfs_mount() {
    local file=$1 dir=$2 dev
    mkdir -p "$dir"
    dev=$(losetup --find --show "$file")
    if ! mount -t ext4 "$dev" "$dir"; then
        losetup -d "$dev" || true
        echo "lfs_mount: cannot mount $file ($dev) on $dir" >&2
        return 1
    fi
    LFS_MOUNTS+=("$dir")
}

# The loop device mounted on DIR ("" if none).
lfs_dev_of() { findmnt -n -o SOURCE --mountpoint "$1" 2>/dev/null || true; }

# The backing file of loop device DEV ("" when detached).
lfs_backing_file() { cat "/sys/block/${1#/dev/}/loop/backing_file" 2>/dev/null || true; }

# lfs_detach DEV: detach a loop device and wait (up to 10 s) until it no
# longer holds its backing file (the kernel detaches asynchronously; another
# program may attach the freed device to its own file at once).
lfs_detach() {
    local dev=$1 file i
    file=$(lfs_backing_file "$dev")
    losetup -d "$dev" 2>/dev/null || true
    [[ -z $file ]] && return 0
    for ((i = 0; i < 100; i++)); do
        [[ $(lfs_backing_file "$dev") != "$file" ]] && return 0
        sleep 0.1
    done
    echo "lfs_detach: $dev still attached to $file" >&2
    return 1
}

# lfs_umount DIR: unmount DIR (retrying for up to 10 s) and detach its loop device.
lfs_umount() {
    local dir=$1 dev i
    dev=$(lfs_dev_of "$dir")
    if [[ -n $dev ]]; then
        for ((i = 0; i < 100; i++)); do
            umount "$dir" 2>/dev/null && break
            sleep 0.1
        done
        if mountpoint -q "$dir"; then
            echo "lfs_umount: $dir is still mounted" >&2
            return 1
        fi
        [[ $dev == /dev/loop* ]] && lfs_detach "$dev"
    fi
    local keep=() m
    for m in "${LFS_MOUNTS[@]}"; do [[ $m != "$dir" ]] && keep+=("$m"); done
    LFS_MOUNTS=("${keep[@]}")
    return 0
}

lfs_freeze() {
    fsfreeze -f "$1"
    LFS_FROZEN+=("$1")
}

lfs_thaw() {
    fsfreeze -u "$1" 2>/dev/null || true
    local keep=() m
    for m in "${LFS_FROZEN[@]}"; do [[ $m != "$1" ]] && keep+=("$m"); done
    LFS_FROZEN=("${keep[@]}")
}

# lfs_node_pids CLUSTER_DIR: the PIDs of this deployment's running svd processes
# (checked against /proc/PID/cmdline, so a stale PID file names nothing).
lfs_node_pids() {
    local dir=$1 f pid cmd
    for f in "$dir"/node*/svd.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        [[ $pid =~ ^[0-9]+$ ]] || continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
        [[ $cmd == *svd* && $cmd == *"$dir/cluster.conf"* ]] && echo "$pid"
    done
    return 0
}

# lfs_node_pid CLUSTER_DIR N: the PID of node N's running svd, or nothing.
lfs_node_pid() {
    local dir=$1 n=$2 pid cmd
    pid=$(cat "$dir/node$n/svd.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 0
    [[ $cmd == *svd* && $cmd == *"$dir/cluster.conf"* && $cmd == *"--id $n"* ]] && echo "$pid"
    return 0
}

# lfs_kill_nodes CLUSTER_DIR: SIGKILL every svd of the deployment at once and
# wait (up to 10 s) until they are gone. Prints the PIDs killed.
lfs_kill_nodes() {
    local dir=$1 pids i p alive
    pids=$(lfs_node_pids "$dir")
    [[ -z $pids ]] && return 0
    # shellcheck disable=SC2086  # one kill(1) for all PIDs: as close to "at once" as it gets
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive=0
        for p in $pids; do [[ -d /proc/$p ]] && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    echo "$pids"
}

# lfs_kill_tracked: SIGKILL the tracked process groups and processes.
lfs_kill_tracked() {
    local p
    for p in "${LFS_PGIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
    for p in "${LFS_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${LFS_PGIDS[@]}" "${LFS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    LFS_PGIDS=()
    LFS_PIDS=()
}

lfs_cleanup() {
    local rc=$? i m
    ((LFS_CLEANED)) && return
    LFS_CLEANED=1
    set +e
    for m in "${LFS_FROZEN[@]}"; do fsfreeze -u "$m" 2>/dev/null; done
    LFS_FROZEN=()
    lfs_kill_tracked
    [[ -n $LFS_CLUSTER ]] && lfs_kill_nodes "$LFS_CLUSTER" >/dev/null
    if [[ -n $LFS_KEEP_LOGS && -n $LFS_CLUSTER ]]; then
        mkdir -p "$LFS_KEEP_LOGS"
        for m in "$LFS_CLUSTER"/node*; do
            [[ -f $m/svd.log ]] && cp "$m/svd.log" "$LFS_KEEP_LOGS/$(basename "$m").log"
        done
        echo "logs kept in $LFS_KEEP_LOGS" >&2
    fi
    for ((i = ${#LFS_MOUNTS[@]} - 1; i >= 0; i--)); do
        lfs_umount "${LFS_MOUNTS[i]}" || echo "cleanup: could not unmount ${LFS_MOUNTS[i]}" >&2
    done
    # Loop devices still attached to a file under the work directory (a
    # failed mount, an interrupted attach) are ours too.
    if [[ -n $LFS_WORK ]]; then
        local dev back
        while read -r dev back; do
            [[ $back == "$LFS_WORK"/* ]] && lfs_detach "$dev"
        done < <(losetup -n -O NAME,BACK-FILE 2>/dev/null)
        if [[ -n ${SV_IT_KEEP:-} ]]; then
            echo "SV_IT_KEEP: kept $LFS_WORK" >&2
        elif findmnt -n -o TARGET 2>/dev/null | grep -qF "$LFS_WORK/"; then
            echo "cleanup: something is still mounted under $LFS_WORK; not deleting it" >&2
        else
            rm -rf "$LFS_WORK"
        fi
    fi
    exit "$rc"
}

# lfs_wait_leaders SVCTL SHARDS TIMEOUT_S: wait until every shard has a leader
# and every node is up (svctl status). Returns 1 on timeout.
lfs_wait_leaders() {
    local svctl=$1 shards=$2 timeout_s=$3 deadline out n
    deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        if out=$("$svctl" --timeout 5 status 2>/dev/null); then
            n=$(awk '/^SHARD/ {s = 1; next} s && /\/leader/ {n++} END {print n + 0}' <<<"$out")
            if ((n >= shards)) && ! grep -qw down <<<"$out"; then
                return 0
            fi
        fi
        sleep 0.5
    done
    return 1
}
