/* SPDX-License-Identifier: MIT */
/*
 * The kqueue double's own tests: the kevent(2) rules the kqueue backend
 * relies on, over real sockets (socketpairs and loopback TCP), pipes and a
 * FIFO. Standalone: cmocka and the double only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int __real_close(int fd); /* close() past the double: as libc's own closes are */

static void *const UA = (void *)0xa1;
static void *const UB = (void *)0xb2;

static void nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	assert_true(fl >= 0);
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void unix_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	nonblock(sv[0]);
	nonblock(sv[1]);
}

static int listener(int *port)
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 16), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return l;
}

static int connect_to(int port)
{
	int c = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	return c;
}

/* sv[0]: the accepted side, sv[1]: the client; both non-blocking. */
static void tcp_pair(int sv[2])
{
	int port;
	int l = listener(&port);
	sv[1] = connect_to(port);
	sv[0] = accept(l, NULL, NULL);
	assert_true(sv[0] >= 0);
	close(l);
	nonblock(sv[0]);
	nonblock(sv[1]);
}

static int change(int kq, uintptr_t ident, short filter, unsigned short flags, unsigned int fflags,
                  void *udata)
{
	struct kevent c;
	EV_SET(&c, ident, filter, flags, fflags, 0, udata);
	return kevent(kq, &c, 1, NULL, 0, NULL);
}

/* The EV_ERROR entry a single change gets back (its data: 0 or the errno). */
static struct kevent change_err(int kq, uintptr_t ident, short filter, unsigned short flags)
{
	struct kevent c, out;
	EV_SET(&c, ident, filter, flags, 0, 0, UB);
	memset(&out, 0, sizeof(out));
	struct timespec zero = {0, 0};
	assert_int_equal(kevent(kq, &c, 1, &out, 1, &zero), 1);
	assert_int_equal(out.flags, EV_ERROR);
	assert_int_equal(out.ident, ident);
	assert_int_equal(out.filter, filter);
	assert_ptr_equal(out.udata, UB);
	return out;
}

static int wait_ms(int kq, struct kevent *ev, int n, int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	return kevent(kq, NULL, 0, ev, n, &ts);
}

static int poll_now(int kq, struct kevent *ev, int n)
{
	return wait_ms(kq, ev, n, 0);
}

static void put(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static const struct kevent *find(const struct kevent *ev, int n, uintptr_t ident, short filter)
{
	for (int i = 0; i < n; i++)
		if (ev[i].ident == ident && ev[i].filter == filter)
			return &ev[i];
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void drain(int fd)
{
	char buf[65536];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void clear_read_fires_once_per_arrival(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	assert_true(kq >= 0);
	unix_pair(sv);
	struct kevent ev[4];
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0);

	put(sv[1], "hello");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].ident, sv[0]);
	assert_int_equal(ev[0].filter, EVFILT_READ);
	assert_ptr_equal(ev[0].udata, UA);
	assert_int_equal(ev[0].data, 5);
	assert_false(ev[0].flags & (EV_EOF | EV_ERROR));
	assert_true(ev[0].flags & EV_CLEAR);
	assert_int_equal(poll_now(kq, ev, 4), 0); /* unread, but nothing new */

	put(sv[1], "abc");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].data, 8);
	assert_int_equal(poll_now(kq, ev, 4), 0);

	/* An edge whose bytes were read before the call is not reported. */
	put(sv[1], "x");
	drain(sv[0]);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void write_fires_fresh_and_after_drain_on(int sv[2], bool tcp)
{
	int kq = kqueue();
	struct kevent ev[4];
	assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, UB), 0);
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].filter, EVFILT_WRITE);
	assert_ptr_equal(ev[0].udata, UB);
	assert_true(ev[0].data > 0);
	assert_int_equal(poll_now(kq, ev, 4), 0);

	static char junk[65536];
	while (write(sv[0], junk, sizeof(junk)) > 0)
		;
	assert_int_equal(errno, EAGAIN);
	if (!tcp) /* TCP may still free room as late ACKs come in */
		assert_int_equal(poll_now(kq, ev, 4), 0);

	/* The peer drains; the send buffer empties and the edge comes. */
	int64_t end = now_ms() + 5000;
	int got = 0;
	while (!got && now_ms() < end) {
		drain(sv[1]);
		got = wait_ms(kq, ev, 4, 50);
	}
	assert_int_equal(got, 1);
	assert_int_equal(ev[0].filter, EVFILT_WRITE);
	assert_true(ev[0].data > 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void clear_write_fires_fresh_and_after_drain(void **state)
{
	(void)state;
	int sv[2];
	unix_pair(sv);
	write_fires_fresh_and_after_drain_on(sv, false);
	tcp_pair(sv);
	write_fires_fresh_and_after_drain_on(sv, true);
}

static void udata_per_filter(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	tcp_pair(sv);
	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, UA);
	EV_SET(&ch[1], sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, UB);
	assert_int_equal(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	put(sv[1], "data");
	int n = 0;
	int64_t end = now_ms() + 2000;
	while (now_ms() < end &&
	       !(find(ev, n, sv[0], EVFILT_READ) && find(ev, n, sv[0], EVFILT_WRITE)))
		n += wait_ms(kq, ev + n, 4 - n, 100);
	const struct kevent *r = find(ev, n, sv[0], EVFILT_READ);
	const struct kevent *w = find(ev, n, sv[0], EVFILT_WRITE);
	assert_non_null(r);
	assert_non_null(w);
	assert_ptr_equal(r->udata, UA);
	assert_ptr_equal(w->udata, UB);
	assert_int_equal(r->data, 4);

	/* Deleting one filter leaves the other. */
	assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_DELETE, 0, NULL), 0);
	put(sv[1], "more");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].filter, EVFILT_READ);
	assert_ptr_equal(ev[0].udata, UA);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void add_again_modifies(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	unix_pair(sv);
	struct kevent ev[4];
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UB), 0);
	put(sv[1], "z");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1); /* one knote, not two */
	assert_ptr_equal(ev[0].udata, UB);
	/* Re-adding checks the condition again: the unread byte is reported. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_ptr_equal(ev[0].udata, UA);
	assert_int_equal(ev[0].data, 1);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void delete_missing_gives_enoent(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	unix_pair(sv);
	assert_int_equal(change_err(kq, sv[0], EVFILT_READ, EV_DELETE).data, ENOENT);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);
	assert_int_equal(change_err(kq, sv[0], EVFILT_READ, EV_DELETE).data, ENOENT);
	assert_int_equal(change_err(kq, sv[0], EVFILT_WRITE, EV_ENABLE).data, ENOENT);
	assert_int_equal(change_err(kq, 5, EVFILT_USER, EV_DELETE).data, ENOENT);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void receipt_answers_and_returns_no_events(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	unix_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	put(sv[1], "12345"); /* a read event is pending */

	struct kevent ch[2], ev[4];
	EV_SET(&ch[0], sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR | EV_RECEIPT, 0, 0, UB);
	EV_SET(&ch[1], sv[1], EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, UA);
	struct timespec ts = {5, 0};
	int64_t t0 = now_ms();
	assert_int_equal(kevent(kq, ch, 2, ev, 4, &ts), 2);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(ev[0].flags, EV_ERROR);
	assert_int_equal(ev[0].data, 0);
	assert_int_equal(ev[0].ident, sv[0]);
	assert_int_equal(ev[0].filter, EVFILT_WRITE);
	assert_ptr_equal(ev[0].udata, UB);
	assert_int_equal(ev[1].flags, EV_ERROR);
	assert_int_equal(ev[1].data, ENOENT);

	/* The next call returns what was pending. */
	int n = wait_ms(kq, ev, 4, 2000);
	if (n == 1)
		n += wait_ms(kq, ev + 1, 3, 2000);
	assert_int_equal(n, 2);
	const struct kevent *r = find(ev, n, sv[0], EVFILT_READ);
	assert_non_null(r);
	assert_int_equal(r->data, 5);
	assert_non_null(find(ev, n, sv[0], EVFILT_WRITE));

	/* No room for a receipt: the call stops there, later changes unapplied. */
	EV_SET(&ch[0], sv[1], EVFILT_READ, EV_ADD | EV_RECEIPT, 0, 0, NULL);
	EV_SET(&ch[1], sv[1], EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	assert_int_equal(kevent(kq, ch, 2, ev, 0, NULL), 0);
	assert_int_equal(change_err(kq, sv[1], EVFILT_WRITE, EV_DELETE).data, ENOENT);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void bad_changes_give_errors(void **state)
{
	(void)state;
	int kq = kqueue(), p[2];
	assert_int_equal(pipe(p), 0);
	int gone = p[0];
	close(p[0]);
	assert_int_equal(change_err(kq, gone, EVFILT_READ, EV_ADD).data, EBADF);
	assert_int_equal(change_err(kq, gone, EVFILT_READ, EV_DELETE).data, EBADF);
	assert_int_equal(change_err(kq, (uintptr_t)1 << 40, EVFILT_WRITE, EV_ADD).data, EBADF);
	assert_int_equal(change_err(kq, p[1], EVFILT_TIMER, EV_ADD).data, EINVAL);
	assert_int_equal(change_err(kq, p[1], 7, EV_ADD).data, EINVAL);
	assert_int_equal(change_err(kq, p[1], EVFILT_WRITE, EV_ADD | 0x0800).data, EINVAL);
	assert_int_equal(change_err(kq, p[1], EVFILT_WRITE, EV_ADD | EV_FORCEONESHOT).data, EINVAL);
	assert_int_equal(change_err(kq, p[1], EVFILT_WRITE, EV_ADD | EV_RECEIPT).data, 0);
	/* Not a kqueue, bad counts. */
	assert_int_equal(kevent(p[1], NULL, 0, NULL, 0, NULL), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(kevent(kq, NULL, -1, NULL, 0, NULL), -1);
	assert_int_equal(errno, EINVAL);
	struct kevent ev;
	struct timespec bad = {0, 1000000000};
	assert_int_equal(kevent(kq, NULL, 0, &ev, 1, &bad), -1);
	assert_int_equal(errno, EINVAL);
	close(p[1]);
	close(kq);
}

static void error_without_room_fails_the_call(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2], p[2];
	unix_pair(sv);
	assert_int_equal(pipe(p), 0);
	int gone = p[0];
	close(p[0]);
	assert_int_equal(change(kq, gone, EVFILT_READ, EV_ADD, 0, NULL), -1);
	assert_int_equal(errno, EBADF);

	/* Changes before the failed one are applied, those after it are not. */
	struct kevent ch[3];
	EV_SET(&ch[0], sv[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[1], sv[0], EVFILT_WRITE, EV_DELETE, 0, 0, NULL);
	EV_SET(&ch[2], sv[1], EVFILT_READ, EV_ADD, 0, 0, NULL);
	assert_int_equal(kevent(kq, ch, 3, NULL, 0, NULL), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);
	assert_int_equal(change_err(kq, sv[1], EVFILT_READ, EV_DELETE).data, ENOENT);

	/* With room for one entry, the second error fails the call. */
	struct kevent out;
	EV_SET(&ch[0], gone, EVFILT_READ, EV_ADD, 0, 0, NULL);
	EV_SET(&ch[1], gone, EVFILT_WRITE, EV_ADD, 0, 0, NULL);
	assert_int_equal(kevent(kq, ch, 2, &out, 1, NULL), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(out.flags, EV_ERROR);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

static void eof_on_peer_close(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	struct kevent ev[4];
	/* TCP: the peer's FIN ends reading, with the bytes still counted. */
	tcp_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	put(sv[1], "abc");
	close(sv[1]);
	int64_t end = now_ms() + 2000;
	int n = 0;
	while (now_ms() < end && !(n == 1 && (ev[0].flags & EV_EOF)))
		n = wait_ms(kq, ev, 4, 100);
	assert_int_equal(n, 1);
	assert_true(ev[0].flags & EV_EOF);
	assert_int_equal(ev[0].fflags, 0);
	assert_int_equal(ev[0].data, 3);
	char c;
	assert_int_equal(read(sv[0], &c, 1), 1);
	/* Re-adding clears EV_EOF and checks again: the socket is still at EOF. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_true(ev[0].flags & EV_EOF);
	assert_int_equal(ev[0].data, 2);
	close(sv[0]);

	/* socketpair: the write filter sees a peer that can take nothing more. */
	unix_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, UB), 0);
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_false(ev[0].flags & EV_EOF);
	close(sv[1]);
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].filter, EVFILT_WRITE);
	assert_true(ev[0].flags & EV_EOF);
	close(sv[0]);
	close(kq);
}

static void eof_stays_until_added_again(void **state)
{
	(void)state;
	/* A FIFO loses its hang-up when a new writer opens: only the knote's
	   sticky EV_EOF still tells of the first writer's close. */
	char dir[] = "/tmp/kqd-XXXXXX", path[64];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	int wr = open(path, O_WRONLY | O_NONBLOCK);
	assert_true(rd >= 0 && wr >= 0);
	int kq = kqueue();
	struct kevent ev[4];
	assert_int_equal(change(kq, rd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0);

	close(wr);
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_true(ev[0].flags & EV_EOF);
	assert_int_equal(ev[0].data, 0);

	wr = open(path, O_WRONLY | O_NONBLOCK);
	assert_true(wr >= 0);
	put(wr, "x");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_true(ev[0].flags & EV_EOF); /* sticky */
	assert_int_equal(ev[0].data, 1);

	assert_int_equal(change(kq, rd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_false(ev[0].flags & EV_EOF);
	assert_int_equal(ev[0].data, 1);
	close(rd);
	close(wr);
	close(kq);
	unlink(path);
	rmdir(dir);
}

static void data_counts(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	struct kevent ev[4];
	tcp_pair(sv);
	static char buf[1000];
	assert_int_equal(write(sv[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD, 0, NULL), 0);
	int64_t end = now_ms() + 2000;
	int n = 0;
	while (now_ms() < end && !(n == 1 && ev[0].data == 1000))
		n = wait_ms(kq, ev, 4, 100);
	assert_int_equal(ev[0].data, 1000);

	int sndbuf = 0;
	socklen_t len = sizeof(sndbuf);
	assert_int_equal(getsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, &len), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_ONESHOT, 0, NULL), 0);
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_true(ev[0].data > 0 && ev[0].data <= sndbuf);
	close(sv[0]);
	close(sv[1]);

	/* A listener: the pending connections. */
	int port, l = listener(&port);
	assert_int_equal(change(kq, l, EVFILT_READ, EV_ADD, 0, NULL), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	int c1 = connect_to(port), c2 = connect_to(port);
	end = now_ms() + 2000;
	n = 0;
	while (now_ms() < end && !(n == 1 && ev[0].data == 2))
		n = wait_ms(kq, ev, 4, 100);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].ident, l);
	assert_int_equal(ev[0].data, 2);
	close(c1);
	close(c2);
	close(l);

	/* A pipe: bytes in it, and the room left. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	int size = fcntl(p[1], F_GETPIPE_SZ);
	put(p[1], "0123456789");
	struct kevent ch[2];
	EV_SET(&ch[0], p[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
	EV_SET(&ch[1], p[1], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
	assert_int_equal(kevent(kq, ch, 2, NULL, 0, NULL), 0);
	n = wait_ms(kq, ev, 4, 2000);
	if (n == 1)
		n += wait_ms(kq, ev + 1, 3, 2000);
	assert_int_equal(n, 2);
	const struct kevent *r = find(ev, n, p[0], EVFILT_READ);
	const struct kevent *w = find(ev, n, p[1], EVFILT_WRITE);
	assert_non_null(r);
	assert_non_null(w);
	assert_int_equal(r->data, 10);
	assert_int_equal(w->data, size - 10);
	close(p[0]);
	close(p[1]);
	close(kq);
}

static void level_oneshot_dispatch_disable(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	unix_pair(sv);
	struct kevent ev[4];
	put(sv[1], "ab");

	/* Level-triggered: reported while the condition holds. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	drain(sv[0]);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	put(sv[1], "c");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);

	/* EV_ONESHOT: reported once, then gone. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_ONESHOT, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_true(ev[0].flags & EV_ONESHOT);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	assert_int_equal(change_err(kq, sv[0], EVFILT_READ, EV_DELETE).data, ENOENT);

	/* EV_DISPATCH: reported once, then disabled until EV_ENABLE. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_DISPATCH, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	put(sv[1], "d");
	assert_int_equal(wait_ms(kq, ev, 4, 50), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ENABLE, 0, UB), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_ptr_equal(ev[0].udata, UB); /* any change sets udata, as on FreeBSD */
	assert_int_equal(ev[0].data, 2);

	/* EV_DISABLE and EV_ENABLE. */
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_DELETE, 0, NULL), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR | EV_DISABLE, 0, UA), 0);
	put(sv[1], "e");
	assert_int_equal(wait_ms(kq, ev, 4, 50), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ENABLE | EV_KEEPUDATA, 0, UB), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_ptr_equal(ev[0].udata, UA);
	assert_int_equal(ev[0].data, 3);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

struct waiter {
	int kq, got, err;
	int timeout_s; /* 0: no timeout (NULL) */
	struct kevent ev[4];
	int64_t took_ms;
	atomic_bool done;
};

static void *wait_blocked(void *arg)
{
	struct waiter *w = arg;
	struct timespec ts = {w->timeout_s, 0};
	int64_t t0 = now_ms();
	w->got = kevent(w->kq, NULL, 0, w->ev, 4, w->timeout_s ? &ts : NULL);
	w->err = errno;
	w->took_ms = now_ms() - t0;
	atomic_store(&w->done, true);
	return NULL;
}

static void user_trigger_wakes_blocked_thread(void **state)
{
	(void)state;
	struct waiter w = {.kq = kqueue(), .timeout_s = 10}; /* fails, not hangs, if no wake */
	assert_int_equal(change(w.kq, 7, EVFILT_USER, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(change(w.kq, 8, EVFILT_USER, EV_ADD | EV_CLEAR, 0, UB), 0);
	struct kevent ev[4];
	assert_int_equal(poll_now(w.kq, ev, 4), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wait_blocked, &w), 0);
	struct timespec pause = {0, 100 * 1000000};
	nanosleep(&pause, NULL);
	assert_false(atomic_load(&w.done));
	assert_int_equal(change(w.kq, 7, EVFILT_USER, 0, NOTE_TRIGGER | NOTE_FFCOPY | 0x5, NULL),
	                 0);
	pthread_join(t, NULL);
	assert_int_equal(w.got, 1);
	assert_int_equal(w.ev[0].ident, 7);
	assert_int_equal(w.ev[0].filter, EVFILT_USER);
	assert_int_equal(w.ev[0].fflags, 0x5);
	assert_null(w.ev[0].udata);                 /* the trigger's change set it */
	assert_true(w.took_ms < 5000);              /* woken, not timed out */
	assert_int_equal(poll_now(w.kq, ev, 4), 0); /* EV_CLEAR: reset */
	close(w.kq);
}

static void user_level_and_fflags(void **state)
{
	(void)state;
	int kq = kqueue();
	struct kevent ev[4];
	assert_int_equal(change(kq, 1, EVFILT_USER, EV_ADD, NOTE_FFCOPY | 0x30, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0); /* not triggered yet */
	assert_int_equal(
	    change(kq, 1, EVFILT_USER, EV_KEEPUDATA, NOTE_TRIGGER | NOTE_FFOR | 0x3, UB), 0);
	for (int i = 0; i < 2; i++) { /* no EV_CLEAR: it stays triggered */
		assert_int_equal(poll_now(kq, ev, 4), 1);
		assert_int_equal(ev[0].fflags, 0x33);
		assert_ptr_equal(ev[0].udata, UA);
	}
	assert_int_equal(change(kq, 1, EVFILT_USER, EV_KEEPUDATA, NOTE_FFAND | 0x12, NULL), 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_int_equal(ev[0].fflags, 0x12);
	assert_int_equal(change(kq, 1, EVFILT_USER, EV_DELETE, 0, NULL), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	/* An ident is not an fd: no EBADF for a closed number. */
	assert_int_equal(change(kq, 100000, EVFILT_USER, EV_ADD | EV_ONESHOT, NOTE_TRIGGER, NULL),
	                 0);
	assert_int_equal(poll_now(kq, ev, 4), 1);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	close(kq);
}

static void timeouts(void **state)
{
	(void)state;
	int kq = kqueue();
	struct kevent ev[4];
	int64_t t0 = now_ms();
	assert_int_equal(poll_now(kq, ev, 4), 0);
	assert_true(now_ms() - t0 < 50);
	t0 = now_ms();
	assert_int_equal(wait_ms(kq, ev, 4, 60), 0);
	int64_t took = now_ms() - t0;
	assert_true(took >= 59 && took < 2000);
	/* No room for events: returns at once whatever the timeout. */
	t0 = now_ms();
	assert_int_equal(kevent(kq, NULL, 0, ev, 0, NULL), 0);
	assert_true(now_ms() - t0 < 50);
	close(kq);
}

static void on_signal(int sig)
{
	(void)sig;
}

static void eintr_ends_the_wait(void **state)
{
	(void)state;
	struct sigaction sa = {.sa_handler = on_signal}, old;
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
	struct waiter w = {.kq = kqueue()};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wait_blocked, &w), 0);
	struct timespec pause = {0, 20 * 1000000};
	for (int i = 0; i < 250 && !atomic_load(&w.done); i++) {
		nanosleep(&pause, NULL);
		pthread_kill(t, SIGUSR1);
	}
	pthread_join(t, NULL);
	assert_int_equal(w.got, -1);
	assert_int_equal(w.err, EINTR);
	sigaction(SIGUSR1, &old, NULL);
	close(w.kq);
}

static void close_drops_knotes(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2], nv[2];
	struct kevent ev[4];
	unix_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, UB), 0);
	put(sv[1], "pending");
	int old = sv[0];
	close(sv[0]); /* events are pending for it */
	unix_pair(nv);
	assert_int_equal(nv[0], old);
	assert_int_equal(poll_now(kq, ev, 4), 0);
	assert_int_equal(change_err(kq, nv[0], EVFILT_READ, EV_DELETE).data, ENOENT);
	assert_int_equal(change_err(kq, nv[0], EVFILT_WRITE, EV_DELETE).data, ENOENT);
	/* The number works as new. */
	assert_int_equal(change(kq, nv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UB), 0);
	put(nv[1], "new");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_ptr_equal(ev[0].udata, UB);
	assert_int_equal(ev[0].data, 3);
	close(sv[1]);
	close(nv[0]);
	close(nv[1]);
	close(kq);
}

static void close_behind_the_back_then_add(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2], nv[2];
	struct kevent ev[4];
	unix_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	int old = sv[0];
	assert_int_equal(__real_close(sv[0]), 0); /* the double does not see it */
	unix_pair(nv);
	assert_int_equal(nv[0], old);
	assert_int_equal(change(kq, nv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UB), 0);
	put(nv[1], "ok");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].ident, nv[0]);
	assert_ptr_equal(ev[0].udata, UB);
	assert_int_equal(ev[0].data, 2);
	close(sv[1]);
	close(nv[0]);
	close(nv[1]);
	close(kq);
}

static void close_kq_frees_it(void **state)
{
	(void)state;
	int before = fd_count();
	int sv[2];
	unix_pair(sv);
	for (int i = 0; i < 3; i++) {
		int kq = kqueue();
		assert_true(kq >= 0);
		assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD, 0, UA), 0);
		assert_int_equal(change(kq, sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, UB), 0);
		assert_int_equal(change(kq, 3, EVFILT_USER, EV_ADD, NOTE_TRIGGER, NULL), 0);
		assert_int_equal(change(kq, 4, EVFILT_USER, EV_ADD | EV_CLEAR, 0, NULL), 0);
		put(sv[1], "q");
		struct kevent ev[2];
		assert_true(poll_now(kq, ev, 2) > 0); /* some stay queued */
		close(kq);
		assert_int_equal(kevent(kq, NULL, 0, ev, 2, NULL), -1);
		assert_int_equal(errno, EBADF);
	}
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(fd_count(), before);
}

static void fork_child_has_no_kqueue(void **state)
{
	(void)state;
	int kq = kqueue(), sv[2];
	struct kevent ev[4];
	unix_pair(sv);
	assert_int_equal(change(kq, sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, UA), 0);
	assert_int_equal(poll_now(kq, ev, 4), 0); /* from here on only epoll tells */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* As on a BSD the child has no kqueue, and its closes leave the
		   parent's knotes alone (the epoll set is shared). */
		struct timespec zero = {0, 0};
		int ok = kevent(kq, NULL, 0, ev, 4, &zero) == -1 && errno == EBADF &&
		         fcntl(kq, F_GETFD) == -1;
		close(sv[0]);
		_exit(ok ? 0 : 1);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	put(sv[1], "after");
	assert_int_equal(wait_ms(kq, ev, 4, 2000), 1);
	assert_int_equal(ev[0].ident, sv[0]);
	assert_int_equal(ev[0].data, 5);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(sv[0]);
	close(sv[1]);
	close(kq);
}

struct churn {
	int kq;
	atomic_bool stop;
	atomic_int events, failures; /* cmocka asserts only on the main thread */
};

static void *churn_wait(void *arg)
{
	struct churn *c = arg;
	struct kevent ev[8];
	while (!atomic_load(&c->stop)) {
		int n = wait_ms(c->kq, ev, 8, 20);
		if (n < 0)
			atomic_fetch_add(&c->failures, 1);
		else
			atomic_fetch_add(&c->events, n);
	}
	return NULL;
}

static void threads_add_close_trigger(void **state)
{
	(void)state;
	int before = fd_count();
	struct churn c = {.kq = kqueue()};
	assert_int_equal(change(c.kq, 1, EVFILT_USER, EV_ADD | EV_CLEAR, 0, NULL), 0);
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn_wait, &c), 0);
	for (int i = 0; i < 300; i++) {
		int sv[2];
		unix_pair(sv);
		struct kevent ch[3];
		EV_SET(&ch[0], sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
		EV_SET(&ch[1], sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, NULL);
		EV_SET(&ch[2], sv[1], EVFILT_READ, EV_ADD, 0, 0, NULL);
		assert_int_equal(kevent(c.kq, ch, 3, NULL, 0, NULL), 0);
		put(sv[1], "x");
		put(sv[0], "y");
		if (i % 10 == 0)
			assert_int_equal(change(c.kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, NULL), 0);
		close(sv[i % 2]);
		close(sv[1 - i % 2]);
	}
	/* the waiters may not have run yet on a loaded machine: one trigger
	   more, which stays pending until one of them takes it (5 s at most) */
	assert_int_equal(change(c.kq, 1, EVFILT_USER, 0, NOTE_TRIGGER, NULL), 0);
	for (int i = 0; i < 500 && atomic_load(&c.events) == 0; i++)
		usleep(10000);
	atomic_store(&c.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&c.failures), 0);
	assert_true(atomic_load(&c.events) > 0);
	close(c.kq);
	assert_int_equal(fd_count(), before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(clear_read_fires_once_per_arrival),
	    cmocka_unit_test(clear_write_fires_fresh_and_after_drain),
	    cmocka_unit_test(udata_per_filter),
	    cmocka_unit_test(add_again_modifies),
	    cmocka_unit_test(delete_missing_gives_enoent),
	    cmocka_unit_test(receipt_answers_and_returns_no_events),
	    cmocka_unit_test(bad_changes_give_errors),
	    cmocka_unit_test(error_without_room_fails_the_call),
	    cmocka_unit_test(eof_on_peer_close),
	    cmocka_unit_test(eof_stays_until_added_again),
	    cmocka_unit_test(data_counts),
	    cmocka_unit_test(level_oneshot_dispatch_disable),
	    cmocka_unit_test(user_trigger_wakes_blocked_thread),
	    cmocka_unit_test(user_level_and_fflags),
	    cmocka_unit_test(timeouts),
	    cmocka_unit_test(eintr_ends_the_wait),
	    cmocka_unit_test(close_drops_knotes),
	    cmocka_unit_test(close_behind_the_back_then_add),
	    cmocka_unit_test(close_kq_frees_it),
	    cmocka_unit_test(fork_child_has_no_kqueue),
	    cmocka_unit_test(threads_add_close_trigger),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
