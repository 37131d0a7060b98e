# The tests of jepsen/run end to end in network namespaces (root only;
# skipped otherwise), each a script tests/jepsen/SCRIPT given jepsen/run, the
# programs' directory, its work directory (NAME without "jepsen-") and the
# workload phase's length.
function(sv_jepsen_run_test name script seconds timeout cost)
    string(REGEX REPLACE "^jepsen-" "" work ${name})
    add_test(NAME ${name}
             COMMAND bash ${PROJECT_SOURCE_DIR}/tests/jepsen/${script}
                     ${CMAKE_CURRENT_SOURCE_DIR}/run $<TARGET_FILE_DIR:svd>
                     ${CMAKE_CURRENT_BINARY_DIR}/${work} ${seconds})
    set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} SKIP_RETURN_CODE 77
                         RESOURCE_LOCK cluster COST ${cost})
endfunction()

# jepsen-run-test: runs of 45 s each, 30 s under the sanitizers (CI's time:
# longer runs are jepsen/soak's).
if(SV_SANITIZE)
    set(SV_JEPSEN_SECONDS 30)
else()
    set(SV_JEPSEN_SECONDS 45)
endif()
sv_jepsen_run_test(jepsen-run-test run_test.sh ${SV_JEPSEN_SECONDS} 1500 1000)

# jepsen-membership-test: one register run of 45 s under the membership
# nemesis (about 60 s of wall time; longer runs: jepsen/README.md).
sv_jepsen_run_test(jepsen-membership-test membership_test.sh 45 150 900)

# jepsen-site-test: one register run of 25 s under the site nemesis (a primary
# site cut off, the standby promoted, the old primary fenced), seed 2; at most
# 60 s of wall time in all (the script checks it).
sv_jepsen_run_test(jepsen-site-test site_test.sh 25 120 600)
