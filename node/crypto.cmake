# node/crypto.cmake: svcrypto, chunk encryption at rest (AES-256-GCM), the
# master key file and DEK wrapping, with its test crypto-test.
find_package(OpenSSL 3 REQUIRED)

add_library(svcrypto STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/crypto.c)
target_include_directories(svcrypto PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# PRIVATE: crypto.h does not expose OpenSSL; CMake still links it into users of the static library.
target_link_libraries(svcrypto PRIVATE OpenSSL::Crypto)

# The test also decrypts sealed chunks with raw EVP calls, to check the
# documented layout independently of the library.
add_executable(crypto-test ${CMAKE_SOURCE_DIR}/tests/node/test_crypto.c)
target_link_libraries(crypto-test PRIVATE svtest svcrypto OpenSSL::Crypto)
add_test(NAME crypto-test COMMAND crypto-test)
set_tests_properties(crypto-test PROPERTIES TIMEOUT 300 LABELS node)
