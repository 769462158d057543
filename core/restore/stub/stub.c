// SPDX-License-Identifier: GPL-2.0
/*
 * ppm-restore-stub: the process that becomes the restored one.
 *
 * `ppm-restore-stub SPEC` forks, with clone3(set_tid), a child that has the
 * image's PID and whose parent is the caller (CLONE_PARENT), writes the
 * child's PID to the pidout file, and exits.  The child sets up what belongs
 * to the process but lives outside its memory (descriptors at their
 * numbers, cwd, umask, groups, signal dispositions, altstack, robust list,
 * tid address, name, rlimits, nice value, the vDSO at the image's address),
 * blocks every signal, stops itself, and, once ppm has attached with
 * ptrace, calls PPM_IOC_RESTORE, which replaces its memory.  ppm then sets
 * registers, FPU state, signal mask and credentials and lets it run.
 *
 * The process's own files (its descriptors, mapped files, cwd) are opened
 * with its filesystem uid, gid and groups, never as root, with no symlink
 * anywhere on the way (the image's paths are the kernel's d_path, which
 * has none), and each one's type, owner, mode (and size, mtime, inode
 * where the spec asks) must equal the image's.
 *
 * `ppm-restore-stub --into GRANT_FD SPEC_FD` is run by a deputy whose
 * process comes home (core/deputy/deputy.c): it already has the PID, parent
 * and session, so there is no clone; it takes the agent's grant
 * (kmod/grant.c) for root's rights, reads the spec from SPEC_FD and goes on
 * as the child does.
 *
 * `ppm-restore-stub --vessel PID OUT` starts the child ahead of its spec,
 * for a migration whose memory comes before the freeze (vessel.h).
 *
 * `ppm-restore-stub --check SPEC` only reads the spec and prints its
 * records, one a line, names and paths in hex (tests use it).
 *
 * It is linked static (its mappings are all replaced, wherever they are) and
 * runs without glibc's rseq registration (GLIBC_TUNABLES=glibc.pthread.rseq=0),
 * since its memory vanishes during the ioctl.
 *
 * SPEC is binary (core/restore/spec.ts): "PPMSPEC\0", u32 version, u32
 * count, then records of u16 tag, u16 zero, u32 length and that many bytes:
 * fixed little-endian fields first, then a path or name, if the tag has one.
 * Anything out of shape is refused, never truncated.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../../kmod/uapi/ppm.h"

/* Exit codes of the launcher (core/restore/restore.ts has the same). */
enum stub_exit {
	STUB_OK = 0,
	STUB_BAD_SPEC = 2,
	STUB_PID_TAKEN = 3,
	STUB_NOT_PERMITTED = 4,
	STUB_CLONE_FAILED = 5,
	/* The child exits STUB_STEP + the step that failed. */
	STUB_STEP = 100,
};

/* The stub's own descriptors, from base up (spec.ts/memory_plan.ts mapFd agree). */
enum stub_fd {
	FD_STDIN, FD_STDOUT, FD_STDERR, FD_DEV, FD_PLAN, FD_ERR, FD_MAPS,
};

enum spec_tag {
	T_PID = 1, T_BASE, T_DEV, T_PLAN, T_PIDOUT, T_CWD, T_UMASK, T_COMM,
	T_GROUPS, T_RLIMIT, T_NICE, T_FD, T_STDIO, T_SOCK, T_MAP, T_SIGACTION,
	T_ALTSTACK, T_ROBUST, T_TIDADDR, T_VDSO, T_VVAR, T_FSCRED, T_ERROUT,
	T_MAX,
};

/* What follows a tag's fixed fields. */
enum tail { TAIL_NONE, TAIL_PATH, TAIL_NAME, TAIL_U32S };

static const struct {
	const char *name;
	unsigned int fixed;
	enum tail tail;
	int once;
} tags[T_MAX] = {
	[T_PID] = { "pid", 4, TAIL_NONE, 1 },
	[T_BASE] = { "base", 4, TAIL_NONE, 1 },
	[T_DEV] = { "dev", 0, TAIL_PATH, 1 },
	[T_PLAN] = { "plan", 0, TAIL_PATH, 1 },
	[T_PIDOUT] = { "pidout", 0, TAIL_PATH, 1 },
	[T_CWD] = { "cwd", 48, TAIL_PATH, 1 },
	[T_UMASK] = { "umask", 4, TAIL_NONE, 1 },
	[T_COMM] = { "comm", 0, TAIL_NAME, 1 },
	[T_GROUPS] = { "groups", 0, TAIL_U32S, 1 },
	[T_RLIMIT] = { "rlimit", 24, TAIL_NONE, 0 },
	[T_NICE] = { "nice", 4, TAIL_NONE, 1 },
	[T_FD] = { "fd", 72, TAIL_PATH, 0 },
	[T_STDIO] = { "stdio", 8, TAIL_NONE, 0 },
	[T_SOCK] = { "sock", 16, TAIL_NONE, 0 },
	[T_MAP] = { "map", 56, TAIL_PATH, 0 },
	[T_SIGACTION] = { "sigaction", 40, TAIL_NONE, 0 },
	[T_ALTSTACK] = { "altstack", 24, TAIL_NONE, 1 },
	[T_ROBUST] = { "robust", 16, TAIL_NONE, 1 },
	[T_TIDADDR] = { "tidaddr", 8, TAIL_NONE, 1 },
	[T_VDSO] = { "vdso", 16, TAIL_NONE, 1 },
	[T_VVAR] = { "vvar", 16, TAIL_NONE, 1 },
	[T_FSCRED] = { "fscred", 8, TAIL_NONE, 1 },
	[T_ERROUT] = { "errout", 0, TAIL_PATH, 1 },
};

#define SPEC_VERSION	1
#define MAX_RECORDS	(1 << 17)
#define MAX_SPEC	(16 << 20)
#define MAX_PATH_LEN	4095
#define MAX_COMM	15
#define MAX_GROUPS	65536

/* Identity checks (spec.ts ID_CHECK). */
#define ID_TYPE		1u
#define ID_OWNER	2u
#define ID_MODE		4u
#define ID_SIZE		8u
#define ID_MTIME	16u
#define ID_INODE	32u
#define ID_ALL		63u

/* How a fd record is opened (spec.ts OPEN_AS). */
#define AS_PROCESS	0
#define AS_RESTORER	1

/* Open flags a descriptor may carry back (fdinfo adds O_CLOEXEC). */
#define KEEP_FLAGS	(O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | \
			 O_DIRECT | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW | \
			 O_NOATIME | O_CLOEXEC | O_PATH | FASYNC)

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

struct rec {
	unsigned int tag;
	unsigned int len;
	const unsigned char *p;
	char *str;		/* the tail as a C string (paths, names) */
};

static struct rec *recs;
static unsigned int nrecs;
static int base_fd = 1000;
static int err_fd = -1;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char msg[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(msg))
		n = sizeof(msg) - 1;
	dprintf(fcntl(base_fd + FD_STDERR, F_GETFD) >= 0 ? base_fd + FD_STDERR : 2,
		"ppm-restore-stub: %s\n", msg);
	if (err_fd >= 0)
		dprintf(err_fd, "%s\n", msg);
}

static void __attribute__((noreturn)) die(int step, const char *what)
{
	say("%s: %s", what, strerror(errno));
	_exit(STUB_STEP + step);
}

static uint32_t u32_at(const struct rec *r, unsigned int off)
{
	uint32_t v;

	memcpy(&v, r->p + off, sizeof(v));
	return v;
}

static int32_t s32_at(const struct rec *r, unsigned int off)
{
	return (int32_t)u32_at(r, off);
}

static uint64_t u64_at(const struct rec *r, unsigned int off)
{
	uint64_t v;

	memcpy(&v, r->p + off, sizeof(v));
	return v;
}

static const struct rec *find(unsigned int tag)
{
	for (unsigned int i = 0; i < nrecs; i++)
		if (recs[i].tag == tag)
			return &recs[i];
	return NULL;
}

static int bad_spec(const char *fmt, unsigned int i, unsigned int tag)
{
	fprintf(stderr, "ppm-restore-stub: bad spec: record %u (tag %u): %s\n", i, tag, fmt);
	return -1;
}

/* Checks one record's shape and makes its tail a C string. */
static int check_record(unsigned int i, struct rec *r, unsigned int *seen)
{
	unsigned int tl;

	if (r->tag == 0 || r->tag >= T_MAX)
		return bad_spec("unknown tag", i, r->tag);
	if (r->len < tags[r->tag].fixed)
		return bad_spec("shorter than its fields", i, r->tag);
	if (tags[r->tag].once && seen[r->tag]++)
		return bad_spec("appears twice", i, r->tag);
	tl = r->len - tags[r->tag].fixed;
	switch (tags[r->tag].tail) {
	case TAIL_NONE:
		if (tl)
			return bad_spec("longer than its fields", i, r->tag);
		return 0;
	case TAIL_U32S:
		if (tl % 4 || tl / 4 > MAX_GROUPS)
			return bad_spec("not a list of at most 65536 ids", i, r->tag);
		return 0;
	case TAIL_PATH:
		if (!tl || tl > MAX_PATH_LEN)
			return bad_spec("empty path, or longer than 4095 bytes", i, r->tag);
		break;
	case TAIL_NAME:
		if (tl > MAX_COMM)
			return bad_spec("name longer than 15 bytes", i, r->tag);
		break;
	}
	if (memchr(r->p + tags[r->tag].fixed, 0, tl))
		return bad_spec("a NUL byte inside a path or name", i, r->tag);
	r->str = malloc(tl + 1);
	if (!r->str)
		return bad_spec("out of memory", i, r->tag);
	memcpy(r->str, r->p + tags[r->tag].fixed, tl);
	r->str[tl] = 0;
	return 0;
}

/* Reads and checks the spec open as @fd (named @path); 0 or -1 (with the reason on stderr). */
static int read_spec_fd(int fd, const char *path)
{
	static const char magic[8] = "PPMSPEC";
	unsigned int seen[T_MAX] = { 0 };
	unsigned char *buf;
	struct stat st;
	size_t off, got = 0;
	uint32_t count;

	if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		fprintf(stderr, "ppm-restore-stub: cannot read the spec %s\n", path);
		return -1;
	}
	if (st.st_size < 16 || st.st_size > MAX_SPEC) {
		fprintf(stderr, "ppm-restore-stub: bad spec: %lld bytes (16 to %d)\n",
			(long long)st.st_size, MAX_SPEC);
		return -1;
	}
	buf = malloc(st.st_size);
	if (!buf)
		return -1;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, st.st_size - got);

		if (n <= 0) {
			fprintf(stderr, "ppm-restore-stub: cannot read the spec %s\n", path);
			return -1;
		}
		got += n;
	}
	close(fd);
	memcpy(&count, buf + 12, 4);
	if (memcmp(buf, magic, 8) || buf[8] != SPEC_VERSION || buf[9] || buf[10] || buf[11] ||
	    count > MAX_RECORDS) {
		fprintf(stderr, "ppm-restore-stub: bad spec: not a version %d spec, or over %d records\n",
			SPEC_VERSION, MAX_RECORDS);
		return -1;
	}
	recs = calloc(count ? count : 1, sizeof(*recs));
	if (!recs)
		return -1;
	off = 16;
	for (nrecs = 0; nrecs < count; nrecs++) {
		struct rec *r = &recs[nrecs];
		uint16_t tag, zero;
		uint32_t len;

		if (got - off < 8)
			return bad_spec("truncated header", nrecs, 0);
		memcpy(&tag, buf + off, 2);
		memcpy(&zero, buf + off + 2, 2);
		memcpy(&len, buf + off + 4, 4);
		off += 8;
		if (zero || len > got - off)
			return bad_spec("length past the end", nrecs, tag);
		r->tag = tag;
		r->len = len;
		r->p = buf + off;
		off += len;
		if (check_record(nrecs, r, seen))
			return -1;
	}
	if (off != got)
		return bad_spec("bytes after the last record", nrecs, 0);
	return 0;
}

/* Reads and checks the spec at @path; 0 or -1 (with the reason on stderr). */
static int read_spec(const char *path)
{
	return read_spec_fd(open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), path);
}

/* Prints the records (--check). */
static void print_spec(void)
{
	for (unsigned int i = 0; i < nrecs; i++) {
		const struct rec *r = &recs[i];
		unsigned int fixed = tags[r->tag].fixed;

		printf("%s", tags[r->tag].name);
		for (unsigned int o = 0; o + 4 <= fixed; o += 4)
			printf(" %" PRIu32, u32_at(r, o));
		if (tags[r->tag].tail == TAIL_U32S)
			for (unsigned int o = 0; o < r->len; o += 4)
				printf(" %" PRIu32, u32_at(r, o));
		if (r->str) {
			printf(" :");
			for (const unsigned char *c = (unsigned char *)r->str; *c; c++)
				printf("%02x", *c);
		}
		printf("\n");
	}
}

/* Compares what fd N is with the identity at offset @off of @r; exits with the difference. */
static void check_id(int step, int fd, const char *path, const struct rec *r, unsigned int off)
{
	uint32_t check = u32_at(r, off), mode = u32_at(r, off + 4);
	uint32_t uid = u32_at(r, off + 8), gid = u32_at(r, off + 12);
	int64_t mtime = (int64_t)u64_at(r, off + 24);
	struct stat st;

	if (check & ~ID_ALL) {
		errno = EINVAL;
		die(step, "unknown identity checks in the spec");
	}
	if (!check)
		return;
	if (fstat(fd, &st))
		die(step, path);
	errno = EPERM;
	if ((check & ID_TYPE) && (st.st_mode & S_IFMT) != (mode & S_IFMT)) {
		say("%s: the file here is of type %o, the image's was %o", path,
		    st.st_mode & S_IFMT, mode & S_IFMT);
		_exit(STUB_STEP + step);
	}
	if ((check & ID_OWNER) && (st.st_uid != uid || st.st_gid != gid)) {
		say("%s: owned by %u:%u here, by %u:%u in the image", path,
		    st.st_uid, st.st_gid, uid, gid);
		_exit(STUB_STEP + step);
	}
	if ((check & ID_MODE) && (st.st_mode & 07777) != (mode & 07777)) {
		say("%s: mode %04o here, %04o in the image", path, st.st_mode & 07777, mode & 07777);
		_exit(STUB_STEP + step);
	}
	if ((check & ID_SIZE) && (uint64_t)st.st_size != u64_at(r, off + 16)) {
		say("%s: %lld bytes here, %" PRIu64 " in the image", path,
		    (long long)st.st_size, u64_at(r, off + 16));
		_exit(STUB_STEP + step);
	}
	if ((check & ID_MTIME) &&
	    st.st_mtim.tv_sec * 1000LL + st.st_mtim.tv_nsec / 1000000 != mtime) {
		say("%s: modified since the image was taken", path);
		_exit(STUB_STEP + step);
	}
	if ((check & ID_INODE) &&
	    (st.st_dev != u64_at(r, off + 32) || st.st_ino != u64_at(r, off + 40))) {
		say("%s: another file (device or inode differ) than the image's", path);
		_exit(STUB_STEP + step);
	}
}

/*
 * Opens one of the process's own paths: with its credentials (set by the
 * caller), no symlink anywhere on the way, no controlling terminal.
 */
static int open_own(const char *path, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = (flags & KEEP_FLAGS) | O_CLOEXEC;
	/* openat2 takes only O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC with O_PATH. */
	if (flags & O_PATH)
		how.flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	else
		how.flags |= O_NOCTTY;
	how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
}

/* Puts @fd at exactly @n with @cloexec, or exits. */
static void place(int step, int fd, int n, int cloexec, const char *what)
{
	if (fd != n) {
		if (dup3(fd, n, cloexec ? O_CLOEXEC : 0) < 0)
			die(step, what);
		close(fd);
	} else if (fcntl(n, F_SETFD, cloexec ? FD_CLOEXEC : 0) < 0) {
		die(step, what);
	}
}

/* A descriptor record: fd N FLAGS POS HOW, identity, then the path. */
static void open_fd(int step, const struct rec *r, int as)
{
	int n = s32_at(r, 0), flags = (int)u32_at(r, 4), fd;
	int64_t pos = (int64_t)u64_at(r, 8);

	if ((int)u32_at(r, 16) != as)
		return;
	if (n < 0 || n >= base_fd) {
		errno = EBADF;
		die(step, "a descriptor number outside the process's range");
	}
	if (as == AS_PROCESS)
		fd = open_own(r->str, flags);
	else
		fd = open(r->str, (flags & KEEP_FLAGS) | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 && as == AS_PROCESS) {
		say("fd %d: %s: %s (opened with the process's own rights, fsuid %u, and no symlink on the way)",
		    n, r->str, strerror(errno), (unsigned int)setfsuid(-1));
		_exit(STUB_STEP + step);
	}
	if (fd < 0)
		die(step, r->str);
	if (as == AS_PROCESS)
		check_id(step, fd, r->str, r, 24);
	if (pos && lseek(fd, pos, SEEK_SET) < 0)
		die(step, r->str);
	place(step, fd, n, flags & O_CLOEXEC, r->str);
}

/* A mapped file: map FD FLAGS, identity, path; at the stub's own FD (>= base + FD_MAPS). */
static void open_map(int step, const struct rec *r)
{
	int n = s32_at(r, 0), fd;

	if (n < base_fd + FD_MAPS) {
		errno = EBADF;
		die(step, "a mapped file's descriptor below the stub's own");
	}
	fd = open_own(r->str, (int)u32_at(r, 4) & O_ACCMODE);
	if (fd < 0) {
		say("mapped file %s: %s (opened with the process's own rights, fsuid %u, and no symlink on the way)",
		    r->str, strerror(errno), (unsigned int)setfsuid(-1));
		_exit(STUB_STEP + step);
	}
	check_id(step, fd, r->str, r, 8);
	place(step, fd, n, 1, r->str);
}

/* Takes descriptor FD of process PID (ppm holding a rebuilt socket) as fd N. */
static void take_at(int step, const struct rec *r)
{
	int n = s32_at(r, 0), pid = s32_at(r, 4), flags = (int)u32_at(r, 12);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	int got;

	if (n < 0 || n >= base_fd) {
		errno = EBADF;
		die(step, "a socket number outside the process's range");
	}
	if (pidfd < 0)
		die(step, "pidfd_open");
	got = (int)syscall(SYS_pidfd_getfd, pidfd, s32_at(r, 8), 0);
	if (got < 0)
		die(step, "pidfd_getfd");
	close(pidfd);
	place(step, got, n, flags & O_CLOEXEC, "dup3");
	if (fcntl(n, F_SETFL, flags & (O_NONBLOCK | O_APPEND | O_ASYNC)) < 0)
		die(step, "fcntl");
}

struct kernel_sigaction {
	uint64_t handler, flags, restorer, mask;
};

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

static void move_special(int step, unsigned int tag, const char *name)
{
	const struct rec *r = find(tag);
	uint64_t ts, te, cs, ce;

	if (!r)
		return;
	ts = u64_at(r, 0);
	te = u64_at(r, 8);
	if (!ts)
		return;
	self_range(name, &cs, &ce);
	if (cs == ts)
		return;
	if (!cs || te <= ts || ce - cs != te - ts) {
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

/* Opens PATH (ppm's own: device, plan) at exactly the stub's fd base + @which. */
static int high_fd(const struct rec *r, int flags, int which)
{
	int fd = open(r->str, flags | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		die(2, r->str);
	place(2, fd, base_fd + which, 1, r->str);
	return base_fd + which;
}

/* Step 1: the stub's own descriptors move to base and above. */
static void keep_own_fds(int *dev, int *plan)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (err_fd >= 0) {
		if (fcntl(err_fd, F_DUPFD_CLOEXEC, base_fd + FD_ERR) != base_fd + FD_ERR)
			die(1, "cannot keep the error file");
		close(err_fd);
		err_fd = base_fd + FD_ERR;
	}
	for (int i = 0; i < 3; i++)
		if (fcntl(i, F_DUPFD, base_fd + i) != base_fd + i)
			die(1, "cannot keep the standard streams");
	*dev = high_fd(find(T_DEV), O_RDWR, FD_DEV);
	*plan = high_fd(find(T_PLAN), O_RDONLY, FD_PLAN);
	close(0);
	close(1);
	close(2);
}

/* Step 2: what ppm chose for the process, as ppm: standard streams, rebuilt sockets. */
static void restorer_fds(void)
{
	for (unsigned int i = 0; i < nrecs; i++) {
		const struct rec *r = &recs[i];

		if (r->tag == T_FD) {
			open_fd(3, r, AS_RESTORER);
		} else if (r->tag == T_SOCK) {
			take_at(3, r);
		} else if (r->tag == T_STDIO) {
			int n = s32_at(r, 0), from = s32_at(r, 4);

			if (n < 0 || n >= base_fd || from < 0 || from > 2) {
				errno = EBADF;
				die(3, "stdio");
			}
			if (dup2(base_fd + from, n) < 0)
				die(3, "stdio");
		}
	}
}

/* Step 3: the process's groups, then its filesystem ids: from here on, its own rights. */
static void become_owner(uid_t *fsuid, gid_t *fsgid)
{
	const struct rec *g = find(T_GROUPS), *c = find(T_FSCRED);
	gid_t *ids;

	if (!g || !c) {
		errno = EINVAL;
		die(6, "the spec has no groups or filesystem ids");
	}
	ids = malloc(g->len ? g->len : 1);
	if (!ids)
		die(6, "setgroups");
	memcpy(ids, g->p, g->len);
	if (setgroups(g->len / 4, ids))
		die(6, "setgroups");
	free(ids);
	*fsuid = u32_at(c, 0);
	*fsgid = u32_at(c, 4);
	setfsgid(*fsgid);
	setfsuid(*fsuid);
	if ((uid_t)setfsuid(-1) != *fsuid || (gid_t)setfsgid(-1) != *fsgid) {
		errno = EPERM;
		die(6, "cannot take the process's filesystem ids");
	}
}

/* Step 4: the process's own files, cwd included, opened with its rights. */
static void own_files(void)
{
	const struct rec *cwd = find(T_CWD);

	for (unsigned int i = 0; i < nrecs; i++) {
		if (recs[i].tag == T_FD)
			open_fd(3, &recs[i], AS_PROCESS);
		else if (recs[i].tag == T_MAP)
			open_map(4, &recs[i]);
	}
	if (cwd) {
		int d = open_own(cwd->str, O_PATH | O_DIRECTORY);

		if (d < 0)
			die(5, cwd->str);
		check_id(5, d, cwd->str, cwd, 0);
		if (fchdir(d))
			die(5, cwd->str);
		close(d);
	}
}

/* Step 7-9: signal dispositions, altstack, robust list, tid address. */
static void signal_state(void)
{
	const struct rec *r;

	for (unsigned int i = 0; i < nrecs; i++) {
		struct kernel_sigaction ka;
		int sig;

		r = &recs[i];
		if (r->tag != T_SIGACTION)
			continue;
		sig = (int)u32_at(r, 0);
		ka.handler = u64_at(r, 8);
		ka.flags = u64_at(r, 16);
		ka.restorer = u64_at(r, 24);
		ka.mask = u64_at(r, 32);
		if (sig < 1 || sig > 64) {
			errno = EINVAL;
			die(7, "a signal number outside 1..64");
		}
		if (sig != SIGKILL && sig != SIGSTOP &&
		    syscall(SYS_rt_sigaction, sig, &ka, NULL, 8))
			die(7, "rt_sigaction");
	}
	r = find(T_ALTSTACK);
	if (r && u64_at(r, 0)) {
		stack_t ss;

		ss.ss_sp = (void *)u64_at(r, 0);
		ss.ss_size = u64_at(r, 8);
		ss.ss_flags = (int)(u32_at(r, 16) & SS_AUTODISARM);
		if (sigaltstack(&ss, NULL))
			die(8, "sigaltstack");
	}
	r = find(T_ROBUST);
	if (r && u64_at(r, 0) && syscall(SYS_set_robust_list, u64_at(r, 0), u64_at(r, 8)))
		die(9, "set_robust_list");
	r = find(T_TIDADDR);
	if (r)
		syscall(SYS_set_tid_address, u64_at(r, 0));
}

/* Step 11: limits and priority. */
static void limits(void)
{
	const struct rec *r;

	for (unsigned int i = 0; i < nrecs; i++) {
		struct rlimit rl;
		int64_t soft, hard;

		r = &recs[i];
		if (r->tag != T_RLIMIT)
			continue;
		soft = (int64_t)u64_at(r, 8);
		hard = (int64_t)u64_at(r, 16);
		rl.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
		rl.rlim_max = hard < 0 ? RLIM_INFINITY : (rlim_t)hard;
		if (u32_at(r, 0) >= RLIM_NLIMITS || setrlimit((int)u32_at(r, 0), &rl))
			die(11, "setrlimit");
	}
	/* The process's own priority, not the one of the agent that spawned the stub. */
	r = find(T_NICE);
	if (r && setpriority(PRIO_PROCESS, 0, s32_at(r, 0)))
		die(11, "setpriority");
}

static void __attribute__((noreturn)) child(void)
{
	const struct rec *r;
	struct ppm_restore req;
	sigset_t all;
	uid_t fsuid;
	gid_t fsgid;
	int dev, plan;

	keep_own_fds(&dev, &plan);
	restorer_fds();
	become_owner(&fsuid, &fsgid);
	own_files();
	/* Back to ppm's filesystem rights for the rest; ppm sets the credentials last. */
	setfsuid(0);
	setfsgid(0);
	r = find(T_UMASK);
	if (r)
		umask(u32_at(r, 0) & 0777);
	signal_state();
	r = find(T_COMM);
	if (r)
		prctl(PR_SET_NAME, r->str);
	move_special(10, T_VVAR, "[vvar]");
	move_special(10, T_VDSO, "[vdso]");
	limits();

	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* Wait here for ppm's ptrace; SIGSTOP is never blocked. */
	kill(getpid(), SIGSTOP);

	memset(&req, 0, sizeof(req));
	req.plan_fd = plan;
	if (ioctl(dev, PPM_IOC_RESTORE, &req)) {
		say("restore refused at plan offset %llu: %s (%s)",
		    (unsigned long long)req.failed_at, req.error, strerror(errno));
		_exit(STUB_STEP + 20);
	}
	/* Not reached: ppm sets the restored registers at the ioctl's exit. */
	_exit(STUB_STEP + 21);
}

/* The PID the spec wants, its base and error file taken; 0 (with the reason on stderr) when bad. */
static pid_t spec_basics(void)
{
	const struct rec *r;
	pid_t want;

	if (!find(T_PID) || !find(T_DEV) || !find(T_PLAN) || !find(T_BASE)) {
		fprintf(stderr, "ppm-restore-stub: bad spec: no pid, base, dev or plan\n");
		return 0;
	}
	want = s32_at(find(T_PID), 0);
	base_fd = s32_at(find(T_BASE), 0);
	if (want <= 0 || base_fd < 3 || base_fd > (1 << 30)) {
		fprintf(stderr, "ppm-restore-stub: bad spec: pid %d, base %d\n", want, base_fd);
		return 0;
	}
	r = find(T_ERROUT);
	if (r) {
		err_fd = open(r->str, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (err_fd < 0) {
			fprintf(stderr, "ppm-restore-stub: %s: %s\n", r->str, strerror(errno));
			return 0;
		}
	}
	return want;
}

/* Writes @pid where the spec says (or to stdout); 0 or -1. */
static int tell_pid(pid_t pid)
{
	const struct rec *r = find(T_PIDOUT);
	int fd;

	if (!r)
		return printf("%d\n", pid) < 0 ? -1 : 0;
	fd = open(r->str, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "%d\n", pid) < 0 || close(fd))
		return -1;
	return 0;
}

/* A descriptor number from the command line, 3 up; -1 when it is not one. */
static int fd_arg(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 3 || v > (1 << 20))
		return -1;
	return (int)v;
}

/* Closes every descriptor from 3 up but @a and @b. */
static void close_all_but(int a, int b)
{
	int lo = a < b ? a : b, hi = a < b ? b : a;

	if (lo > 3)
		syscall(SYS_close_range, 3, lo - 1, 0);
	if (hi > lo + 1)
		syscall(SYS_close_range, lo + 1, hi - 1, 0);
	syscall(SYS_close_range, hi + 1, ~0U, 0);
}

/*
 * `ppm-restore-stub --into GRANT_FD SPEC_FD`: a process coming home, run by
 * its own deputy (core/deputy/deputy.c), which already has the image's PID,
 * parent and session.  It takes the agent's grant (kmod/grant.c: it gives
 * root's credentials to this task alone, running this program, which its
 * users cannot read, so that the kernel keeps them from tracing it), reads
 * the spec the agent opened for it, and becomes the process as a launched
 * stub's child does.
 */
static int into(const char *grant_arg, const char *spec_arg)
{
	int grant = fd_arg(grant_arg), spec = fd_arg(spec_arg);
	pid_t want;

	if (grant < 0 || spec < 0 || grant == spec)
		return STUB_BAD_SPEC;
	/* Nothing of the deputy's but the standard streams may reach the process. */
	close_all_but(grant, spec);
	if (ioctl(grant, PPM_IOC_GRANT_TAKE, 0)) {
		fprintf(stderr, "ppm-restore-stub: the agent's grant was refused: %s\n",
			strerror(errno));
		return STUB_NOT_PERMITTED;
	}
	close(grant);
	if (read_spec_fd(spec, "passed by the agent"))
		return STUB_BAD_SPEC;
	close(spec);
	want = spec_basics();
	if (!want)
		return STUB_BAD_SPEC;
	if (want != getpid()) {
		say("the spec is for PID %d, this is %d", want, getpid());
		return STUB_BAD_SPEC;
	}
	if (tell_pid(want))
		return STUB_CLONE_FAILED;
	child();
}

/* A child with PID @want whose parent is ppm's, as the launcher's (clone3, CLONE_PARENT). */
static pid_t clone_with_pid(pid_t want)
{
	struct clone_args args;

	memset(&args, 0, sizeof(args));
	/* The child becomes ppm's, with the launcher's exit signal (SIGCHLD). */
	args.flags = CLONE_PARENT;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	return syscall(SYS_clone3, &args, sizeof(args));
}

/* The launcher's exit code for a clone_with_pid() that failed with errno. */
static int clone_failed(pid_t want)
{
	int err = errno;

	say("clone3 with pid %d: %s", want, strerror(err));
	return err == EEXIST ? STUB_PID_TAKEN :
	       err == EPERM ? STUB_NOT_PERMITTED : STUB_CLONE_FAILED;
}

#include "vessel.h"

int main(int argc, char **argv)
{
	pid_t want, got;
	int checking = argc == 3 && !strcmp(argv[1], "--check");

	if (argc == 4 && !strcmp(argv[1], "--into"))
		return into(argv[2], argv[3]);
	if (argc == 4 && !strcmp(argv[1], "--vessel"))
		return vessel(argv[2], argv[3]);
	if (argc != 2 && !checking)
		return STUB_BAD_SPEC;
	/* Nothing of ppm's but the standard streams may reach the process. */
	if (!checking && syscall(SYS_close_range, 3, ~0U, 0) < 0)
		return STUB_BAD_SPEC;
	if (read_spec(argv[argc - 1]))
		return STUB_BAD_SPEC;
	if (checking) {
		print_spec();
		return STUB_OK;
	}
	want = spec_basics();
	if (!want)
		return STUB_BAD_SPEC;

	got = clone_with_pid(want);
	if (got == 0)
		child();
	if (got < 0)
		return clone_failed(want);
	return tell_pid(got) ? STUB_CLONE_FAILED : STUB_OK;
}
