/* SPDX-License-Identifier: MIT */
/*
 * win32.c - the platform layer on Windows: error codes as errno values, the
 * deadline clock, the pool's memory and socket registration, with Win32
 * and Winsock alone (no pthreads, no POSIX emulation).
 */
#include <errno.h>

#include "../internal.h"

/* Winsock and Win32 codes with an errno of the same sense; the rest is EIO. */
static const struct {
	DWORD code;
	int err;
} errmap[] = {
    {WSAEWOULDBLOCK, EAGAIN},
    {WSAEINTR, EINTR},
    {WSAEBADF, EBADF},
    {ERROR_INVALID_HANDLE, EBADF},
    {WSAENOTSOCK, ENOTSOCK},
    {WSAEACCES, EACCES},
    {ERROR_ACCESS_DENIED, EACCES},
    {WSAEINVAL, EINVAL},
    {ERROR_INVALID_PARAMETER, EINVAL},
    {WSAEMFILE, EMFILE},
    {ERROR_TOO_MANY_OPEN_FILES, EMFILE},
    {WSAENOBUFS, ENOBUFS},
    {ERROR_NOT_ENOUGH_MEMORY, ENOMEM},
    {ERROR_OUTOFMEMORY, ENOMEM},
    {WSAEMSGSIZE, EMSGSIZE},
    {ERROR_MORE_DATA, EMSGSIZE},
    {WSAEAFNOSUPPORT, EAFNOSUPPORT},
    {WSAEADDRINUSE, EADDRINUSE},
    {WSAEADDRNOTAVAIL, EADDRNOTAVAIL},
    {WSAENETUNREACH, ENETUNREACH},
    {ERROR_NETWORK_UNREACHABLE, ENETUNREACH},
    {WSAEHOSTUNREACH, EHOSTUNREACH},
    {ERROR_HOST_UNREACHABLE, EHOSTUNREACH},
    {WSAECONNREFUSED, ECONNREFUSED},
    {ERROR_CONNECTION_REFUSED, ECONNREFUSED},
    {WSAECONNRESET, ECONNRESET},
    {ERROR_NETNAME_DELETED, ECONNRESET}, /* a reset seen by an overlapped request */
    {WSAECONNABORTED, ECONNABORTED},
    {ERROR_CONNECTION_ABORTED, ECONNABORTED},
    {WSAENOTCONN, ENOTCONN},
    {WSAESHUTDOWN, EPIPE}, /* a send after shutdown(SD_SEND), as POSIX says it */
    {ERROR_BROKEN_PIPE, EPIPE},
    {WSAETIMEDOUT, ETIMEDOUT},
    {ERROR_SEM_TIMEOUT, ETIMEDOUT},
    {WSAEISCONN, EISCONN},
    {WSAEALREADY, EALREADY},
    {WSAEINPROGRESS, EINPROGRESS},
    {WSAEOPNOTSUPP, EOPNOTSUPP},
    {WSA_OPERATION_ABORTED, ECANCELED},
};

int proact__win_errno(DWORD err)
{
	for (size_t i = 0; i < sizeof(errmap) / sizeof(errmap[0]); i++)
		if (errmap[i].code == err)
			return errmap[i].err;
	return EIO;
}

uint64_t proact_now(void)
{
	LARGE_INTEGER c, f;
	QueryPerformanceCounter(&c);
	QueryPerformanceFrequency(&f);
	uint64_t ticks = (uint64_t)c.QuadPart, hz = (uint64_t)f.QuadPart;
	return ticks / hz * 1000000000u + ticks % hz * 1000000000u / hz;
}

static int sock_type(int fd, int *type)
{
	int len = sizeof(*type);
	return getsockopt(proact__sock(fd), SOL_SOCKET, SO_TYPE, (char *)type, &len);
}

/* A file's or pipe's handle is open too: registration then refuses it with
   -ENOTSUP, as POSIX does a regular file (an event's handle is no fd). */
static bool file_handle(int fd)
{
	return GetFileType((HANDLE)proact__sock(fd)) != FILE_TYPE_UNKNOWN;
}

int proact__os_fd_check(int fd)
{
	int type;
	return sock_type(fd, &type) == 0 || file_handle(fd) ? 0 : -1;
}

int proact__os_close(int fd)
{
	return closesocket(proact__sock(fd));
}

int proact__os_shutdown_wr(int fd)
{
	return shutdown(proact__sock(fd), SD_SEND) == 0 ? 0 : proact__win_errno(WSAGetLastError());
}

int proact__win_fd_prepare(struct proact__fd *f, int fd)
{
	int type;
	u_long one = 1;
	if (sock_type(fd, &type) != 0) /* only sockets: Windows' files and pipes are not watched */
		return file_handle(fd) ? -ENOTSUP : -EBADF;
	if (ioctlsocket(proact__sock(fd), FIONBIO, &one) != 0)
		return -proact__win_errno(WSAGetLastError());
	uint16_t flags = PROACT__F_SOCKET | (type == SOCK_STREAM ? PROACT__F_STREAM : 0);
	f->flags = (uint16_t)((f->flags & PROACT__F_LISTS) | flags);
	return 0;
}

void *proact__os_map(size_t bytes)
{
	return VirtualAlloc(NULL, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
}

void proact__os_unmap(void *p, size_t bytes)
{
	(void)bytes;
	VirtualFree(p, 0, MEM_RELEASE);
}

/* Decommitted pages go back to the system; committed again, they read as
   zero and cost nothing until touched. Whole pages only, as madvise. */
int proact__os_discard(void *p, size_t bytes)
{
	SYSTEM_INFO si;
	GetSystemInfo(&si);
	size_t page = si.dwPageSize;
	if ((uintptr_t)p % page || bytes % page)
		return -1;
	if (!VirtualFree(p, bytes, MEM_DECOMMIT))
		return -1;
	return VirtualAlloc(p, bytes, MEM_COMMIT, PAGE_READWRITE) ? 0 : -1;
}
