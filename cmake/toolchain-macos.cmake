# SPDX-License-Identifier: MIT
# Cross-compiling for macOS with Zig's C compiler, whose libc holds Apple's
# headers and whose linker writes Mach-O:
#
#   PROACT_ZIG=$(bash scripts/zig.sh) cmake -S . -B build/cross-macos-aarch64 \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-macos.cmake \
#     -DPROACT_ZIG_TARGET=aarch64-macos -DCMAKE_BUILD_TYPE=Release
#   cmake --build build/cross-macos-aarch64
#
# PROACT_ZIG_TARGET is x86_64-macos or aarch64-macos; PROACT_MACOS_PREFIX,
# if given, a prefix of libraries built for that target (the test programs
# link with cmocka from there). PROACT_ZIG (the zig
# executable) comes from the environment at the first configure and is kept
# in the cache. The build itself needs no environment: the compiler, ar and
# ranlib are small scripts this file writes into the build tree, each
# naming zig and the target and calling the wrapper of cmake/zig/.
#
# CMake reads this file again for every try_compile, in another binary
# directory and without the cache; the first reading leaves the settings in
# this process's environment, and later readings take them from there.

if(DEFINED ENV{PROACT_ZIG_TOOLCHAIN_DIR})
  # A try_compile, or a second reading: the first one decided everything.
  set(PROACT_ZIG "$ENV{PROACT_ZIG}")
  set(PROACT_ZIG_TARGET "$ENV{PROACT_ZIG_TARGET}")
  set(PROACT_MACOS_PREFIX "$ENV{PROACT_MACOS_PREFIX}")
  set(_proact_zig_dir "$ENV{PROACT_ZIG_TOOLCHAIN_DIR}")
else()
  if(NOT PROACT_ZIG)
    set(PROACT_ZIG "$ENV{PROACT_ZIG}")
  endif()
  if(NOT PROACT_ZIG OR NOT EXISTS "${PROACT_ZIG}")
    message(FATAL_ERROR "toolchain-macos: set PROACT_ZIG to the zig executable "
      "(PROACT_ZIG=$(bash scripts/zig.sh) cmake ...); it is \"${PROACT_ZIG}\"")
  endif()
  if(NOT PROACT_ZIG_TARGET)
    set(PROACT_ZIG_TARGET "$ENV{PROACT_ZIG_TARGET}")
  endif()
  if(NOT PROACT_ZIG_TARGET MATCHES "^(x86_64|aarch64)-macos")
    message(FATAL_ERROR "toolchain-macos: -DPROACT_ZIG_TARGET=x86_64-macos or aarch64-macos "
      "(it is \"${PROACT_ZIG_TARGET}\")")
  endif()
  set(PROACT_ZIG "${PROACT_ZIG}" CACHE FILEPATH "The zig executable" FORCE)
  set(PROACT_ZIG_TARGET "${PROACT_ZIG_TARGET}" CACHE STRING "Zig's target triple" FORCE)
  set(_proact_zig_dir "${CMAKE_BINARY_DIR}/zig-toolchain")
  foreach(tool cc ar ranlib)
    file(WRITE "${_proact_zig_dir}/${tool}.tmp"
      "#!/bin/sh\nPROACT_ZIG='${PROACT_ZIG}' PROACT_ZIG_TARGET='${PROACT_ZIG_TARGET}' \\\n"
      "  exec '${CMAKE_CURRENT_LIST_DIR}/zig/${tool}' \"$@\"\n")
    file(CHMOD "${_proact_zig_dir}/${tool}.tmp" PERMISSIONS OWNER_READ OWNER_WRITE
      OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    file(COPY_FILE "${_proact_zig_dir}/${tool}.tmp" "${_proact_zig_dir}/${tool}" ONLY_IF_DIFFERENT)
    file(REMOVE "${_proact_zig_dir}/${tool}.tmp")
  endforeach()
  set(PROACT_MACOS_PREFIX "${PROACT_MACOS_PREFIX}" CACHE PATH
    "A prefix of libraries built for the target (cmocka: scripts/cmocka-macos.sh), or empty")
  set(ENV{PROACT_MACOS_PREFIX} "${PROACT_MACOS_PREFIX}")
  set(ENV{PROACT_ZIG} "${PROACT_ZIG}")
  set(ENV{PROACT_ZIG_TARGET} "${PROACT_ZIG_TARGET}")
  set(ENV{PROACT_ZIG_TOOLCHAIN_DIR} "${_proact_zig_dir}")
endif()

set(CMAKE_SYSTEM_NAME Darwin)
if(PROACT_ZIG_TARGET MATCHES "^aarch64")
  set(CMAKE_SYSTEM_PROCESSOR arm64)
else()
  set(CMAKE_SYSTEM_PROCESSOR x86_64)
endif()

set(CMAKE_C_COMPILER "${_proact_zig_dir}/cc")
set(CMAKE_AR "${_proact_zig_dir}/ar" CACHE FILEPATH "Archiver" FORCE)
set(CMAKE_RANLIB "${_proact_zig_dir}/ranlib" CACHE FILEPATH "Ranlib" FORCE)

# Zig brings the SDK's headers itself: no Xcode, no sysroot, no -arch.
set(CMAKE_OSX_SYSROOT "" CACHE STRING "" FORCE)
set(CMAKE_OSX_ARCHITECTURES "" CACHE STRING "" FORCE)
set(CMAKE_OSX_DEPLOYMENT_TARGET "" CACHE STRING "" FORCE)

# Nothing of the build host: no library, header or pkg-config package of
# Linux may be found for the target (liburing, the host's cmocka); only
# what PROACT_MACOS_PREFIX holds, built for the target.
set(CMAKE_FIND_ROOT_PATH "${_proact_zig_dir}" ${PROACT_MACOS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
if(PROACT_MACOS_PREFIX)
  set(ENV{PKG_CONFIG_LIBDIR} "${PROACT_MACOS_PREFIX}/lib/pkgconfig")
else()
  set(ENV{PKG_CONFIG_LIBDIR} "${_proact_zig_dir}/pkgconfig")
endif()
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
