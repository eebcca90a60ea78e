# SPDX-License-Identifier: MIT
# 32-bit x86 Linux (glibc) with Debian's gcc-i686-linux-gnu; its programs
# run natively on an x86_64 kernel.
set(CMAKE_SYSTEM_PROCESSOR i686)
set(PROACT_CROSS_TRIPLET i686-linux-gnu)
set(PROACT_CROSS_MULTIARCH i386-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-linux-gnu.cmake)
