/*
 * echo_minimal.c - the README's quick-start echo server, on port 9000.
 * Reads into pool buffers, writes them back without copying, frees a
 * connection at EOF or error. examples/echo_server.c is the full version.
 */
#include <netinet/in.h>
#include <proact.h>
#include <sys/socket.h>

int main(void)
{
	proact_watcher *w;
	if (proact_watcher_new(&w, NULL) != 0) /* io_uring if allowed, else epoll */
		return 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(9000)};
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 1024) != 0)
		return 1;
	struct proact_completion done[64];
	for (;;) {
		int fd;
		while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			proact_read(w, fd, NULL, 0, NULL); /* a pool buffer when data comes */
		int n = proact_wait(w, done, 64, 10);
		for (int i = 0; i < n; i++) {
			struct proact_completion *c = &done[i];
			if (c->op == PROACT_OP_READ && c->error == 0 && c->size > 0)
				/* zero copy: the pool buffer lives until this write completes */
				proact_write(w, c->fd, c->buf, c->size, NULL);
			else if (c->op == PROACT_OP_WRITE && c->error == 0)
				proact_read(w, c->fd, NULL, 0, NULL);
			else if (c->op != PROACT_OP_FREE)
				proact_free(w, c->fd, NULL); /* EOF or error: cancel, close */
		}
	}
}
