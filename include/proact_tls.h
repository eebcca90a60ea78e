/* SPDX-License-Identifier: MIT */
/*
 * proact_tls.h - TLS over proact's requests (library proact_tls, pkg-config
 * proact-tls; OpenSSL 3).
 *
 * The layer keeps one OpenSSL connection per socket and moves its records
 * with ordinary proact requests on that socket: NULL-buffer pool reads for
 * the ciphertext that comes in, writes for the ciphertext that goes out. The
 * program sees TLS requests and completions shaped like proact's own:
 * handshake, read (into a buffer, or into a buffer of the layer's when data
 * came), write, gather write, shutdown and free; per-request deadlines;
 * completions in a struct proact_completion, with op one of PROACT_TLS_OP_*.
 *
 * The driver is proact_tls_wait(): it calls proact_wait() on the watcher,
 * consumes the completions of the layer's own requests, and hands out the
 * TLS completions together with every completion of the program's other
 * requests on that watcher, untouched. So one loop serves plain and TLS
 * sockets alike; call proact_tls_wait() instead of proact_wait(), never both.
 *
 * Conventions (those of proact.h): a call returns 0 (or a count) or a
 * negative errno; a TLS submission that fails produces no completion, one
 * that succeeds produces exactly one, delivered by proact_tls_wait() and
 * never from inside a call; a completion's error is 0 or a positive errno.
 *
 * Threads: a layer and its connections belong to one thread at a time, the
 * one that calls proact_tls_wait(): every proact_tls_* call on them comes
 * from that thread (or from one thread while no proact_tls_wait() runs).
 * Other threads may keep submitting plain requests on the watcher. The
 * proact_tls_ctx calls and proact_tls_ktls_probe() are safe from any thread.
 *
 * Memory: an idle connection (handshake done, a read pending, nothing in
 * flight) holds its OpenSSL session state and no read or write buffer: the
 * ciphertext read is a pool read of the watcher, OpenSSL releases its record
 * buffers when they are empty, and the layer's output buffer goes back to
 * the layer once its write completed.
 *
 * kTLS: where the kernel offers the "tls" ULP, a connection hands its keys
 * to the kernel once the handshake is done, and from then on its records
 * are plain proact reads and writes of the socket (see proact_tls_ktls()).
 * Elsewhere, or when the kernel refuses, the memory BIOs go on: nothing
 * changes for the program either way.
 */
#ifndef PROACT_TLS_H
#define PROACT_TLS_H

#include <stddef.h>
#include <stdint.h>
#ifndef _WIN32
#include <sys/uio.h> /* Windows: struct iovec is proact.h's */
#endif

#include "proact.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the shared library exports: on Windows exactly the functions marked
   here (without any mark, the linker would export every global symbol). */
#if defined(_WIN32) && defined(PROACT_TLS_BUILDING_DLL)
#define PROACT_TLS_API __declspec(dllexport)
#elif defined(__GNUC__) && defined(PROACT_TLS_BUILDING)
#define PROACT_TLS_API __attribute__((visibility("default")))
#else
#define PROACT_TLS_API
#endif

/** Configuration shared by connections: certificate, key, CAs, ALPN. Opaque. */
typedef struct proact_tls_ctx proact_tls_ctx;
/** The layer on one watcher: connections, deadlines, read buffers. Opaque. */
typedef struct proact_tls proact_tls;
/** One TLS connection over one socket. Opaque. */
typedef struct proact_tls_conn proact_tls_conn;

/** The op of a TLS completion; distinct from every enum proact_op value. */
enum proact_tls_op {
	PROACT_TLS_OP_HANDSHAKE = 64, /* the handshake finished (or failed) */
	PROACT_TLS_OP_READ = 65,      /* decrypted bytes, or EOF (close_notify) */
	PROACT_TLS_OP_WRITE = 66,     /* every byte of buf went out in records */
	PROACT_TLS_OP_WRITEV = 67,    /* every byte of the iov went out in records */
	PROACT_TLS_OP_SHUTDOWN = 68,  /* close_notify sent, then shutdown(SHUT_WR) */
	PROACT_TLS_OP_FREE = 69,      /* proact_tls_free() finished: the fd is closed */
};

/** proact_tls_config.flags */
#define PROACT_TLS_SERVER    0x1u /* the accepting side: needs a certificate and key */
#define PROACT_TLS_NO_VERIFY 0x2u /* client: accept any certificate and host name */
#define PROACT_TLS_VERIFY_CLIENT                                                                   \
	0x4u                     /* server: require a client certificate, checked                  \
	                            against ca_file */
#define PROACT_TLS_TLS13   0x8u  /* TLS 1.3 only (default: 1.2 and 1.3) */
#define PROACT_TLS_NO_KTLS 0x10u /* never hand records to the kernel */

/** How proact_tls_ctx_new() builds a context; unused fields zero. */
struct proact_tls_config {
	uint32_t flags;        /* PROACT_TLS_* above */
	const char *cert_file; /* PEM certificate chain, leaf first (server; client
	                          with a client certificate) */
	const char *key_file;  /* PEM private key of the leaf */
	const char *cert_pem;  /* or the chain as PEM text in memory */
	const char *key_pem;   /* or the key as PEM text in memory */
	const char *ca_file;   /* PEM CAs to verify the peer with; NULL: the
	                          system's default store */
	const char *alpn;      /* protocols, comma-separated, by preference
	                          ("h2,http/1.1"); NULL: no ALPN */
	uint32_t reserved[4];  /* must be zero */
};

/**
 * proact_tls_ctx_new - a TLS context (an SSL_CTX) from @cfg.
 * proact_tls_ctx_free - free it; NULL is ignored.
 *
 * A server context needs a certificate and key (file or PEM, not both); a
 * client context may have one (a client certificate). Connections made with
 * a context keep pointers into it: free it after the last of them was freed.
 * Returns 0, or -EINVAL (NULL argument, nonzero reserved field, unknown flag,
 * a server without certificate or key, both a file and PEM text, a
 * certificate or key OpenSSL cannot parse, a key that does not match the
 * certificate, an ALPN list that is empty or longer than 255 bytes in its
 * wire form, a protocol name over 255 bytes), -ENOENT/-EACCES (a file cannot
 * be read), -ENOMEM. Any thread.
 */
PROACT_TLS_API int proact_tls_ctx_new(proact_tls_ctx **out, const struct proact_tls_config *cfg);
PROACT_TLS_API void proact_tls_ctx_free(proact_tls_ctx *ctx);

/** Layer options; zero fields take the default shown. */
struct proact_tls_options {
	uint32_t buffer_count; /* read buffers of 16 KiB for NULL-buffer TLS reads;
	                          default 256 (at most 65,536) */
	uint32_t reserved[4];  /* must be zero */
};

/**
 * proact_tls_new - the TLS layer on watcher @w.
 * proact_tls_destroy - free the layer, NULL ignored.
 *
 * The watcher must have a pool (the default): ciphertext comes in through
 * NULL-buffer reads. The read buffers of the layer (buffer_count x 16 KiB)
 * are address space, touched only as they are used.
 *
 * Destroy after proact_watcher_shutdown(), or once every connection's
 * PROACT_TLS_OP_FREE was delivered: it frees the connections still there
 * (after shutdown their fds are closed already), and every buffer the layer
 * delivered. The watcher stays the program's.
 * Returns 0, or -EINVAL (NULL argument, nonzero reserved field, a count
 * over 65,536), -ENOMEM.
 */
PROACT_TLS_API int proact_tls_new(proact_tls **out, proact_watcher *w,
                                  const struct proact_tls_options *opts);
PROACT_TLS_API void proact_tls_destroy(proact_tls *t);

/**
 * proact_tls_wait - proact_wait() for a watcher with a TLS layer.
 *
 * Runs the I/O as proact_wait() does and collects up to @max completions:
 * those of TLS requests (op PROACT_TLS_OP_*) and, untouched, those of the
 * program's plain requests on the same watcher. Blocks until one is ready,
 * @timeout_ms passes (negative: no limit, 0: do not block) or
 * proact_wakeup() is called; the TLS deadlines are kept meanwhile.
 *
 * Per connection, TLS reads complete in submission order and writes (with
 * shutdowns) in submission order, as in proact. Calling it releases the
 * buffers of the NULL-buffer TLS reads delivered by the previous call (see
 * proact_tls_read), and, through proact_wait(), the pool buffers of plain
 * reads.
 *
 * Returns the number of completions written to @out (0 on timeout or
 * wakeup), or -EINVAL (NULL t or out, max < 1), or what proact_wait()
 * returns (-ESHUTDOWN once the watcher was shut down, -EBUSY...).
 */
PROACT_TLS_API int proact_tls_wait(proact_tls *t, struct proact_completion *out, int max,
                                   int timeout_ms);

/**
 * proact_tls_conn_new - a TLS connection on socket @fd.
 *
 * @fd: a connected stream socket (an accepted one for a server context). It
 * becomes the layer's: from now on do not submit on it, read, write or close
 * it yourself; proact_tls_free() closes it. Nothing is sent until
 * proact_tls_handshake().
 * @ctx: the context; its PROACT_TLS_SERVER flag sets the side.
 * @server_name: client side: the name the peer's certificate must carry
 * (checked unless PROACT_TLS_NO_VERIFY) and, if it is a DNS name, sent as
 * SNI; an IP address is checked against the certificate's IP entries and not
 * sent. NULL: no SNI and no name check (the chain is still verified).
 * Ignored on the server side. Copied.
 *
 * Returns 0, or -EINVAL (NULL t, out or ctx, a server_name OpenSSL refuses),
 * -EBADF (negative fd; on Windows INVALID_SOCKET, or a handle that does not
 * fit in an int, see proact_socket), -EEXIST (@fd already has a TLS
 * connection on this layer), -ENOMEM.
 */
PROACT_TLS_API int proact_tls_conn_new(proact_tls *t, proact_tls_conn **out, proact_socket fd,
                                       proact_tls_ctx *ctx, const char *server_name);

/**
 * proact_tls_handshake - queue the handshake.
 *
 * Completes (PROACT_TLS_OP_HANDSHAKE) once the handshake is done, error 0,
 * or on failure with the error the connection now has (see "Failures"
 * below). Reads and writes submitted before it, or while it runs, wait for
 * it. One per connection: a second returns -EALREADY.
 * @deadline: absolute CLOCK_MONOTONIC ns (proact_deadline_in()), 0 for none.
 * A handshake that is not done by then fails the connection with ETIMEDOUT.
 * Returns 0, or -EINVAL (NULL c), -EALREADY, -ENOMEM.
 */
PROACT_TLS_API int proact_tls_handshake(proact_tls_conn *c, uint64_t deadline, void *ctx);

/**
 * proact_tls_read - queue a read of decrypted bytes.
 *
 * Completes (PROACT_TLS_OP_READ) with at least one byte (size = bytes, at
 * most one record's worth), at the end of the TLS stream (the peer's
 * close_notify: size 0, error 0, and so for every later read), or with an
 * error. Bytes come in order; reads complete in submission order.
 *
 * @buf NULL: the bytes go into a 16 KiB buffer of the layer, taken only once
 * decrypted bytes are there; the completion has PROACT_COMP_POOL and buf
 * pointing at it. @len then caps the read (0: 16 KiB). The buffer stays
 * valid until the next proact_tls_wait() call; or, if the program passes (a
 * part of) it to proact_tls_write()/proact_tls_writev() on this layer before
 * that call, until that write's completion was delivered and
 * proact_tls_wait() is called again (zero-copy echo). When every buffer is
 * in use, the read waits; the records stay unread meanwhile.
 * @buf not NULL: @len > 0 bytes, the layer's until the completion is
 * delivered.
 * @deadline: 0 for none; an expired read completes with ETIMEDOUT and size
 * 0, and the connection goes on (bytes that come later go to the next read).
 *
 * Returns 0, or -EINVAL (NULL c, @buf with @len 0), -EALREADY (the
 * connection is being freed), -ENOMEM.
 * Completion errors: see "Failures"; ETIMEDOUT; ECANCELED.
 */
PROACT_TLS_API int proact_tls_read(proact_tls_conn *c, void *buf, size_t len, uint64_t deadline,
                                   void *ctx);

/**
 * proact_tls_write, proact_tls_writev - queue the encryption and sending of
 * every byte of @buf (@len > 0), or of iov[0..iovcnt) in order.
 *
 * Complete (PROACT_TLS_OP_WRITE, _WRITEV) once every byte went out to the
 * socket inside TLS records (size = the total), in submission order, never
 * interleaved with other writes. The buffers and the iov array stay the
 * layer's until the completion is delivered; a buffer of a NULL-buffer TLS
 * read may be written (see proact_tls_read). Small segments of a writev are
 * gathered into full records.
 *
 * @deadline (0: none) covers a write until TLS has taken all its bytes into
 * records (from then on they go out whatever happens). Expiring before any
 * byte was taken: ETIMEDOUT, size 0, the stream intact. Expiring after part
 * was taken leaves a cut: ETIMEDOUT with size = the bytes taken; every write
 * queued or submitted later completes with EPIPE and size 0, and a later
 * proact_tls_shutdown() sends no close_notify, so the peer sees a truncated
 * stream, not a clean end.
 *
 * Returns 0, or -EINVAL (NULL c, zero total length, NULL buf, iovcnt < 1 or
 * > IOV_MAX, a NULL iov or segment base with a nonzero length, a buffer of
 * the layer that is no longer held), -EALREADY, -ENOMEM.
 * Completion errors: see "Failures"; EPIPE (after a shutdown or a cut);
 * ETIMEDOUT; ECANCELED (size = bytes taken).
 */
PROACT_TLS_API int proact_tls_write(proact_tls_conn *c, const void *buf, size_t len,
                                    uint64_t deadline, void *ctx);
PROACT_TLS_API int proact_tls_writev(proact_tls_conn *c, const struct iovec *iov, int iovcnt,
                                     uint64_t deadline, void *ctx);

/**
 * proact_tls_shutdown - queue the end of the sending side.
 *
 * Once every write submitted before it completed, sends close_notify, then
 * shuts the socket's sending side down (proact_shutdown_write()): the peer
 * reads the end of the TLS stream, then the end of the TCP stream. Completes
 * (PROACT_TLS_OP_SHUTDOWN) with 0 or the socket's errno. Writes submitted
 * later complete with EPIPE. Reads go on until the peer's close_notify.
 * After a cut (see proact_tls_write) no close_notify is sent.
 * Returns 0, or -EINVAL (NULL c), -EALREADY, -ENOMEM.
 */
PROACT_TLS_API int proact_tls_shutdown(proact_tls_conn *c, uint64_t deadline, void *ctx);

/**
 * proact_tls_free - cancel every pending TLS request, then close the socket.
 *
 * Each pending request completes with ECANCELED; then comes one last
 * completion, op PROACT_TLS_OP_FREE with @ctx: nothing of @c follows it, and
 * @c is invalid from its delivery on (between this call and then, every call
 * on @c but proact_tls_fd() and proact_tls_error() returns -EALREADY). The
 * socket is closed by proact_free() after the layer's own requests on it
 * were cancelled. No close_notify is sent: use proact_tls_shutdown() first
 * for a clean end. Returns 0, or -EINVAL (NULL c), -EALREADY.
 */
PROACT_TLS_API int proact_tls_free(proact_tls_conn *c, void *ctx);

/**
 * Failures. A connection fails on a TLS protocol error (bytes that are not
 * TLS, a bad record or MAC, an oversized record, an alert from the peer, a
 * renegotiation attempt, the end of the TCP stream without close_notify),
 * on a rejected certificate, on a socket error, or when the handshake's
 * deadline passes. Every pending request then completes with the error, and
 * every later one too, at once; other connections are not touched. The
 * errors: EPROTO (protocol), EACCES (the peer's certificate or name was
 * rejected), ETIMEDOUT (handshake deadline), the socket's errno (ECONNRESET,
 * EPIPE...), ENOMEM, ENOBUFS (the watcher has no pool). Free the connection
 * then. OpenSSL's fatal alert, if it made one, is sent before the error is
 * reported.
 */

/**
 * proact_tls_error - why @c failed: OpenSSL's reason ("wrong version
 * number", "certificate verify failed: hostname mismatch"...), or the errno's
 * text. NULL if @c has not failed. Static text; valid as long as the process.
 */
PROACT_TLS_API const char *proact_tls_error(const proact_tls_conn *c);

/** proact_tls_fd - the socket of @c, -1 (Windows: INVALID_SOCKET) for NULL. */
PROACT_TLS_API proact_socket proact_tls_fd(const proact_tls_conn *c);

/**
 * proact_tls_alpn - the protocol ALPN agreed on, once the handshake is done:
 * its length (0: none), with *@proto pointing at its bytes (not
 * NUL-terminated), valid until @c is freed.
 * proact_tls_server_name - server side: the SNI name the client sent, or NULL.
 * proact_tls_version - "TLSv1.3", "TLSv1.2"...; NULL for NULL @c.
 */
PROACT_TLS_API size_t proact_tls_alpn(const proact_tls_conn *c, const unsigned char **proto);
PROACT_TLS_API const char *proact_tls_server_name(const proact_tls_conn *c);
PROACT_TLS_API const char *proact_tls_version(const proact_tls_conn *c);

/**
 * proact_tls_ktls_probe - whether this kernel offers kernel TLS (the "tls"
 * TCP ULP), tried once per process on a loopback connection of its own;
 * later calls return the first answer.
 * Returns 1 (available), 0 (unavailable: no such ULP, or not Linux), or a
 * negative errno if the probe could not run (-EMFILE...; asked again next
 * time). Any thread.
 *
 * proact_tls_ctx_new() asks it, unless the context has PROACT_TLS_NO_KTLS
 * or the environment variable PROACT_TLS_KTLS is "0" or "off"; with
 * PROACT_TLS_KTLS=force (Linux) every connection tries the handoff without it.
 */
PROACT_TLS_API int proact_tls_ktls_probe(void);

/** What proact_tls_ktls() returns: the directions the kernel carries. */
#define PROACT_TLS_KTLS_TX 0x1 /* records sent: encrypted by the kernel */
#define PROACT_TLS_KTLS_RX 0x2 /* records received: decrypted by the kernel */

/**
 * proact_tls_ktls - which directions of @c the kernel carries: 0 (the
 * memory BIOs, as before the handshake), PROACT_TLS_KTLS_TX, or both.
 * @why (may be NULL): unless both, why not, as static text ("no tls ULP in
 * this kernel", "kTLS off (PROACT_TLS_NO_KTLS)", "tls ULP refused: no tls
 * module in the kernel", "cipher or version not offered by kTLS"; off
 * Linux, Windows included, "no kernel TLS on this system (the handoff is
 * Linux's tls ULP)"...).
 *
 * The handoff happens once, when the handshake is done and OpenSSL's last
 * records went out; its completion is delivered after it. Offered: TLS 1.3
 * with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305, TLS 1.2 with AES-GCM.
 * The receiving side stays with OpenSSL on a TLS 1.3 client (the server's
 * tickets come after the handshake) and where ciphertext was already read
 * past the handshake. After the handoff a key update from the peer fails
 * the connection (EPROTO). Returns -EINVAL for NULL @c.
 */
PROACT_TLS_API int proact_tls_ktls(const proact_tls_conn *c, const char **why);

#ifdef __cplusplus
}
#endif

#endif /* PROACT_TLS_H */
