// SPDX-License-Identifier: GPL-2.0
/*
 * ppm-restore-stub: the process that becomes the restored one.
 *
 * `ppm-restore-stub SPEC` forks, with clone3(set_tid), a child that has the
 * image's PID and whose parent is the caller (CLONE_PARENT), prints the
 * child's PID (to the pidout file), and exits.  The child sets up what belongs to the process
 * but lives outside its memory (descriptors at their numbers, cwd, umask,
 * groups, signal dispositions, altstack, robust list, tid address, name,
 * rlimits, nice value, the vDSO at the image's address), blocks every signal, stops
 * itself, and, once ppm has attached with ptrace, calls PPM_IOC_RESTORE,
 * which replaces its memory.  ppm then sets registers, FPU state, signal
 * mask and credentials and lets the process run.
 *
 * It is linked static (its mappings are all replaced, wherever they are) and
 * runs without glibc's rseq
 * registration (GLIBC_TUNABLES=glibc.pthread.rseq=0), since its memory
 * vanishes during the ioctl.
 *
 * SPEC lines (numbers in decimal unless 0x-prefixed; PATH is the rest of the line):
 *   pid N | base N | dev PATH | plan PATH | pidout PATH | cwd PATH | umask N | comm NAME
 *   groups N G... | rlimit RES SOFT HARD | nice N | fd N FLAGS POS PATH | stdio N FROM
 *   sock N PID FD FLAGS (descriptor FD of process PID, ppm, taken with pidfd_getfd)
 *   map INDEX FLAGS PATH | sigaction SIG HANDLER FLAGS RESTORER MASK
 *   altstack SP SIZE FLAGS | robust ADDR LEN | tidaddr ADDR | vdso START END | vvar START END
 *
 * Exit codes of the launcher: 0 started, 2 bad spec, 3 PID taken, 4 not
 * permitted, 5 other clone3 failure.  The child reports failures on
 * stderr as "ppm-restore-stub: ..." and exits 100 + step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../../kmod/uapi/ppm.h"

#define MAX_LINES 4096
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif
#define STDIO_SAVE 3

static char *lines[MAX_LINES];
static int nlines;
static int base_fd = 1000;

static void die(int step, const char *what)
{
	dprintf(STDIO_SAVE + 2 < base_fd ? base_fd + 2 : 2,
		"ppm-restore-stub: %s: %s\n", what, strerror(errno));
	_exit(100 + step);
}

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

/* The rest of the line after `n` space-separated words. */
static const char *rest(const char *line, int n)
{
	const char *p = line;

	for (int i = 0; i < n && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? p : "";
}

static const char *find(const char *key)
{
	size_t k = strlen(key);

	for (int i = 0; i < nlines; i++)
		if (!strncmp(lines[i], key, k) && lines[i][k] == ' ')
			return lines[i];
	return NULL;
}

static void read_spec(const char *path)
{
	static char buf[1 << 20];
	FILE *f = fopen(path, "r");
	size_t n;
	char *p;

	if (!f)
		exit(2);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	for (p = strtok(buf, "\n"); p && nlines < MAX_LINES; p = strtok(NULL, "\n"))
		lines[nlines++] = p;
}

/* Opens PATH with FLAGS at exactly fd N (N >= base is reserved for the stub). */
static void open_at(int step, int n, int flags, const char *path, off_t pos)
{
	int fd = open(path, flags & ~(O_CREAT | O_TRUNC | O_EXCL));

	if (fd < 0)
		die(step, path);
	if (pos && lseek(fd, pos, SEEK_SET) < 0)
		die(step, path);
	if (fd != n) {
		if (dup3(fd, n, flags & O_CLOEXEC) < 0)
			die(step, path);
		close(fd);
	}
}

/* Takes descriptor FD of process PID (ppm holding a rebuilt socket) as fd N. */
static void take_at(int step, int n, int pid, int fd, int flags)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int got;

	if (pidfd < 0)
		die(step, "pidfd_open");
	got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (got < 0)
		die(step, "pidfd_getfd");
	close(pidfd);
	if (got != n) {
		if (dup3(got, n, flags & O_CLOEXEC) < 0)
			die(step, "dup3");
		close(got);
	} else if (!(flags & O_CLOEXEC) && fcntl(n, F_SETFD, 0) < 0) {
		die(step, "fcntl");
	}
	if (fcntl(n, F_SETFL, flags & (O_NONBLOCK | O_APPEND | O_ASYNC)) < 0)
		die(step, "fcntl");
}

struct kernel_sigaction {
	uint64_t handler, flags, restorer, mask;
};

static void parse_range(const char *key, uint64_t *s, uint64_t *e)
{
	const char *l = find(key);

	*s = *e = 0;
	if (l)
		sscanf(l + strlen(key), " %" SCNi64 " %" SCNi64, (int64_t *)s, (int64_t *)e);
}

/* Where the kernel put [vdso] or [vvar] for us. */
static void self_range(const char *name, uint64_t *s, uint64_t *e)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];

	*s = *e = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (strstr(line, name)) {
			sscanf(line, "%" SCNx64 "-%" SCNx64, s, e);
			break;
		}
	}
	if (f)
		fclose(f);
}

/* True when [s, e) overlaps a mapping of ours other than [vdso]/[vvar]. */
static int overlaps_ours(uint64_t s, uint64_t e)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uint64_t a, b;
	int hit = 0;

	while (f && fgets(line, sizeof(line), f)) {
		if (strstr(line, "[vdso]") || strstr(line, "[vvar]"))
			continue;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64, &a, &b) == 2 && a < e && s < b)
			hit = 1;
	}
	if (f)
		fclose(f);
	return hit;
}

static void move_special(int step, const char *key, const char *name)
{
	uint64_t ts, te, cs, ce;

	parse_range(key, &ts, &te);
	if (!ts)
		return;
	self_range(name, &cs, &ce);
	if (cs == ts)
		return;
	if (!cs || ce - cs != te - ts) {
		errno = EINVAL;
		die(step, "the vDSO of this kernel differs from the image's");
	}
	if (overlaps_ours(ts, te)) {
		errno = EADDRINUSE;
		die(step, "the image's vDSO address is in use by the stub (retry)");
	}
	if (mremap((void *)cs, ce - cs, ce - cs, MREMAP_MAYMOVE | MREMAP_FIXED,
		   (void *)ts) == MAP_FAILED)
		die(step, "cannot move the vDSO");
}

/* Opens PATH at exactly fd N (one of the stub's own, closed after restore). */
static int high_fd(const char *path, int flags, int n)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		die(2, path);
	if (dup3(fd, n, O_CLOEXEC) != n)
		die(2, path);
	close(fd);
	return n;
}

static void child(void)
{
	struct ppm_restore req;
	struct rlimit rl;
	sigset_t all;
	int dev, plan, next;

	/* Our own descriptors live at base and above, out of the process's way. */
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_DUPFD, base_fd + i) != base_fd + i)
			die(1, "cannot keep the standard streams");
	next = base_fd + 3;
	dev = high_fd(rest(find("dev"), 1), O_RDWR, next++);
	plan = high_fd(rest(find("plan"), 1), O_RDONLY, next++);
	close(0);
	close(1);
	close(2);

	for (int i = 0; i < nlines; i++) {
		const char *l = lines[i];
		int n, flags, from, sfd;
		long long pos;

		if (sscanf(l, "fd %d %i %lld", &n, &flags, &pos) == 3) {
			open_at(3, n, flags, rest(l, 4), pos);
		} else if (sscanf(l, "sock %d %d %d %i", &n, &from, &sfd, &flags) == 4) {
			take_at(3, n, from, sfd, flags);
		} else if (sscanf(l, "stdio %d %d", &n, &from) == 2) {
			if (dup2(base_fd + from, n) < 0)
				die(3, "stdio");
		} else if (sscanf(l, "map %d %i", &n, &flags) == 2) {
			/* The plan refers to mapped files by base + 3 + 2 + index. */
			open_at(4, base_fd + 5 + n, flags | O_CLOEXEC, rest(l, 3), 0);
		}
	}
	if (find("cwd") && chdir(rest(find("cwd"), 1)))
		die(5, "cwd");
	if (find("umask"))
		umask(num(rest(find("umask"), 1)));
	if (find("groups")) {
		gid_t g[256];
		int n = 0;
		const char *p = rest(find("groups"), 2);

		while (*p && n < 256) {
			g[n++] = strtoul(p, (char **)&p, 0);
			while (*p == ' ')
				p++;
		}
		if (setgroups(n, g))
			die(6, "setgroups");
	}
	for (int i = 0; i < nlines; i++) {
		struct kernel_sigaction ka;
		int sig;

		if (sscanf(lines[i], "sigaction %d %" SCNi64 " %" SCNi64 " %" SCNi64 " %" SCNi64,
			   &sig, (int64_t *)&ka.handler, (int64_t *)&ka.flags,
			   (int64_t *)&ka.restorer, (int64_t *)&ka.mask) == 5 &&
		    sig != SIGKILL && sig != SIGSTOP &&
		    syscall(SYS_rt_sigaction, sig, &ka, NULL, 8))
			die(7, "rt_sigaction");
	}
	if (find("altstack")) {
		stack_t ss;
		uint64_t sp, size;
		int flags;

		sscanf(find("altstack"), "altstack %" SCNi64 " %" SCNi64 " %i",
		       (int64_t *)&sp, (int64_t *)&size, &flags);
		ss.ss_sp = (void *)sp;
		ss.ss_size = size;
		ss.ss_flags = flags & SS_AUTODISARM;
		if (sp && sigaltstack(&ss, NULL))
			die(8, "sigaltstack");
	}
	if (find("robust")) {
		uint64_t a, len;

		sscanf(find("robust"), "robust %" SCNi64 " %" SCNi64, (int64_t *)&a, (int64_t *)&len);
		if (a && syscall(SYS_set_robust_list, a, len))
			die(9, "set_robust_list");
	}
	if (find("tidaddr"))
		syscall(SYS_set_tid_address, num(rest(find("tidaddr"), 1)));
	if (find("comm"))
		prctl(PR_SET_NAME, rest(find("comm"), 1));
	move_special(10, "vvar", "[vvar]");
	move_special(10, "vdso", "[vdso]");
	for (int i = 0; i < nlines; i++) {
		int res;
		long long soft, hard;

		if (sscanf(lines[i], "rlimit %d %lld %lld", &res, &soft, &hard) == 3) {
			rl.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
			rl.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
			setrlimit(res, &rl);
		}
	}
	/* The process's own priority, not the one of the agent that spawned the stub. */
	if (find("nice") &&
	    setpriority(PRIO_PROCESS, 0, (int)strtol(rest(find("nice"), 1), NULL, 10)))
		die(11, "setpriority");

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* Wait here for ppm's ptrace; SIGSTOP is never blocked. */
	kill(getpid(), SIGSTOP);

	memset(&req, 0, sizeof(req));
	req.plan_fd = plan;
	if (ioctl(dev, PPM_IOC_RESTORE, &req)) {
		dprintf(base_fd + 2, "ppm-restore-stub: restore refused at plan offset %llu: %s (%s)\n",
			(unsigned long long)req.failed_at, req.error, strerror(errno));
		_exit(120);
	}
	/* Not reached: ppm sets the restored registers at the ioctl's exit. */
	_exit(121);
}

int main(int argc, char **argv)
{
	struct clone_args args;
	pid_t want, got;

	if (argc != 2)
		return 2;
	/* Nothing of ppm's but the standard streams may reach the process. */
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		return 2;
	read_spec(argv[1]);
	if (!find("pid") || !find("dev") || !find("plan"))
		return 2;
	want = num(rest(find("pid"), 1));
	if (find("base"))
		base_fd = num(rest(find("base"), 1));

	memset(&args, 0, sizeof(args));
	/* The child becomes ppm's, with the launcher's exit signal (SIGCHLD). */
	args.flags = CLONE_PARENT;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	got = syscall(SYS_clone3, &args, sizeof(args));
	if (got == 0)
		child();
	if (got < 0) {
		dprintf(2, "ppm-restore-stub: clone3 with pid %d: %s\n", want, strerror(errno));
		return errno == EEXIST ? 3 : errno == EPERM ? 4 : 5;
	}
	if (find("pidout")) {
		FILE *f = fopen(rest(find("pidout"), 1), "w");

		if (!f || fprintf(f, "%d\n", got) < 0 || fclose(f))
			return 5;
	} else {
		printf("%d\n", got);
	}
	return 0;
}
