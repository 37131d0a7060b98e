# client/lib.cmake: libshardvault (the C client library), the svctl command-line
# tool, and their tests: client-test (against an in-process fake server),
# drill-test (the drill's figures and reports) and svctl-usage-test (exit
# codes of svctl).
find_package(OpenSSL 3 REQUIRED)
find_package(Threads REQUIRED)

add_library(shardvault STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/client.c
                       ${CMAKE_CURRENT_SOURCE_DIR}/src/admin.c ${CMAKE_CURRENT_SOURCE_DIR}/src/dr.c
                       ${CMAKE_CURRENT_SOURCE_DIR}/src/dr_failback.c)
target_include_directories(shardvault PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                           PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(shardvault PUBLIC svproto svtls svwire OpenSSL::Crypto Threads::Threads)

add_executable(svctl ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl.c
                     ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_admin.c
                     ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_util.c
                     ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_drill.c
                     ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_drill_report.c)
target_link_libraries(svctl PRIVATE shardvault)

# The fake server speaks svtls, svwire and proto itself, with test certificates.
add_executable(client-test ${CMAKE_SOURCE_DIR}/tests/client/test_client.c
                           ${CMAKE_SOURCE_DIR}/tests/common/testcerts.c)
target_link_libraries(client-test PRIVATE svtest shardvault svproto svtls svwire OpenSSL::SSL
                                          OpenSSL::Crypto Threads::Threads)
target_include_directories(client-test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
add_test(NAME client-test COMMAND client-test --svctl $<TARGET_FILE:svctl>)
set_tests_properties(client-test PROPERTIES TIMEOUT 300)

# drill-test: the drill's figures (RPO, RTO, lag) from a record made by hand, its
# keys and bytes, and its JSON, text and HTML reports (no network).
add_executable(drill-test ${CMAKE_SOURCE_DIR}/tests/client/test_drill.c
                          ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_drill_report.c
                          ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_util.c)
target_link_libraries(drill-test PRIVATE svtest shardvault)
target_include_directories(drill-test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
add_test(NAME drill-test COMMAND drill-test)

# svctl-util-test: svctl's helpers (a key escaped for a terminal, JSON strings).
add_executable(svctl-util-test ${CMAKE_SOURCE_DIR}/tests/client/test_svctl_util.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/src/svctl_util.c)
target_link_libraries(svctl-util-test PRIVATE svtest shardvault)
target_include_directories(svctl-util-test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
add_test(NAME svctl-util-test COMMAND svctl-util-test)

add_test(NAME svctl-usage-test
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/client/svctl_usage.sh $<TARGET_FILE:svctl>)
