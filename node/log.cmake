# node/log.cmake: svlog, the one logger of node/ (log.h: one line per event on
# stderr, keyed hashes of object names), with its test log-test.
find_package(Threads REQUIRED)

add_library(svlog STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/log.c)
target_include_directories(svlog PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(svlog PUBLIC Threads::Threads)

add_executable(log-test ${CMAKE_SOURCE_DIR}/tests/node/test_log.c)
target_link_libraries(log-test PRIVATE svtest svlog Threads::Threads)
add_test(NAME log-test COMMAND log-test)
set_tests_properties(log-test PROPERTIES TIMEOUT 300 LABELS node)
