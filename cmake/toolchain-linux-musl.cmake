# SPDX-License-Identifier: MIT
# x86_64 Linux with musl libc through Debian's musl-tools (musl-gcc). musl-gcc
# sees musl's headers and no kernel headers, so what needs <linux/...> (the
# futex lock, io_uring through liburing) is left out by the checks; epoll is
# musl's own. Its programs run natively here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER musl-gcc)
# pkg-config looks where musl's libraries would be: what Debian installs
# for glibc (cmocka, liburing) must not be linked here.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/musl/lib/pkgconfig)
unset(ENV{PKG_CONFIG_PATH})
