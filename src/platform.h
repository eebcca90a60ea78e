/* SPDX-License-Identifier: MIT */
/*
 * platform.h - what the core needs from the system beyond standard C: the
 * waiting thread's identity, the socket type's mapping to the core's fd
 * numbers, and what registration, free and shutdown do to a descriptor.
 * POSIX: pthreads and the descriptor calls, inline. Windows: Win32 and
 * Winsock alone, no pthreads; the larger pieces (errors, the clock, the
 * pool's memory, registration) are in platform/win32.c.
 */
#ifndef PROACT_PLATFORM_H
#define PROACT_PLATFORM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proact.h"

#ifdef _WIN32

#include <winsock2.h>
#include <ws2tcpip.h>

#include <windows.h>

#ifdef _MSC_VER /* mingw-w64 has both */
typedef intptr_t ssize_t;
#define SSIZE_MAX INTPTR_MAX
#endif

typedef DWORD proact__thread;

static inline proact__thread proact__thread_self(void)
{
	return GetCurrentThreadId();
}

static inline bool proact__thread_equal(proact__thread a, proact__thread b)
{
	return a == b;
}

/* The core numbers sockets by their handle value, which Windows keeps within
   32 bits; INVALID_SOCKET is the timer's -1, anything larger is no fd. */
static inline int proact__fdnum(proact_socket s)
{
	return s <= (proact_socket)INT_MAX ? (int)s : s == INVALID_SOCKET ? -1 : INT_MIN;
}

static inline proact_socket proact__sock(int fd)
{
	return fd < 0 ? INVALID_SOCKET : (proact_socket)(unsigned)fd;
}

/* A Win32 or Winsock error code as the errno that means the same (EIO where
   none does). */
int proact__win_errno(DWORD err);

/* 0 if fd is an open socket, else -1. */
int proact__os_fd_check(int fd);
int proact__os_close(int fd);
/* shutdown(SD_SEND): 0 or a positive errno. */
int proact__os_shutdown_wr(int fd);
/* The pool's memory: reserved and committed at once, pages zero until used. */
void *proact__os_map(size_t bytes);
void proact__os_unmap(void *p, size_t bytes);
/* Gives the pages of [p, p + bytes) back to the system; 0 or -1. */
int proact__os_discard(void *p, size_t bytes);

#else /* POSIX */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

typedef pthread_t proact__thread;

static inline proact__thread proact__thread_self(void)
{
	return pthread_self();
}

static inline bool proact__thread_equal(proact__thread a, proact__thread b)
{
	return pthread_equal(a, b);
}

static inline int proact__fdnum(proact_socket s)
{
	return s;
}

static inline proact_socket proact__sock(int fd)
{
	return fd;
}

static inline int proact__os_close(int fd)
{
	return close(fd);
}

static inline int proact__os_shutdown_wr(int fd)
{
	return shutdown(fd, SHUT_WR) == 0 ? 0 : errno;
}

#endif

#endif
