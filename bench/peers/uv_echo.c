/*
 * uv_echo - the libuv echo (and push) server, in libuv's documented idiom.
 *
 *   uv_echo [--port N] [--push]
 *
 * uv_read_start with an alloc callback that mallocs the suggested size
 * (64 KiB) only when data is ready, so an idle connection holds no read
 * buffer; the read callback hands the same buffer to uv_write and the write
 * callback frees it. SIGTERM/SIGINT arrive through uv_signal_t and stop the
 * loop.
 */
#include "peer.h"

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

static void on_bcast_written(uv_write_t *req, int status)
{
	struct bcast_write *w = (struct bcast_write *)req;
	struct conn *c = (struct conn *)req->handle;
	if (--w->b->refs == 0)
		free(w->b);
	free(w);
	if (status < 0)
		conn_close(c);
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

static void on_connection(uv_stream_t *srv, int status)
{
	if (status < 0)
		return;
	struct conn *c = malloc(sizeof(*c));
	if (!c)
		return;
	uv_tcp_init(loop, &c->tcp);
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_closed);
		return;
	}
	c->next = live.next;
	c->prev = &live;
	live.next->prev = c;
	live.next = c;
	uv_tcp_nodelay(&c->tcp, 1);
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

int main(int argc, char **argv)
{
	struct peer_args a = peer_parse(argc, argv);
	push_mode = a.push;
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
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	return 0;
}
