/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the files of the TLS layer share.
 *
 * ctx.c: contexts (SSL_CTX) and the kTLS probe. layer.c: the layer, its
 * read buffers, output buffers, deadline heap and proact_tls_wait(). conn.c:
 * one connection's state machine over its OpenSSL object and a BIO that
 * reads from the ciphertext proact delivered and writes into an output
 * buffer that goes to proact_write(). ktls.c: the kTLS probe, the traffic
 * keys and sequence numbers, the handoff to the kernel. The layer uses
 * proact's public API only (and, after a kTLS handoff, setsockopt, sendmsg
 * and recvmsg for what proact's requests cannot carry: control records).
 *
 * Every function here runs on the layer's thread (see proact_tls.h).
 */
#ifndef PROACT_TLS_INTERNAL_H
#define PROACT_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proact.h"
#include "proact_tls.h"

#if defined(__linux__) && defined(__has_include)
#if __has_include(<linux/tls.h>)
#include <linux/tls.h>
#include <sys/socket.h>
#define TLS__HAVE_KTLS 1
#endif
#endif

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* A socket's index in the layer's table of connections: the descriptor on
   POSIX; on Windows the handle value, which proact keeps within an int (see
   proact_socket), -1 for INVALID_SOCKET and anything larger. */
static inline int tls__fdnum(proact_socket s)
{
#ifdef _WIN32
	return s <= (proact_socket)INT32_MAX ? (int)s : -1;
#else
	return s;
#endif
}

#define TLS__RECORD    16384u                /* plaintext per record, and per read buffer */
#define TLS__OBUF_CAP  (3u * TLS__RECORD)    /* an output buffer's usual size */
#define TLS__ROOM      (TLS__RECORD + 1024u) /* what one more record may need */
#define TLS__NO_HEAP   UINT32_MAX
#define TLS__COMPS     256 /* completions taken per proact_wait */
#define TLS__OBUF_KEEP 64  /* output buffers the layer keeps for reuse */

struct proact_tls_ctx {
	SSL_CTX *ssl;
	uint32_t flags;
	bool ktls;            /* connections try the handoff */
	const char *ktls_why; /* why not, static text */
	uint8_t alpn_len;
	unsigned char alpn[255]; /* the server's list in wire form, for the select callback */
};

/* An intrusive doubly linked list; a head is a link to itself when empty. */
struct tls__link {
	struct tls__link *next, *prev;
};

/* Ciphertext on its way to the socket. */
struct tls__obuf {
	struct tls__obuf *next; /* the layer's cache */
	size_t len, cap;
	unsigned char data[];
};

/* One TLS request; also its completion once done. */
struct tls__req {
	struct tls__link link; /* a connection's queue, then the layer's done list */
	struct proact_tls_conn *c;
	void *ctx;
	const struct iovec *iov; /* WRITE: &one; WRITEV: the program's array */
	struct iovec one;        /* READ, WRITE: the buffer (READ: iov_base NULL = pool) */
	size_t len;              /* READ: room; WRITE/WRITEV: total */
	size_t done;             /* READ: bytes read; WRITE: bytes taken into records */
	uint64_t mark;           /* WRITE: the connection's ciphertext total after its last
	                            record; it is sent once that much went out */
	uint64_t deadline;
	uint32_t heap_idx;
	int iovcnt;
	int error;
	int32_t pool;       /* READ: the layer's buffer it got, or -1 */
	uint8_t op;         /* enum proact_tls_op */
	uint8_t stage;      /* SHUTDOWN: 0 not begun, 1 close_notify made, 2 socket asked */
	uint8_t holds_pool; /* WRITE/WRITEV: holds references to the layer's buffers */
};

struct proact_tls_conn {
	struct tls__link all; /* the layer's connections */
	proact_tls *t;
	SSL *ssl;
	struct tls__req *hs;      /* the pending handshake */
	struct tls__link rd;      /* pending reads */
	struct tls__link wr;      /* pending writes and shutdowns, in order */
	struct tls__req *wr_take; /* the first of wr whose bytes are not all taken,
	                             or NULL: everything before it waits to be sent */
	struct tls__req *shut;    /* the shutdown whose socket shutdown is in flight */
	const unsigned char *in;  /* ciphertext not yet given to OpenSSL */
	size_t in_len;
	unsigned char *stash;      /* own copy of `in` once proact's buffer went back */
	struct tls__obuf *out;     /* ciphertext being made */
	struct tls__obuf *fly;     /* ciphertext being written */
	uint64_t made, sent;       /* ciphertext bytes made and written, in total */
	const char *why;           /* static text of the failure */
	struct tls__link starve;   /* the layer's starved list, while `starved` */
	struct tls__req *free_req; /* made by proact_tls_free(), delivered last */
	proact_socket fd;
	int error;     /* the failure: every request completes with it */
	bool reading;  /* a ciphertext read is pending */
	bool sock_eof; /* the socket read returned the end of the stream */
	bool rx_eof;   /* close_notify came: reads complete with EOF */
	bool hs_done;
	bool wr_closed;       /* shutdown taken: later writes fail with EPIPE */
	bool cut;             /* a write expired after part of it was taken */
	bool closing;         /* proact_tls_free() was called */
	bool starved;         /* on the layer's starved list */
	bool reneg;           /* the peer asked for a renegotiation */
	bool kpending;        /* handshake done; the kTLS handoff waits for the output */
	bool kfly;            /* kTLS: a plaintext write is in flight */
	uint8_t ktls;         /* PROACT_TLS_KTLS_*: what the kernel carries */
	struct tls__ktls *k;  /* secrets and sequence numbers until the handoff */
	const char *ktls_why; /* why the kernel carries less than both ways */
};

struct proact_tls {
	proact_watcher *w;
	BIO_METHOD *bio_method;
	BIO *bio;                       /* every connection's: a BIO each would cost
	                                   its struct and a lock per connection */
	struct proact_tls_conn *cur;    /* the connection OpenSSL is called for */
	struct proact_tls_conn **conns; /* by fd */
	int nconns;
	struct tls__link all;  /* every connection */
	struct tls__link done; /* completed requests, in order */
	struct tls__req *free_reqs;
	struct tls__obuf *free_obufs;
	int nfree_obufs;
	/* deadlines: a binary min-heap of requests */
	struct tls__req **heap;
	uint32_t nheap, heap_cap;
	/* read buffers: one block, a stack of free indexes, a count of holders */
	unsigned char *slab;
	uint32_t nbuf, nfree;
	uint32_t *free_idx;
	uint16_t *refs;
	uint32_t *delivered; /* delivered by the last wait, released by the next */
	uint32_t ndelivered;
	struct tls__link starved; /* connections waiting for a read buffer */
	unsigned char gather[TLS__RECORD];
	struct proact_completion comp[TLS__COMPS];
};

/* ---- lists -------------------------------------------------------------- */
static inline void tls__list_init(struct tls__link *h)
{
	h->next = h->prev = h;
}
static inline bool tls__list_empty(const struct tls__link *h)
{
	return h->next == h;
}
static inline void tls__list_add_tail(struct tls__link *h, struct tls__link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}
static inline void tls__list_del(struct tls__link *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = l;
}
#define TLS__REQ(l) ((struct tls__req *)(void *)(l))

/* ---- layer.c ------------------------------------------------------------ */
struct tls__req *tls__req_new(proact_tls *t, struct proact_tls_conn *c, uint8_t op, void *ctx);
void tls__req_free(proact_tls *t, struct tls__req *r);
/* Moves @r (unlinked) to the done list with @error; drops its deadline. */
void tls__complete(struct tls__req *r, int error);
int tls__heap_add(proact_tls *t, struct tls__req *r);
void tls__heap_del(proact_tls *t, struct tls__req *r);
struct tls__obuf *tls__obuf_get(proact_tls *t);
void tls__obuf_put(proact_tls *t, struct tls__obuf *b);
/* A read buffer's index, or -1 when all are in use. */
int32_t tls__buf_take(proact_tls *t);
void tls__buf_unref(proact_tls *t, int32_t idx);
static inline unsigned char *tls__buf_ptr(const proact_tls *t, int32_t idx)
{
	return t->slab + (size_t)idx * TLS__RECORD;
}
/* The index of the read buffer @p points into, or -1. */
int32_t tls__buf_of(const proact_tls *t, const void *p);
void tls__starve(proact_tls *t, struct proact_tls_conn *c);
void tls__unstarve(struct proact_tls_conn *c);

/* ---- conn.c ------------------------------------------------------------- */
BIO_METHOD *tls__bio_method_new(void);
/* The connection the layer's BIO works for now (set before each SSL call). */
static inline struct proact_tls_conn *tls__bio_conn(BIO *b)
{
	return ((proact_tls *)BIO_get_data(b))->cur;
}
/* Runs whatever @c can do now: handshake, reads, writes, flushing. */
void tls__pump(struct proact_tls_conn *c);
/* A completion of the layer's own request on @c's socket. */
void tls__on_io(struct proact_tls_conn *c, const struct proact_completion *r);
/* A request whose deadline passed. */
void tls__expire(struct tls__req *r);
/* proact_tls_free(): every pending request completes with ECANCELED. */
void tls__cancel_all(struct proact_tls_conn *c);
/* Frees everything of @c (the socket is proact's business). */
void tls__conn_destroy(struct proact_tls_conn *c);
void tls__writev_unref(proact_tls *t, struct tls__req *r);

/* ---- ctx.c -------------------------------------------------------------- */
void tls__info_setup(SSL *ssl, struct proact_tls_conn *c);

/* ---- ktls.c ------------------------------------------------------------- */
/* One direction's keys as setsockopt(SOL_TLS, TLS_TX/TLS_RX) takes them. */
struct tls__kinfo {
#ifdef TLS__HAVE_KTLS
	union {
		struct tls_crypto_info info;
		struct tls12_crypto_info_aes_gcm_128 gcm128;
		struct tls12_crypto_info_aes_gcm_256 gcm256;
		struct tls12_crypto_info_chacha20_poly1305 chacha;
	} u;
#else
	unsigned char u[64];
#endif
	unsigned len;
};
/* Installs the keys on @fd (@rx NULL: sending side only): the
   PROACT_TLS_KTLS_* directions taken, or a negative errno (nothing taken).
   The kernel's setsockopt; tests put their own here. */
typedef int (*tls__ktls_apply_fn)(proact_socket fd, const struct tls__kinfo *tx,
                                  const struct tls__kinfo *rx);
extern tls__ktls_apply_fn tls__ktls_apply;
/* Whether contexts with @flags try kTLS; if not, why (static text). */
const char *tls__ktls_mode(uint32_t flags, bool *on);
/* A connection of a context that tries kTLS: its handoff state. */
void tls__ktls_begin(struct proact_tls_conn *c);
void tls__ktls_keylog(const SSL *ssl, const char *line);
void tls__ktls_on_message(struct proact_tls_conn *c, int write_p, int content_type,
                          const unsigned char *m, size_t len);
/* The keys of both directions now; @rx_why set (rx unset) if the receiving
   side stays in user space. 0 or a negative errno. */
int tls__ktls_prepare(struct proact_tls_conn *c, struct tls__kinfo *tx, struct tls__kinfo *rx,
                      const char **rx_why);
/* Nothing of OpenSSL's waits to be sent: the kernel may take over. */
bool tls__ktls_ready(const struct proact_tls_conn *c);
/* Tries the handoff once; on refusal the memory BIOs go on. */
void tls__ktls_handoff(struct proact_tls_conn *c);
void tls__ktls_drop(struct proact_tls_conn *c);
/* close_notify as an alert record through the kernel: 0 or an errno. */
int tls__ktls_close_notify(proact_socket fd);
/* A record that is not data stopped a kernel read: take it. 0 and *eof for
   close_notify, else an errno (EPROTO) with *why. */
int tls__ktls_control(proact_socket fd, bool *eof, const char **why);

#endif
