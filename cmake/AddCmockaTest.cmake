# add_cmocka_test(NAME SOURCES src... LINK_LIBRARIES lib... LABELS l...
#                 [TIMEOUT s])
# One executable per suite, registered with CTest; exit code 77 is a skip.
function(add_cmocka_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LINK_LIBRARIES;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA ${ARG_LINK_LIBRARIES})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT} SKIP_RETURN_CODE 77)
endfunction()
