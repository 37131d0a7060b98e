# node/logstore.cmake: svlogstore, the Raft log storage of a node (many raft
# groups, group commit; LevelDB and in-memory implementations), and its test
# logstore-test. Reuses segstore.cmake's LevelDB cache variables when set.
if(NOT SV_LEVELDB_LIB)
    find_library(SV_LEVELDB_LIB leveldb REQUIRED)
endif()
if(NOT SV_LEVELDB_INCLUDE)
    find_path(SV_LEVELDB_INCLUDE leveldb/c.h REQUIRED)
endif()

add_library(svlogstore STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/logstore.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/logstore_mem.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/logstore_payload.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/logstore_leveldb.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/logstore_open.c)
target_link_libraries(svlogstore PRIVATE svcodec)
target_include_directories(svlogstore PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_include_directories(svlogstore PRIVATE ${SV_LEVELDB_INCLUDE})
target_link_libraries(svlogstore PUBLIC svraft ${SV_LEVELDB_LIB})

add_executable(logstore-test ${CMAKE_SOURCE_DIR}/tests/node/test_logstore.c)
target_include_directories(logstore-test PRIVATE ${SV_LEVELDB_INCLUDE})
target_link_libraries(logstore-test PRIVATE svtest svlogstore)
add_test(NAME logstore-test COMMAND logstore-test)
set_tests_properties(logstore-test PROPERTIES TIMEOUT 300 LABELS node)
