# jepsen-run-test: jepsen/run end to end in network namespaces (root only;
# skipped otherwise). Runs of 60 s each, 30 s under the sanitizers.
if(SV_SANITIZE)
    set(SV_JEPSEN_SECONDS 30)
else()
    set(SV_JEPSEN_SECONDS 60)
endif()
add_test(NAME jepsen-run-test
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/jepsen/run_test.sh
                 ${CMAKE_CURRENT_SOURCE_DIR}/run $<TARGET_FILE_DIR:svd>
                 ${CMAKE_CURRENT_BINARY_DIR}/run-test ${SV_JEPSEN_SECONDS})
set_tests_properties(jepsen-run-test PROPERTIES TIMEOUT 1500 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK cluster COST 1000)

# jepsen-membership-test: one register run of 45 s under the membership
# nemesis (about 60 s of wall time; longer runs: jepsen/README.md).
add_test(NAME jepsen-membership-test
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/jepsen/membership_test.sh
                 ${CMAKE_CURRENT_SOURCE_DIR}/run $<TARGET_FILE_DIR:svd>
                 ${CMAKE_CURRENT_BINARY_DIR}/membership-test 45)
set_tests_properties(jepsen-membership-test PROPERTIES TIMEOUT 150 SKIP_RETURN_CODE 77
                     RESOURCE_LOCK cluster COST 900)
