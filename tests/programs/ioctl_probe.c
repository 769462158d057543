/*
 * ioctl_probe [--userns] [FD]
 *
 * Calls every ioctl of /dev/ppm once and prints one line per ioctl,
 * `<NAME> ok` or `<NAME> <errno name>` (e.g. `RESTORE EPERM`). Each
 * argument gets a privileged caller past the permission check but changes
 * nothing: DUMP_* ask about pid 1 (not traced by the probe), RESTORE names
 * no plan (fd -1), REDIRECT_ADD an invalid entry (protocol 0), REDIRECT_DEL
 * id 0, REDIRECT_LIST no room, QUEUE_ACCEPT fds -1, GRANT pid 0.
 *
 * Uses descriptor FD when given (one a more privileged process opened),
 * else opens /dev/ppm itself; when that fails it prints
 * `open <errno name>` and exits 0. Prints `open ok` first otherwise.
 *
 * --userns: first become root of a new user namespace (uid and gid 0
 * mapped to the caller's own), as a container's root is, and open the
 * device from there. unshare(CLONE_NEWUSER) is refused to a chrooted
 * process, and the test guests run everything in a chroot
 * (core/vcluster/guest/init.sh): the probe then leaves the chroot first,
 * the classic way (it is root there), which is why unshare(1) is not used.
 *
 * For the security test (tests/guest/security_kmod_test.ts): run as an
 * unprivileged user and as root of a new user namespace.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "../../kmod/uapi/ppm.h"

static void probe(int fd, const char *name, unsigned long req, void *arg)
{
	char line[128];
	int n;

	if (ioctl(fd, req, arg) == 0)
		n = snprintf(line, sizeof(line), "%s ok\n", name);
	else
		n = snprintf(line, sizeof(line), "%s %s\n", name, strerrorname_np(errno));
	write_all(1, line, (size_t)n);
}

static void write_at(int dir, const char *name, const char *text)
{
	int fd = openat(dir, name, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0, "open %s: %s", name, strerror(errno));
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s: %s", name,
	      strerror(errno));
	close(fd);
}

/* Leaves a chroot: chroot deeper while the cwd stays outside, climb, chroot there. */
static void leave_chroot(void)
{
	int top = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);

	CHECK(top >= 0, "open /: %s", strerror(errno));
	mkdir("/tmp/.ioctl_probe_root", 0700);
	CHECK(chroot("/tmp/.ioctl_probe_root") == 0, "chroot: %s", strerror(errno));
	CHECK(fchdir(top) == 0, "fchdir: %s", strerror(errno));
	for (int i = 0; i < 64; i++)
		CHECK(chdir("..") == 0, "chdir ..: %s", strerror(errno));
	CHECK(chroot(".") == 0, "chroot .: %s", strerror(errno));
	close(top);
}

/* Becomes root of a new user namespace; returns a descriptor of /dev. */
static int enter_userns(void)
{
	int proc = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
	int dev = open("/dev", O_PATH | O_DIRECTORY | O_CLOEXEC);
	char map[64], gmap[64];

	CHECK(proc >= 0 && dev >= 0, "open /proc/self, /dev: %s", strerror(errno));
	/* Read before the unshare: then they are unmapped (65534). */
	snprintf(map, sizeof(map), "0 %u 1\n", (unsigned int)geteuid());
	snprintf(gmap, sizeof(gmap), "0 %u 1\n", (unsigned int)getegid());
	if (unshare(CLONE_NEWUSER)) {
		CHECK(errno == EPERM, "unshare: %s", strerror(errno));
		leave_chroot();
		CHECK(unshare(CLONE_NEWUSER) == 0, "unshare: %s", strerror(errno));
	}
	write_at(proc, "setgroups", "deny");
	write_at(proc, "uid_map", map);
	write_at(proc, "gid_map", gmap);
	close(proc);
	return dev;
}

int main(int argc, char **argv)
{
	struct ppm_info info;
	struct ppm_dump_task *task;
	struct ppm_dump_vmas vmas;
	struct ppm_restore restore;
	struct ppm_redirect rdr;
	struct ppm_redirect_del del;
	struct ppm_redirect_list list;
	struct ppm_queue_accept qa;
	struct ppm_grant grant;
	char line[64];
	int fd, n, dev = AT_FDCWD;
	const char *path = "/dev/ppm";

	*prog_name_slot() = "ioctl_probe";
	if (argc > 1 && !strcmp(argv[1], "--userns")) {
		dev = enter_userns();
		path = "ppm";
		argc--;
		argv++;
	}
	if (argc > 2) {
		write_all(2, "usage: ioctl_probe [--userns] [FD]\n", 35);
		return 2;
	}
	if (argc == 2) {
		fd = (int)strtol(argv[1], NULL, 10);
	} else {
		fd = openat(dev, path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			n = snprintf(line, sizeof(line), "open %s\n", strerrorname_np(errno));
			write_all(1, line, (size_t)n);
			return 0;
		}
	}
	write_all(1, "open ok\n", 8);

	memset(&info, 0, sizeof(info));
	probe(fd, "INFO", PPM_IOC_INFO, &info);

	task = calloc(1, sizeof(*task));
	CHECK(task, "out of memory");
	task->pid = 1;
	task->struct_size = sizeof(*task);
	probe(fd, "DUMP_TASK", PPM_IOC_DUMP_TASK, task);
	free(task);

	memset(&vmas, 0, sizeof(vmas));
	vmas.pid = 1;
	probe(fd, "DUMP_VMAS", PPM_IOC_DUMP_VMAS, &vmas);

	memset(&restore, 0, sizeof(restore));
	restore.plan_fd = -1;
	probe(fd, "RESTORE", PPM_IOC_RESTORE, &restore);

	memset(&rdr, 0, sizeof(rdr));
	probe(fd, "REDIRECT_ADD", PPM_IOC_REDIRECT_ADD, &rdr);

	memset(&del, 0, sizeof(del));
	probe(fd, "REDIRECT_DEL", PPM_IOC_REDIRECT_DEL, &del);

	memset(&list, 0, sizeof(list));
	probe(fd, "REDIRECT_LIST", PPM_IOC_REDIRECT_LIST, &list);

	memset(&qa, 0, sizeof(qa));
	qa.listen_fd = -1;
	qa.sock_fd = -1;
	probe(fd, "QUEUE_ACCEPT", PPM_IOC_QUEUE_ACCEPT, &qa);

	memset(&grant, 0, sizeof(grant));
	grant.exe_fd = -1;
	probe(fd, "GRANT", PPM_IOC_GRANT, &grant);
	return 0;
}
