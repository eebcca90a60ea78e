/* SPDX-License-Identifier: MIT */
/*
 * lifecycle.c - a server and a client on one watcher, in one thread, with no
 * blocking call: accept, connect, write, read, shutdown_write, free.
 *
 * The client connects, sends a line and ends its half of the stream; the
 * server reads until end of stream, answers with the line in capitals and
 * ends its half; the client reads the answer until end of stream. Each side
 * frees its socket when it is done, and the program ends when both FREE
 * completions have arrived. Exits 0 on success.
 */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <proact.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct side {
	const char *name;
	int fd;
	char in[64];  /* what this side received */
	size_t got;   /* bytes in @in */
	char out[64]; /* what this side sends: the watcher's until written */
	bool freed;   /* its PROACT_OP_FREE completion arrived */
};

static struct side server = {.name = "server", .fd = -1};
static struct side client = {.name = "client", .fd = -1, .out = "hello, proact\n"};
static int listener = -1;

/* Sends @s->out, then the end of @s's half of the stream (queued in order). */
static int send_and_end(proact_watcher *w, struct side *s)
{
	int rc = proact_write(w, s->fd, s->out, strlen(s->out), s);
	return rc ? rc : proact_shutdown_write(w, s->fd, s);
}

static int read_more(proact_watcher *w, struct side *s)
{
	return proact_read(w, s->fd, s->in + s->got, sizeof(s->in) - 1 - s->got, s);
}

/* Handles one completion; 0, or a negative errno to give up. */
static int on_completion(proact_watcher *w, const struct proact_completion *c)
{
	struct side *s = c->ctx;
	if (c->error)
		return -c->error;
	switch (c->op) {
	case PROACT_OP_ACCEPT: /* one connection is all this server takes */
		server.fd = c->newfd;
		proact_free(w, listener, NULL);
		return read_more(w, &server);
	case PROACT_OP_READ:
		if (c->size > 0) { /* more may come: read on until end of stream */
			s->got += c->size;
			return s->got < sizeof(s->in) - 1 ? read_more(w, s) : -EMSGSIZE;
		}
		if (s == &client) /* the answer is complete */
			return proact_free(w, client.fd, &client);
		for (size_t i = 0; i < server.got; i++)
			server.out[i] = (char)toupper((unsigned char)server.in[i]);
		return send_and_end(w, &server);
	case PROACT_OP_SHUTDOWN: /* the server's answer is out */
		return s == &server ? proact_free(w, server.fd, &server) : 0;
	case PROACT_OP_FREE:
		if (s)
			s->freed = true;
		return 0;
	default: /* CONNECT, WRITE: nothing to do but wait for the next step */
		return 0;
	}
}

int main(void)
{
	proact_watcher *w;
	int rc = proact_watcher_new(&w, NULL); /* PROACT_BACKEND may name the backend */
	if (rc)
		return rc == -ENOSYS ? 77 : 1; /* 77: that backend is not available here */

	/* socket, bind and listen never block; port 0: the kernel picks one. */
	struct sockaddr_in addr = {.sin_family = AF_INET,
	                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(addr);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	client.fd = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(listener, (struct sockaddr *)&addr, len) || listen(listener, 8) ||
	    getsockname(listener, (struct sockaddr *)&addr, &len))
		return 1;

	/* All of the client's steps at once: proact runs them in order. */
	rc = proact_accept(w, listener, NULL, 0, &server);
	if (!rc)
		rc = proact_connect(w, client.fd, (struct sockaddr *)&addr, len,
		                    proact_deadline_in(5000), &client);
	if (!rc)
		rc = send_and_end(w, &client);
	if (!rc)
		rc = read_more(w, &client);

	struct proact_completion done[16];
	while (!rc && !(server.freed && client.freed)) {
		int n = proact_wait(w, done, 16, 5000);
		if (n <= 0) /* nothing for 5 s, or the watcher failed */
			rc = n ? n : -ETIMEDOUT;
		for (int i = 0; i < n && !rc; i++)
			rc = on_completion(w, &done[i]);
	}
	proact_watcher_destroy(w);
	if (rc) {
		fprintf(stderr, "lifecycle: %s\n", proact_strerror(rc));
		return 1;
	}
	printf("server got: %.*sclient got: %.*s", (int)server.got, server.in, (int)client.got,
	       client.in);
	return strcmp(client.in, "HELLO, PROACT\n") == 0 ? 0 : 1;
}
