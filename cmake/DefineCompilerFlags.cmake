# Compiler flags: one warning list for the whole tree, sanitizer build types,
# and a developer default of RelWithDebInfo that keeps assertions.

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

set(CMAKE_C_STANDARD 17)
set(CMAKE_C_STANDARD_REQUIRED ON)
set(CMAKE_C_EXTENSIONS ON)           # _GNU_SOURCE interfaces: memfd, SCM_RIGHTS, ucred
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

add_compile_definitions(_GNU_SOURCE)
add_compile_options(
  -Wall -Wextra -Wshadow -Wpointer-arith -Wmissing-prototypes
  -Wstrict-prototypes -Wmissing-declarations -Wformat=2 -Wformat-nonliteral
  -Wredundant-decls -Wnested-externs -Wundef -Wwrite-strings -Wvla
  -Wno-unused-parameter -Wno-missing-field-initializers)
if(PMD_WERROR)
  add_compile_options(-Werror)
endif()

# Assertions stay on in RelWithDebInfo: they guard invariants we want checked
# in every build that developers and CI run.
set(CMAKE_C_FLAGS_RELWITHDEBINFO "-O2 -g" CACHE STRING "" FORCE)

set(_san_common "-g -O1 -fno-omit-frame-pointer")
set(CMAKE_C_FLAGS_ADDRESSSANITIZER
    "${_san_common} -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    CACHE STRING "ASan + UBSan" FORCE)
set(CMAKE_EXE_LINKER_FLAGS_ADDRESSSANITIZER "-fsanitize=address,undefined" CACHE STRING "" FORCE)
set(CMAKE_SHARED_LINKER_FLAGS_ADDRESSSANITIZER "-fsanitize=address,undefined" CACHE STRING "" FORCE)
set(CMAKE_C_FLAGS_THREADSANITIZER "${_san_common} -fsanitize=thread -Wno-tsan"
    CACHE STRING "TSan" FORCE)
set(CMAKE_EXE_LINKER_FLAGS_THREADSANITIZER "-fsanitize=thread" CACHE STRING "" FORCE)
set(CMAKE_SHARED_LINKER_FLAGS_THREADSANITIZER "-fsanitize=thread" CACHE STRING "" FORCE)

# The fuzzing build (PMD_FUZZING, clang): every library gets libFuzzer's
# coverage and ASan+UBSan; the targets in tests/fuzz link libFuzzer's main.
if(PMD_FUZZING)
  if(NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "PMD_FUZZING needs clang (CC=clang)")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined
                      -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
  set(PMD_FUZZ_SANITIZED ON)
endif()

# Sanitized libraries cannot link with --no-undefined (the runtime is in the
# executable), so only plain builds get it.
if(NOT CMAKE_BUILD_TYPE MATCHES "Sanitizer$" AND NOT PMD_FUZZING)
  add_link_options(-Wl,--no-undefined)
endif()
