/*
 * grant_probe MODE EXE CMD [ARG...]
 *
 * Makes a grant (PPM_IOC_GRANT, kmod/grant.c) naming the program EXE and a
 * task, then runs CMD with the grant's descriptor at 3 and /dev/null at 4
 * (CMD is meant to be `setpriv ... STUB --into 3 4`, which takes the grant
 * and then refuses /dev/null as its spec). Prints `exit N` or `signal N`
 * for how CMD's process ended. The task named, by MODE:
 *
 *   plain    CMD's own process
 *   other    this probe (so CMD's process is not the one named)
 *   traced   CMD's own process, which this probe traces (PTRACE_TRACEME
 *            before it runs CMD; every stop is continued)
 *   seccomp  CMD's own process, with a seccomp filter that allows all
 *   sharefs  CMD's own process, which shares its filesystem context with
 *            this probe (clone with CLONE_FS)
 *
 * Must run as root with /dev/ppm there. For tests/guest/security_kmod_test.ts.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "../../kmod/uapi/ppm.h"

static int go[2];
static char **cmd;
static const char *mode;

static void die(const char *what)
{
	fprintf(stderr, "grant_probe: %s: %s\n", what, strerror(errno));
	_exit(99);
}

/* CMD's process: waits for the grant, sets itself up, runs CMD. */
static int child(void *unused)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = { .len = 1, .filter = &allow };
	char c;

	(void)unused;
	if (read(go[0], &c, 1) != 1)
		_exit(98);
	if (!strcmp(mode, "traced") && ptrace(PTRACE_TRACEME, 0, 0, 0))
		die("PTRACE_TRACEME");
	if (!strcmp(mode, "seccomp") &&
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		die("seccomp");
	execvp(cmd[0], cmd);
	die(cmd[0]);
	return 0;
}

int main(int argc, char **argv)
{
	static char stack[256 * 1024];
	struct ppm_grant g;
	int dev, exe, fd, null, status;
	pid_t pid, w;

	if (argc < 4)
		return 2;
	mode = argv[1];
	cmd = argv + 3;
	dev = open("/dev/ppm", O_RDWR | O_CLOEXEC);
	exe = open(argv[2], O_RDONLY | O_CLOEXEC);
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (dev < 0 || exe < 0 || null < 0)
		die("open");
	if (pipe2(go, O_CLOEXEC))
		die("pipe");
	/* One descriptor table until its execve: it sees the grant put at 3 below. */
	pid = clone(child, stack + sizeof(stack),
		    SIGCHLD | CLONE_FILES | (!strcmp(mode, "sharefs") ? CLONE_FS : 0), NULL);
	if (pid < 0)
		die("clone");
	memset(&g, 0, sizeof(g));
	g.pid = !strcmp(mode, "other") ? getpid() : pid;
	g.exe_fd = exe;
	fd = ioctl(dev, PPM_IOC_GRANT, &g);
	if (fd < 0)
		die("PPM_IOC_GRANT");
	/* The child finds them at 3 and 4 (set before it reads the go-ahead). */
	if (dup2(fd, 3) != 3 || dup2(null, 4) != 4)
		die("dup2");
	if (write(go[1], "g", 1) != 1)
		die("write");
	for (int i = 0; i < 1000; i++) {
		w = waitpid(pid, &status, 0);
		if (w < 0)
			die("waitpid");
		if (WIFSTOPPED(status)) {
			int sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);

			ptrace(PTRACE_CONT, pid, 0, sig);
			continue;
		}
		if (WIFEXITED(status))
			printf("exit %d\n", WEXITSTATUS(status));
		else
			printf("signal %d\n", WTERMSIG(status));
		return 0;
	}
	return 3;
}
