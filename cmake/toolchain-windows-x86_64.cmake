# SPDX-License-Identifier: MIT
# 64-bit Windows with Debian's mingw-w64 (gcc-mingw-w64-x86-64); its programs
# run here under Wine (wine64), which ctest uses as the emulator. The build
# sees only the target's libraries: pkg-config looks in PROACT_WINDOWS_PREFIX
# (cmocka built for the target by scripts/cmocka-cross.sh) and, if given,
# PROACT_WINDOWS_OPENSSL_PREFIX (OpenSSL 3 by scripts/openssl-cross.sh: the
# TLS layer and its tests), and nowhere else.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
if(NOT PROACT_WINDOWS_PREFIX AND DEFINED ENV{PROACT_WINDOWS_PREFIX})
  set(PROACT_WINDOWS_PREFIX "$ENV{PROACT_WINDOWS_PREFIX}")
endif()
if(PROACT_WINDOWS_PREFIX)
  set(PROACT_WINDOWS_PREFIX "${PROACT_WINDOWS_PREFIX}" CACHE PATH "cmocka and more for the target")
  set(ENV{PROACT_WINDOWS_PREFIX} "${PROACT_WINDOWS_PREFIX}") # try_compile projects
endif()
if(NOT PROACT_WINDOWS_OPENSSL_PREFIX AND DEFINED ENV{PROACT_WINDOWS_OPENSSL_PREFIX})
  set(PROACT_WINDOWS_OPENSSL_PREFIX "$ENV{PROACT_WINDOWS_OPENSSL_PREFIX}")
endif()
set(proact_pc_dirs "${PROACT_WINDOWS_PREFIX}/lib/pkgconfig")
if(PROACT_WINDOWS_OPENSSL_PREFIX)
  set(PROACT_WINDOWS_OPENSSL_PREFIX "${PROACT_WINDOWS_OPENSSL_PREFIX}" CACHE PATH
    "OpenSSL 3 for the target (the TLS layer)")
  set(ENV{PROACT_WINDOWS_OPENSSL_PREFIX} "${PROACT_WINDOWS_OPENSSL_PREFIX}")
  string(APPEND proact_pc_dirs ":${PROACT_WINDOWS_OPENSSL_PREFIX}/lib/pkgconfig")
endif()
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32 ${PROACT_WINDOWS_PREFIX}
  ${PROACT_WINDOWS_OPENSSL_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_LIBDIR} "${proact_pc_dirs}")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
# Self-contained programs: no libgcc or winpthread DLLs to find under Wine.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
if(NOT DEFINED CMAKE_CROSSCOMPILING_EMULATOR AND EXISTS /usr/lib/wine/wine64)
  set(CMAKE_CROSSCOMPILING_EMULATOR /usr/lib/wine/wine64)
endif()
