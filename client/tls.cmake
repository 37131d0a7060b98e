# client/tls.cmake: svtls, TLS 1.3 over OpenSSL memory BIOs for the client and
# the node's libuv streams, with its test tls-test.
find_package(OpenSSL 3 REQUIRED)

add_library(svtls STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/tls.c)
target_include_directories(svtls PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# PRIVATE: tls.h does not expose OpenSSL; CMake still links it into users of the static library.
target_link_libraries(svtls PRIVATE OpenSSL::SSL OpenSSL::Crypto)

# The test makes its certificates with OpenSSL and drives a raw TLS 1.2 client.
add_executable(tls-test ${CMAKE_SOURCE_DIR}/tests/client/test_tls.c)
target_link_libraries(tls-test PRIVATE svtest svtls OpenSSL::SSL OpenSSL::Crypto)
add_test(NAME tls-test COMMAND tls-test)
set_tests_properties(tls-test PROPERTIES TIMEOUT 300)
