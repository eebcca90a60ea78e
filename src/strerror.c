/*
 * strerror.c - texts for the errno values proact documents, in the sense the
 * library gives them. One table drives the lookup; other values fall back to
 * the C library's text.
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
	X(ENOMEM, "out of memory")

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
		return strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error";
	}
#undef PROACT_ERRNO_CASE
}
