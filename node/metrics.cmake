# node/metrics.cmake: svmetrics, the metrics registry (Prometheus text
# format), with its tests metrics-test and metrics-promtool.
add_library(svmetrics STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/metrics.c)
target_include_directories(svmetrics PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_link_libraries(svmetrics PRIVATE m)

# The registry: values, buckets, series added and removed, escaping, names,
# concurrent updates.
add_executable(metrics-test ${CMAKE_SOURCE_DIR}/tests/node/test_metrics.c)
target_link_libraries(metrics-test PRIVATE svmetrics Threads::Threads)
target_include_directories(metrics-test PRIVATE ${CMAKE_SOURCE_DIR}/tests/common)
add_test(NAME metrics-test COMMAND metrics-test)
set_tests_properties(metrics-test PROPERTIES TIMEOUT 300)

# promtool (Debian package prometheus) checks the exposition of a registry
# that holds every kind of series; a missing promtool fails the test.
add_executable(metrics-expo ${CMAKE_SOURCE_DIR}/tests/node/metrics_expo.c)
target_link_libraries(metrics-expo PRIVATE svmetrics)
add_test(NAME metrics-promtool
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/node/metrics_promtool.sh $<TARGET_FILE:metrics-expo>)
set_tests_properties(metrics-promtool PROPERTIES TIMEOUT 120)
