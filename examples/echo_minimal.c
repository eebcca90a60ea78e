/* SPDX-License-Identifier: MIT */
/*
 * echo_minimal.c - the README's quick-start echo server, on port 9000.
 * Accepts through the watcher, reads into pool buffers, writes them back
 * without copying, frees a connection at EOF or error. No call but
 * proact_wait() ever waits. examples/echo_server.c is the full version.
 */
#include <netinet/in.h>
#include <proact.h>
#include <sys/socket.h>

int main(void)
{
	proact_watcher *w;
	if (proact_watcher_new(&w, NULL) != 0) /* io_uring if allowed, else epoll */
		return 1;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(9000)};
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 1024) != 0)
		return 1;
	proact_accept(w, lfd, NULL, 0, NULL);
	struct proact_completion done[64];
	for (;;) {
		int n = proact_wait(w, done, 64, -1);
		for (int i = 0; i < n; i++) {
			struct proact_completion *c = &done[i];
			if (c->op == PROACT_OP_ACCEPT) {
				if (c->error == 0) /* a pool buffer only when data comes */
					proact_read(w, c->newfd, NULL, 0, NULL);
				proact_accept(w, lfd, NULL, 0, NULL); /* the next one */
			} else if (c->op == PROACT_OP_READ && c->error == 0 && c->size > 0) {
				/* zero copy: the pool buffer lives until this write completes */
				proact_write(w, c->fd, c->buf, c->size, NULL);
			} else if (c->op == PROACT_OP_WRITE && c->error == 0) {
				proact_read(w, c->fd, NULL, 0, NULL);
			} else if (c->op != PROACT_OP_FREE) {
				proact_free(w, c->fd, NULL); /* EOF or error: cancel, close */
			}
		}
	}
}
