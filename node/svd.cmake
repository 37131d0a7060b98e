# node/svd.cmake: svd, the node daemon: configuration (config.c), the shard
# state machine (sm*.c), the cluster map (map.c), and the node itself
# (node_int.h lists its files).
find_package(OpenSSL 3 REQUIRED)
# The cluster's description: cluster.conf and the cluster map (pure).
add_library(svmap STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/config.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/map.c)
target_include_directories(svmap PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# The pure scheduler (sched.h). svsched_bugs is the same code with the
# deliberate defects of sched-sim compiled in (as raft's svraft_bugs).
add_library(svsched STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/sched.c)
target_link_libraries(svsched PUBLIC svmap)
add_library(svsched_bugs STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/sched.c)
target_link_libraries(svsched_bugs PUBLIC svmap)
target_compile_definitions(svsched_bugs PRIVATE SV_SCHED_BUGS)
add_library(svnode STATIC
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_cmd.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_apply.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_read.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_snapshot.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_drop.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sm_chunks.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/node.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/host.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/pipeline.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/peers.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/dispatch.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/objects.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/repair.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/copy.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/dr.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/dr_compare.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/upkeep.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/meta.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/move.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/health.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/sched_run.c
    ${CMAKE_CURRENT_SOURCE_DIR}/src/join.c

    ${CMAKE_CURRENT_SOURCE_DIR}/src/stats.c)
target_include_directories(svnode PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
# sv_build_info{version} (stats.c): the project's version (CMakeLists.txt).
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/src/stats.c PROPERTIES
    COMPILE_DEFINITIONS SV_VERSION="${PROJECT_VERSION}")
target_include_directories(svnode PRIVATE ${SV_LEVELDB_INCLUDE})
target_link_libraries(svnode PUBLIC svmap svsched svlog sverrors svtransport svraftwire svproto svlogstore svsegstore
    svcrypto svcodec svmetrics OpenSSL::Crypto ${SV_LEVELDB_LIB} Threads::Threads)

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
# sm-logs-test exports its fdatasync and fsync (ENABLE_EXPORTS: -rdynamic), so
# that LevelDB's calls reach them (see the file's top).
add_executable(sm-logs-test ${CMAKE_SOURCE_DIR}/tests/node/test_sm_logs.c)
target_link_libraries(sm-logs-test PRIVATE svtest svnode ${CMAKE_DL_LIBS})
set_target_properties(sm-logs-test PROPERTIES ENABLE_EXPORTS ON)
add_test(NAME sm-logs-test COMMAND sm-logs-test)
set_tests_properties(sm-logs-test PROPERTIES LABELS node)

# The cluster map as data: bootstrap, encoding, replica moves (pure).
add_executable(map-test ${CMAKE_SOURCE_DIR}/tests/node/test_map.c)
target_link_libraries(map-test PRIVATE svtest svmap)
add_test(NAME map-test COMMAND map-test)
set_tests_properties(map-test PROPERTIES LABELS node)

# The scheduler's rules, one at a time on hand-built maps (pure).
add_executable(sched-test ${CMAKE_SOURCE_DIR}/tests/node/test_sched.c)
target_link_libraries(sched-test PRIVATE svtest svsched)
add_test(NAME sched-test COMMAND sched-test)
set_tests_properties(sched-test PROPERTIES LABELS node)
