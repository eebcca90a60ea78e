/* SPDX-License-Identifier: MIT */
/*
 * The fcntl calls the tests make, for sockets (see sys/socket.h here):
 * O_NONBLOCK is what the tests set (Winsock cannot report a socket's mode),
 * FD_CLOEXEC is a handle that is not inherited, and a closed socket is
 * EBADF.
 */
#ifndef PROACT_TEST_WIN32_FCNTL_H
#define PROACT_TEST_WIN32_FCNTL_H

#include_next <fcntl.h>

#define F_GETFD    1
#define F_SETFD    2
#define F_GETFL    3
#define F_SETFL    4
#define FD_CLOEXEC 1
#define O_NONBLOCK 0x100000

/* In tests/common.c. */
int t_win_fcntl(int fd, int cmd, ...);
#define fcntl t_win_fcntl

#endif
