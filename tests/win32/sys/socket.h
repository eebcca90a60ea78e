/* SPDX-License-Identifier: MIT */
/*
 * The POSIX socket names the test programs use, over Winsock, so that one
 * suite runs on every platform (Windows builds of the tests only). Sockets
 * are closed, read and written with close, read and write there; here
 * those go to Winsock, as the tests read and write sockets alone (close
 * also takes the C runtime's descriptors of tests/common.c's files).
 */
#ifndef PROACT_TEST_WIN32_SOCKET_H
#define PROACT_TEST_WIN32_SOCKET_H

#include <winsock2.h>
#include <ws2tcpip.h>

#include <errno.h>
#include <io.h>
#include <unistd.h>

/* Names the Windows headers define as macros (rpcndr.h, minwindef.h),
   which the tests use as names. */
#undef small
#undef near
#undef far
#undef IN
#undef OUT

/* The library takes it as 1024 where the system names none (src/internal.h). */
#define IOV_MAX      1024
#define MSG_NOSIGNAL 0
/* Winsock has no per-call non-blocking flag: with it, t_win_recv and
   t_win_send ask WSAPoll first, so that the mode of a socket another
   thread may be blocked on stays as it is while there is room. */
#define MSG_DONTWAIT 0x40000000
#define SHUT_RD      SD_RECEIVE
#define SHUT_WR      SD_SEND
#define SHUT_RDWR    SD_BOTH

/* Winsock takes char pointers where POSIX takes void pointers. */
#define setsockopt(s, l, o, v, n) setsockopt(s, l, o, (const char *)(v), n)
#define getsockopt(s, l, o, v, n) getsockopt(s, l, o, (char *)(v), n)

/* A Winsock error as the errno POSIX would set (the library's own table);
   whether the tests made fd non-blocking (Winsock cannot tell a socket's
   mode), and the end of that at its close (tests/common.c). */
int proact__win_errno(unsigned long err);
int t_win_nonblocking(int fd);
void t_win_forget(int fd);
/* Whether fd is a socket; the handle of C runtime descriptor fd, or
   INVALID_HANDLE_VALUE (tests/common.c). */
int t_win_is_socket(int fd);
HANDLE t_win_file_handle(int fd);

/* A call's result as POSIX gives it: -1 with errno set on failure. */
static inline int t_win_result(int n)
{
	if (n == SOCKET_ERROR) {
		int err = WSAGetLastError();
		errno = err == WSAEWOULDBLOCK || err == WSAETIMEDOUT
		            ? EAGAIN
		            : proact__win_errno((unsigned long)err);
		return -1;
	}
	return n;
}

/* Whether fd has room to write (POLLWRNORM) or something to read. */
static inline int t_win_ready(int fd, short events)
{
	WSAPOLLFD p = {.fd = (SOCKET)fd, .events = events};
	return WSAPoll(&p, 1, 0) > 0;
}

static inline int t_win_recv(int fd, void *buf, size_t len, int flags)
{
	if ((flags & MSG_DONTWAIT) && !t_win_ready(fd, POLLRDNORM)) {
		errno = EAGAIN;
		return -1;
	}
	return t_win_result(recv((SOCKET)fd, (char *)buf, (int)len, flags & ~MSG_DONTWAIT));
}

/* Without blocking: small sends while WSAPoll sees room, each of which a
   writable socket takes whole; then, as the buffer is nearly full, what
   still fits, with the socket non-blocking for that moment only. */
static inline int t_win_send(int fd, const void *buf, size_t len, int flags)
{
	const char *p = buf;
	if (!(flags & MSG_DONTWAIT))
		return t_win_result(send((SOCKET)fd, p, (int)len, flags));
	flags &= ~MSG_DONTWAIT;
	int done = 0, n = 0;
	while ((size_t)done < len && t_win_ready(fd, POLLWRNORM)) {
		int k = len - (size_t)done < 1024 ? (int)(len - (size_t)done) : 1024;
		if ((n = send((SOCKET)fd, p + done, k, flags)) == SOCKET_ERROR)
			break;
		done += n;
	}
	if ((size_t)done < len && n != SOCKET_ERROR) {
		u_long on = 1, was = (u_long)t_win_nonblocking(fd);
		ioctlsocket((SOCKET)fd, FIONBIO, &on);
		while ((size_t)done < len &&
		       (n = send((SOCKET)fd, p + done, (int)(len - (size_t)done), flags)) !=
		           SOCKET_ERROR)
			done += n;
		int err = WSAGetLastError();
		ioctlsocket((SOCKET)fd, FIONBIO, &was);
		WSASetLastError(err);
	}
	return done > 0 || len == 0 ? done : t_win_result(SOCKET_ERROR);
}

/* A socket, or a C runtime descriptor of a file (tests/common.c's). */
static inline int t_win_close(int fd)
{
	if (t_win_file_handle(fd) != INVALID_HANDLE_VALUE)
		return _close(fd);
	t_win_forget(fd);
	return t_win_result(closesocket((SOCKET)fd));
}

/* A non-blocking connect under way is EINPROGRESS, as POSIX says it. */
static inline int t_win_connect(int fd, const struct sockaddr *a, int len)
{
	if (connect((SOCKET)fd, a, len) == 0)
		return 0;
	int err = WSAGetLastError();
	if (err != WSAEWOULDBLOCK)
		return t_win_result(SOCKET_ERROR);
	errno = EINPROGRESS;
	return -1;
}

#define connect(fd, a, n) t_win_connect((int)(fd), a, (int)(n))
#define send(fd, b, n, f) t_win_send((int)(fd), b, n, f)
#define recv(fd, b, n, f) t_win_recv((int)(fd), b, n, f)
#define close(fd)         t_win_close((int)(fd))
#define read(fd, b, n)    t_win_recv((int)(fd), b, n, 0)
#define write(fd, b, n)   t_win_send((int)(fd), b, n, 0)

#endif
