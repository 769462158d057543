/*
 * fd_kinds ITERATIONS [target|refused]
 *
 * Holds one of every kernel object ppm carries, at fixed descriptor
 * numbers, with state in it, and at the end reads each one and prints what
 * it found (one `fd ...` line per object, then `ok fd_kinds`):
 *
 *   10 eventfd, counter 5, O_NONBLOCK        11 eventfd, semaphore, counter 3
 *   12 dup of 10                             13 timerfd, one shot in 1000 s
 *   14 timerfd, expired, 1 tick unread       15 timerfd, realtime, every 3600 s
 *   16 signalfd {USR1, USR2}, USR1 pending   17/18 pipe, "pipe-data-123\n" unread
 *   19/20 packet pipe (O_DIRECT): "p1", "packet-2"
 *   21/22 stream socketpair: "to-b" for 22; "to-a-1", "to-a-2" for 21; 22 shut for writing
 *   23/24 seqpacket pair: "m1", "", "m333" for 24
 *   25/26 datagram pair: "d1", "dd22" for 25 (SO_PASSCRED on 25)
 *   27 memfd "fd_kinds memfd": 10000 bytes, size 1 MiB, sealed against shrink and grow, at 123
 *   28 epoll over 10 (LT), 16 (LT), 17 (ET), 21 (LT), data = the fd (10: 0x1122334455667788)
 *   29 memfd "" without sealing (F_SEAL_SEAL)
 *
 * In between it ticks ITERATIONS times, 100 ms each, without touching them:
 * a checkpoint taken then must leave them exactly as they were, so the final
 * lines are the same as an uninterrupted run's.
 *
 * With `refused` it holds what ppm refuses instead, and at the end reports
 * the message with a descriptor that was queued (`fd 16 rights=1 [x]`):
 *
 *   10 a pipe's read end (its write end closed)    11 an inotify instance
 *   12 epoll watching an eventfd under 13, which is now only at 14
 *   15 an eventfd a child process holds too       16/17 socketpair, a descriptor queued for 16
 *   18 a memfd, opened a second time as 19
 *
 * With `target` it makes none of them: it blocks USR1 and USR2, prints
 * `ready`, and then over and over stops itself (SIGSTOP) and, once
 * continued, prints what it finds at those numbers (a test recreates them
 * there while it is stopped), then `done`.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>

static void place(int fd, int at)
{
	CHECK_SYS(fd >= 0, "create");
	if (fd == at)
		return;
	/* dup3 keeps close-on-exec as it was made (dup2 would clear it). */
	CHECK_SYS(dup3(fd, at, (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? O_CLOEXEC : 0) == at, "dup3");
	close(fd);
}

static void pair(int domain, int type, int a, int b)
{
	int sv[2];

	CHECK_SYS(socketpair(domain, type, 0, sv) == 0, "socketpair");
	place(sv[0], a);
	place(sv[1], b);
}

static void set_timer(int fd, int flags, long v_s, long v_ns, long i_s)
{
	struct itimerspec its = { { i_s, 0 }, { v_s, v_ns } };

	CHECK_SYS(timerfd_settime(fd, flags, &its, NULL) == 0, "timerfd_settime");
}

static void make_all(void)
{
	sigset_t set;
	uint64_t one = 1;
	int p[2];
	char big[10000];
	int on = 1;
	struct epoll_event ev;

	place(eventfd(5, EFD_NONBLOCK), 10);
	place(eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC), 11);
	CHECK_SYS(dup2(10, 12) == 12, "dup2");
	place(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK), 13);
	set_timer(13, 0, 1000, 0, 0);
	place(timerfd_create(CLOCK_MONOTONIC, 0), 14);
	set_timer(14, 0, 0, 1000000, 0);
	sleep_ms(20);
	place(timerfd_create(CLOCK_REALTIME, 0), 15);
	set_timer(15, 0, 3600, 0, 3600);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	place(signalfd(-1, &set, SFD_NONBLOCK), 16);
	raise(SIGUSR1);
	CHECK_SYS(pipe(p) == 0, "pipe");
	place(p[0], 17);
	place(p[1], 18);
	CHECK_SYS(write(18, "pipe-data-123\n", 14) == 14, "write pipe");
	CHECK_SYS(pipe2(p, O_DIRECT) == 0, "pipe2");
	place(p[0], 19);
	place(p[1], 20);
	CHECK_SYS(write(20, "p1", 2) == 2 && write(20, "packet-2", 8) == 8, "write packets");
	pair(AF_UNIX, SOCK_STREAM, 21, 22);
	CHECK_SYS(send(21, "to-b", 4, 0) == 4, "send");
	CHECK_SYS(send(22, "to-a-1", 6, 0) == 6 && send(22, "to-a-2", 6, 0) == 6, "send");
	CHECK_SYS(shutdown(22, SHUT_WR) == 0, "shutdown");
	pair(AF_UNIX, SOCK_SEQPACKET, 23, 24);
	CHECK_SYS(send(23, "m1", 2, 0) == 2 && send(23, "", 0, 0) == 0 &&
		  send(23, "m333", 4, 0) == 4, "send seqpacket");
	pair(AF_UNIX, SOCK_DGRAM, 25, 26);
	CHECK_SYS(setsockopt(25, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0, "SO_PASSCRED");
	CHECK_SYS(send(26, "d1", 2, 0) == 2 && send(26, "dd22", 4, 0) == 4, "send dgram");
	place(memfd_create("fd_kinds memfd", MFD_ALLOW_SEALING), 27);
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	CHECK_SYS(write(27, big, sizeof(big)) == (ssize_t)sizeof(big), "write memfd");
	CHECK_SYS(ftruncate(27, 1 << 20) == 0, "ftruncate");
	CHECK_SYS(fcntl(27, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "F_ADD_SEALS");
	CHECK_SYS(lseek(27, 123, SEEK_SET) == 123, "lseek");
	place(epoll_create1(EPOLL_CLOEXEC), 28);
	ev.events = EPOLLIN;
	ev.data.u64 = 0x1122334455667788ULL;
	CHECK_SYS(epoll_ctl(28, EPOLL_CTL_ADD, 10, &ev) == 0, "epoll_ctl");
	ev.data.u64 = 16;
	CHECK_SYS(epoll_ctl(28, EPOLL_CTL_ADD, 16, &ev) == 0, "epoll_ctl");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 17;
	CHECK_SYS(epoll_ctl(28, EPOLL_CTL_ADD, 17, &ev) == 0, "epoll_ctl");
	ev.events = EPOLLIN;
	ev.data.u64 = 21;
	CHECK_SYS(epoll_ctl(28, EPOLL_CTL_ADD, 21, &ev) == 0, "epoll_ctl");
	place(memfd_create("", 0), 29);
	(void)one;
}

static void make_refused(void)
{
	int p[2];
	struct epoll_event ev = { EPOLLIN, { .u64 = 1 } };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { "x", 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	pid_t child;

	CHECK_SYS(pipe(p) == 0, "pipe");
	place(p[0], 10);
	close(p[1]);
	place(inotify_init1(0), 11);
	place(epoll_create1(0), 12);
	place(eventfd(0, 0), 13);
	CHECK_SYS(epoll_ctl(12, EPOLL_CTL_ADD, 13, &ev) == 0, "epoll_ctl");
	CHECK_SYS(dup2(13, 14) == 14, "dup2");
	close(13);
	place(eventfd(0, 0), 15);
	child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		/* It holds 15 and nothing else of ours. */
		for (int fd = 3; fd < 64; fd++)
			if (fd != 15)
				close(fd);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	place(memfd_create("twice", 0), 18);
	place(open("/proc/self/fd/18", O_RDONLY), 19);
	pair(AF_UNIX, SOCK_STREAM, 16, 17);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &(int){ 0 }, sizeof(int));
	CHECK_SYS(sendmsg(17, &mh, 0) == 1, "sendmsg SCM_RIGHTS");
}

static void report_refused(void)
{
	char data[8], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(16, &mh, MSG_DONTWAIT);
	struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;

	out("fd 16 rights=%d [%.*s]\n", cm && cm->cmsg_type == SCM_RIGHTS, (int)(n > 0 ? n : 0), data);
}

/* Prints `fd N closed` and returns 1 when nothing is open at `fd`. */
static int closed(int fd)
{
	if (fcntl(fd, F_GETFD) >= 0)
		return 0;
	out("fd %d closed\n", fd);
	return 1;
}

static int readable(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* `fd N flags=<accmode|nonblock|direct> cloexec=<0|1>` prefix of every line. */
static int head(char *buf, size_t len, int fd)
{
	int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);

	if (fl < 0)
		return snprintf(buf, len, "fd %d closed", fd);
	return snprintf(buf, len, "fd %d acc=%d nonblock=%d direct=%d cloexec=%d", fd, fl & O_ACCMODE,
			!!(fl & O_NONBLOCK), !!(fl & O_DIRECT), !!(fdf & FD_CLOEXEC));
}

static void report_eventfd(int fd)
{
	char b[512];
	int n = head(b, sizeof(b), fd);
	uint64_t v;

	if (closed(fd))
		return;

	for (int i = 0; i < 6 && readable(fd); i++) {
		CHECK_SYS(read(fd, &v, 8) == 8, "read eventfd");
		n += snprintf(b + n, sizeof(b) - n, " read=%llu", (unsigned long long)v);
	}
	out("%s\n", b);
}

static void report_timer(int fd)
{
	char b[512];
	int n = head(b, sizeof(b), fd);
	struct itimerspec its;
	uint64_t ticks = 0;

	if (closed(fd))
		return;

	if (readable(fd))
		CHECK_SYS(read(fd, &ticks, 8) == 8, "read timerfd");
	CHECK_SYS(timerfd_gettime(fd, &its) == 0, "timerfd_gettime");
	/* Times to a tenth of their size: a restore takes a moment. */
	snprintf(b + n, sizeof(b) - n, " ticks=%llu value~%lds interval=%lds",
		 (unsigned long long)ticks, (long)((its.it_value.tv_sec + 50) / 100 * 100),
		 (long)its.it_interval.tv_sec);
	out("%s\n", b);
}

static void report_signalfd(int fd)
{
	char b[512];
	int n = head(b, sizeof(b), fd);
	struct signalfd_siginfo si;

	if (closed(fd))
		return;

	while (readable(fd)) {
		CHECK_SYS(read(fd, &si, sizeof(si)) == sizeof(si), "read signalfd");
		n += snprintf(b + n, sizeof(b) - n, " sig=%u", si.ssi_signo);
	}
	out("%s\n", b);
}

static void report_bytes(int fd, int sock)
{
	char b[1024], m[512];
	int n = head(b, sizeof(b), fd);

	if (closed(fd))
		return;

	for (int i = 0; i < 8 && readable(fd); i++) {
		ssize_t k = sock ? recv(fd, m, sizeof(m), MSG_DONTWAIT) : read(fd, m, sizeof(m));

		CHECK_SYS(k >= 0, "read");
		for (ssize_t j = 0; j < k; j++)
			if (m[j] == '\n')
				m[j] = '|';
		n += snprintf(b + n, sizeof(b) - n, " [%.*s]", (int)k, m);
		if (k == 0 && !sock)
			break;
		if (k == 0 && sock) {
			int type = 0;
			socklen_t tl = sizeof(type);

			getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl);
			if (type == SOCK_STREAM)
				break;
		}
	}
	out("%s\n", b);
}

static void report_memfd(int fd)
{
	char b[512], buf[4096];
	int n = head(b, sizeof(b), fd);
	struct stat st;
	uint64_t h = FNV_INIT;
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (closed(fd))
		return;

	CHECK_SYS(fstat(fd, &st) == 0, "fstat");
	for (off_t off = 0; off < st.st_size;) {
		ssize_t k = pread(fd, buf, sizeof(buf), off);

		CHECK_SYS(k > 0, "pread");
		h = fnv1a(h, buf, (size_t)k);
		off += k;
	}
	snprintf(b + n, sizeof(b) - n, " size=%lld seals=%d pos=%lld mode=%o hash=%016llx",
		 (long long)st.st_size, fcntl(fd, F_GET_SEALS), (long long)pos,
		 (unsigned)(st.st_mode & 07777), (unsigned long long)h);
	out("%s\n", b);
}

static void report_epoll(int fd)
{
	char b[512];
	int n = head(b, sizeof(b), fd);
	struct epoll_event ev[8];
	int k = epoll_wait(fd, ev, 8, 0);

	if (closed(fd))
		return;

	CHECK_SYS(k >= 0, "epoll_wait");
	/* The kernel's order is its ready list's: sort by data. */
	for (int i = 0; i < k; i++)
		for (int j = i + 1; j < k; j++)
			if (ev[j].data.u64 < ev[i].data.u64) {
				struct epoll_event t = ev[i];

				ev[i] = ev[j];
				ev[j] = t;
			}
	for (int i = 0; i < k; i++)
		n += snprintf(b + n, sizeof(b) - n, " %llx:%x", (unsigned long long)ev[i].data.u64,
			      ev[i].events);
	out("%s\n", b);
}

static void report(void)
{
	uint64_t seven = 7, v = 0;

	report_epoll(28);
	report_eventfd(10);
	report_eventfd(11);
	/* 12 is 10: what goes in through one comes out of the other. */
	if (write(12, &seven, 8) == 8 && readable(10) && read(10, &v, 8) == 8)
		out("fd 12 dup-of-10 read=%llu\n", (unsigned long long)v);
	else
		out("fd 12 not-a-dup\n");
	report_timer(13);
	report_timer(14);
	report_timer(15);
	report_signalfd(16);
	report_bytes(17, 0);
	report_bytes(19, 0);
	report_bytes(21, 1);
	report_bytes(22, 1);
	report_bytes(24, 1);
	report_bytes(25, 1);
	report_memfd(27);
	report_memfd(29);
}

int main(int argc, char **argv)
{
	long iters = prog_init("fd_kinds", argc, argv, argc > 2 ? 1 : 0, "ITERATIONS [target|refused]");

	/* Only what it makes: nothing its starter leaked (a pipe held elsewhere would be refused). */
	for (int fd = 3; fd < 1024; fd++)
		close(fd);

	if (argc > 2 && strcmp(argv[2], "refused") == 0) {
		make_refused();
		ready_line();
		for (long i = 0; i < iters; i++) {
			sleep_ms(100);
			tick_line(i, "holding");
		}
		report_refused();
		ok_line("refused");
		return 0;
	}
	if (argc > 2) {
		sigset_t set;

		CHECK(strcmp(argv[2], "target") == 0, "unknown mode '%s'", argv[2]);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigaddset(&set, SIGUSR2);
		sigprocmask(SIG_BLOCK, &set, NULL);
		ready_line();
		for (;;) {
			raise(SIGSTOP);
			report();
			out("done\n");
		}
	}
	{
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigaddset(&set, SIGUSR2);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	make_all();
	ready_line();
	for (long i = 0; i < iters; i++) {
		sleep_ms(100);
		tick_line(i, "holding");
	}
	report();
	ok_line("objects=16");
	return 0;
}
