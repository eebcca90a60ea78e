/* SPDX-License-Identifier: MIT */
/*
 * uv_echo - the libuv echo (and push) server, in libuv's documented idiom.
 *
 *   uv_echo [--port N] [--push] [--pool [--pool-size BYTES] [--pool-count N]]
 *
 * uv_read_start with an alloc callback that mallocs the suggested size
 * (64 KiB) only when data is ready, so an idle connection holds no read
 * buffer; the read callback hands the same buffer to uv_write and the write
 * callback frees it. SIGTERM/SIGINT arrive through uv_signal_t and stop the
 * loop.
 *
 * --pool (the bench's libuv-pool): what a tuned libuv user does instead.
 * - Pooled buffers. The alloc callback pops a buffer off a free list; an EOF,
 *   error or empty read pushes it back. The same pool as proact_echo's by
 *   default: 256 buffers of 64 KiB in one mapping whose pages are touched
 *   only when a buffer is first used, so idle connections hold none. libuv
 *   cannot park a read until a buffer comes back (an empty buffer from the
 *   alloc callback gives UV_ENOBUFS and the level-triggered fd fires again),
 *   so when all are in use one more is malloc'd and joins the free list for
 *   good: the pool grows to the most buffers ever in use at once (printed on
 *   exit).
 * - Try the write first. uv_try_write usually takes the whole read, and the
 *   buffer goes straight back. Only the rest of a short write goes to
 *   uv_write, with the uv_write_t kept in the buffer's own header (no malloc
 *   per read at all), and the write callback pushes the buffer back.
 * - Back-pressure, as proact_echo (next read only once the write is done)
 *   and epoll_echo (a short write stops reading) have: while a write is
 *   queued the connection does not read. Without it the server reads on
 *   while the echo waits, without bound: with the pool but no back-pressure
 *   (nor uv_try_write), a 2 GiB stream-64k grew the pool by 15,334 buffers.
 */
#include "peer.h"

#include <stddef.h>
#include <sys/mman.h>
#include <uv.h>

struct conn {
	uv_tcp_t tcp;
	struct conn *prev, *next; /* every open connection, for --push */
};

struct echo_write {
	uv_write_t req;
	uv_buf_t buf;
};

/* One pushed message, shared by the writes to every connection. */
struct bcast {
	size_t refs;
	size_t len;
	char data[];
};

struct bcast_write {
	uv_write_t req;
	struct bcast *b;
};

/* --pool: one read buffer with the write request that echoes it. */
struct pbuf {
	uv_write_t req;
	struct pbuf *next; /* on the free list */
	bool grown;        /* malloc'd beyond the up-front pool */
	_Alignas(max_align_t) char data[];
};

static struct {
	bool on;
	size_t size, count; /* bytes per buffer, buffers up front */
	size_t stride;      /* bytes per entry of region */
	char *region;       /* count entries, mapped at start, touched on first use */
	size_t fresh;       /* entries of region handed out at least once */
	struct pbuf *free;  /* LIFO: the buffer used last is the one in cache */
	size_t grown;       /* entries malloc'd because every one was in use */
} pool = {.size = 65536, .count = 256};

static uv_loop_t *loop;
static uv_tcp_t server;
static struct conn live = {.prev = &live, .next = &live};
static bool push_mode;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

static struct pbuf *pbuf_of(char *data)
{
	return (struct pbuf *)(data - offsetof(struct pbuf, data));
}

static void pool_put(struct pbuf *p)
{
	p->next = pool.free;
	pool.free = p;
}

/* The free list first, then a never-used entry (so untouched ones stay
   untouched), then a new one for good. */
static void on_alloc_pool(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested; /* 64 KiB from libuv; the pool's size decides */
	struct pbuf *p = pool.free;
	if (p) {
		pool.free = p->next;
	} else if (pool.fresh < pool.count) {
		p = (struct pbuf *)(pool.region + pool.fresh++ * pool.stride);
		p->grown = false;
	} else if ((p = malloc(pool.stride)) != NULL) {
		p->grown = true;
		pool.grown++;
	}
	*buf = p ? uv_buf_init(p->data, (unsigned)pool.size) : uv_buf_init(NULL, 0);
}

static bool pool_setup(void)
{
	pool.stride = (offsetof(struct pbuf, data) + pool.size + _Alignof(max_align_t) - 1) &
	              ~(_Alignof(max_align_t) - 1);
	void *m = mmap(NULL, pool.count * pool.stride, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return false;
	pool.region = m;
	return true;
}

static void pool_teardown(void)
{
	fprintf(stderr, "uv_echo: pool of %zu x %zu B, %zu used, %zu more malloc'd at the peak\n",
	        pool.count, pool.size, pool.fresh, pool.grown);
	for (struct pbuf *p = pool.free, *next; p; p = next) {
		next = p->next;
		if (p->grown)
			free(p);
	}
	munmap(pool.region, pool.count * pool.stride);
}

static void on_closed(uv_handle_t *h)
{
	free(h); /* tcp is the first member of struct conn */
}

static void conn_close(struct conn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_echo_written(uv_write_t *req, int status)
{
	struct echo_write *w = (struct echo_write *)req;
	struct conn *c = (struct conn *)req->handle;
	free(w->buf.base);
	free(w);
	if (status < 0)
		conn_close(c);
}

/* --pool's back-pressure: the handle's user slot (data) flags a connection
   whose reading waits for its write queue to drain. */
#define PAUSED ((void *)1)

static void on_alloc_pool(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read_pool(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void resume_if_drained(struct conn *c)
{
	uv_stream_t *s = (uv_stream_t *)&c->tcp;
	if (c->tcp.data == PAUSED && !uv_is_closing((uv_handle_t *)s) &&
	    uv_stream_get_write_queue_size(s) == 0) {
		c->tcp.data = NULL;
		uv_read_start(s, on_alloc_pool, on_read_pool);
	}
}

static void on_pool_written(uv_write_t *req, int status)
{
	struct conn *c = (struct conn *)req->handle;
	pool_put((struct pbuf *)req); /* req is the first member */
	if (status < 0)
		conn_close(c);
	else
		resume_if_drained(c);
}

static void on_bcast_written(uv_write_t *req, int status)
{
	struct bcast_write *w = (struct bcast_write *)req;
	struct conn *c = (struct conn *)req->handle;
	if (--w->b->refs == 0)
		free(w->b);
	free(w);
	if (status < 0)
		conn_close(c);
	else if (pool.on)
		resume_if_drained(c);
}

static void broadcast(const char *data, size_t len)
{
	struct bcast *b = malloc(sizeof(*b) + len);
	if (!b)
		return;
	b->refs = 1;
	b->len = len;
	memcpy(b->data, data, len);
	for (struct conn *c = live.next; c != &live; c = c->next) {
		struct bcast_write *w = malloc(sizeof(*w));
		if (!w)
			continue;
		w->b = b;
		b->refs++;
		uv_buf_t ub = uv_buf_init(b->data, (unsigned)len);
		if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_bcast_written) < 0) {
			b->refs--;
			free(w);
		}
	}
	if (--b->refs == 0)
		free(b);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;
	if (nread <= 0) {
		free(buf->base);
		if (nread < 0) /* UV_EOF or an error */
			conn_close(c);
		return;
	}
	if (push_mode && buf->base[0] == PUSH_TRIGGER) {
		broadcast(buf->base, (size_t)nread);
		free(buf->base);
		return;
	}
	struct echo_write *w = malloc(sizeof(*w));
	if (!w) {
		free(buf->base);
		conn_close(c);
		return;
	}
	w->buf = uv_buf_init(buf->base, (unsigned)nread);
	if (uv_write(&w->req, s, &w->buf, 1, on_echo_written) < 0) {
		free(buf->base);
		free(w);
		conn_close(c);
	}
}

static void on_read_pool(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = (struct conn *)s;
	if (nread <= 0 || (push_mode && buf->base[0] == PUSH_TRIGGER)) {
		if (nread > 0)
			broadcast(buf->base, (size_t)nread); /* copies the bytes */
		if (buf->base)                               /* NULL after UV_ENOBUFS */
			pool_put(pbuf_of(buf->base));
		if (nread < 0) /* UV_EOF or an error */
			conn_close(c);
		return;
	}
	struct pbuf *p = pbuf_of(buf->base);
	/* Write now, and the buffer is free now: uv_write's callback waits for
	   the next loop iteration, and libuv's poll phase takes up to 48 x 1024
	   events before that, each holding a buffer (49,152 of them at the peak
	   in ping-pong 10k). A queued write keeps the order (UV_EAGAIN). */
	int n = uv_try_write(s, &(uv_buf_t){.base = buf->base, .len = (size_t)nread}, 1);
	if (n == nread) {
		pool_put(p);
		return;
	}
	if (n < 0 && n != UV_EAGAIN) {
		pool_put(p);
		conn_close(c);
		return;
	}
	size_t done = n > 0 ? (size_t)n : 0;
	uv_buf_t wb = uv_buf_init(buf->base + done, (unsigned)((size_t)nread - done));
	if (uv_write(&p->req, s, &wb, 1, on_pool_written) < 0) { /* uv_write copies wb */
		pool_put(p);
		conn_close(c);
	} else if (uv_stream_get_write_queue_size(s) > 0) {
		/* Not all of it went out: read no more until it has. */
		uv_read_stop(s);
		c->tcp.data = PAUSED;
	}
}

static void on_connection(uv_stream_t *srv, int status)
{
	if (status < 0)
		return;
	struct conn *c = malloc(sizeof(*c));
	if (!c)
		return;
	uv_tcp_init(loop, &c->tcp);
	c->tcp.data = NULL; /* --pool: reading, not paused */
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	c->next = live.next;
	c->prev = &live;
	live.next->prev = c;
	live.next = c;
	uv_tcp_nodelay(&c->tcp, 1);
	if (pool.on)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc_pool, on_read_pool);
	else
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_signal(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	uv_stop(loop);
}

static void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL); /* the server and signal handles: not malloc'd */
}

static size_t num_arg(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > (1ul << 30)) {
		fprintf(stderr, "uv_echo: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	/* Take our own options out, hand the rest to the common parser. */
	int n = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pool"))
			pool.on = true;
		else if (!strcmp(argv[i], "--pool-size") && i + 1 < argc)
			pool.size = num_arg(argv[++i]);
		else if (!strcmp(argv[i], "--pool-count") && i + 1 < argc)
			pool.count = num_arg(argv[++i]);
		else
			argv[n++] = argv[i];
	}
	struct peer_args a = peer_parse(n, argv);
	push_mode = a.push;
	if (pool.on && !pool_setup()) {
		perror("uv_echo: mmap");
		return 1;
	}
	peer_raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	loop = uv_default_loop();
	uv_signal_t sigterm, sigint;
	uv_signal_init(loop, &sigterm);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", a.port, &sa);
	uv_tcp_init(loop, &server);
	int rc = uv_tcp_bind(&server, (const struct sockaddr *)&sa, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&server, 65535, on_connection);
	if (rc < 0) {
		fprintf(stderr, "uv_echo: listen: %s\n", uv_strerror(rc));
		return 1;
	}
	struct sockaddr_in bound;
	int len = sizeof(bound);
	uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
	printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
	fflush(stdout);
	uv_run(loop, UV_RUN_DEFAULT);
	/* Close the connections (they free themselves) and the rest. */
	while (live.next != &live)
		conn_close(live.next);
	uv_walk(loop, close_any, NULL);
	uv_run(loop, UV_RUN_DEFAULT); /* the cancelled writes give their buffers back */
	uv_loop_close(loop);
	if (pool.on)
		pool_teardown();
	return 0;
}
