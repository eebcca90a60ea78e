# SPDX-License-Identifier: MIT
# 64-bit Arm Linux (glibc) with Debian's gcc-aarch64-linux-gnu; its programs
# run here under qemu-user.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(PROACT_CROSS_TRIPLET aarch64-linux-gnu)
set(PROACT_CROSS_MULTIARCH aarch64-linux-gnu)
set(PROACT_CROSS_QEMU qemu-aarch64-static)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-linux-gnu.cmake)
