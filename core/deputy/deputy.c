// SPDX-License-Identifier: GPL-2.0
/*
 * ppm-deputy: what stays at home of a process that migrated away.
 *
 * A process whose parent is not ppm (an MPI rank under hydra_pmi_proxy, a
 * job under a batch system's shepherd) must not be seen to die when it
 * moves: its parent would take the move for the end of the process, and
 * an MPI proxy would end every other rank with it.  So after the commit the
 * original process is not killed: ppm makes it run this program instead
 * (core/deputy/become.ts: its other threads end, its descriptors from 3 up
 * are closed but for a few, it calls execve).  It keeps its PID, parent,
 * process group, session and standard streams; it does nothing but pass
 * on the signals it gets to the agent, which sends them on to the process
 * where it runs now, and it ends the way the process ends there.
 *
 *   ppm-deputy SOCKET_PATH ORIGINAL_COMM [RECONNECT_SECONDS]
 *
 * It names itself ORIGINAL_COMM (PR_SET_NAME), sets RLIMIT_CORE to 0, goes
 * to "/" (it keeps no directory busy), blocks every signal and reads them
 * with a signalfd, connects to the agent's unix stream socket SOCKET_PATH
 * and says who it is.  The protocol is lines of ASCII ending in "\n":
 *
 *   deputy -> agent   "hello PID"     first, on each connection
 *                     "signal N"      it got signal N (1..64), in the order
 *                                     it read them; SIGCHLD is not passed
 *                                     on (it reaps any child it inherited)
 *   agent -> deputy   "exit CODE"     exit with CODE (0..255)
 *                     "killed SIG"    end by signal SIG (1..64): its
 *                                     default action restored, unblocked
 *                                     and raised, with dumping disabled (no
 *                                     core file), so the parent's waitpid
 *                                     sees WIFSIGNALED with SIG; a signal
 *                                     whose default is to be ignored or to
 *                                     stop cannot end a process: exit with
 *                                     128 + SIG instead
 *                    "close FD"      close FD, one of the descriptors it
 *                                     was given from 3 up (a relayed pipe
 *                                     or socket whose relay ended: its
 *                                     peer here then sees the end); any
 *                                     other FD (0-2, its own signalfd or
 *                                     socket, one not open at its start,
 *                                     one closed already) is ignored
 *                    "home"          with three descriptors passed along
 *                                     (SCM_RIGHTS): a grant (kmod/grant.c),
 *                                     a restore spec and the restore stub;
 *                                     its process comes home, into this
 *                                     very task: it runs the stub
 *                                     (execveat), which takes the grant
 *                                     and restores the process here.  The
 *                                     signals it kept are raised again
 *                                     first (blocked, they wait for the
 *                                     process).  Without exactly three
 *                                     descriptors the line is ignored
 *   deputy -> agent   "home-failed E" the stub could not be run (errno E);
 *                                     it goes on as the deputy
 *
 * Descriptors that come with any other line are closed.
 * A line from the agent longer than LINE_MAX_BYTES, holding a NUL, or not
 * one of the above is ignored.  When the connection drops (an agent
 * restart) it connects again at once and then every second, for up to
 * RECONNECT_SECONDS (default 600, or $PPM_DEPUTY_RECONNECT_S when no
 * argument is given; 0 to 86400) since the drop; meanwhile it reads and
 * keeps the signals it gets, at most QUEUE_MAX of them (a standard signal
 * already kept is not kept twice, as the kernel does not queue it twice
 * either; a real-time signal past the bound is lost).  A line cut by the
 * drop is sent again whole.
 *
 * What it cannot do: SIGSTOP stops the deputy itself (it cannot be caught
 * or blocked), not the process where it runs now, and its parent sees the
 * deputy stopped; SIGCONT then continues the deputy and is passed on as a
 * signal.  SIGKILL ends the deputy and cannot be passed on: the agent sees
 * the deputy gone.  SIGTSTP, SIGTTIN and SIGTTOU are passed on and do not
 * stop the deputy.  Standard signals that arrive faster than it reads them
 * merge, as they would in the process.
 *
 * Exit codes of its own (anything else is the process's, from "exit"):
 * 120 a system call it needs failed at start; 121 bad arguments; 122 no
 * agent took its connection within RECONNECT_SECONDS.  Mirrored by
 * DEPUTY_EXIT in core/deputy/binary.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The kernel's directory entry for getdents64 (glibc declares none before 2.30). */
struct linux_dirent64 {
	unsigned long long d_ino;
	long long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

enum deputy_exit {
	DEPUTY_FAILED = 120,
	DEPUTY_USAGE = 121,
	DEPUTY_NO_AGENT = 122,
};

/* Longest line either way, its "\n" included. */
#define LINE_MAX_BYTES 64
/* Most descriptors from 3 up it keeps (core/image/fds.ts MAX_RELAYED is 64). */
#define KEPT_MAX 128
/* Most signals kept while no agent listens. */
#define QUEUE_MAX 256
#define RECONNECT_DEFAULT_S 600
#define RECONNECT_MAX_S 86400
#define RETRY_MS 1000
/* The kernel's signals on x86-64, and the first real-time one. */
#define KERNEL_NSIG 64
#define KERNEL_SIGRTMIN 32

/* The kernel's struct sigaction for rt_sigaction (not glibc's). */
struct kernel_sigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	unsigned long mask;
};

/* The line being sent: a hello (sig 0) or a signal. */
struct out_line {
	char buf[LINE_MAX_BYTES];
	size_t len;
	size_t off;
	int sig;
};

static int queue[QUEUE_MAX];
static unsigned int qhead, qlen;
static struct out_line out;

/* The descriptors from 3 up it was given (open at its start); -1 once closed. */
static int kept[KEPT_MAX];
static unsigned int kept_len;

static char in_buf[LINE_MAX_BYTES];
static size_t in_len;
static int in_discard;

/* The descriptors "home" takes: grant, spec, stub. */
#define HOME_FDS 3
/* Descriptors that came with what is being read (SCM_RIGHTS). */
static int got_fds[HOME_FDS];
static unsigned int got_len;
/* The errno of a "home" that failed, to be told; 0 when none. */
static int home_err;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A decimal number of at most 5 digits, no sign, in [min, max]; -1 if not. */
static long parse_num(const char *s, long min, long max)
{
	long v = 0;
	size_t i;

	if (!*s || strlen(s) > 5)
		return -1;
	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= min && v <= max ? v : -1;
}

static void enqueue(int sig)
{
	unsigned int i;

	if (sig < KERNEL_SIGRTMIN) {
		for (i = 0; i < qlen; i++)
			if (queue[(qhead + i) % QUEUE_MAX] == sig)
				return;
	}
	if (qlen == QUEUE_MAX)
		return;
	queue[(qhead + qlen++) % QUEUE_MAX] = sig;
}

/* Puts back first a signal whose line did not get through whole. */
static void push_front(int sig)
{
	if (qlen == QUEUE_MAX)
		qlen--;
	qhead = (qhead + QUEUE_MAX - 1) % QUEUE_MAX;
	queue[qhead] = sig;
	qlen++;
}

static int pop(void)
{
	int sig = queue[qhead];

	qhead = (qhead + 1) % QUEUE_MAX;
	qlen--;
	return sig;
}

/* Ends by signal sig as the process ended where it ran. */
static void die_by(int sig)
{
	struct kernel_sigaction dfl;
	unsigned long mask = 1UL << (sig - 1);

	switch (sig) {
	case SIGCHLD:
	case SIGCONT:
	case SIGURG:
	case SIGWINCH:
	case SIGSTOP:
	case SIGTSTP:
	case SIGTTIN:
	case SIGTTOU:
		_exit(128 + sig);
	}
	/* No core file, whatever core_pattern says (a pipe ignores RLIMIT_CORE). */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Raw calls: glibc refuses its own signals (32, 33), which end a process too. */
	memset(&dfl, 0, sizeof(dfl));
	syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(mask));
	syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &mask, NULL, sizeof(mask));
	syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), sig);
	_exit(128 + sig);
}

/*
 * Notes the descriptors from 3 up open at its start: those execve kept,
 * the relayed ones (core/deputy/become.ts).  Called before it opens any of
 * its own, so none of these is ever its signalfd or socket.  Past
 * KEPT_MAX, or with /proc unreadable, the rest cannot be closed by a line.
 */
static void note_kept(void)
{
	char buf[4096];
	long n, off;
	int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dir < 0)
		return;
	while ((n = syscall(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (off = 0; off < n;) {
			struct linux_dirent64 *e = (struct linux_dirent64 *)(buf + off);
			long fd = parse_num(e->d_name, 3, 99999);

			off += e->d_reclen;
			if (fd > 2 && fd != dir && kept_len < KEPT_MAX)
				kept[kept_len++] = (int)fd;
		}
	}
	close(dir);
}

/* Closes kept descriptor fd, when it is one; any other is left alone. */
static void close_kept(long fd)
{
	unsigned int i;

	if (fd < 3)
		return;
	for (i = 0; i < kept_len; i++) {
		if (kept[i] == fd) {
			kept[i] = -1;
			close((int)fd);
			return;
		}
	}
}

/* Closes the descriptors that came and were not taken. */
static void drop_fds(void)
{
	while (got_len)
		close(got_fds[--got_len]);
}

/*
 * Its process comes home: the stub runs in this task (execveat), which
 * keeps the PID, parent, session and standard streams.  The signals kept
 * for the agent are raised again first: blocked, they wait for the
 * process.  Returns only when execveat failed.
 */
static void go_home(void)
{
	int grant = got_fds[0], spec = got_fds[1], stub = got_fds[2];
	char g[16], sp[16];
	char *argv[] = { "ppm-restore-stub", "--into", g, sp, NULL };
	char *envp[] = { "GLIBC_TUNABLES=glibc.pthread.rseq=0", NULL };

	got_len = 0;
	snprintf(g, sizeof(g), "%d", grant);
	snprintf(sp, sizeof(sp), "%d", spec);
	if (!fcntl(grant, F_SETFD, 0) && !fcntl(spec, F_SETFD, 0)) {
		if (out.sig && out.off < out.len)
			kill(getpid(), out.sig);
		while (qlen)
			kill(getpid(), pop());
		syscall(SYS_execveat, stub, "", argv, envp, AT_EMPTY_PATH);
	}
	home_err = errno ? errno : EIO;
	close(grant);
	close(spec);
	close(stub);
}

static void command(const char *line)
{
	long v;

	if (!strcmp(line, "home")) {
		if (got_len == HOME_FDS)
			go_home();
	} else if (!strncmp(line, "exit ", 5)) {
		v = parse_num(line + 5, 0, 255);
		if (v >= 0)
			_exit((int)v);
	} else if (!strncmp(line, "killed ", 7)) {
		v = parse_num(line + 7, 1, KERNEL_NSIG);
		if (v > 0)
			die_by((int)v);
	} else if (!strncmp(line, "close ", 6)) {
		v = parse_num(line + 6, 3, 99999);
		if (v > 0)
			close_kept(v);
	}
	/* Anything else is not ours: ignored. */
}

/* Keeps the descriptors that came with a message (all or none). */
static void take_fds(struct msghdr *mh)
{
	struct cmsghdr *c;
	int extra = (mh->msg_flags & MSG_CTRUNC) != 0;

	for (c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t i, n;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got_len < HOME_FDS) {
				got_fds[got_len++] = fd;
			} else {
				close(fd);
				extra = 1;
			}
		}
	}
	/* More than "home" takes (or some cut off): none is taken. */
	if (extra)
		drop_fds();
}

/* Reads what the agent sent; -1 when the connection is to be dropped. */
static int read_agent(int fd)
{
	char buf[256];
	union {
		char b[CMSG_SPACE(sizeof(int) * HOME_FDS)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh;
	ssize_t n, i;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.b;
	mh.msg_controllen = sizeof(ctl.b);
	n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n > 0)
		take_fds(&mh);
	if (n == 0)
		return -1;
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	for (i = 0; i < n; i++) {
		char c = buf[i];

		if (c == '\n') {
			if (!in_discard) {
				in_buf[in_len] = '\0';
				command(in_buf);
			}
			in_len = 0;
			in_discard = 0;
		} else if (c == '\0' || in_len + 1 >= sizeof(in_buf)) {
			in_discard = 1;
		} else if (!in_discard) {
			in_buf[in_len++] = c;
		}
	}
	drop_fds();
	return 0;
}

static void read_signals(int sfd)
{
	struct signalfd_siginfo si[16];
	ssize_t n, i;

	for (;;) {
		n = read(sfd, si, sizeof(si));
		if (n < (ssize_t)sizeof(si[0]))
			return;
		for (i = 0; i < n / (ssize_t)sizeof(si[0]); i++) {
			int sig = (int)si[i].ssi_signo;

			if (sig == SIGCHLD) {
				/* A child it inherited: reaped, not passed on. */
				while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
					;
				continue;
			}
			if (sig >= 1 && sig <= KERNEL_NSIG)
				enqueue(sig);
		}
	}
}

/* Sends what it can of the hello and the kept signals; -1 to drop the connection. */
static int flush(int fd)
{
	ssize_t n;

	for (;;) {
		if (out.off == out.len) {
			out.len = 0;
			out.off = 0;
			if (home_err) {
				out.sig = 0;
				out.len = (size_t)snprintf(out.buf, sizeof(out.buf),
							   "home-failed %d\n", home_err);
				home_err = 0;
				continue;
			}
			if (!qlen)
				return 0;
			out.sig = pop();
			out.len = (size_t)snprintf(out.buf, sizeof(out.buf), "signal %d\n",
						   out.sig);
		}
		n = send(fd, out.buf + out.off, out.len - out.off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		out.off += (size_t)n;
	}
}

/* A new connection to the agent, or -1 (errno set). */
static int connect_agent(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	/* Hello first; a line the last connection cut goes again, whole. */
	if (out.sig && out.off < out.len)
		push_front(out.sig);
	out.sig = 0;
	out.off = 0;
	out.len = (size_t)snprintf(out.buf, sizeof(out.buf), "hello %d\n", (int)getpid());
	in_len = 0;
	in_discard = 0;
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa;
	struct rlimit core;
	struct pollfd pfd[2];
	sigset_t all;
	const char *wait_arg;
	long long since, next_try, now;
	long window_s;
	int sfd, sock = -1, timeout;

	if (argc != 3 && argc != 4)
		return DEPUTY_USAGE;
	if (strlen(argv[1]) >= sizeof(sa.sun_path) || argv[1][0] != '/')
		return DEPUTY_USAGE;
	wait_arg = argc == 4 ? argv[3] : getenv("PPM_DEPUTY_RECONNECT_S");
	window_s = wait_arg ? parse_num(wait_arg, 0, RECONNECT_MAX_S) : RECONNECT_DEFAULT_S;
	if (window_s < 0)
		return DEPUTY_USAGE;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, argv[1], strlen(argv[1]));

	prctl(PR_SET_NAME, argv[2], 0, 0, 0);
	if (!getrlimit(RLIMIT_CORE, &core)) {
		core.rlim_cur = 0;
		setrlimit(RLIMIT_CORE, &core);
	}
	/* Where it is matters to nobody; elsewhere it would keep a directory busy. */
	if (chdir("/") < 0)
		errno = 0;

	/* Before any descriptor of its own is open. */
	note_kept();

	/* Every signal, 32 and 33 included (glibc's sigfillset leaves them out). */
	memset(&all, 0xff, sizeof(all));
	if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, KERNEL_NSIG / 8))
		return DEPUTY_FAILED;
	sfd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		return DEPUTY_FAILED;

	since = now_ms();
	next_try = since;
	for (;;) {
		now = now_ms();
		if (sock < 0 && now >= next_try) {
			sock = connect_agent(&sa);
			if (sock < 0) {
				if (errno == EACCES || errno == EPERM || errno == EAFNOSUPPORT)
					return DEPUTY_FAILED;
				if (now - since >= window_s * 1000LL)
					return DEPUTY_NO_AGENT;
				next_try = now + RETRY_MS;
			}
		}
		if (sock >= 0 && flush(sock) < 0) {
			close(sock);
			sock = -1;
			since = now;
			next_try = now;
			continue;
		}
		pfd[0].fd = sfd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		pfd[1].fd = sock;
		pfd[1].events = POLLIN | (out.off < out.len || qlen ? POLLOUT : 0);
		pfd[1].revents = 0;
		timeout = sock >= 0 ? -1 : (int)(next_try > now ? next_try - now : 0);
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			return DEPUTY_FAILED;
		if (pfd[0].revents)
			read_signals(sfd);
		if (sock >= 0 && pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (read_agent(sock) < 0) {
				close(sock);
				sock = -1;
				since = now_ms();
				next_try = since;
			}
		}
	}
}
