# shellcheck shell=bash
# tests/jepsen/lib.sh: what the scripts that test jepsen/run share (sourced):
# the skip without root, a fresh work directory, the failure count.

# jepsen_test_begin NAME WORK: as root, WORK emptied and no failure yet;
# otherwise NAME is skipped (exit 77, ctest's SKIP_RETURN_CODE).
jepsen_test_begin()
{
    jepsen_test_name=$1
    if ((EUID != 0)); then
        echo "$1: SKIPPED: jepsen/run needs root (network namespaces, veth, iptables)"
        exit 77
    fi
    fails=0
    rm -rf "$2"
    mkdir -p "$2"
}

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# refused WHAT COMMAND...: COMMAND must exit 2 (a usage error), else WHAT fails.
refused()
{
    "${@:2}" >/dev/null 2>&1
    (($? == 2)) || fail "$1 must exit 2"
}

# jepsen_test_end [NOTE]: exit 1 naming the count when a check failed;
# otherwise print OK (and NOTE) and exit 0.
jepsen_test_end()
{
    ((fails == 0)) || { echo "$jepsen_test_name: $fails failure(s)"; exit 1; }
    echo "$jepsen_test_name: OK${1:+ ($1)}"
    exit 0
}
