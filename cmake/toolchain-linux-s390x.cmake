# SPDX-License-Identifier: MIT
# 64-bit IBM Z Linux (glibc), big-endian, with Debian's gcc-s390x-linux-gnu;
# its programs run here under qemu-user.
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(PROACT_CROSS_TRIPLET s390x-linux-gnu)
set(PROACT_CROSS_MULTIARCH s390x-linux-gnu)
set(PROACT_CROSS_QEMU qemu-s390x-static)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain-linux-gnu.cmake)
