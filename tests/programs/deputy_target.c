// cflags: -pthread
/*
 * deputy_target [NAME]
 *
 * A process for tests/unit/deputy_test.ts to turn into its own deputy
 * (core/deputy/become.ts). It names itself NAME (default "dep-target"),
 * holds descriptors at fixed numbers:
 *
 *   3 /dev/null                      4 /dev/null, close-on-exec
 *   5 a pipe's read end              6 its write end, close-on-exec
 *   9 /dev/zero
 *
 * ignores SIGINT and SIGSEGV (dispositions an execve keeps: the deputy
 * must still pass SIGINT on, and still end by SIGSEGV when told), sets
 * RLIMIT_CORE to unlimited (the deputy must still leave no core file),
 * starts three threads that wait in pause() with SIGUSR1 blocked, prints
 * `ready <pid>` and waits.
 *
 * SIGUSR1 (handled by the main thread, while it is still itself) makes it
 * print `alive threads=<n> fds=<f3><f4><f5><f6><f9>` and exit 0, where
 * each <f> is `c` for a descriptor open with close-on-exec, `o` for one
 * open without, `x` for a closed one: a test that failed to make a deputy
 * sees it was left as it was.
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static volatile sig_atomic_t asked;

static void on_usr1(int sig)
{
	(void)sig;
	asked = 1;
}

static void *waiter(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void place(int fd, int at, int cloexec)
{
	CHECK_SYS(fd >= 0, "open");
	if (fd == at) {
		CHECK_SYS(fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) == 0, "F_SETFD");
		return;
	}
	CHECK_SYS(dup3(fd, at, cloexec ? O_CLOEXEC : 0) == at, "dup3");
	close(fd);
}

static int threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	CHECK_SYS(d != NULL, "opendir");
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static char fd_state(int fd)
{
	int f = fcntl(fd, F_GETFD);

	return f < 0 ? 'x' : (f & FD_CLOEXEC) ? 'c' : 'o';
}

int main(int argc, char **argv)
{
	struct rlimit core = { RLIM_INFINITY, RLIM_INFINITY };
	struct sigaction sa;
	sigset_t usr1;
	pthread_t t;
	int p[2];
	char line[128];

	*prog_name_slot() = "deputy_target";
	CHECK_SYS(prctl(PR_SET_NAME, argc > 1 ? argv[1] : "dep-target", 0, 0, 0) == 0,
		  "PR_SET_NAME");
	setrlimit(RLIMIT_CORE, &core); /* as far as the hard limit allows */
	place(open("/dev/null", O_RDONLY), 3, 0);
	place(open("/dev/null", O_RDONLY), 4, 1);
	CHECK_SYS(pipe(p) == 0, "pipe");
	place(p[0], 20, 0);
	place(p[1], 21, 0);
	place(dup(20), 5, 0);
	place(dup(21), 6, 1);
	close(20);
	close(21);
	place(open("/dev/zero", O_RDONLY), 9, 0);
	signal(SIGINT, SIG_IGN);
	signal(SIGSEGV, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");

	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	for (int i = 0; i < 3; i++)
		CHECK(pthread_create(&t, NULL, waiter, NULL) == 0, "pthread_create");
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);

	snprintf(line, sizeof(line), "ready %d\n", (int)getpid());
	write_all(1, line, strlen(line));
	while (!asked)
		pause();
	snprintf(line, sizeof(line), "alive threads=%d fds=%c%c%c%c%c\n", threads(), fd_state(3),
		 fd_state(4), fd_state(5), fd_state(6), fd_state(9));
	write_all(1, line, strlen(line));
	return 0;
}
