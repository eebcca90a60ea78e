/*
 * The POSIX socket names the test programs use, over Winsock, so that one
 * suite runs on every platform (Windows builds of the tests only). Sockets
 * are closed, read and written with close, read and write there; here
 * those go to Winsock, as the tests use them on sockets alone.
 */
#ifndef PROACT_TEST_WIN32_SOCKET_H
#define PROACT_TEST_WIN32_SOCKET_H

#include <io.h>
#include <unistd.h>
#include <winsock2.h>
#include <ws2tcpip.h>

#define MSG_NOSIGNAL 0
#define SHUT_RD      SD_RECEIVE
#define SHUT_WR      SD_SEND
#define SHUT_RDWR    SD_BOTH

/* Winsock takes char pointers where POSIX takes void pointers. */
#define setsockopt(s, l, o, v, n) setsockopt(s, l, o, (const char *)(v), n)
#define getsockopt(s, l, o, v, n) getsockopt(s, l, o, (char *)(v), n)

static inline int t_win_close(int fd)
{
	return closesocket((SOCKET)fd);
}

static inline int t_win_read(int fd, void *buf, size_t len)
{
	return recv((SOCKET)fd, buf, (int)len, 0);
}

static inline int t_win_write(int fd, const void *buf, size_t len)
{
	return send((SOCKET)fd, buf, (int)len, 0);
}

#define close(fd)       t_win_close(fd)
#define read(fd, b, n)  t_win_read(fd, b, n)
#define write(fd, b, n) t_win_write(fd, b, n)

#endif
