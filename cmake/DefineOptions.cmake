# Build options, in one place.
option(PMD_UNIT_TESTING "Build the cmocka test suites and register them with CTest" ON)
option(PMD_FUZZING "Build the fuzz targets (clang, libFuzzer)" OFF)
option(PMD_WERROR "Treat compiler warnings as errors (CI turns this on)" OFF)
option(PMD_BENCH "Build the benchmark suite" ON)
