# node/metrics.cmake: svmetrics, the metrics registry (Prometheus text format)
# and its HTTP endpoint (/metrics, /health; libuv and http_parser), with its
# tests metrics-test, metrics-http-test and metrics-promtool.
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::UV)
    pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv)
endif()
# libhttp-parser-dev ships no pkg-config file.
find_library(SV_HTTP_PARSER_LIB http_parser REQUIRED)
find_path(SV_HTTP_PARSER_INCLUDE http_parser.h REQUIRED)

add_library(svmetrics STATIC ${CMAKE_CURRENT_SOURCE_DIR}/src/metrics.c
                             ${CMAKE_CURRENT_SOURCE_DIR}/src/metrics_http.c)
target_include_directories(svmetrics PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
target_include_directories(svmetrics PRIVATE ${SV_HTTP_PARSER_INCLUDE})
# PRIVATE: metrics.h does not include uv.h or http_parser.h; CMake still links
# them into users of the static library.
target_link_libraries(svmetrics PRIVATE PkgConfig::UV ${SV_HTTP_PARSER_LIB} m)

# The registry: values, buckets, series added and removed, escaping, names,
# concurrent updates.
add_executable(metrics-test ${CMAKE_SOURCE_DIR}/tests/node/test_metrics.c)
target_link_libraries(metrics-test PRIVATE svtest svmetrics Threads::Threads)
add_test(NAME metrics-test COMMAND metrics-test)
set_tests_properties(metrics-test PROPERTIES TIMEOUT 300 LABELS node)

# The endpoint on 127.0.0.1 (a port the kernel picks), driven by raw sockets
# from a helper thread.
add_executable(metrics-http-test ${CMAKE_SOURCE_DIR}/tests/node/test_metrics_http.c)
target_link_libraries(metrics-http-test PRIVATE svtest svmetrics PkgConfig::UV Threads::Threads)
add_test(NAME metrics-http-test COMMAND metrics-http-test)
set_tests_properties(metrics-http-test PROPERTIES TIMEOUT 300 LABELS node)

# promtool (Debian package prometheus) checks the exposition of a registry
# that holds every kind of series; a missing promtool fails the test.
add_executable(metrics-expo ${CMAKE_SOURCE_DIR}/tests/node/metrics_expo.c)
target_link_libraries(metrics-expo PRIVATE svmetrics)
add_test(NAME metrics-promtool
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/node/metrics_promtool.sh $<TARGET_FILE:metrics-expo>)
set_tests_properties(metrics-promtool PROPERTIES TIMEOUT 120)
