# node/raftwire.cmake: svraftwire, Raft messages in SV_MSG_RAFT frame bodies
# (raftwire.h), with its test raftwire-test.
add_library(svraftwire STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/raftwire.c)
target_include_directories(svraftwire PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# PUBLIC: raftwire.h includes shardvault/raft.h; mp.h comes from svproto.
target_link_libraries(svraftwire PUBLIC svraft svproto)

add_executable(raftwire-test ${CMAKE_SOURCE_DIR}/tests/node/test_raftwire.c)
target_link_libraries(raftwire-test PRIVATE svtest svraftwire)
add_test(NAME raftwire-test COMMAND raftwire-test)
set_tests_properties(raftwire-test PROPERTIES TIMEOUT 300 LABELS node)
