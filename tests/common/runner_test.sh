#!/bin/sh
# runner-test: the test runner (runner.c) through sv-runner-demo: exit status
# and report of passing, failing, empty, skipped, hanging and unknown tests.
# usage: runner_test.sh PATH_OF_SV_RUNNER_DEMO
demo=$1
failed=0

# expect STATUS PATTERN ARGS...: `demo ARGS` exits STATUS and its output
# (stdout and stderr) matches the extended regular expression PATTERN.
expect()
{
    want=$1 pattern=$2
    shift 2
    out=$("$demo" "$@" 2>&1)
    rc=$?
    if [ "$rc" != "$want" ]; then
        why="exit $rc, want $want"
    elif ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
        why="output lacks /$pattern/"
    else
        echo "ok   sv-runner-demo $*"
        return
    fi
    echo "FAIL: sv-runner-demo $*: $why"
    printf '%s\n' "$out" | sed 's/^/    /'
    failed=1
}

expect 0 '^ok   pass +3 checks' pass
expect 0 '1 tests, 0 failed, 3 checks' --run pass
expect 1 'runner_demo\.c:[0-9]+: fail: FAIL: 1 \+ 1 == 3' fail
expect 1 '^FAIL fail +1 of 2 checks failed' fail
expect 1 'fail-rc: FAIL: -2 = -2 \(\?\), expected 0 \(\?\)' fail-rc
expect 1 '^FAIL empty +no check ran' empty
expect 0 '^skip skip ' skip
expect 1 'thread-fail: FAIL: a check failed on a helper thread' thread-fail
expect 1 '^FAIL hang: timed out' hang
expect 1 '2 tests, 1 failed' pass fail
expect 2 "no test named 'nope'" nope
expect 2 "unknown option '--nope'" --nope
expect 0 '^thread-fail$' --list
expect 0 '^usage: sv-runner-demo ' --help
exit "$failed"
