// SPDX-License-Identifier: GPL-2.0
/*
 * ppm-relay-keeper: holds the far ends of a migrated process's standard
 * stream FIFOs while the agent that relays them is away.
 *
 * A process that arrived on a node writes its stdout and stderr into FIFOs
 * the agent reads and relays to the node it came from, and reads its stdin
 * from a FIFO the agent feeds.  Were the agent the only one holding those
 * ends, its restart (or crash) would end them: the process's next write
 * would raise SIGPIPE and its stdin would end.  The keeper, started beside
 * the process (and put in its scope, out of the agent's cgroup), opens the
 * read end of each output FIFO and the write end of the stdin FIFO and
 * sleeps.  While no agent reads, the process's output waits in the FIFO
 * (a full FIFO blocks it, as a slow terminal would); the next agent opens
 * the FIFOs again and the relay goes on.
 *
 *   ppm-relay-keeper PID STDOUT-FIFO STDERR-FIFO STDIN-FIFO
 *
 * A FIFO given as "-" is not held.  The keeper never reads or writes.  It
 * lets go of the stdin FIFO on SIGUSR1 (the agent's sign that the input
 * ended, so the process sees its end of file), and exits 0 when process PID
 * ends.  Exit 2: bad arguments; 3: no process PID.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

enum keeper_exit {
	KEEPER_OK = 0,
	KEEPER_FAILED = 1,
	KEEPER_USAGE = 2,
	KEEPER_NO_PROCESS = 3,
};

static volatile sig_atomic_t input_ended;

static void on_input_end(int sig)
{
	(void)sig;
	input_ended = 1;
}

/* A FIFO end, opened without waiting; -1 when not wanted or not there. */
static int hold(const char *path, int flags)
{
	if (!strcmp(path, "-"))
		return -1;
	return open(path, flags | O_NONBLOCK | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct pollfd pfd;
	sigset_t usr1, waiting;
	char *end;
	long pid;
	int pidfd, in, null;

	if (argc != 5)
		return KEEPER_USAGE;
	errno = 0;
	pid = strtol(argv[1], &end, 10);
	if (errno || *end || end == argv[1] || pid <= 1 || pid > INT_MAX)
		return KEEPER_USAGE;
	pidfd = syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (pidfd < 0)
		return KEEPER_NO_PROCESS;

	/* Out of the agent's session: its terminal or process group may go. */
	setsid();
	prctl(PR_SET_NAME, "ppm-keeper", 0, 0, 0);
	null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);

	/* Output FIFOs: a reader that never reads; stdin: a writer that never writes. */
	hold(argv[2], O_RDONLY);
	hold(argv[3], O_RDONLY);
	in = hold(argv[4], O_WRONLY);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_input_end;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	/* SIGUSR1 is taken only inside ppoll, so none is missed between the check and the wait. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &waiting);
	sigdelset(&waiting, SIGUSR1);

	for (;;) {
		if (input_ended && in >= 0) {
			close(in);
			in = -1;
		}
		pfd.fd = pidfd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (ppoll(&pfd, 1, NULL, &waiting) > 0)
			return KEEPER_OK;
		if (errno != EINTR)
			return KEEPER_FAILED;
	}
}
