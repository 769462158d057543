/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The vessel: a restore stub started ahead, while a migrating process still
 * runs at its source, so that its memory can be filled before the freeze.
 * Included by stub.c (it uses its spec, its messages and child()).
 *
 * `ppm-restore-stub --vessel PID OUT` forks, as the launcher does, a child
 * with PID (clone3 set_tid, CLONE_PARENT) and exits.  The child turns off
 * transparent huge pages for now (the pages come 4 KiB at a time, and most
 * of the address space is reserved), reserves the address space around its
 * own mappings as private anonymous read-write memory that costs nothing
 * until written (MAP_NORESERVE), writes "room START END" (hex) for each
 * piece and "ready PID" to OUT, and waits on its stdin.  ppm's page stream
 * writes pre-copy pages into the rooms (process_vm_writev).  A line on
 * stdin names the spec: the child reads it, frees what the image's vDSO
 * and vvar need, turns huge pages back on and goes on as a launched stub's
 * child does; PPM_IOC_RESTORE then keeps the mappings the plan marks
 * PPM_VMA_KEEP, with their pages.  End of file on stdin (ppm gave up, or
 * died): it exits.
 */
#include <sys/prctl.h>

#define VESSEL_LOW 0x10000ULL
#define VESSEL_TOP 0x7ffffffff000ULL
/* Room left free around the stub's own mappings: its heap, its stack, its mmaps. */
#define VESSEL_MARGIN (64ULL << 20)
#define VESSEL_MAX_OWN 64
#define VESSEL_MAX_ROOMS (VESSEL_MAX_OWN + 1)

static struct {
	uint64_t s, e;
} rooms[VESSEL_MAX_ROOMS];
static unsigned int nrooms;

static void vessel_room(int out, uint64_t s, uint64_t e)
{
	void *p;

	if (e <= s || nrooms == VESSEL_MAX_ROOMS)
		return;
	p = mmap((void *)(uintptr_t)s, e - s, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	/* Strict overcommit, a limit on data: no room there, its pages go to the plan. */
	if (p == MAP_FAILED)
		return;
	rooms[nrooms].s = s;
	rooms[nrooms].e = e;
	nrooms++;
	dprintf(out, "room %" PRIx64 " %" PRIx64 "\n", s, e);
}

/* Reserves all of user space but the stub's own mappings and a margin around each. */
static void vessel_reserve(int out)
{
	uint64_t own[VESSEL_MAX_OWN][2], a, b, at = VESSEL_LOW;
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned int n = 0, i;
	char line[512];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNx64 "-%" SCNx64, &a, &b) != 2 || a >= VESSEL_TOP)
			continue;
		a = a > VESSEL_MARGIN ? a - VESSEL_MARGIN : 0;
		b = b + VESSEL_MARGIN;
		/* /proc/self/maps is sorted: merge with the one before when they meet. */
		if (n && a <= own[n - 1][1]) {
			if (b > own[n - 1][1])
				own[n - 1][1] = b;
		} else if (n < VESSEL_MAX_OWN) {
			own[n][0] = a;
			own[n][1] = b;
			n++;
		} else {
			fclose(f);
			return; /* more than expected: no rooms at all */
		}
	}
	fclose(f);
	for (i = 0; i < n; i++) {
		if (own[i][0] > at)
			vessel_room(out, at, own[i][0] < VESSEL_TOP ? own[i][0] : VESSEL_TOP);
		if (own[i][1] > at)
			at = own[i][1];
	}
	if (at < VESSEL_TOP)
		vessel_room(out, at, VESSEL_TOP);
}

/* Frees what the rooms hold of [s, e): where the image's vDSO or vvar goes. */
static void vessel_free(uint64_t s, uint64_t e)
{
	for (unsigned int i = 0; i < nrooms; i++) {
		uint64_t a = s > rooms[i].s ? s : rooms[i].s;
		uint64_t b = e < rooms[i].e ? e : rooms[i].e;

		if (a < b)
			munmap((void *)(uintptr_t)a, b - a);
	}
}

/* Reads one line (the spec's path) from stdin; 0, or -1 at its end or when too long. */
static int vessel_line(char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		ssize_t r = read(0, buf + n, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return n ? 0 : -1;
		}
		n++;
	}
	return -1;
}

static void __attribute__((noreturn)) child(void);
static pid_t spec_basics(void);
static int tell_pid(pid_t pid);

static void __attribute__((noreturn)) vessel_child(int out)
{
	const unsigned int special[] = { T_VDSO, T_VVAR };
	char path[4096];
	pid_t want;
	int null;

	prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
	vessel_reserve(out);
	dprintf(out, "ready %d\n", getpid());
	close(out);
	if (vessel_line(path, sizeof(path)))
		_exit(STUB_OK);
	/* Stdin was ppm's pipe: the process gets /dev/null where a launched stub has ppm's stdin. */
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, 0) < 0)
		_exit(STUB_CLONE_FAILED);
	close(null);
	if (read_spec(path))
		_exit(STUB_BAD_SPEC);
	want = spec_basics();
	if (!want)
		_exit(STUB_BAD_SPEC);
	if (want != getpid()) {
		say("the spec is for PID %d, this vessel is %d", want, getpid());
		_exit(STUB_BAD_SPEC);
	}
	for (unsigned int i = 0; i < 2; i++) {
		const struct rec *r = find(special[i]);

		if (r && u64_at(r, 0))
			vessel_free(u64_at(r, 0), u64_at(r, 8));
	}
	prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	if (tell_pid(want))
		_exit(STUB_CLONE_FAILED);
	child();
}

/* `--vessel PID OUT`: the launcher. */
static int vessel(const char *pid_arg, const char *out_path)
{
	char *end;
	long v;
	pid_t want, got;
	int out;

	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		return STUB_BAD_SPEC;
	errno = 0;
	v = strtol(pid_arg, &end, 10);
	if (errno || end == pid_arg || *end || v < 1 || v > 0x3fffffff)
		return STUB_BAD_SPEC;
	want = (pid_t)v;
	out = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		fprintf(stderr, "ppm-restore-stub: %s: %s\n", out_path, strerror(errno));
		return STUB_BAD_SPEC;
	}
	got = clone_with_pid(want);
	if (got == 0)
		vessel_child(out);
	return got < 0 ? clone_failed(want) : STUB_OK;
}
