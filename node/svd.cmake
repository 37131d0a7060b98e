# node/svd.cmake: svd, the node daemon: configuration (config.c), the shard
# state machine (sm.c), the multi-raft host and request handling (node.c).
find_package(OpenSSL 3 REQUIRED)
add_library(svnode STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/config.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/node.c)
target_include_directories(svnode PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_include_directories(svnode PRIVATE ${SV_LEVELDB_INCLUDE})
target_link_libraries(svnode PUBLIC svtransport svraftwire svproto svlogstore svsegstore svcrypto
    svcodec OpenSSL::Crypto ${SV_LEVELDB_LIB} Threads::Threads)

add_executable(svd ${CMAKE_CURRENT_SOURCE_DIR}/src/svd.c)
target_link_libraries(svd PRIVATE svnode)

# The shard state machine on its own (sessions, uploads, snapshot images).
add_executable(sm-test ${CMAKE_SOURCE_DIR}/tests/node/test_sm.c)
target_link_libraries(sm-test PRIVATE svtest svnode)
add_test(NAME sm-test COMMAND sm-test)
set_tests_properties(sm-test PROPERTIES LABELS node)
add_executable(powercut-test ${CMAKE_SOURCE_DIR}/tests/node/test_powercut.c)
target_link_libraries(powercut-test PRIVATE svtest svnode)
add_test(NAME powercut-test COMMAND powercut-test)
set_tests_properties(powercut-test PROPERTIES LABELS node)
