/*
 * confined ITERATIONS NAME FILE [seccomp]
 *
 * A process whose name, open file and credentials must come back exactly:
 * it names itself NAME (PR_SET_NAME: any bytes but NUL, newlines and
 * directive-like text included), keeps FILE open read-write and appends a
 * line to it every tick. With `seccomp` it also sets no_new_privs, makes
 * itself non-dumpable and installs a filter that makes uname(2) fail with
 * EPERM. Every tick (100 ms of nanosleep) checks that its name, the
 * descriptor's file, and with `seccomp` the filter, no_new_privs and the
 * dumpable flag are still what they were.
 */
#include "common.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>

static void install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS");
	CHECK(prctl(PR_SET_DUMPABLE, 0) == 0, "PR_SET_DUMPABLE");
	CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0, "seccomp");
}

int main(int argc, char **argv)
{
	long n = argc > 3 ? atol(argv[1]) : 0;
	int sec = argc > 4 && !strcmp(argv[4], "seccomp");
	struct stat was, now;
	char name[17];
	int fd;

	*prog_name_slot() = "confined";
	if (argc < 4)
		fail("usage: confined ITERATIONS NAME FILE [seccomp]");
	CHECK(prctl(PR_SET_NAME, argv[2]) == 0, "PR_SET_NAME");
	fd = open(argv[3], O_RDWR | O_APPEND);
	CHECK(fd >= 0, argv[3]);
	CHECK(fstat(fd, &was) == 0, "fstat");
	if (sec)
		install_filter();
	out("ready %d\n", getpid());
	for (long i = 0; i < n; i++) {
		struct timespec req = { 0, 100 * 1000000L }, rem;
		struct utsname u;
		char line[64];
		int len;

		while (nanosleep(&req, &rem) && errno == EINTR)
			req = rem;
		memset(name, 0, sizeof(name));
		CHECK(prctl(PR_GET_NAME, name) == 0, "PR_GET_NAME");
		if (strncmp(name, argv[2], 15))
			fail("the name changed");
		CHECK(fstat(fd, &now) == 0, "fstat");
		if (now.st_ino != was.st_ino || now.st_dev != was.st_dev)
			fail("the open file is another one");
		len = snprintf(line, sizeof(line), "line %ld\n", i);
		CHECK(write_all(fd, line, (size_t)len) == 0, "write to the file");
		if (sec) {
			if (uname(&u) == 0 || errno != EPERM)
				fail("the seccomp filter is gone");
			if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
				fail("no_new_privs is gone");
			if (prctl(PR_GET_DUMPABLE) != 0)
				fail("the process became dumpable");
		}
		tick_line(i, "%s", sec ? "confined" : "plain");
	}
	ok_line("%ld", n);
	return 0;
}
