# node/errors.cmake: sverrors, the node's one error space (errors.h: the range
# of every module's codes, checked at compile time, and sv_strerror), with its
# test errors-test.
add_library(sverrors STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/errors.c)
target_include_directories(sverrors PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# client.h only for the values of the client library's codes (checked, not linked).
target_include_directories(sverrors PRIVATE ${CMAKE_SOURCE_DIR}/client/include)
target_link_libraries(sverrors PUBLIC svraft svtls svproto svwire svraftwire svsegstore svcrypto
    svlogstore svmap)

# The test links the client library to see its strings too.
add_executable(errors-test ${CMAKE_SOURCE_DIR}/tests/node/test_errors.c)
target_link_libraries(errors-test PRIVATE svtest sverrors shardvault)
add_test(NAME errors-test COMMAND errors-test)
set_tests_properties(errors-test PROPERTIES TIMEOUT 300 LABELS node)
