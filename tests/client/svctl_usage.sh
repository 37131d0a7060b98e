#!/bin/sh
# svctl-usage-test: svctl's exit codes for help, usage errors and an unusable CA.
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
expect 0 put --help
grep -q "usage: svctl put" /tmp/svctl-usage.$$.out || { echo "FAIL: put --help"; fails=$((fails + 1)); }
for c in get rm ls stat status; do
    expect 0 "$c" --help
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
