#!/usr/bin/env bash
# tests/deploy/test_cluster_cli.sh: deploy/cluster's command line, certificates,
# keys, config and process management, against stand-in svd/svctl scripts.
#
# usage: test_cluster_cli.sh [BIN_DIR]
# BIN_DIR (the build's bin/) is accepted for ctest but not used: the test needs
# no real svd or svctl. It uses a temporary DIR and high ports, and kills only
# processes it started (every svd stand-in runs from its own temporary bin/).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cluster=$repo/deploy/cluster
unset SV_CLUSTER_DIR SV_CLUSTER_TIMEOUT_S SV_CLUSTER_STOP_TIMEOUT_S SV_CLUSTER_NO_PORT_WAIT

tmp=$(mktemp -d /tmp/sv-cluster-test.XXXXXX)
bin=$tmp/bin
other_pid=""

# Kill every stand-in svd still running (only processes whose command line
# names our temporary bin/svd) and the unrelated process the test started.
cleanup()
{
    local f pid
    for f in "$tmp"/*/node*/svd.pid "$tmp"/*/*/node*/svd.pid; do
        [[ -f $f ]] || continue
        pid=$(<"$f")
        if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$bin/svd"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    [[ -n $other_pid ]] && kill -KILL "$other_pid" 2>/dev/null
    rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failures=0
checks=0
out=$tmp/out
err=$tmp/err

pass() { checks=$((checks + 1)); }
fail()
{
    checks=$((checks + 1))
    failures=$((failures + 1))
    echo "FAIL: $*"
    echo "  stdout: $(head -c 2000 "$out" 2>/dev/null)"
    echo "  stderr: $(head -c 2000 "$err" 2>/dev/null)"
}

# expect RC DESC -- CMD...: run CMD (stdout to $out, stderr to $err), check its exit status.
expect()
{
    local want=$1 desc=$2 rc=0
    shift 3
    "$@" >"$out" 2>"$err" || rc=$?
    if ((rc == want)); then pass; else fail "$desc: exit $rc, wanted $want"; fi
}

# ok DESC -- CMD...: CMD must succeed (a predicate, not captured).
ok()
{
    local desc=$1
    shift 2
    if "$@" >/dev/null; then pass; else fail "$desc"; fi
}

grep_out() { grep -qE -- "$1" "$out"; }
grep_err() { grep -qE -- "$1" "$err"; }

# --- stand-in svd and svctl -------------------------------------------------
mkdir -p "$bin"
cat >"$bin/svd" <<'SVD'
#!/usr/bin/env bash
# Stand-in svd for tests/deploy: keygen writes two 0600 files; a node checks
# its config line and sleeps until SIGTERM. FAKE_SVD_FAIL=1: exit at once;
# FAKE_SVD_IGNORE_TERM=1: ignore SIGTERM.
set -u
case ${1-} in
--help) echo "usage: svd --config FILE --id N | svd keygen --master FILE --data-key FILE"; exit 0 ;;
keygen)
    [[ ${2-} == --master && ${4-} == --data-key && -n ${5-} ]] || exit 2
    [[ -e $3 ]] && { echo "svd keygen: $3 exists" >&2; exit 1; }
    umask 077
    echo master >"$3" && echo data >"$5"
    exit ;;
--config)
    [[ ${3-} == --id && -n ${4-} ]] || exit 2
    # Signal handling first: what the node logs below tells the test it is in place.
    child=""
    if [[ -n ${FAKE_SVD_IGNORE_TERM-} ]]; then
        trap '' TERM
    else
        trap 'echo "fake svd $4: SIGTERM"; kill "$child" 2>/dev/null; exit 0' TERM INT
    fi
    line=$(grep -E "^node $4 " "$2") || { echo "svd: no node $4 in $2" >&2; exit 1; }
    echo "fake svd: $line"
    echo "fake svd $4: args: ${*:5}"
    if [[ -n ${FAKE_SVD_FAIL-} ]]; then echo "fake svd: boom" >&2; exit 1; fi
    [[ -z ${FAKE_SVD_IGNORE_TERM-} ]] || echo "fake svd $4: ignoring SIGTERM"
    if [[ -n ${FAKE_SVD_LISTEN-} ]]; then
        # Listen on the node's address (perl-base is always there); the
        # listener exits within 1 s once this stand-in is gone.
        addr=$(awk '{print $4}' <<<"$line")
        perl -MIO::Socket::INET -e '
            my $pp = getppid();
            sleep($ARGV[1]);
            my $s = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 5, ReuseAddr => 1)
                or die "fake svd: listen $ARGV[0]: $!\n";
            $SIG{ALRM} = sub { exit 0 if getppid() != $pp; alarm 1 };
            alarm 1;
            while (1) { my $c = $s->accept; close $c if $c }' "$addr" "${FAKE_SVD_LISTEN_DELAY_S:-0}" &
        child=$!
        wait "$child"
        exit 1
    fi
    # Short sleeps: a SIGKILLed stand-in leaves its sleep behind for 1 s at most.
    while :; do
        sleep 1 &
        child=$!
        wait "$child"
    done ;;
*) exit 2 ;;
esac
SVD
cat >"$bin/svctl" <<'SVCTL'
#!/usr/bin/env bash
# Stand-in svctl: status succeeds unless FAKE_SVCTL_FAIL is set; echoes its environment.
# dr drill writes its arguments (one a line) and SV_CA to $FAKE_SVCTL_LOG; with
# FAKE_SVCTL_DRILL_RUN it runs the outage command, then the restore command, as
# the drill would (the outage's output in OUT/outage-cmd.log); it exits
# $FAKE_SVCTL_RC (default 0).
if [[ ${1-} == dr && ${2-} == drill ]]; then
    { printf '%s\n' "$@"; echo "SV_CA=$SV_CA"; } >"${FAKE_SVCTL_LOG:-/dev/null}"
    if [[ -n ${FAKE_SVCTL_DRILL_RUN-} ]]; then
        while (($#)); do
            case $1 in --outage-cmd) outage=$2 ;; --restore-cmd) restore=$2 ;; --out) dir=$2 ;; esac
            shift
        done
        mkdir -p "$dir"
        sh -c "$outage" >"$dir/outage-cmd.log" 2>&1 && sh -c "$restore" || exit 1
    fi
    exit "${FAKE_SVCTL_RC:-0}"
fi
[[ ${1-} == status ]] || exit 2
if [[ -n ${FAKE_SVCTL_FAIL-} ]]; then echo "svctl: cannot reach the cluster" >&2; exit 1; fi
echo "{\"nodes\":[],\"shards\":[],\"endpoints\":\"$SV_ENDPOINTS\",\"ca\":\"$SV_CA\",\"token\":\"${SV_TOKEN-none}\"}"
SVCTL
chmod +x "$bin/svd" "$bin/svctl"
export SV_CLUSTER_NO_PORT_WAIT=1

base=$((20000 + RANDOM % 30000))
dir=$tmp/c1

# pid_of DIR N: the recorded PID of node N.
pid_of() { cat "$1/node$2/svd.pid"; }
# alive PID: PID runs (a zombie waiting for init to reap it does not count).
alive()
{
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}
dead() { ! alive "$1"; }
# wait_for SECONDS CMD...: until CMD succeeds, at most SECONDS (a bounded wait
# for a condition; the bound only matters when the condition never comes).
wait_for()
{
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}
mode_of() { stat -c %a "$1"; }

# --- help, usage, bad values, missing DIR ------------------------------------
expect 0 "help" -- "$cluster" help
ok "help lists the commands" -- grep_out "kill NODE"
expect 0 "up --help" -- "$cluster" up --help
ok "up --help: the metrics ports" -- grep_out "127\.0\.0\.1:P\+i\+1000 \(8101 for 7101\)"
ok "up --help: the metrics port range" -- grep_out "P\+1001 \.\. P\+N\+1000 must lie in 1024\.\.65535"
expect 0 "--help" -- "$cluster" --help
expect 0 "-h" -- "$cluster" -h
for c in up down status kill start logs env add; do
    expect 0 "$c --help" -- "$cluster" "$c" --help
    ok "$c --help prints its usage" -- grep_out "usage: deploy/cluster $c"
done
expect 2 "no command" -- "$cluster"
ok "no command: usage on stderr" -- grep_err "^usage:"
expect 2 "unknown command" -- "$cluster" frobnicate
ok "unknown command named" -- grep_err "unknown command 'frobnicate'"
expect 2 "unknown option" -- "$cluster" up --frob --bin "$bin" --dir "$dir"
ok "unknown option: usage on stderr" -- grep_err "usage: deploy/cluster up"
expect 2 "option without value" -- "$cluster" up --nodes
expect 2 "kill without NODE" -- "$cluster" kill --dir "$dir"
expect 2 "kill with a non-number" -- "$cluster" kill abc --dir "$dir"
expect 2 "two NODEs" -- "$cluster" start 1 2 --dir "$dir"
expect 2 "replicas > zones" -- "$cluster" up --zones 2 --replicas 3 --bin "$bin" --dir "$dir"
ok "replicas > zones explained" -- grep_err "exceeds --zones"
expect 2 "nodes < replicas" -- "$cluster" up --nodes 2 --bin "$bin" --dir "$dir"
expect 2 "zones > nodes" -- "$cluster" up --nodes 3 --zones 4 --bin "$bin" --dir "$dir"
expect 2 "port above 65535" -- "$cluster" up --base-port 65532 --bin "$bin" --dir "$dir"
expect 2 "privileged port" -- "$cluster" up --base-port 80 --bin "$bin" --dir "$dir"
# Node ports 64601..64606 fit; their metrics ports (+1000) do not.
expect 2 "metrics port above 65535" -- "$cluster" up --base-port 64600 --bin "$bin" --dir "$dir"
ok "metrics port range explained" -- grep_err "metrics ports 65601\.\.65606 out of range 1024\.\.65535"
expect 2 "metrics port above 65535 (one node)" -- "$cluster" up --nodes 1 --zones 1 --replicas 1 \
    --base-port 64535 --bin "$bin" --dir "$dir"
expect 2 "non-numeric port" -- "$cluster" up --base-port 7x --bin "$bin" --dir "$dir"
expect 2 "upload TTL 0" -- "$cluster" up --upload-ttl 0 --bin "$bin" --dir "$dir"
ok "upload TTL range explained" -- grep_err "upload-ttl must be in 1..604800"
expect 2 "a leading zero (octal to bash)" -- "$cluster" up --nodes 08 --bin "$bin" --dir "$dir"
expect 2 "a bad SV_CLUSTER_TIMEOUT_S" -- env SV_CLUSTER_TIMEOUT_S=soon "$cluster" status --dir "$dir"
expect 2 "zero shards" -- "$cluster" up --shards 0 --bin "$bin" --dir "$dir"
expect 2 "too many nodes" -- "$cluster" up --nodes 65 --bin "$bin" --dir "$dir"
expect 2 "down-after 0" -- "$cluster" up --down-after 0 --bin "$bin" --dir "$dir"
ok "down-after range explained" -- grep_err "down-after must be in 1..86400"
expect 2 "evict-after above a day" -- "$cluster" up --evict-after 86401 --bin "$bin" --dir "$dir"
expect 2 "down-after not a number" -- "$cluster" up --down-after 10s --bin "$bin" --dir "$dir"
expect 2 "evict-after below down-after" -- "$cluster" up --down-after 30 --evict-after 10 --bin "$bin" --dir "$dir"
ok "evict-after below down-after explained" -- grep_err "evict-after 10 is below --down-after 30"
expect 2 "evict-after below the default down-after" -- "$cluster" up --evict-after 5 --bin "$bin" --dir "$dir"
expect 2 "add without --zone" -- "$cluster" add --dir "$dir"
ok "add without --zone explained" -- grep_err "zone is required"
expect 2 "add with a bad zone" -- "$cluster" add --zone zone-1 --dir "$dir"
ok "add: bad zone explained" -- grep_err "zone-a \.\. zone-z"
expect 2 "add with an upper-case zone" -- "$cluster" add --zone zone-A --dir "$dir"
expect 2 "add with a NODE" -- "$cluster" add 3 --zone zone-a --dir "$dir"
expect 2 "start --reset=x" -- "$cluster" start 1 --reset=x --dir "$dir"
ok "start --help describes --reset" -- bash -c "'$cluster' start --help | grep -q 'rejoins as node M'"
ok "bad values create nothing" -- test ! -e "$dir"
for c in down status env "kill 1" "start 1" "logs 1" "add --zone zone-a" "start 1 --reset"; do
    # shellcheck disable=SC2086 # split "kill 1" into command and NODE
    expect 1 "$c on a DIR without cluster.conf" -- "$cluster" $c --dir "$tmp/none"
    ok "$c: missing deployment explained" -- grep_err "no cluster.conf"
done
expect 1 "up with a missing --bin" -- "$cluster" up --bin "$tmp/nobin" --dir "$dir" --base-port "$base"
ok "missing svd explained" -- grep_err "no executable"

# --- up: a new deployment ----------------------------------------------------
expect 0 "up (6 nodes, 3 zones)" -- "$cluster" up --bin "$bin" --dir "$dir" --base-port "$base"
ok "up prints the env hint" -- grep_out 'eval "\$\(./deploy/cluster env'
ok "up summary lists node 6" -- grep_out "^6 +zone-c +127\.0\.0\.1:$((base + 6)) +[0-9]+ +running"
ok "DIR is mode 0700" -- test "$(mode_of "$dir")" = 700
conf=$dir/cluster.conf
ok "cluster.conf exists" -- test -f "$conf"
ok "conf: shards 16" -- grep -qx "shards 16" "$conf"
ok "conf: replicas 3" -- grep -qx "replicas 3" "$conf"
ok "conf: upload_ttl_s 600 (default)" -- grep -qx "upload_ttl_s 600" "$conf"
ok "conf: down_after_s 10 (default)" -- grep -qx "down_after_s 10" "$conf"
ok "conf: evict_after_s 60 (default)" -- grep -qx "evict_after_s 60" "$conf"
ok "conf: ca" -- grep -qx "ca $dir/ca/ca.pem" "$conf"
ok "conf: master_key" -- grep -qx "master_key $dir/keys/master.key" "$conf"
ok "conf: data_key" -- grep -qx "data_key $dir/keys/data.key" "$conf"
ok "conf: 6 node lines" -- test "$(grep -c '^node ' "$conf")" = 6
ok "conf: no site lines without --dr" -- bash -c "! grep -qE '^(site|peer_site|peer_node) ' '$conf'"
zones=(zone-a zone-b zone-c zone-a zone-b zone-c)
for i in 1 2 3 4 5 6; do
    nd=$dir/node$i
    ok "conf: node $i line (round-robin zone, metrics on port + 1000)" -- \
        grep -qx "node $i ${zones[i - 1]} 127.0.0.1:$((base + i)) $nd metrics 127.0.0.1:$((base + i + 1000))" "$conf"
    ok "node $i certificate verifies against the CA" -- \
        openssl verify -CAfile "$dir/ca/ca.pem" "$nd/node.pem"
    ok "node $i CN is node-$i" -- bash -c \
        "openssl x509 -in '$nd/node.pem' -noout -subject -nameopt multiline | grep -qE '^ *commonName *= node-$i\$'"
    ok "node $i SAN" -- bash -c \
        "openssl x509 -in '$nd/node.pem' -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1, DNS:localhost, DNS:node-$i'"
    ok "node $i EKU serverAuth+clientAuth" -- bash -c \
        "openssl x509 -in '$nd/node.pem' -noout -ext extendedKeyUsage | grep -q 'TLS Web Server Authentication, TLS Web Client Authentication'"
    ok "node $i key matches its certificate" -- test \
        "$(openssl x509 -in "$nd/node.pem" -noout -pubkey)" = "$(openssl pkey -in "$nd/node.key" -pubout)"
    ok "node $i key is mode 0600" -- test "$(mode_of "$nd/node.key")" = 600
    ok "node $i pid file names a live process" -- alive "$(pid_of "$dir" "$i")"
done
ok "CA key is mode 0600" -- test "$(mode_of "$dir/ca/ca.key")" = 600
ok "master key (svd keygen) is mode 0600" -- test "$(mode_of "$dir/keys/master.key")" = 600
ok "data key (svd keygen) exists" -- test -f "$dir/keys/data.key"
ok "node 1 logs to svd.log" -- grep -q "fake svd: node 1 zone-a" "$dir/node1/svd.log"
ok "the CA is a CA" -- bash -c \
    "openssl x509 -in '$dir/ca/ca.pem' -noout -ext basicConstraints | grep -q 'CA:TRUE'"

# --- status, env, logs ---------------------------------------------------------
expect 0 "status" -- "$cluster" status --dir "$dir"
ok "status: table header" -- grep_out "^NODE +ZONE +ADDRESS +PID +STATE"
ok "status: 6 running nodes" -- test "$(grep -cE ' running$' "$out")" = 6
ok "status: svctl ran with the endpoints" -- grep_out "\"endpoints\":\"127.0.0.1:$((base + 1)),"
expect 0 "status via SV_CLUSTER_DIR" -- env SV_CLUSTER_DIR="$dir" "$cluster" status
ok "SV_CLUSTER_DIR: 6 running nodes" -- test "$(grep -cE ' running$' "$out")" = 6
expect 0 "status with a relative --dir" -- bash -c "cd '$tmp' && '$cluster' status --dir c1"
ok "relative --dir: 6 running nodes" -- test "$(grep -cE ' running$' "$out")" = 6

expect 0 "env" -- "$cluster" env --dir "$dir"
eps=""
for i in 1 2 3 4 5 6; do eps+="${eps:+,}127.0.0.1:$((base + i))"; done
ok "env: SV_ENDPOINTS" -- grep -qx "export SV_ENDPOINTS=$eps" "$out"
ok "env: SV_CA" -- grep -qx "export SV_CA=$dir/ca/ca.pem" "$out"
ok "env: no SV_TOKEN without DIR/token" -- test "$(grep -c SV_TOKEN "$out")" = 0
ok "env output evaluates" -- bash -c "eval \"\$(cat '$out')\" && [[ \$SV_ENDPOINTS == '$eps' ]]"
echo "tok123" >"$dir/token"
expect 0 "env with a token" -- "$cluster" env --dir "$dir"
ok "env: SV_TOKEN" -- grep -qx "export SV_TOKEN=tok123" "$out"
rm -f "$dir/token"

expect 0 "logs 2" -- "$cluster" logs 2 --dir "$dir"
ok "logs 2 shows node 2's log" -- grep_out "fake svd: node 2 zone-b"
expect 2 "logs of an unknown node" -- "$cluster" logs 9 --dir "$dir"
"$cluster" logs 3 -f --dir "$dir" >"$out" 2>"$err" &
follow_pid=$!
ok "logs -f printed the log" -- wait_for 30 grep_out "fake svd: node 3"
ok "logs -f keeps following" -- alive "$follow_pid"
kill -TERM "$follow_pid" 2>/dev/null || true
wait "$follow_pid" 2>/dev/null || true

# --- a second up reuses the deployment -----------------------------------------
p1=$(pid_of "$dir" 1)
expect 0 "second up" -- "$cluster" up --bin "$bin" --dir "$dir"
ok "second up says it reuses" -- grep_out "reusing"
ok "second up starts nothing" -- grep_out "every node already runs"
ok "node 1 keeps its pid" -- test "$(pid_of "$dir" 1)" = "$p1"
expect 2 "up with other --nodes on an existing DIR" -- "$cluster" up --nodes 3 --bin "$bin" --dir "$dir"
ok "other --nodes: down --purge explained" -- grep_err "down --purge"
expect 0 "up with the same --nodes" -- "$cluster" up --nodes 6 --zones 3 --base-port "$base" --bin "$bin" --dir "$dir"
expect 2 "up with another --upload-ttl on an existing DIR" -- "$cluster" up --upload-ttl 5 --bin "$bin" --dir "$dir"
expect 2 "up with another --down-after on an existing DIR" -- "$cluster" up --down-after 5 --bin "$bin" --dir "$dir"
expect 0 "up with the same --evict-after" -- "$cluster" up --evict-after 60 --bin "$bin" --dir "$dir"

# --- kill and start --------------------------------------------------------------
p3=$(pid_of "$dir" 3)
declare -A before=()
for i in 1 2 3 4 5 6; do before[$i]=$(pid_of "$dir" "$i"); done
expect 0 "kill 3" -- "$cluster" kill 3 --dir "$dir"
ok "node 3 is dead" -- dead "$p3"
ok "node 3 pid file removed" -- test ! -e "$dir/node3/svd.pid"
for i in 1 2 4 5 6; do ok "kill 3 spares node $i" -- alive "${before[$i]}"; done
expect 0 "status after kill" -- "$cluster" status --dir "$dir"
ok "status: node 3 stopped" -- grep_out "^3 .* stopped$"
ok "status: 5 running" -- test "$(grep -cE ' running$' "$out")" = 5
expect 1 "kill 3 again" -- "$cluster" kill 3 --dir "$dir"
ok "kill of a stopped node explained" -- grep_err "not running"
expect 2 "kill an unknown node" -- "$cluster" kill 7 --dir "$dir"
expect 0 "start 3" -- "$cluster" start --dir "$dir" 3
p3b=$(pid_of "$dir" 3)
ok "node 3 runs again" -- alive "$p3b"
ok "node 3 has a new pid" -- test "$p3b" != "$p3"
expect 0 "start 3 while running" -- "$cluster" start 3 --dir "$dir"
ok "start of a running node says so" -- grep_out "already runs"
ok "start of a running node keeps its pid" -- test "$(pid_of "$dir" 3)" = "$p3b"

# A pid file naming a process that is not our svd (reused PID): never signalled.
sleep 1000 &
other_pid=$!
disown "$other_pid"
"$cluster" kill 4 --dir "$dir" >/dev/null
echo "$other_pid" >"$dir/node4/svd.pid"
expect 1 "kill refuses a foreign pid" -- "$cluster" kill 4 --dir "$dir"
ok "the foreign process survives kill" -- alive "$other_pid"
expect 0 "status with a foreign pid" -- "$cluster" status --dir "$dir"
ok "status: node 4 stopped" -- grep_out "^4 .* stopped$"
expect 0 "up restarts node 4 only" -- "$cluster" up --bin "$bin" --dir "$dir"
ok "up started node 4" -- grep_out "started node\(s\) 4;"
ok "node 4 runs again" -- alive "$(pid_of "$dir" 4)"
ok "node 4 is not the foreign process" -- test "$(pid_of "$dir" 4)" != "$other_pid"
"$cluster" kill 5 --dir "$dir" >/dev/null
echo "$other_pid" >"$dir/node5/svd.pid"

# --- down ------------------------------------------------------------------------
declare -A running=()
for i in 1 2 3 4 6; do running[$i]=$(pid_of "$dir" "$i"); done
expect 0 "down" -- "$cluster" down --dir "$dir"
for i in 1 2 3 4 6; do
    ok "down stopped node $i" -- dead "${running[$i]}"
    ok "down removed node $i's pid file" -- test ! -e "$dir/node$i/svd.pid"
done
ok "down used SIGTERM (graceful)" -- grep -q "fake svd 1: SIGTERM" "$dir/node1/svd.log"
ok "down spared the foreign process" -- alive "$other_pid"
ok "down removed the stale pid file" -- test ! -e "$dir/node5/svd.pid"
ok "down keeps DIR" -- test -f "$conf"
expect 0 "down again" -- "$cluster" down --dir "$dir"
ok "down again: nothing ran" -- grep_out "no node was running"
expect 0 "status when stopped" -- "$cluster" status --dir "$dir"
ok "status: 6 stopped" -- test "$(grep -cE ' stopped$' "$out")" = 6
ok "status: no svctl when stopped" -- bash -c "! grep -q endpoints '$out'"

# down escalates to SIGKILL for a node ignoring SIGTERM.
expect 0 "up, nodes ignore SIGTERM" -- env FAKE_SVD_IGNORE_TERM=1 "$cluster" up --bin "$bin" --dir "$dir"
p2=$(pid_of "$dir" 2)
for i in 1 2 3 4 5 6; do
    ok "node $i ignores SIGTERM before down" -- \
        wait_for 30 grep -q "fake svd $i: ignoring SIGTERM" "$dir/node$i/svd.log"
done
expect 0 "down with SIGKILL" -- env SV_CLUSTER_STOP_TIMEOUT_S=1 "$cluster" down --dir "$dir"
ok "down says SIGKILL" -- grep_out "SIGKILL"
ok "node 2 is gone" -- dead "$p2"

expect 0 "up again" -- "$cluster" up --bin "$bin" --dir "$dir"
declare -A last=()
for i in 1 2 3 4 5 6; do last[$i]=$(pid_of "$dir" "$i"); done
expect 0 "down --purge" -- "$cluster" down --purge --dir "$dir"
ok "down --purge deleted DIR" -- test ! -e "$dir"
for i in 1 2 3 4 5 6; do ok "purge stopped node $i" -- dead "${last[$i]}"; done
mkdir "$tmp/notacluster"
expect 1 "down --purge on a DIR without cluster.conf" -- "$cluster" down --purge --dir "$tmp/notacluster"
ok "a DIR without cluster.conf is not deleted" -- test -d "$tmp/notacluster"

# --- failures while starting ---------------------------------------------------------
d2=$tmp/c2
# The default wait (30 s): a node that exits is seen at once; a shorter bound
# would only make the result depend on how fast a loaded machine runs svd.
expect 1 "up when svd exits at once" -- env FAKE_SVD_FAIL=1 FAKE_SVCTL_FAIL=1 \
    "$cluster" up --nodes 3 --zones 3 --bin "$bin" --dir "$d2" --base-port "$base"
ok "failed up shows the node's log" -- grep_err "fake svd: boom"
expect 0 "down after the failed up" -- "$cluster" down --purge --dir "$d2"
expect 1 "up when svctl never answers" -- env FAKE_SVCTL_FAIL=1 SV_CLUSTER_TIMEOUT_S=1 \
    "$cluster" up --nodes 3 --zones 3 --bin "$bin" --dir "$d2" --base-port "$base"
ok "svctl timeout explained" -- grep_err "svctl status did not succeed"
ok "svctl timeout shows svctl's message" -- grep_err "cannot reach the cluster"
expect 0 "down --purge after the timeout" -- "$cluster" down --purge --dir "$d2"
ok "DIR gone" -- test ! -e "$d2"

# --- waiting for the ports (stand-ins that listen) ---------------------------------
# port_open ADDR: something accepts connections at host:port.
# shellcheck disable=SC2016 # expanded by the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0##*:}"' "$1" 2>/dev/null; }
# port_closed_soon ADDR: within 5 s nothing accepts connections there.
port_closed_soon()
{
    local i
    for ((i = 0; i < 50; i++)); do port_open "$1" || return 0; sleep 0.1; done
    return 1
}
d5=$tmp/c5
# Three ports nothing listens on (another run of this test may be listening).
for ((try = 0; try < 20; try++)); do
    lport=$((20000 + RANDOM % 30000))
    port_open "127.0.0.1:$((lport + 1))" || port_open "127.0.0.1:$((lport + 2))" ||
        port_open "127.0.0.1:$((lport + 3))" || break
done
unset SV_CLUSTER_NO_PORT_WAIT
expect 0 "up waits for the ports" -- env FAKE_SVD_LISTEN=1 FAKE_SVD_LISTEN_DELAY_S=1 \
    "$cluster" up --nodes 3 --bin "$bin" --dir "$d5" --base-port "$lport"
for i in 1 2 3; do ok "node $i listens after up" -- port_open "127.0.0.1:$((lport + i))"; done
expect 1 "up on ports in use" -- "$cluster" up --nodes 3 --bin "$bin" --dir "$tmp/c6" --base-port "$lport"
ok "ports in use explained" -- grep_err "already in use"
expect 0 "down --purge after ports in use" -- "$cluster" down --purge --dir "$tmp/c6"
expect 0 "kill 2 (listening)" -- "$cluster" kill 2 --dir "$d5"
ok "node 2's port closes" -- port_closed_soon "127.0.0.1:$((lport + 2))"
expect 0 "start 2 waits for its port" -- env FAKE_SVD_LISTEN=1 FAKE_SVD_LISTEN_DELAY_S=1 \
    "$cluster" start 2 --dir "$d5"
ok "node 2 listens after start" -- port_open "127.0.0.1:$((lport + 2))"
expect 0 "down (listening)" -- "$cluster" down --dir "$d5"
for i in 1 2 3; do ok "node $i's port closes after down" -- port_closed_soon "127.0.0.1:$((lport + i))"; done
expect 1 "up times out when nodes do not listen" -- env SV_CLUSTER_TIMEOUT_S=1 \
    "$cluster" up --bin "$bin" --dir "$d5"
ok "port timeout explained" -- grep_err "not listening after 1 s"
ok "port timeout shows the log" -- grep_err "fake svd: node 1 "
expect 0 "down --purge (listening)" -- "$cluster" down --purge --dir "$d5"
export SV_CLUSTER_NO_PORT_WAIT=1

# A 4-node, 2-zone, 2-replica deployment.
d3=$tmp/sub/c3
expect 0 "up --nodes 4 --zones 2 --replicas 2 --shards 8 --upload-ttl 30 --down-after 5 --evict-after 20" -- \
    "$cluster" up --nodes 4 --zones 2 --replicas 2 --shards 8 --upload-ttl 30 --down-after 5 \
    --evict-after 20 --bin "$bin" --dir "$d3" --base-port "$base"
ok "conf: down_after_s 5" -- grep -qx "down_after_s 5" "$d3/cluster.conf"
ok "conf: evict_after_s 20" -- grep -qx "evict_after_s 20" "$d3/cluster.conf"
ok "conf: shards 8" -- grep -qx "shards 8" "$d3/cluster.conf"
ok "conf: upload_ttl_s 30" -- grep -qx "upload_ttl_s 30" "$d3/cluster.conf"
ok "conf: replicas 2" -- grep -qx "replicas 2" "$d3/cluster.conf"
ok "conf: node 3 in zone-a" -- grep -qx "node 3 zone-a 127.0.0.1:$((base + 3)) $d3/node3 metrics 127.0.0.1:$((base + 1003))" "$d3/cluster.conf"
ok "conf: node 4 in zone-b" -- grep -qx "node 4 zone-b 127.0.0.1:$((base + 4)) $d3/node4 metrics 127.0.0.1:$((base + 1004))" "$d3/cluster.conf"

# --- add and start --reset (4-node deployment) ------------------------------------
expect 0 "add --zone zone-c" -- "$cluster" add --zone zone-c --dir "$d3"
ok "add prints the new node's id and address" -- grep_out "node 5 added in zone-c at 127\.0\.0\.1:$((base + 5))"
ok "conf: node 5 appended" -- grep -qx "node 5 zone-c 127.0.0.1:$((base + 5)) $d3/node5 metrics 127.0.0.1:$((base + 1005))" "$d3/cluster.conf"
ok "conf: the other lines stay" -- grep -qx "shards 8" "$d3/cluster.conf"
ok "node 5 certificate verifies against the CA" -- openssl verify -CAfile "$d3/ca/ca.pem" "$d3/node5/node.pem"
ok "node 5 CN is node-5" -- bash -c \
    "openssl x509 -in '$d3/node5/node.pem' -noout -subject -nameopt multiline | grep -qE '^ *commonName *= node-5\$'"
ok "node 5 key is mode 0600" -- test "$(mode_of "$d3/node5/node.key")" = 600
ok "node 5 directory is mode 0700" -- test "$(mode_of "$d3/node5")" = 700
ok "node 5 runs" -- alive "$(pid_of "$d3" 5)"
ok "node 5 was started with --join" -- wait_for 30 grep -q "fake svd 5: args: --join" "$d3/node5/svd.log"
expect 0 "status with an added node" -- "$cluster" status --dir "$d3"
ok "status: node 5 running" -- grep_out "^5 +zone-c +127\.0\.0\.1:$((base + 5)) +[0-9]+ +running"
expect 0 "env with an added node" -- "$cluster" env --dir "$d3"
ok "env: node 5 in SV_ENDPOINTS" -- grep_out "127\.0\.0\.1:$((base + 5))\$"
expect 0 "logs 5" -- "$cluster" logs 5 --dir "$d3"
ok "logs 5 shows node 5's log" -- grep_out "fake svd: node 5 zone-c"
p5=$(pid_of "$d3" 5)
expect 0 "kill 5" -- "$cluster" kill 5 --dir "$d3"
ok "node 5 is dead" -- dead "$p5"
: >"$d3/node5/svd.log"
expect 0 "start 5" -- "$cluster" start 5 --dir "$d3"
ok "start 5 does not pass --join again" -- wait_for 30 grep -q "fake svd 5: args: \$" "$d3/node5/svd.log"
expect 0 "add --zone zone-a (node 6)" -- "$cluster" add --zone zone-a --dir "$d3"
ok "node 6 on port base+6" -- grep -qx "node 6 zone-a 127.0.0.1:$((base + 6)) $d3/node6 metrics 127.0.0.1:$((base + 1006))" "$d3/cluster.conf"

p2=$(pid_of "$d3" 2)
expect 0 "start 2 --reset" -- "$cluster" start 2 --reset --dir "$d3"
ok "reset says who rejoins" -- grep_out "node 2 wiped; it rejoins as node 7"
ok "reset stopped node 2" -- dead "$p2"
ok "reset deleted node 2's directory" -- test ! -e "$d3/node2"
ok "conf: node 2's line is a comment" -- grep -q "^# node 2 zone-b " "$d3/cluster.conf"
ok "conf: no node 2 line" -- bash -c "! grep -q '^node 2 ' '$d3/cluster.conf'"
ok "conf: node 7 in node 2's zone" -- grep -qx "node 7 zone-b 127.0.0.1:$((base + 7)) $d3/node7 metrics 127.0.0.1:$((base + 1007))" "$d3/cluster.conf"
ok "node 7 runs" -- alive "$(pid_of "$d3" 7)"
ok "node 7 was started with --join" -- wait_for 30 grep -q "fake svd 7: args: --join" "$d3/node7/svd.log"
expect 2 "start 2 after the reset" -- "$cluster" start 2 --dir "$d3"
ok "node 2 is gone from the deployment" -- grep_err "no node '2'"
# A stopped node with the highest id: its id is not handed out again.
expect 0 "kill 7" -- "$cluster" kill 7 --dir "$d3"
expect 0 "start 7 --reset (stopped)" -- "$cluster" start 7 --reset --dir "$d3"
ok "reset of the highest id rejoins as node 8" -- grep_out "node 7 wiped; it rejoins as node 8"
expect 0 "add after resets (node 9)" -- "$cluster" add --zone zone-b --dir "$d3"
ok "add after resets takes id 9" -- grep_out "node 9 added in zone-b"
expect 0 "status after the resets" -- "$cluster" status --dir "$d3"
ok "status: 7 nodes running (1 3 4 5 6 8 9)" -- test "$(grep -cE ' running$' "$out")" = 7
declare -A grown=()
for i in 1 3 4 5 6 8 9; do grown[$i]=$(pid_of "$d3" "$i"); done
expect 0 "down --purge (4 nodes)" -- "$cluster" down --purge --dir "$d3"
for i in 1 3 4 5 6 8 9; do ok "down stopped node $i" -- dead "${grown[$i]}"; done

# --- two sites: up --dr, --site, site-outage, site-start -------------------------------
d7=$tmp/c7
dr=$d7/dr
expect 2 "--dr-nodes without --dr" -- "$cluster" up --dr-nodes 3 --bin "$bin" --dir "$d7"
ok "--dr-nodes without --dr explained" -- grep_err "dr-nodes needs --dr"
expect 2 "--dr-nodes 0" -- "$cluster" up --dr --dr-nodes 0 --bin "$bin" --dir "$d7"
expect 2 "--dr-nodes 65" -- "$cluster" up --dr --dr-nodes 65 --bin "$bin" --dir "$d7"
# Primary metrics ports 65501..65506 fit; the standby's 65601..65603 do not.
expect 2 "standby ports above 65535" -- "$cluster" up --dr --base-port 64500 --bin "$bin" --dir "$d7"
ok "standby ports explained" -- grep_err "standby site's ports 64601\.\.65603 pass 65535"
expect 2 "status --site of an unknown site" -- "$cluster" status --site west --dir "$d7"
ok "unknown --site explained" -- grep_err "site must be primary or dr, not 'west'"
expect 2 "site-outage without SITE" -- "$cluster" site-outage --dir "$d7"
ok "site-outage without SITE explained" -- grep_err "needs a SITE"
expect 2 "site-outage of an unknown site" -- "$cluster" site-outage west --dir "$d7"
expect 2 "site-start of an unknown site" -- "$cluster" site-start west --dir "$d7"
expect 2 "down --purge --site" -- "$cluster" down --purge --site dr --dir "$d7"
ok "down --purge --site explained" -- grep_err "whole deployment"
ok "bad DR values create nothing" -- test ! -e "$d7"
for c in site-outage site-start; do
    expect 0 "$c --help" -- "$cluster" "$c" --help
    ok "$c --help prints its usage" -- grep_out "usage: deploy/cluster $c SITE"
done
ok "up --help describes --dr" -- bash -c "'$cluster' up --help | grep -q 'site dr standby'"
for c in "status" "env" "site-outage dr" "site-start dr" "kill 1 --site dr" "logs 1 --site dr" "drill"; do
    # shellcheck disable=SC2086 # split into command and arguments
    expect 1 "$c on a DIR without cluster.conf" -- "$cluster" $c --dir "$tmp/none"
done

expect 0 "up --dr (6 + 3 nodes)" -- "$cluster" up --dr --bin "$bin" --dir "$d7" --base-port "$base"
ok "up --dr: the standby's table" -- grep_out "^3 +dr-c +127\.0\.0\.1:$((base + 103)) +[0-9]+ +running"
ok "up --dr: the primary's table" -- grep_out "^6 +zone-c +127\.0\.0\.1:$((base + 6)) +[0-9]+ +running"
ok "up --dr: the standby's env hint" -- grep_out "env --dir .*c7 --site dr"
ok "up --dr: the standby's shape" -- grep_out "site dr \(standby; peer site primary\) is up: 3 nodes in zones dr-a dr-b dr-c, 16 shards x 3 replicas"
pconf=$d7/cluster.conf
dconf=$dr/cluster.conf
ok "primary conf: site primary primary" -- grep -qx "site primary primary" "$pconf"
ok "primary conf: peer_site dr" -- grep -qx "peer_site dr" "$pconf"
ok "primary conf: 3 peer_node lines" -- test "$(grep -c '^peer_node ' "$pconf")" = 3
ok "primary conf: 6 node lines" -- test "$(grep -c '^node ' "$pconf")" = 6
ok "standby conf: site dr standby" -- grep -qx "site dr standby" "$dconf"
ok "standby conf: peer_site primary" -- grep -qx "peer_site primary" "$dconf"
ok "standby conf: 6 peer_node lines" -- test "$(grep -c '^peer_node ' "$dconf")" = 6
ok "standby conf: 3 node lines" -- test "$(grep -c '^node ' "$dconf")" = 3
for i in 1 2 3 4 5 6; do
    ok "standby conf: peer_node $i" -- grep -qx "peer_node $i 127.0.0.1:$((base + i))" "$dconf"
done
for line in "shards 16" "replicas 3" "upload_ttl_s 600" "down_after_s 10" "evict_after_s 60" \
    "ca $d7/ca/ca.pem" "master_key $d7/keys/master.key" "data_key $d7/keys/data.key"; do
    ok "standby conf: $line (the primary's)" -- grep -qx "$line" "$dconf"
done
ok "DIR/dr is mode 0700" -- test "$(mode_of "$dr")" = 700
ok "the standby has no CA of its own" -- test ! -e "$dr/ca"
ok "the standby has no keys of its own" -- test ! -e "$dr/keys"
ok "primary node 2 CN is still node-2" -- bash -c \
    "openssl x509 -in '$d7/node2/node.pem' -noout -subject -nameopt multiline | grep -qE '^ *commonName *= node-2\$'"
drzones=(dr-a dr-b dr-c)
declare -A drpid=() ppid=()
for j in 1 2 3; do
    nd=$dr/node$j
    ok "primary conf: peer_node $j" -- grep -qx "peer_node $j 127.0.0.1:$((base + 100 + j))" "$pconf"
    ok "standby conf: node $j line (zone dr-*, port + 100, metrics + 1000)" -- grep -qx \
        "node $j ${drzones[j - 1]} 127.0.0.1:$((base + 100 + j)) $nd metrics 127.0.0.1:$((base + 1100 + j))" "$dconf"
    ok "standby node $j certificate verifies against the deployment's CA" -- \
        openssl verify -CAfile "$d7/ca/ca.pem" "$nd/node.pem"
    ok "standby node $j CN is node-$j@dr" -- bash -c \
        "openssl x509 -in '$nd/node.pem' -noout -subject -nameopt multiline | grep -qE '^ *commonName *= node-$j@dr\$'"
    ok "standby node $j SAN names node-$j@dr" -- bash -c \
        "openssl x509 -in '$nd/node.pem' -noout -ext subjectAltName | grep -q 'IP Address:127.0.0.1, DNS:localhost, DNS:node-$j@dr\$'"
    ok "standby node $j key is mode 0600" -- test "$(mode_of "$nd/node.key")" = 600
    ok "standby node $j runs" -- alive "$(pid_of "$dr" "$j")"
    ok "standby node $j started with the standby's conf" -- \
        wait_for 30 grep -qx "fake svd: node $j ${drzones[j - 1]} .*" "$nd/svd.log"
    drpid[$j]=$(pid_of "$dr" "$j")
done
for i in 1 2 3 4 5 6; do ppid[$i]=$(pid_of "$d7" "$i"); done

expect 0 "env --site dr" -- "$cluster" env --site dr --dir "$d7"
ok "env --site dr: the standby's endpoints" -- \
    grep -qx "export SV_ENDPOINTS=127.0.0.1:$((base + 101)),127.0.0.1:$((base + 102)),127.0.0.1:$((base + 103))" "$out"
ok "env --site dr: the deployment's CA" -- grep -qx "export SV_CA=$d7/ca/ca.pem" "$out"
expect 0 "env (the primary by default)" -- "$cluster" env --dir "$d7"
ok "env: the primary's endpoints" -- grep -q "^export SV_ENDPOINTS=127.0.0.1:$((base + 1)),.*,127.0.0.1:$((base + 6))\$" "$out"
expect 0 "env --site primary" -- "$cluster" env --site primary --dir "$d7"
ok "env --site primary: the primary's endpoints" -- grep -q "^export SV_ENDPOINTS=127.0.0.1:$((base + 1)),.*,127.0.0.1:$((base + 6))\$" "$out"
expect 0 "status (two sites)" -- "$cluster" status --dir "$d7"
ok "status: names the site" -- grep_out "^site primary: starts as primary \(its cluster.conf\); peer site dr\$"
ok "status: 6 running" -- test "$(grep -cE ' running$' "$out")" = 6
ok "status: the standby's count" -- grep_out "^standby site dr: 3 of 3 nodes run "
expect 0 "status --site dr" -- "$cluster" status --site dr --dir "$d7"
ok "status --site dr: names the site" -- grep_out "^site dr: starts as standby \(its cluster.conf\); peer site primary\$"
ok "status --site dr: 3 running" -- test "$(grep -cE ' running$' "$out")" = 3
ok "status --site dr: svctl ran with the standby's endpoints" -- grep_out "\"endpoints\":\"127.0.0.1:$((base + 101)),"
expect 0 "logs 2 --site dr" -- "$cluster" logs 2 --site dr --dir "$d7"
ok "logs 2 --site dr shows the standby's node 2" -- grep_out "fake svd: node 2 dr-b"

expect 0 "kill 2 --site dr" -- "$cluster" kill 2 --site dr --dir "$d7"
ok "kill --site dr says which site" -- grep_out "node 2 of site dr killed \(pid ${drpid[2]}, SIGKILL\)"
ok "standby node 2 is dead" -- dead "${drpid[2]}"
ok "primary node 2 is spared" -- alive "${ppid[2]}"
expect 1 "kill 2 --site dr again" -- "$cluster" kill 2 --site dr --dir "$d7"
expect 0 "start 2 --site dr" -- "$cluster" start 2 --site dr --dir "$d7"
ok "start --site dr says which site" -- grep_out "node 2 of site dr started"
ok "standby node 2 runs again" -- alive "$(pid_of "$dr" 2)"
drpid[2]=$(pid_of "$dr" 2)

expect 0 "site-outage dr" -- "$cluster" site-outage dr --dir "$d7"
for j in 1 2 3; do
    ok "site-outage dr killed standby node $j" -- dead "${drpid[$j]}"
    ok "site-outage dr names node $j's pid" -- grep_out "node $j of site dr killed \(pid ${drpid[$j]}, SIGKILL\)"
    ok "site-outage dr removed node $j's pid file" -- test ! -e "$dr/node$j/svd.pid"
done
for i in 1 2 3 4 5 6; do ok "site-outage dr spares primary node $i" -- alive "${ppid[$i]}"; done
expect 1 "site-outage dr again" -- "$cluster" site-outage dr --dir "$d7"
ok "site-outage with nothing running explained" -- grep_err "no node of site dr is running"
expect 0 "status after the standby's outage" -- "$cluster" status --dir "$d7"
ok "status: the standby's count is 0" -- grep_out "^standby site dr: 0 of 3 nodes run "
expect 0 "site-start dr" -- "$cluster" site-start dr --dir "$d7"
for j in 1 2 3; do
    ok "site-start dr started node $j" -- alive "$(pid_of "$dr" "$j")"
    ok "site-start dr says so for node $j" -- grep_out "node $j of site dr started \(pid [0-9]+, 127\.0\.0\.1:$((base + 100 + j))\)"
    drpid[$j]=$(pid_of "$dr" "$j")
done
expect 0 "site-start dr again" -- "$cluster" site-start dr --dir "$d7"
ok "site-start of a running site says so" -- grep_out "every node of site dr already runs"
ok "site-start of a running site keeps the pids" -- test "$(pid_of "$dr" 1)" = "${drpid[1]}"

expect 0 "site-outage primary" -- "$cluster" site-outage primary --dir "$d7"
for i in 1 2 3 4 5 6; do
    ok "site-outage primary killed node $i" -- dead "${ppid[$i]}"
    ok "site-outage primary names node $i's pid" -- grep_out "node $i killed \(pid ${ppid[$i]}, SIGKILL\)"
done
for j in 1 2 3; do ok "site-outage primary spares standby node $j" -- alive "${drpid[$j]}"; done
expect 0 "up restarts the primary" -- "$cluster" up --bin "$bin" --dir "$d7"
ok "up started the primary's nodes" -- grep_out "started node\(s\) 1 2 3 4 5 6;"
ok "up left the standby running" -- grep_out "every node of site dr already runs"
for i in 1 2 3 4 5 6; do ppid[$i]=$(pid_of "$d7" "$i"); done
expect 0 "up --dr on the two-site deployment" -- "$cluster" up --dr --dr-nodes 3 --bin "$bin" --dir "$d7"
expect 2 "up --dr with another --dr-nodes" -- "$cluster" up --dr --dr-nodes 4 --bin "$bin" --dir "$d7"
ok "another --dr-nodes explained" -- grep_err "dr-nodes 3, not 4"

# drill: svctl dr drill with each site's endpoints, the deployment's CA, and the
# deployment's own commands for the primary's outage and return.
expect 0 "drill --help" -- "$cluster" drill --help
ok "drill --help prints its usage" -- grep_out "usage: deploy/cluster drill"
ok "drill --help: the outage command" -- grep_out "site-outage primary --dir DIR"
expect 2 "drill with an unknown option" -- "$cluster" drill --frob --dir "$d7"
expect 2 "drill with an argument" -- "$cluster" drill extra --dir "$d7"
expect 2 "drill --warmup without a value" -- "$cluster" drill --dir "$d7" --warmup
dlog=$tmp/drill-args
expect 0 "drill" -- env FAKE_SVCTL_LOG="$dlog" "$cluster" drill --dir "$d7" --out "$tmp/drill-out" \
    --warmup 2 --load-clients 3 --step-timeout 30 --bucket drills
# arg_after NAME: the argument svctl got after NAME.
arg_after() { awk -v n="$1" 'p { print; exit } $0 == n { p = 1 }' "$dlog"; }
ok "drill: svctl dr drill" -- test "$(head -2 "$dlog" | paste -sd' ')" = "dr drill"
want=""
for i in 1 2 3 4 5 6; do want+="${want:+,}127.0.0.1:$((base + i))"; done
ok "drill: --primary is the primary's 6 nodes" -- test "$(arg_after --primary)" = "$want"
ok "drill: --standby is the standby's 3 nodes" -- test "$(arg_after --standby)" = \
    "127.0.0.1:$((base + 101)),127.0.0.1:$((base + 102)),127.0.0.1:$((base + 103))"
ok "drill: --outage-cmd is site-outage primary of DIR" -- test "$(arg_after --outage-cmd)" = \
    "$repo/deploy/cluster site-outage primary --dir $d7"
ok "drill: --restore-cmd is site-start primary of DIR with the bin" -- test "$(arg_after --restore-cmd)" = \
    "$repo/deploy/cluster site-start primary --dir $d7 --bin $bin"
ok "drill: --out" -- test "$(arg_after --out)" = "$tmp/drill-out"
ok "drill: --warmup passed" -- test "$(arg_after --warmup)" = 2
ok "drill: --load-clients passed" -- test "$(arg_after --load-clients)" = 3
ok "drill: --step-timeout passed" -- test "$(arg_after --step-timeout)" = 30
ok "drill: --bucket passed" -- test "$(arg_after --bucket)" = drills
ok "drill: --object-bytes not given, not passed" -- bash -c "! grep -qx -- --object-bytes '$dlog'"
ok "drill: the deployment's CA" -- grep -qx "SV_CA=$d7/ca/ca.pem" "$dlog"
ok "drill: no outage, no word of roles changed" -- bash -c "! grep -q 'roles may have changed' '$out'"
expect 0 "drill with the default --out" -- env FAKE_SVCTL_LOG="$dlog" "$cluster" drill --dir "$d7"
ok "drill: the default --out is beside DIR" -- bash -c "[[ \$(awk 'p { print; exit } \$0 == \"--out\" { p = 1 }' '$dlog') =~ ^$d7-drills/[0-9]{8}T[0-9]{6}Z\$ ]]"
expect 1 "drill: svctl's exit status" -- env FAKE_SVCTL_RC=1 "$cluster" drill --dir "$d7"
expect 2 "drill: svctl's usage error" -- env FAKE_SVCTL_RC=2 "$cluster" drill --dir "$d7"
# The commands as given work: the primary's nodes die and start again; the standby's stay.
expect 0 "drill running its commands" -- env FAKE_SVCTL_DRILL_RUN=1 "$cluster" drill --dir "$d7" --out "$tmp/drill-run"
ok "drill: the outage's output" -- grep -q "site primary is down" "$tmp/drill-run/outage-cmd.log"
ok "drill: passed, no word of roles changed" -- bash -c "! grep -q 'roles may have changed' '$out'"
for i in 1 2 3 4 5 6; do
    ok "drill: primary node $i killed" -- dead "${ppid[$i]}"
    ok "drill: primary node $i started again" -- alive "$(pid_of "$d7" "$i")"
    ppid[$i]=$(pid_of "$d7" "$i")
done
for j in 1 2 3; do ok "drill: standby node $j untouched" -- test "$(pid_of "$dr" "$j")" = "${drpid[$j]}"; done

# add and start --reset on the standby: the primary's peer_node lines follow.
expect 2 "add --site dr with a primary zone" -- "$cluster" add --site dr --zone zone-a --dir "$d7"
ok "add --site dr: zone explained" -- grep_err "dr-a \.\. dr-z"
expect 0 "add --site dr --zone dr-a" -- "$cluster" add --site dr --zone dr-a --dir "$d7"
ok "add --site dr names the node" -- grep_out "node 4 of site dr added in dr-a at 127\.0\.0\.1:$((base + 104))"
ok "standby conf: node 4 appended" -- grep -qx \
    "node 4 dr-a 127.0.0.1:$((base + 104)) $dr/node4 metrics 127.0.0.1:$((base + 1104))" "$dconf"
ok "primary conf: peer_node 4 appended" -- grep -qx "peer_node 4 127.0.0.1:$((base + 104))" "$pconf"
ok "standby node 4 CN is node-4@dr" -- bash -c \
    "openssl x509 -in '$dr/node4/node.pem' -noout -subject -nameopt multiline | grep -qE '^ *commonName *= node-4@dr\$'"
ok "standby node 4 was started with --join" -- wait_for 30 grep -q "fake svd 4: args: --join" "$dr/node4/svd.log"
expect 0 "add --zone zone-a (primary, two sites)" -- "$cluster" add --zone zone-a --dir "$d7"
ok "primary conf: node 7" -- grep -qx "node 7 zone-a 127.0.0.1:$((base + 7)) $d7/node7 metrics 127.0.0.1:$((base + 1007))" "$pconf"
ok "standby conf: peer_node 7 appended" -- grep -qx "peer_node 7 127.0.0.1:$((base + 7))" "$dconf"
expect 0 "start 1 --reset --site dr" -- "$cluster" start 1 --reset --site dr --dir "$d7"
ok "reset --site dr says who rejoins" -- grep_out "node 1 of site dr wiped; it rejoins as node 5"
ok "reset --site dr deleted the standby's node 1" -- test ! -e "$dr/node1"
ok "reset --site dr kept the primary's node 1" -- alive "${ppid[1]}"
ok "standby conf: node 1 is a comment" -- grep -q "^# node 1 dr-a " "$dconf"
ok "primary conf: peer_node 1 is a comment" -- grep -q "^# peer_node 1 127.0.0.1:$((base + 101)) " "$pconf"
ok "primary conf: peer_node 5 appended" -- grep -qx "peer_node 5 127.0.0.1:$((base + 105))" "$pconf"
ok "primary conf: node 1 untouched" -- grep -q "^node 1 zone-a " "$pconf"

# down --site, then down of both sites, then purge.
declare -A drnow=()
for j in 2 3 4 5; do drnow[$j]=$(pid_of "$dr" "$j"); done
expect 0 "down --site dr" -- "$cluster" down --site dr --dir "$d7"
for j in 2 3 4 5; do ok "down --site dr stopped standby node $j" -- dead "${drnow[$j]}"; done
ok "down --site dr says which site" -- grep_out "node 2 of site dr stopped"
ok "down --site dr spares the primary" -- alive "$(pid_of "$d7" 1)"
expect 0 "down --site dr again" -- "$cluster" down --site dr --dir "$d7"
ok "down --site dr again: nothing ran" -- grep_out "no node of site dr was running"
expect 0 "up restarts the standby" -- "$cluster" up --bin "$bin" --dir "$d7"
ok "up started the standby's nodes" -- grep_out "started node\(s\) 2 3 4 5 of site dr;"
declare -A all=()
for i in 1 2 3 4 5 6 7; do all[p$i]=$(pid_of "$d7" "$i"); done
for j in 2 3 4 5; do all[d$j]=$(pid_of "$dr" "$j"); done
expect 0 "down (two sites)" -- "$cluster" down --dir "$d7"
for k in "${!all[@]}"; do ok "down stopped $k" -- dead "${all[$k]}"; done
ok "down stopped the standby first" -- bash -c \
    "grep -n 'stopped' '$out' | head -1 | grep -q 'of site dr'"
expect 0 "down --purge (two sites)" -- "$cluster" down --purge --dir "$d7"
ok "down --purge deleted both sites" -- test ! -e "$d7"

# A small standby: replicas capped at its zones; a deployment without one refuses --dr.
d8=$tmp/c8
expect 0 "up --dr --dr-nodes 1" -- "$cluster" up --dr --dr-nodes 1 --nodes 3 --bin "$bin" --dir "$d8" --base-port "$base"
ok "one standby node: replicas 1" -- grep -qx "replicas 1" "$d8/dr/cluster.conf"
ok "one standby node: the primary keeps replicas 3" -- grep -qx "replicas 3" "$d8/cluster.conf"
ok "one standby node in dr-a" -- grep -q "^node 1 dr-a 127.0.0.1:$((base + 101)) " "$d8/dr/cluster.conf"
expect 0 "down --purge (one standby node)" -- "$cluster" down --purge --dir "$d8"
expect 0 "up --dr --dr-nodes 5 --replicas 2" -- "$cluster" up --dr --dr-nodes 5 --nodes 3 --replicas 2 \
    --bin "$bin" --dir "$d8" --base-port "$base"
ok "five standby nodes: replicas 2 (the primary's)" -- grep -qx "replicas 2" "$d8/dr/cluster.conf"
ok "five standby nodes: node 4 in dr-a" -- grep -q "^node 4 dr-a " "$d8/dr/cluster.conf"
ok "five standby nodes: node 5 in dr-b" -- grep -q "^node 5 dr-b " "$d8/dr/cluster.conf"
expect 0 "down --purge (five standby nodes)" -- "$cluster" down --purge --dir "$d8"
expect 0 "up without --dr" -- "$cluster" up --nodes 3 --bin "$bin" --dir "$d8" --base-port "$base"
ok "without --dr: no site lines" -- bash -c "! grep -qE '^(site|peer_site|peer_node) ' '$d8/cluster.conf'"
ok "without --dr: no standby" -- test ! -e "$d8/dr"
expect 2 "up --dr on a deployment without a standby" -- "$cluster" up --dr --bin "$bin" --dir "$d8"
ok "up --dr on one site explained" -- grep_err "without a standby site"
expect 1 "status --site dr without a standby" -- "$cluster" status --site dr --dir "$d8"
ok "no standby explained" -- grep_err "no standby site dr"
expect 1 "drill without a standby" -- "$cluster" drill --dir "$d8"
ok "drill without a standby explained" -- grep_err "has no standby site: a drill needs one"
expect 0 "down --purge (one site)" -- "$cluster" down --purge --dir "$d8"

# pki.sh: the site in the certificate's name.
mkdir -p "$tmp/pki/ca" "$tmp/pki/a" "$tmp/pki/b"
# shellcheck disable=SC2016 # expanded by the inner bash
ok "pki: a bad site name is refused" -- bash -c 'source "$0/deploy/lib/pki.sh" && sv_pki_make_ca "$1/ca" 2>/dev/null &&
    ! sv_pki_make_node_cert "$1/ca" "$1/a" 1 "" "Bad_Site" 2>/dev/null' "$repo" "$tmp/pki"
# shellcheck disable=SC2016 # expanded by the inner bash
ok "pki: site primary names node-ID" -- bash -c 'source "$0/deploy/lib/pki.sh" &&
    sv_pki_make_node_cert "$1/ca" "$1/b" 3 "" primary &&
    openssl x509 -in "$1/b/node.pem" -noout -subject -nameopt multiline | grep -qE "^ *commonName *= node-3\$"' "$repo" "$tmp/pki"

# A non-empty DIR without cluster.conf is not taken over.
mkdir -p "$tmp/busy" && touch "$tmp/busy/file"
expect 1 "up in a non-empty DIR without cluster.conf" -- "$cluster" up --bin "$bin" --dir "$tmp/busy" --base-port "$base"
ok "the non-empty DIR is left alone" -- test -f "$tmp/busy/file"
# keygen failure: nothing half-made stays behind.
printf '#!/bin/sh\nexit 1\n' >"$tmp/badbin.svd"
mkdir -p "$tmp/badbin" && mv "$tmp/badbin.svd" "$tmp/badbin/svd" && cp "$bin/svctl" "$tmp/badbin/"
chmod +x "$tmp/badbin/svd"
expect 1 "up when svd keygen fails" -- "$cluster" up --bin "$tmp/badbin" --dir "$tmp/c4" --base-port "$base"
ok "keygen failure explained" -- grep_err "svd keygen failed"
ok "failed creation leaves no DIR" -- test ! -e "$tmp/c4"

echo "test_cluster_cli: $checks checks, $failures failed"
((failures == 0))
