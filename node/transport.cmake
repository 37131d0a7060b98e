# node/transport.cmake: svtransport, wire frames over TLS 1.3 (svtls) on libuv
# TCP streams for client connections and node-to-node links, with its test
# transport-test.
find_package(PkgConfig REQUIRED)
pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv)
find_package(OpenSSL 3 REQUIRED)

add_library(svtransport STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/transport.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/src/transport_conn.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/src/transport_io.c)
target_include_directories(svtransport PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# PUBLIC: transport.h includes uv.h and wire.h.
target_link_libraries(svtransport PUBLIC svtls svwire PkgConfig::UV)
target_link_libraries(svtransport PRIVATE svlog)

# The test makes its certificates with OpenSSL (tests/common/testcerts.c) and
# drives raw TCP and raw svtls clients from a helper thread.
add_executable(transport-test ${CMAKE_SOURCE_DIR}/tests/node/test_transport.c
                              ${CMAKE_SOURCE_DIR}/tests/common/testcerts.c)
target_link_libraries(transport-test PRIVATE svtest svtransport svtls sverrors OpenSSL::Crypto
                                             Threads::Threads)
add_test(NAME transport-test COMMAND transport-test)
set_tests_properties(transport-test PROPERTIES TIMEOUT 300 LABELS node)
