# node/segstore.cmake: svsegstore, the append-only chunk segment store
# (io_uring segment files + LevelDB index), and its test segstore-test.
find_package(PkgConfig REQUIRED)
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)
find_library(SV_LEVELDB_LIB leveldb REQUIRED)
find_path(SV_LEVELDB_INCLUDE leveldb/c.h REQUIRED)

add_library(svsegstore STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/segstore.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/segstore_io.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/segstore_index.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/segstore_compact.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/segstore_open.c)
target_link_libraries(svsegstore PRIVATE svcodec)
target_include_directories(svsegstore PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_include_directories(svsegstore PRIVATE ${SV_LEVELDB_INCLUDE})
target_link_libraries(svsegstore PUBLIC PkgConfig::URING ${SV_LEVELDB_LIB})

add_executable(segstore-test ${CMAKE_SOURCE_DIR}/tests/node/test_segstore.c)
target_link_libraries(segstore-test PRIVATE svtest svsegstore)
add_test(NAME segstore-test COMMAND segstore-test)
set_tests_properties(segstore-test PROPERTIES TIMEOUT 300 LABELS node)
