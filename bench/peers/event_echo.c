/* SPDX-License-Identifier: MIT */
/*
 * event_echo - the libevent echo (and push) server, in libevent's idiom.
 *
 *   event_echo [--port N] [--push]
 *
 * evconnlistener accepts, each connection is a socket bufferevent, and the
 * read callback moves the input evbuffer into the output evbuffer
 * (evbuffer_add_buffer moves the chains, no copy). libevent reads into its
 * own evbuffer chains; an idle connection's input buffer is empty.
 * SIGTERM/SIGINT arrive as signal events and break the loop.
 */
#include "peer.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

struct conn {
	struct bufferevent *bev;
	struct conn *prev, *next; /* every open connection, for --push and exit */
};

static struct event_base *base;
static struct conn live = {.prev = &live, .next = &live};
static bool push_mode;

static void conn_close(struct conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the fd */
	free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	if (push_mode) {
		unsigned char *first = evbuffer_pullup(in, 1);
		if (first && first[0] == PUSH_TRIGGER) {
			size_t len = evbuffer_get_length(in);
			unsigned char *msg = evbuffer_pullup(in, (ssize_t)len);
			for (struct conn *c = live.next; c != &live; c = c->next)
				bufferevent_write(c->bev, msg, len);
			evbuffer_drain(in, len);
			return;
		}
	}
	(void)arg;
	evbuffer_add_buffer(bufferevent_get_output(bev), in);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	(void)l;
	(void)sa;
	(void)salen;
	(void)arg;
	struct conn *c = malloc(sizeof(*c));
	struct bufferevent *bev =
	    c ? bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!bev) {
		free(c);
		close(fd);
		return;
	}
	c->bev = bev;
	c->next = live.next;
	c->prev = &live;
	live.next->prev = c;
	live.next = c;
	peer_nodelay(fd);
	bufferevent_setcb(bev, on_read, NULL, on_event, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
	struct peer_args a = peer_parse(argc, argv);
	push_mode = a.push;
	peer_raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	int lfd = peer_listen(a.port);
	/* backlog 0: lfd already listens (peer_listen). */
	struct evconnlistener *l =
	    base ? evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, 0, lfd) : NULL;
	struct event *s1 = base ? evsignal_new(base, SIGTERM, on_signal, NULL) : NULL;
	struct event *s2 = base ? evsignal_new(base, SIGINT, on_signal, NULL) : NULL;
	if (!l || !s1 || !s2 || event_add(s1, NULL) < 0 || event_add(s2, NULL) < 0) {
		fprintf(stderr, "event_echo: setup failed\n");
		return 1;
	}
	peer_print_listening(lfd);
	event_base_dispatch(base);
	while (live.next != &live)
		conn_close(live.next);
	evconnlistener_free(l);
	event_free(s1);
	event_free(s2);
	event_base_free(base);
	return 0;
}
