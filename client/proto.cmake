# client/proto.cmake: svproto, message bodies (proto.h) over the bounded
# msgpack reader/writer (mp.h), shared by the client and the node, with its
# test proto-test.
add_library(svproto STATIC src/proto.c src/mp.c)
target_include_directories(svproto PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)

add_executable(proto-test ${CMAKE_SOURCE_DIR}/tests/client/test_proto.c)
target_link_libraries(proto-test PRIVATE svtest svproto)
add_test(NAME proto-test COMMAND proto-test)
set_tests_properties(proto-test PROPERTIES TIMEOUT 300)
