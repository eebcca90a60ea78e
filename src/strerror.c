/* SPDX-License-Identifier: MIT */
/*
 * strerror.c - texts for the errno values proact documents, in the sense the
 * library gives them, and for the errors the kernel gives requests. One
 * table drives the lookup; other values fall back to the C library's own
 * thread-safe text where it has one (glibc's strerrordesc_np).
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "internal.h"

#define PROACT_ERRNO_MAP(X)                                                                        \
	X(0, "success")                                                                            \
	X(EINVAL, "invalid argument (NULL pointer, zero length, bad flags or options)")            \
	X(EBADF, "bad file descriptor (negative or not open)")                                     \
	X(ENOTSUP, "descriptor cannot be watched (regular file or directory)")                     \
	X(ENOBUFS, "no pool for a NULL-buffer read, or the watcher's request limit is reached")    \
	X(EAGAIN, "the descriptor's request limit is reached")                                     \
	X(EALREADY, "the descriptor is being freed or detached")                                   \
	X(ENOENT, "the descriptor is not registered with this watcher")                            \
	X(ESHUTDOWN, "the watcher was shut down")                                                  \
	X(EBUSY, "another thread is already waiting on this watcher")                              \
	X(ENOSYS, "the backend is not available on this system")                                   \
	X(ETIMEDOUT, "the request's deadline passed")                                              \
	X(ECANCELED, "the request was cancelled by free or detach")                                \
	X(EPIPE, "the stream is broken (peer closed, or a partial write expired)")                 \
	X(ENOMEM, "out of memory")                                                                 \
	X(ECONNRESET, "connection reset by peer")                                                  \
	X(ECONNREFUSED, "connection refused")                                                      \
	X(ECONNABORTED, "connection aborted")                                                      \
	X(ENOTCONN, "socket is not connected")                                                     \
	X(EHOSTUNREACH, "no route to host")                                                        \
	X(ENETUNREACH, "network is unreachable")                                                   \
	X(EADDRINUSE, "address already in use")                                                    \
	X(EADDRNOTAVAIL, "address not available")                                                  \
	X(EAFNOSUPPORT, "address family not supported")                                            \
	X(EMSGSIZE, "message too long (a datagram did not fit)")                                   \
	X(EMFILE, "too many open files in this process")                                           \
	X(ENFILE, "too many open files in the system")                                             \
	X(ENOTSOCK, "not a socket")                                                                \
	X(EINTR, "interrupted system call")                                                        \
	X(EPERM, "operation not permitted")                                                        \
	X(EACCES, "permission denied")                                                             \
	X(EIO, "input/output error")

const char *proact_strerror(int err)
{
	if (err == INT_MIN)
		return "unknown error";
	if (err < 0)
		err = -err;
#define PROACT_ERRNO_CASE(num, text)                                                               \
	case num:                                                                                  \
		return text;
	switch (err) {
		PROACT_ERRNO_MAP(PROACT_ERRNO_CASE)
	default:
#ifdef PROACT_HAVE_STRERRORDESC_NP
		return strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error";
#else
		return "unknown error";
#endif
	}
#undef PROACT_ERRNO_CASE
}
