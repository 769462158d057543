// SPDX-License-Identifier: GPL-2.0
/*
 * ppm-guest-agent: PID 1 of a ppm virtual-cluster guest (after the
 * initramfs has mounted the host's root and chrooted into it).
 *
 * It serves `ppm vcluster exec` over virtio-serial ports named "ppm.N":
 * each port carries one command at a time; several ports give several
 * concurrent commands. It also reaps every orphan, as PID 1 must.
 *
 * It runs at nice -20, its commands at 0: it wakes every tick to look for
 * hosts on its ports, and at the default priority each wake-up on CPUs busy
 * with a workload waited in the run queue, so the agent counted as one more
 * runnable task on exactly the busy nodes (the balancer saw it).
 *
 * Frames in both directions: u8 type, u32 length (little endian), payload.
 * Every payload starts with the request's 8-byte nonce.
 *   host -> guest  'X' nonce u32 argc u32 envc cwd\0 env\0... argv\0...
 *                  'K' nonce u32 signal          (signal the command)
 *   guest -> host  'O' nonce bytes               (stdout)
 *                  'E' nonce bytes               (stderr)
 *                  'A' nonce i32 pid             (started)
 *                  'R' nonce i32 status          (exit code, 128+signal)
 *                  'F' nonce message             (could not start)
 *                  'B' nonce                     (port busy: not started)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 16
#define MAX_DRAIN 64
#define MAX_REQ (1 << 20)
#define MAX_ARGS 4096
#define DRAIN_GRACE_MS 300
#define WRITE_STALL_MS 5000
/*
 * A port must poll HUP this long before its command's client counts as
 * gone: the news that a client left can reach us after the next client's
 * request (data and port events travel on different virtqueues).
 */
#define HUP_GRACE_MS 2000
/* How long a port whose host is away waits before it is polled again. */
#define HUP_RETRY_MS 50

struct session {
	int port;		/* virtio port fd, -1 if unused */
	long long retry_ms;	/* host side away: poll the port again from then on */
	int gone;		/* the client of the running command went away */
	long long hup_since;	/* when the port began to poll HUP, 0 if it does not */
	unsigned char nonce[8];
	pid_t pid;		/* running command, 0 if none */
	int out, err;		/* pipes from the command, -1 when closed */
	int exited, status;
	long long exit_ms;
	unsigned char *req;	/* partial request */
	size_t req_len;
};

static struct session ses[MAX_PORTS];
static int nses;
static int drain[MAX_DRAIN];

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/*
 * Ports are non-blocking: a write to a port whose host went away would
 * otherwise block until some client connects again.  A full queue, or a
 * host not seen yet, is waited for up to WRITE_STALL_MS; then the client
 * counts as gone.  A host counts as not seen yet, not as gone, because a
 * new client's request can reach us before the news that it connected
 * (they travel on different virtqueues), so the port still polls HUP.
 */
static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	long long stall_from = -1;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd w = { .fd = fd, .events = POLLOUT };
			int r;

			if (stall_from < 0)
				stall_from = now_ms();
			if (now_ms() - stall_from >= WRITE_STALL_MS)
				return -1;
			r = poll(&w, 1, 50);
			/* HUP: no host yet; poll says so at once, so pace the retries. */
			if (r == 1 && (w.revents & POLLHUP))
				usleep(20000);
			continue;
		}
		if (n <= 0)
			return -1;
		stall_from = -1;
		p += n;
		len -= n;
	}
	return 0;
}

static int write_frame(int port, char type, const unsigned char *nonce,
		       const void *data, size_t len)
{
	unsigned char hdr[13];
	uint32_t l = len + 8;

	hdr[0] = type;
	memcpy(hdr + 1, &l, 4);
	memcpy(hdr + 5, nonce, 8);
	return write_all(port, hdr, sizeof(hdr)) || write_all(port, data, len);
}

static void send_frame(struct session *s, char type, const void *data,
		       size_t len)
{
	if (s->gone)
		return;
	if (write_frame(s->port, type, s->nonce, data, len))
		s->gone = 1;
}

static void add_drain(int fd)
{
	for (int i = 0; i < MAX_DRAIN; i++) {
		if (drain[i] < 0) {
			drain[i] = fd;
			return;
		}
	}
	close(fd);
}

static void finish(struct session *s)
{
	int32_t st = s->status;

	/* Pipes still held by background processes keep being drained. */
	if (s->out >= 0)
		add_drain(s->out);
	if (s->err >= 0)
		add_drain(s->err);
	s->out = s->err = -1;
	send_frame(s, 'R', &st, 4);
	s->pid = 0;
	s->exited = 0;
	s->gone = 0;
}

static void start(struct session *s, unsigned char *p, size_t len)
{
	uint32_t argc, envc;
	char *argv[MAX_ARGS + 1], *cwd, *q, *end = (char *)p + len;
	int po[2], pe[2];
	char msg[256];

	memcpy(s->nonce, p, 8);
	memcpy(&argc, p + 8, 4);
	memcpy(&envc, p + 12, 4);
	if (argc < 1 || argc > MAX_ARGS || envc > MAX_ARGS || p[len - 1]) {
		send_frame(s, 'F', "bad request", 11);
		return;
	}
	q = (char *)p + 16;
	cwd = q;
	char **env = calloc(envc + 1, sizeof(char *));

	if (!env)
		return;
	for (uint32_t i = 0; i < envc + argc + 1; i++) {
		if (q >= end) {
			send_frame(s, 'F', "bad request", 11);
			free(env);
			return;
		}
		if (i == 0)
			cwd = q;
		else if (i <= envc)
			env[i - 1] = q;
		else
			argv[i - 1 - envc] = q;
		q += strlen(q) + 1;
	}
	argv[argc] = NULL;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		send_frame(s, 'F', "pipe failed", 11);
		free(env);
		return;
	}
	s->pid = fork();
	if (s->pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setpriority(PRIO_PROCESS, 0, 0);
		setsid();
		dup2(null, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		for (uint32_t i = 0; i < envc; i++)
			putenv(env[i]);
		if (cwd[0] && chdir(cwd))
			dprintf(2, "ppm-guest-agent: chdir %s: %s\n", cwd,
				strerror(errno));
		execvp(argv[0], argv);
		dprintf(2, "ppm-guest-agent: cannot run %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	free(env);
	close(po[1]);
	close(pe[1]);
	if (s->pid < 0) {
		snprintf(msg, sizeof(msg), "fork: %s", strerror(errno));
		send_frame(s, 'F', msg, strlen(msg));
		close(po[0]);
		close(pe[0]);
		s->pid = 0;
		return;
	}
	s->out = po[0];
	s->err = pe[0];
	s->exited = 0;
	send_frame(s, 'A', &s->pid, sizeof(s->pid));
}

/* Handles one complete frame from the host. */
static void on_frame(struct session *s, unsigned char type, unsigned char *p,
		     size_t len)
{
	int32_t sig;

	if (type == 'X' && len >= 18 && !s->pid)
		start(s, p, len);
	else if (type == 'X' && len >= 18)
		/* Still busy with a command whose client left: say so at once. */
		write_frame(s->port, 'B', p, NULL, 0);
	else if (type == 'K' && len == 12 && s->pid && !memcmp(p, s->nonce, 8)) {
		memcpy(&sig, p + 8, 4);
		kill(s->pid, sig);
	}
}

static void read_port(struct session *s)
{
	unsigned char buf[65536];
	ssize_t n = read(s->port, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		s->retry_ms = now_ms() + HUP_RETRY_MS;
		return;
	}
	if (s->req_len + n > MAX_REQ) {
		s->req_len = 0;
		return;
	}
	s->req = realloc(s->req, s->req_len + n);
	if (!s->req) {
		s->req_len = 0;
		return;
	}
	memcpy(s->req + s->req_len, buf, n);
	s->req_len += n;
	while (s->req_len >= 5) {
		uint32_t l;

		memcpy(&l, s->req + 1, 4);
		if (l > MAX_REQ) {
			s->req_len = 0;
			break;
		}
		if (s->req_len < 5 + l)
			break;
		on_frame(s, s->req[0], s->req + 5, l);
		memmove(s->req, s->req + 5 + l, s->req_len - 5 - l);
		s->req_len -= 5 + l;
	}
}

static void pump(struct session *s, int *fd, char type)
{
	char buf[16384];
	ssize_t n = read(*fd, buf, sizeof(buf));

	if (n > 0) {
		send_frame(s, type, buf, n);
		return;
	}
	close(*fd);
	*fd = -1;
}

static void reap(void)
{
	int st;
	pid_t pid;

	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (int i = 0; i < nses; i++) {
			if (ses[i].pid != pid)
				continue;
			ses[i].exited = 1;
			ses[i].status = WIFEXITED(st) ? WEXITSTATUS(st) :
				128 + WTERMSIG(st);
			ses[i].exit_ms = now_ms();
		}
	}
}

static void open_ports(void)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	char path[300], name[64];

	if (!d)
		return;
	while ((e = readdir(d)) && nses < MAX_PORTS) {
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name",
			 e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(name, sizeof(name), f) || strncmp(name, "ppm.", 4)) {
			fclose(f);
			continue;
		}
		fclose(f);
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		ses[nses].port = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (ses[nses].port < 0) {
			fprintf(stderr, "ppm-guest-agent: %s: %s\n", path,
				strerror(errno));
			continue;
		}
		ses[nses].out = ses[nses].err = -1;
		nses++;
	}
	closedir(d);
}

int main(void)
{
	sigset_t mask;
	int sfd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGPIPE);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	setpriority(PRIO_PROCESS, 0, -20);
	for (int i = 0; i < MAX_DRAIN; i++)
		drain[i] = -1;
	open_ports();
	fprintf(stderr, "ppm-guest-agent: ready on %d ports\n", nses);

	for (;;) {
		struct pollfd pfd[1 + 3 * MAX_PORTS + MAX_DRAIN];
		int owner[1 + 3 * MAX_PORTS + MAX_DRAIN];
		int n = 0;
		int timeout = HUP_RETRY_MS;
		long long now = now_ms();

		pfd[n].fd = sfd;
		pfd[n].events = POLLIN;
		owner[n++] = -1;
		for (int i = 0; i < nses; i++) {
			struct session *s = &ses[i];

			/*
			 * A port whose host is away polls HUP at once: it is polled
			 * again HUP_RETRY_MS later, each on its own time. (Skipping
			 * it for one turn of the loop only, ports out of step kept
			 * every poll returning at once: the agent spun, a whole CPU.)
			 */
			if (now >= s->retry_ms) {
				pfd[n].fd = s->port;
				pfd[n].events = POLLIN;
				owner[n++] = i;
			} else if (s->retry_ms - now < timeout) {
				timeout = (int)(s->retry_ms - now);
			}
			if (s->out >= 0) {
				pfd[n].fd = s->out;
				pfd[n].events = POLLIN;
				owner[n++] = MAX_PORTS + i;
			}
			if (s->err >= 0) {
				pfd[n].fd = s->err;
				pfd[n].events = POLLIN;
				owner[n++] = 2 * MAX_PORTS + i;
			}
		}
		for (int i = 0; i < MAX_DRAIN; i++) {
			if (drain[i] >= 0) {
				pfd[n].fd = drain[i];
				pfd[n].events = POLLIN;
				owner[n++] = 3 * MAX_PORTS + i;
			}
		}
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			continue;
		for (int k = 0; k < n; k++) {
			/* A port polled without HUP has its host: any HUP was a passing one. */
			if (owner[k] >= 0 && owner[k] < MAX_PORTS &&
			    !(pfd[k].revents & POLLHUP))
				ses[owner[k]].hup_since = 0;
		}
		for (int k = 0; k < n; k++) {
			int o = owner[k];
			short r = pfd[k].revents;

			if (!r)
				continue;
			if (o < 0) {
				struct signalfd_siginfo si;

				while (read(sfd, &si, sizeof(si)) > 0)
					;
				reap();
			} else if (o < MAX_PORTS) {
				if (r & POLLHUP) {
					struct session *s = &ses[o];

					s->retry_ms = now_ms() + HUP_RETRY_MS;
					if (!s->hup_since)
						s->hup_since = now_ms();
					if (now_ms() - s->hup_since < HUP_GRACE_MS)
						continue;
					/* The client went away for good: hang up its command. */
					s->req_len = 0;
					if (s->pid && !s->gone) {
						if (!s->exited)
							kill(s->pid, SIGHUP);
						s->gone = 1;
					}
				} else {
					read_port(&ses[o]);
				}
			} else if (o < 2 * MAX_PORTS) {
				pump(&ses[o - MAX_PORTS], &ses[o - MAX_PORTS].out, 'O');
			} else if (o < 3 * MAX_PORTS) {
				pump(&ses[o - 2 * MAX_PORTS],
				     &ses[o - 2 * MAX_PORTS].err, 'E');
			} else {
				char buf[4096];
				int *fd = &drain[o - 3 * MAX_PORTS];

				if (read(*fd, buf, sizeof(buf)) <= 0) {
					close(*fd);
					*fd = -1;
				}
			}
		}
		reap();
		for (int i = 0; i < nses; i++) {
			struct session *s = &ses[i];

			if (!s->pid || !s->exited)
				continue;
			if ((s->out < 0 && s->err < 0) ||
			    now_ms() - s->exit_ms > DRAIN_GRACE_MS)
				finish(s);
		}
	}
}
