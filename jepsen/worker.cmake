# sv-jepsen-worker: the workloads of the Jepsen harness (register, set, big)
# through libshardvault; jepsen/run starts it in the client namespace.
find_package(OpenSSL 3 REQUIRED)
find_package(Threads REQUIRED)
add_executable(sv-jepsen-worker ${CMAKE_CURRENT_SOURCE_DIR}/src/worker.c)
target_link_libraries(sv-jepsen-worker PRIVATE shardvault OpenSSL::Crypto Threads::Threads)

# Every workload against a real 3-node cluster (deploy/cluster, ports 7651..7653;
# svd, svctl and the worker from one bin dir): register and big histories pass
# sv-check, the final set read holds every acknowledged add.
add_test(NAME jepsen-worker-test
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/jepsen/worker_test.sh
                 ${PROJECT_SOURCE_DIR}/deploy/cluster $<TARGET_FILE_DIR:sv-jepsen-worker>
                 $<TARGET_FILE:sv-check>
                 ${CMAKE_CURRENT_BINARY_DIR}/worker-test)
set_tests_properties(jepsen-worker-test PROPERTIES TIMEOUT 300 RESOURCE_LOCK cluster)
