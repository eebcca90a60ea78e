/* SPDX-License-Identifier: MIT */
/* ioctl of sockets as Winsock's ioctlsocket (see sys/socket.h here). */
#include <sys/socket.h>
#define ioctl(fd, req, arg) ioctlsocket((SOCKET)(fd), req, (u_long *)(arg))
