# SPDX-License-Identifier: MIT
# Shared part of the Linux cross toolchains for Debian's cross compilers
# (gcc-<triplet>) and multiarch libraries (<package>:<arch>). The including
# file sets PROACT_CROSS_TRIPLET (the compiler's prefix), PROACT_CROSS_MULTIARCH
# (the directory under /usr/lib holding the target's libraries) and
# CMAKE_SYSTEM_PROCESSOR; PROACT_CROSS_QEMU names the emulator, if one runs
# the target's programs here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${PROACT_CROSS_TRIPLET}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${PROACT_CROSS_MULTIARCH})

# pkg-config sees the target's libraries only (cmocka, liburing); what is
# not installed for the target is simply not found.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${PROACT_CROSS_MULTIARCH}/pkgconfig:/usr/share/pkgconfig)
unset(ENV{PKG_CONFIG_PATH})

# The target's loader and libc must come from one package: a loader of the
# cross compiler's copy (/usr/<triplet>) that finds the multiarch libc of
# another build aborts every program at start ("stack smashing detected" on
# s390x). Where the multiarch libc is installed (cmocka for the target
# brings it), qemu uses it and its own loader from /lib; else the copy.
if(PROACT_CROSS_QEMU)
  if(EXISTS /lib/${PROACT_CROSS_MULTIARCH}/libc.so.6)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${PROACT_CROSS_QEMU})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${PROACT_CROSS_QEMU} -L /usr/${PROACT_CROSS_TRIPLET})
  endif()
endif()
