# node/config.cmake: config-test, cluster.conf parsing (node/src/config.c,
# part of svnode in svd.cmake).
add_executable(config-test ${CMAKE_SOURCE_DIR}/tests/node/test_config.c)
target_link_libraries(config-test PRIVATE svtest svnode)
add_test(NAME config-test COMMAND config-test)
set_tests_properties(config-test PROPERTIES TIMEOUT 60 LABELS node)
