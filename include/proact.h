/* SPDX-License-Identifier: MIT */
/*
 * proact.h - a proactor for sockets the program already has.
 *
 * The program hands the watcher *requests* on file descriptors it owns ("read
 * this socket into this buffer", "write all of this buffer", "read into a pool
 * buffer when data comes") and later collects *completions*, in batches, from
 * proact_wait(). The thread that calls proact_wait() performs the I/O: also,
 * inside its own submission calls, whatever can go at once (a write into a
 * socket with room, a read whose data is there). Other threads' submissions
 * are handed to it. The library starts no thread of its own.
 *
 * Conventions for every function below:
 *   - A call returns 0 (or a count) on success and a negative errno on failure.
 *     Nothing aborts the process on bad input.
 *   - A submission that fails produces no completion. A submission that
 *     succeeds produces exactly one completion, delivered by proact_wait().
 *     Completions are never delivered from inside a submission call.
 *   - A completion's `error` is 0 or a positive errno.
 *
 * Lifecycle of a request: submitted (the call returned 0; the buffer belongs
 * to the watcher), completed (the I/O finished inside the watcher), delivered
 * (proact_wait() copied the completion out; the buffer is the program's again).
 */
#ifndef PROACT_H
#define PROACT_H

#include <stddef.h>
#include <stdint.h>
#ifdef _WIN32
#include <errno.h>
#include <winsock2.h>
#else
#include <sys/socket.h>
#include <sys/uio.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What the shared library exports: on Windows exactly the functions marked
   here (without any mark, the linker would export every global symbol). */
#if defined(_WIN32) && defined(PROACT_BUILDING_DLL)
#define PROACT_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(PROACT_BUILDING)
#define PROACT_API __attribute__((visibility("default")))
#else
#define PROACT_API
#endif

#define PROACT_VERSION_MAJOR 0
#define PROACT_VERSION_MINOR 1
#define PROACT_VERSION_PATCH 0

/**
 * proact_socket - what a request names: a descriptor on POSIX (exactly int,
 * so POSIX programs and the ABI see no change), a SOCKET on Windows. The
 * text below says "fd" for it. On Windows, TIMER's -1 is INVALID_SOCKET,
 * and only sockets whose handle value fits in an int can be registered
 * (every handle Windows gives out does: -EBADF otherwise).
 */
#ifdef _WIN32
typedef SOCKET proact_socket;
/* The gather-write segment, as on POSIX (Windows has no <sys/uio.h>). */
struct iovec {
	void *iov_base;
	size_t iov_len;
};
/* Windows' C library has no ESHUTDOWN: Winsock's number for the same error. */
#ifndef ESHUTDOWN
#define ESHUTDOWN 10058
#endif
#else
typedef int proact_socket;
#endif

/** The watcher: registrations, queues, deadlines, the buffer pool. Opaque. */
typedef struct proact_watcher proact_watcher;

/** What a request does; a completion carries the op it was submitted with. */
enum proact_op {
	PROACT_OP_READ = 1,      /* read into buf, or into a pool buffer if buf is NULL */
	PROACT_OP_WRITE = 2,     /* write every byte of buf */
	PROACT_OP_WRITEV = 3,    /* write every byte of iov[0..iovcnt) in order */
	PROACT_OP_FREE = 4,      /* proact_free() finished: the fd is closed */
	PROACT_OP_DETACH = 5,    /* proact_detach() finished: the fd is yours again */
	PROACT_OP_ACCEPT = 6,    /* accept one connection on a listening socket */
	PROACT_OP_CONNECT = 7,   /* connect a socket to addr */
	PROACT_OP_SHUTDOWN = 8,  /* shutdown(SHUT_WR) once every earlier write is out */
	PROACT_OP_RECVFROM = 9,  /* receive one datagram and its source address */
	PROACT_OP_SENDTO = 10,   /* send one datagram (to addr, if given) */
	PROACT_OP_TIMER = 11,    /* fire once at the deadline; no fd (see proact_timer) */
	PROACT_OP_SENDFILE = 12, /* send a range of a file (see proact_sendfile) */
};

/** Request flags (struct proact_request.flags). */
#define PROACT_FULL 0x1u /* READ: complete only when len bytes arrived */

/** Completion flags (struct proact_completion.flags). */
#define PROACT_COMP_FULL  0x1u /* the request was a FULL read */
#define PROACT_COMP_POOL  0x2u /* buf is a pool buffer (see proact_read) */
#define PROACT_COMP_TRUNC 0x4u /* RECVFROM: the datagram did not fit (error EMSGSIZE) */

/**
 * One request, as handed to proact_submit(). All fields are public.
 * Unused fields must be zero (a designated initializer does it).
 */
struct proact_request {
	proact_socket fd;        /* the descriptor; registered on first use (TIMER: -1) */
	uint8_t op;              /* enum proact_op, any but FREE and DETACH */
	uint8_t reserved[3];     /* must be zero */
	uint32_t flags;          /* PROACT_FULL (READ only) */
	void *buf;               /* READ, WRITE, RECVFROM, SENDTO: the buffer;
	                            READ, RECVFROM: NULL = pool */
	size_t len;              /* its length in bytes, > 0 (pool reads: a cap) */
	const struct iovec *iov; /* WRITEV: the segments, in order */
	int iovcnt;              /* WRITEV: 1..IOV_MAX segments */
	uint32_t addrlen;        /* bytes at addr */
	struct sockaddr *addr;   /* CONNECT, SENDTO: the destination (SENDTO: NULL on a
	                            connected socket); ACCEPT, RECVFROM: where the
	                            peer's address goes, or NULL */
	uint64_t deadline;       /* CLOCK_MONOTONIC ns, absolute; 0 = none
	                            (TIMER: when it fires, 0 = at once) */
	void *ctx;               /* returned untouched in the completion */
	int file;                /* SENDFILE: the file the bytes come from */
	uint64_t offset;         /* SENDFILE: where in the file the range starts */
};

/** One completion, as filled in by proact_wait(). All fields read-only. */
struct proact_completion {
	proact_socket fd; /* the descriptor the request was submitted on (TIMER: -1) */
	uint8_t op;       /* enum proact_op */
	uint8_t reserved[3];
	uint32_t flags;      /* PROACT_COMP_* */
	int error;           /* 0 or a positive errno (see the per-call notes) */
	void *ctx;           /* as submitted (for FREE/DETACH: as given to the call) */
	void *buf;           /* READ/WRITE/RECVFROM/SENDTO: the buffer (pool buffer if
	                        COMP_POOL); WRITEV: the iov array as submitted; others NULL */
	size_t size;         /* bytes moved in total, also on error and deadline */
	proact_socket newfd; /* ACCEPT: the accepted socket, else -1 */
	uint32_t addrlen;    /* ACCEPT, RECVFROM: length of the address stored at addr */
};

/** Watcher options; zero or NULL fields take the default shown. */
struct proact_options {
	/* "io_uring", "epoll", "kqueue", "iocp" or NULL. NULL: the environment
	   variable PROACT_BACKEND if set (not in a set-user-ID program, where
	   the platform can tell), else the best backend that works here:
	   io_uring, then epoll on Linux; kqueue on the BSDs and macOS;
	   iocp on Windows (see proact_backend for what it lacks). */
	const char *backend;
	uint32_t pool_buffer_size;   /* bytes per pool buffer; default 16384 */
	uint32_t pool_buffer_count;  /* pool buffers; default 256 (0 means default,
	                                use PROACT_POOL_NONE for no pool). The pool
	                                is reserved address space: a buffer's pages
	                                are taken when data first lands in it and,
	                                where the platform can, given back once no
	                                read took it for two periods of 250 ms
	                                (io_uring keeps the 16 or so its kernel
	                                ring holds) */
	uint32_t max_pending_per_fd; /* queued requests per fd; default 4096 */
	uint32_t max_pending;        /* queued requests per watcher; default 1<<20 */
	uint32_t reserved[4];        /* must be zero */
};

/** pool_buffer_count value meaning "no pool": NULL-buffer reads fail. */
#define PROACT_POOL_NONE UINT32_MAX

/* ------------------------------------------------------------------------ */
/* Watcher                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * proact_watcher_new - create a watcher.
 * @out:  receives the watcher.
 * @opts: options, or NULL for defaults.
 * Returns 0, or -EINVAL (NULL out, bad option, unknown backend name, a
 * nonzero reserved field, more than 32,768 pool buffers or a pool over
 * 16 GiB or half the address space), -ENOMEM, -ENOSYS (the named backend is
 * not available in this build or on this system), or
 * the errno of the backend's setup (for example -EMFILE).
 * Any thread.
 */
PROACT_API int proact_watcher_new(proact_watcher **out, const struct proact_options *opts);

/**
 * proact_watcher_shutdown - stop the watcher, from any thread, at any time.
 * Cancels every pending request (no completion is delivered for them), closes
 * every registered fd (also those being detached), and wakes a thread blocked
 * in proact_wait(), which returns -ESHUTDOWN. When this call returns, the
 * library no longer touches any buffer of the program: all are yours again.
 * From then on every call on the watcher returns -ESHUTDOWN, whatever its
 * other arguments, except proact_backend() (the name stays valid until
 * destroy) and proact_watcher_destroy(). Idempotent: a second call returns
 * -ESHUTDOWN.
 * Returns 0, -ESHUTDOWN, or -EINVAL (NULL w).
 */
PROACT_API int proact_watcher_shutdown(proact_watcher *w);

/**
 * proact_watcher_destroy - free the watcher's memory.
 * Shuts the watcher down first if that was not done. Call it only once no
 * thread can still be inside a call on @w (typically: shut down, join the
 * waiting thread, destroy). @w is invalid afterwards. NULL is ignored.
 */
PROACT_API void proact_watcher_destroy(proact_watcher *w);

/**
 * proact_backend - the name of the backend the watcher runs on:
 * "io_uring", "epoll", "kqueue" or "iocp". NULL if @w is NULL. Any thread.
 *
 * iocp (Windows): sockets only (anything else is -EBADF). Datagrams are
 * overlapped WSARecvFrom and WSASendTo; a file send reads the file in
 * pieces and sends them (see proact_sendfile). Windows error codes
 * arrive as the errno of the same sense (WSAECONNRESET as ECONNRESET...),
 * EIO where none fits. A socket cannot leave its completion port: after
 * proact_detach() it stays associated with this watcher's port, and
 * non-blocking (Windows cannot tell whether it was), so only this watcher
 * can take it back, and overlapped calls of the program's own on it would
 * complete into this watcher's port. The pool's idle buffers are
 * decommitted (VirtualFree), the counterpart of MADV_DONTNEED.
 */
PROACT_API const char *proact_backend(const proact_watcher *w);

/* ------------------------------------------------------------------------ */
/* Requests                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * proact_read, proact_read_full, proact_read_deadline - queue a read.
 *
 * proact_read() completes after one successful read of at least one byte
 * (size = bytes read), at end of stream (size 0, error 0), or on error.
 * With @buf NULL the data goes into a pool buffer, taken only when data has
 * arrived; the completion has PROACT_COMP_POOL set and buf pointing at it.
 * @len then caps the read: 0, or anything above pool_buffer_size, means one
 * whole pool buffer.
 * A pool buffer stays valid until the next proact_wait() call, or, if the
 * program submits a write of (part of) it on this watcher before that call,
 * until that write's completion has been delivered and proact_wait() is called
 * once more. When the pool is empty, the read waits and the data stays in the
 * kernel: reads are never truncated to fit. A waiting pool read with no
 * deadline and nothing queued behind it holds no memory of its own: an idle
 * connection costs the watcher its fd entry, 64 bytes.
 *
 * proact_read_full() completes only when @len bytes arrived, or at end of
 * stream, error or deadline, with size = every byte read so far. @buf must
 * not be NULL.
 *
 * @deadline: absolute CLOCK_MONOTONIC time in ns (see proact_now()), 0 for
 * none. An expired read completes with ETIMEDOUT and the bytes it read.
 *
 * The first request on @fd registers it with the watcher and sets O_NONBLOCK:
 * from then on do not read, write or close @fd yourself; use proact_free()
 * or proact_detach().
 *
 * Buffer: the watcher's from a successful call until the completion is
 * delivered. Threads: any thread, concurrently with any call but
 * proact_watcher_destroy().
 *
 * Returns 0, or:
 *   -EINVAL     NULL w, zero @len with a buffer, @len > SSIZE_MAX with a
 *               buffer, FULL with NULL buf, unknown flags;
 *   -EBADF      @fd is negative or not open;
 *   -ENOTSUP    @fd is a regular file or directory (not pollable);
 *   -ENOBUFS    NULL buf but the watcher has no pool (PROACT_POOL_NONE), or
 *               the watcher holds max_pending requests;
 *   -EAGAIN     @fd holds max_pending_per_fd requests;
 *   -EALREADY   @fd is being freed or detached;
 *   -ESHUTDOWN  the watcher was shut down;
 *   -ENOSPC     epoll: the system's limit of watched fds is reached
 *               (fs.epoll.max_user_watches);
 *   -ENOMEM     out of memory.
 * Completion errors: the read's errno (ECONNRESET...), ETIMEDOUT (deadline),
 * ECANCELED (proact_free/proact_detach; size may be > 0 if bytes arrived).
 * kqueue takes registrations with its next wait: a descriptor the kernel
 * refuses to watch fails the requests waiting on it with the kernel's errno
 * (ENOMEM, ...) in their completions instead of in this call's result.
 */
PROACT_API int proact_read(proact_watcher *w, proact_socket fd, void *buf, size_t len, void *ctx);
PROACT_API int proact_read_full(proact_watcher *w, proact_socket fd, void *buf, size_t len,
                                void *ctx);
PROACT_API int proact_read_deadline(proact_watcher *w, proact_socket fd, void *buf, size_t len,
                                    uint32_t flags, uint64_t deadline, void *ctx);

/**
 * proact_write, proact_writev, proact_write_deadline - queue a write.
 *
 * Completes only when every byte went out (size = total), or on error or
 * deadline with size = the bytes written. Writes on one fd go out in
 * submission order, never interleaved. The iov array and every segment stay
 * the watcher's until the completion is delivered. A pool buffer from a read
 * completion may be written (zero-copy echo): it is kept alive until this
 * write's completion is delivered.
 *
 * A write whose deadline expires after sending part of its bytes leaves a cut
 * in the stream: it completes with ETIMEDOUT and the partial size, and every
 * later write on the fd completes with EPIPE and size 0, sending nothing. A
 * write that expires before sending anything leaves the stream intact.
 *
 * Returns 0 or the errors of proact_read(), and also -EINVAL for a total
 * length of zero, iovcnt < 1 or > IOV_MAX, a NULL iov or segment base with a
 * nonzero length, or a pool buffer that is no longer held (already released).
 * Completion errors: the write's errno (EPIPE, ECONNRESET...), ETIMEDOUT,
 * EPIPE (after a cut), ECANCELED. Writes never raise SIGPIPE.
 *
 * io_uring: a send the kernel finishes in a worker thread (seen with
 * Unix-domain sockets whose peer stopped reading) cannot be asked back. Its
 * deadline and a proact_detach() take effect only once the peer makes room;
 * proact_free() and proact_watcher_shutdown() end it by shutting the socket
 * down (the peer sees the end of the stream), as they close it anyway.
 */
PROACT_API int proact_write(proact_watcher *w, proact_socket fd, const void *buf, size_t len,
                            void *ctx);
PROACT_API int proact_writev(proact_watcher *w, proact_socket fd, const struct iovec *iov,
                             int iovcnt, void *ctx);
PROACT_API int proact_write_deadline(proact_watcher *w, proact_socket fd, const void *buf,
                                     size_t len, uint64_t deadline, void *ctx);

/**
 * proact_sendfile, proact_sendfile_deadline - queue the sending of @len bytes
 * of @file, from @offset on, to @fd.
 *
 * A write in every respect (rules 3, 4, 6 and 7): it completes only when the
 * whole range went out (size = @len), or on error or deadline with size =
 * the bytes sent; it goes out in submission order with the other writes on
 * @fd, never interleaved; an expiry after part of the range leaves a cut
 * (later writes fail with EPIPE); proact_free() completes it with ECANCELED.
 * The bytes do not pass through the program: on Linux the kernel moves them
 * with sendfile(2) from the page cache when @fd has room (both backends;
 * io_uring waits for room with a poll in its ring); elsewhere they are read
 * with pread(2) into a buffer on the stack and sent, and a short send reads
 * its rest again. @file is read with pread semantics: its file offset does not
 * move, and the same file can feed many sends at once. Like every write it
 * never raises SIGPIPE: sendfile(2) has no MSG_NOSIGNAL, so SIGPIPE is
 * blocked in the sending thread around it and one it raised is taken back.
 *
 * @file: a regular file open for reading; it stays the program's (it is not
 * registered, not made non-blocking, not closed), and must stay open until
 * the completion is delivered. The completion's buf is NULL. On Windows
 * @file is a C runtime descriptor (_open, _fileno), read by ReadFile at the
 * offset in pieces of 256 KiB that are then sent: its file position moves.
 *
 * Returns 0 or the errors of proact_write(); -EBADF also for a negative
 * @file; -EINVAL for a @len of 0 or above SSIZE_MAX, or an @offset + @len
 * that overflows. In proact_submit(): op PROACT_OP_SENDFILE, fd, file,
 * offset, len, deadline, ctx; buf, iov and addr NULL.
 * Completion errors: those of a write (EPIPE, ECONNRESET, ETIMEDOUT,
 * ECANCELED...), the file's read errors (EIO, EBADF: @file not open for
 * reading; EINVAL: @file is not a file the kernel can send from), and
 * ENODATA: the file ended before the range did (size = the bytes sent; if
 * that is more than 0, a cut as for an expired write).
 */
PROACT_API int proact_sendfile(proact_watcher *w, proact_socket fd, int file, uint64_t offset,
                               size_t len, void *ctx);
PROACT_API int proact_sendfile_deadline(proact_watcher *w, proact_socket fd, int file,
                                        uint64_t offset, size_t len, uint64_t deadline, void *ctx);

/**
 * proact_submit - queue @n requests at once, with one wake-up of the waiter.
 * Requests are validated and queued in array order; the call stops at the
 * first one that fails. Returns the number queued (n when all were); if that
 * is less than n, reqs[returned] was refused and queued nothing. If the first
 * request fails, returns its negative errno (the errors of proact_read and
 * proact_write). -EINVAL also for NULL reqs, @n < 0, an unknown op, FREE or
 * DETACH, a nonzero reserved field, and a field the op does not use that is
 * not zero (an iov on a READ, an address on a WRITE, a buffer on an ACCEPT or
 * SHUTDOWN...). @n == 0 returns 0. A TIMER request (see proact_timer) takes
 * fd -1 (any other fd is -EINVAL), its time in deadline, and ctx; it gets no
 * id. Any thread.
 */
PROACT_API int proact_submit(proact_watcher *w, const struct proact_request *reqs, int n);

/**
 * proact_accept - queue the acceptance of one connection on listening socket @fd.
 *
 * Completes when a connection was accepted: newfd is the new socket, already
 * non-blocking and close-on-exec, owned by the program (not registered: its
 * first request registers it). If @addr is not NULL, the peer's address is
 * stored there (at most @addrlen bytes; the completion's addrlen is its true
 * length). Accepts complete in submission order, like reads.
 *
 * When the process or system is out of descriptors (EMFILE, ENFILE) or
 * memory (ENOBUFS, ENOMEM), the accept completes with that error and the
 * listener pauses: the next accept on it is not tried until this watcher
 * closes a descriptor (proact_free) or 100 ms passed, so a loop that
 * resubmits at once does not spin. The pending connection stays in the
 * listen queue and the listener stays open.
 * A peer that reset before being accepted (ECONNABORTED) is skipped silently.
 * On io_uring one multishot accept serves the listener while accepts are
 * queued; the kernel may take a few more connections before it stops: they
 * wait in the watcher for the next accept (or are closed with the listener).
 *
 * @addr: the watcher's until the completion is delivered.
 * Returns 0 or the errors of proact_read() (-EINVAL: @addr not NULL with
 * @addrlen 0, or NULL with @addrlen not 0). Completion errors: EMFILE, ENFILE, ENOBUFS, ENOMEM,
 * EINVAL
 * (@fd is not listening), ETIMEDOUT, ECANCELED.
 */
PROACT_API int proact_accept(proact_watcher *w, proact_socket fd, struct sockaddr *addr,
                             uint32_t addrlen, void *ctx);

/**
 * proact_connect - queue a non-blocking connect of socket @fd to @addr.
 *
 * Completes once the connection is established (error 0) or has failed
 * (ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT from the kernel or from
 * @deadline, ...). The connect goes on the fd's write queue: writes
 * submitted after it wait for it, and reads wait until it completed, so a
 * program may submit connect, write and read at once. If the connect fails,
 * the requests waiting behind it fail with the same error; the socket is
 * unusable then: free it. @addr: the watcher's until the completion
 * is delivered. TCP over IPv4 and IPv6, and Unix-domain stream sockets
 * (whose connect completes at once or fails, EAGAIN meaning a full backlog).
 * Returns 0 or the errors of proact_read() (-EINVAL: NULL @addr or @addrlen 0).
 */
PROACT_API int proact_connect(proact_watcher *w, proact_socket fd, const struct sockaddr *addr,
                              uint32_t addrlen, uint64_t deadline, void *ctx);

/**
 * proact_shutdown_write - queue shutdown(@fd, SHUT_WR) behind @fd's writes.
 *
 * Runs once every write submitted before it has completed, so the peer sees
 * the end of the stream right after the last queued byte. If an earlier write
 * failed or was cut by its deadline, the shutdown still runs. Completes with
 * 0 or the errno of shutdown() (ENOTCONN...). Writes submitted after it fail
 * with EPIPE. Reads are not affected. Returns 0 or the errors of proact_read().
 */
PROACT_API int proact_shutdown_write(proact_watcher *w, proact_socket fd, void *ctx);

/**
 * proact_recvfrom, proact_sendto - one datagram each (UDP, or any datagram socket).
 *
 * proact_recvfrom() completes with one whole datagram: size is its length and
 * the sender's address is stored at @addr (if not NULL; the completion's
 * addrlen is its length). With @buf NULL the datagram goes into a pool buffer
 * as for proact_read() (PROACT_COMP_POOL), taken only when one arrived. A
 * datagram longer than the buffer is not silently cut: the completion has
 * error EMSGSIZE, PROACT_COMP_TRUNC, and size = the bytes stored (the rest
 * of that datagram is lost, as the kernel discards it).
 *
 * proact_sendto() sends @buf as one datagram to @addr (NULL on a connected
 * socket). It completes with size = @len, or with the error (EMSGSIZE for a
 * datagram too large, ECONNREFUSED after an ICMP error...). Sends go out in
 * submission order; a send never goes out in part.
 *
 * Buffers and @addr: the watcher's until the completion is delivered.
 * Returns 0 or the errors of proact_read(); -EINVAL also for @addr NULL with
 * @addrlen not 0 (or the reverse), and for proact_sendto() with a NULL @buf
 * or @len 0 (an empty datagram is received, never sent).
 */
PROACT_API int proact_recvfrom(proact_watcher *w, proact_socket fd, void *buf, size_t len,
                               struct sockaddr *addr, uint32_t addrlen, void *ctx);
PROACT_API int proact_sendto(proact_watcher *w, proact_socket fd, const void *buf, size_t len,
                             const struct sockaddr *addr, uint32_t addrlen, void *ctx);

/**
 * proact_free - cancel every pending request on @fd, then close it.
 * proact_detach - the same, but hand @fd back open, with its original
 *                 blocking mode restored.
 *
 * Each pending request completes with ECANCELED (size = bytes already moved),
 * and its buffer is yours again once that completion is delivered. After
 * them comes one last completion for @fd with op PROACT_OP_FREE (or
 * PROACT_OP_DETACH) and @ctx: nothing of @fd follows it, so per-connection
 * state can be released then. The fd is closed (or handed back) only once the
 * kernel has let go of it, at the latest before that completion is delivered;
 * a socket that later gets the same fd number is a new registration.
 * The work happens in proact_wait(). Submissions on @fd made after this call
 * fail with -EALREADY. Any thread.
 *
 * Returns 0, or -EINVAL (NULL w), -EBADF (negative fd), -ENOENT (@fd is not
 * registered), -EALREADY (already being freed or detached), -ESHUTDOWN,
 * -ENOBUFS (watcher limit reached), -ENOMEM.
 */
PROACT_API int proact_free(proact_watcher *w, proact_socket fd, void *ctx);
PROACT_API int proact_detach(proact_watcher *w, proact_socket fd, void *ctx);

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * proact_timer - queue a timer that fires once at @deadline.
 * proact_timer_cancel - take back a timer that has not fired yet.
 *
 * A timer is a request with no fd. It completes once, never before @deadline
 * (absolute CLOCK_MONOTONIC ns: see proact_now() and proact_deadline_in()),
 * in a proact_wait() batch like any other completion: op PROACT_OP_TIMER,
 * fd -1, error 0, size 0, buf NULL, newfd -1, @ctx as given. A deadline
 * already past (0 included) fires at the next proact_wait(). Timers fire in
 * the order of their deadlines; equal deadlines fire in no set order.
 * Timers share the watcher's deadline heap with the deadlines of other
 * requests: adding, cancelling and firing cost O(log n) for n pending
 * deadlines, and a timer holds one request node, as any request does.
 *
 * @id: if not NULL, receives the name of the timer for proact_timer_cancel().
 * An id is never 0 and never names another timer of this watcher, also long
 * after this one completed.
 *
 * proact_timer_cancel() completes the pending timer @id with ECANCELED
 * instead, delivered by proact_wait() like any completion. So every timer
 * that proact_timer() accepted yields exactly one completion, fired or
 * cancelled, and @ctx can be released when it arrives. Once a timer fired
 * (even if its completion was not delivered yet) or was cancelled, its id is
 * spent: cancelling it again returns -ENOENT and changes nothing.
 * proact_watcher_shutdown() drops pending timers with no completion, as it
 * does every request.
 *
 * The same timer can be queued with proact_submit() (op PROACT_OP_TIMER, fd
 * -1, the time in deadline, ctx, every other field zero); it gets no id, so
 * nothing but shutdown cancels it.
 *
 * Threads: any thread, concurrently with any call but
 * proact_watcher_destroy(). A timer that becomes the nearest deadline, or a
 * cancel, from another thread wakes a thread blocked in proact_wait(), so the
 * timer fires on time and the cancellation is delivered at once.
 *
 * proact_timer() returns 0, or -EINVAL (NULL w), -ESHUTDOWN, -ENOBUFS (the
 * watcher holds max_pending requests: timers count among them), -ENOMEM.
 * proact_timer_cancel() returns 0, or -EINVAL (NULL w), -ESHUTDOWN, -ENOENT
 * (no pending timer has this id).
 * Completion errors: 0 (fired), ECANCELED (proact_timer_cancel).
 */
PROACT_API int proact_timer(proact_watcher *w, uint64_t deadline, void *ctx, uint64_t *id);
PROACT_API int proact_timer_cancel(proact_watcher *w, uint64_t id);

/* ------------------------------------------------------------------------ */
/* Completions                                                               */
/* ------------------------------------------------------------------------ */

/**
 * proact_wait - run the I/O and collect up to @max completions.
 * Performs pending work, then blocks until at least one completion is ready,
 * @timeout_ms passes (negative: no limit, 0: do not block), or proact_wakeup() is
 * called. Completions of one fd come in order: reads in submission order,
 * writes in submission order; the one exception is a request whose deadline
 * expires while others are still ahead of it, which completes at its deadline.
 *
 * Calling it releases the pool buffers delivered by the previous call (see
 * proact_read). One thread at a time per watcher.
 *
 * Returns the number of completions written to @out (0 on timeout or
 * wakeup), or -EINVAL (NULL w or out, max < 1), -EBUSY (another thread is
 * inside proact_wait on this watcher), -ESHUTDOWN (the watcher was shut down,
 * also while this call was blocked), or the errno of a failed backend wait.
 */
PROACT_API int proact_wait(proact_watcher *w, struct proact_completion *out, int max,
                           int timeout_ms);

/**
 * proact_wakeup - make a blocked (or the next) proact_wait() return early.
 * Returns 0, -EINVAL (NULL w) or -ESHUTDOWN. Any thread; async-signal-unsafe.
 */
PROACT_API int proact_wakeup(proact_watcher *w);

/* ------------------------------------------------------------------------ */
/* Counters                                                                  */
/* ------------------------------------------------------------------------ */

/** Room in struct proact_stats for every op number, and for ops to come. */
#define PROACT_STATS_OPS 16

/**
 * What a watcher has done since it was made, and holds now (proact_stats).
 * Totals only grow; they are 64-bit and do not wrap in practice.
 */
struct proact_stats {
	uint64_t submitted[PROACT_STATS_OPS]; /* by enum proact_op: requests accepted by
	                                         a call (FREE, DETACH: proact_free and
	                                         proact_detach calls that returned 0) */
	uint64_t completed[PROACT_STATS_OPS]; /* by op: completions proact_wait delivered */
	/* Of those, the ones with an error (ECANCELED and ETIMEDOUT included). */
	uint64_t failed;
	uint64_t kernel_waits;    /* times the waiting thread asked the kernel for events
	                             (epoll_wait, kevent, io_uring_enter to wait,
	                             GetQueuedCompletionStatusEx) */
	uint64_t io_calls;        /* system calls that moved bytes, accepted or connected
	                             directly (recv, send, accept, sendfile, ...): every
	                             one on epoll and kqueue, io_uring's direct sends;
	                             on iocp each overlapped call a request made */
	uint64_t ring_entries;    /* io_uring: entries put in the submission queue */
	uint64_t ring_enters;     /* io_uring: io_uring_enter calls that submitted
	                             entries or waited */
	uint64_t deadlines_fired; /* requests whose deadline passed (each completes
	                             with ETIMEDOUT) */
	uint64_t timers_fired;    /* timers that fired (cancelled ones not) */
	uint64_t pauses;          /* times an fd was paused for want of descriptors or
	                             memory (an accept at EMFILE, see proact_accept) */
	uint32_t paused;          /* fds paused now */
	uint32_t fds;             /* descriptors registered now */
	uint32_t fds_high;        /* the most registered at once */
	uint32_t pending;         /* requests not yet completed */
	uint32_t pool_buffers;    /* the pool's buffer count */
	uint32_t pool_in_use;     /* pool buffers held now: by data a read delivered or
	                             the kernel filled, until given back (rule 5) */
	uint32_t pool_high;       /* the most held at once */
	uint32_t reserved32;
	uint64_t reserved[8]; /* zero; room for counters to come */
};

/**
 * proact_stats - copy the watcher's counters into @out.
 * Cheap enough to stay on: each counter is a plain increment the watcher
 * makes under the lock it holds anyway. The copy is consistent (taken under
 * that lock). Returns 0, -EINVAL (NULL w or out) or -ESHUTDOWN. Any thread.
 */
PROACT_API int proact_stats(proact_watcher *w, struct proact_stats *out);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/** proact_now - the current CLOCK_MONOTONIC time in ns, the deadline clock. */
PROACT_API uint64_t proact_now(void);

/** proact_deadline_in - proact_now() plus @ms milliseconds. */
PROACT_API uint64_t proact_deadline_in(uint64_t ms);

/** proact_strerror - a short text for an errno value, positive or negative. */
PROACT_API const char *proact_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* PROACT_H */
