// SPDX-License-Identifier: GPL-2.0
/*
 * plan_fuzz: feeds PPM_IOC_RESTORE thousands of damaged restore plans, each
 * in a fresh child, and counts what happened.  The module must refuse them
 * with an error, or kill the child past the point of no return, and never
 * oops (the test reads the guest console afterwards).
 *
 *   plan_fuzz PLAN MAPFILE CASES SEED
 *
 * Every file descriptor in the plan is pointed at MAPFILE (opened as fd 3),
 * and the vDSO address at the child's own, so the damage reaches past the
 * first checks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../../kmod/uapi/ppm.h"

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const uint64_t nasty[] = {
	0, 1, 0xfff, 0x1000, 0x7ffffffff000ULL, 0x800000000000ULL, 0xffffffffffffffffULL,
	0xffff800000000000ULL, 0x7fffffffffffULL, 0x100000000ULL, 0x80000000ULL,
};

static uint64_t pick(void)
{
	return rnd() % 3 ? nasty[rnd() % (sizeof(nasty) / sizeof(nasty[0]))] : rnd();
}

static void put(unsigned char *p, size_t size, size_t off, uint64_t v, int width)
{
	if (off + width <= size)
		memcpy(p + off, &v, width);
}

/* One kind of damage, chosen by `kind`. */
static size_t mutate(unsigned char *p, size_t size, int kind, uint32_t nr_vmas)
{
	size_t vt = sizeof(struct ppm_plan_header);
	size_t runs = vt + (size_t)nr_vmas * sizeof(struct ppm_plan_vma);
	size_t v = vt + (nr_vmas ? rnd() % nr_vmas : 0) * sizeof(struct ppm_plan_vma);

	switch (kind) {
	case 0: /* random bytes anywhere */
		for (int i = 1 + rnd() % 8; i > 0; i--)
			p[rnd() % size] ^= 1 + rnd() % 255;
		return size;
	case 1: /* truncated */
		return rnd() % size;
	case 2: /* counts */
		put(p, size, offsetof(struct ppm_plan_header, nr_vmas), pick(), 4);
		return size;
	case 3:
		put(p, size, offsetof(struct ppm_plan_header, nr_runs), pick(), 4);
		return size;
	case 4: /* a mapping's range */
		put(p, size, v + (rnd() % 2 ? 0 : 8), pick(), 8);
		return size;
	case 5: /* a mapping's offset, prot, flags, fd */
		put(p, size, v + 16 + 4 * (rnd() % 4), pick(), rnd() % 2 ? 4 : 8);
		return size;
	case 6: { /* a page run header */
		size_t off = runs;

		for (int i = rnd() % 8; i > 0 && off + 16 <= size; i--) {
			uint32_t n;

			memcpy(&n, p + off + 8, 4);
			off += 16 + (size_t)n * 4096;
		}
		put(p, size, off + (rnd() % 2 ? 0 : 8), pick(), rnd() % 2 ? 4 : 8);
		return size;
	}
	case 7: /* mm fields and auxv */
		put(p, size, offsetof(struct ppm_plan_header, start_code) + 8 * (rnd() % 11), pick(), 8);
		put(p, size, offsetof(struct ppm_plan_header, auxv_words), pick(), 4);
		return size;
	case 8: /* two mappings overlap */
		if (nr_vmas > 1) {
			size_t a = vt + (rnd() % (nr_vmas - 1)) * sizeof(struct ppm_plan_vma);

			memcpy(p + a + sizeof(struct ppm_plan_vma), p + a, 8);
		}
		return size;
	case 9: { /* a run that says its pages are elsewhere (PPM_RUN_AT), and where */
		size_t off = runs;

		for (int i = rnd() % 8; i > 0 && off + 16 <= size; i--) {
			uint32_t n;

			memcpy(&n, p + off + 8, 4);
			off += 16 + (size_t)n * 4096;
		}
		put(p, size, off + 12, rnd() % 2 ? PPM_RUN_AT : pick(), 4);
		put(p, size, off + 16, rnd() % 2 ? (pick() & ~0xfffULL) : pick(), 8);
		return size;
	}
	case 10: { /* a mapping kept (PPM_VMA_KEEP), or a run of zeros (PPM_RUN_ZERO) */
		size_t off = runs;

		if (rnd() % 2) {
			put(p, size, v + offsetof(struct ppm_plan_vma, flags),
			    rnd() % 2 ? PPM_VMA_KEEP : PPM_VMA_KEEP | pick(), 4);
			if (rnd() % 2) {
				put(p, size, v + offsetof(struct ppm_plan_vma, prot),
				    PROT_READ | PROT_WRITE, 4);
				put(p, size, v + offsetof(struct ppm_plan_vma, fd), -1, 4);
				put(p, size, v + offsetof(struct ppm_plan_vma, pgoff), 0, 8);
			}
			return size;
		}
		for (int i = rnd() % 8; i > 0 && off + 16 <= size; i--) {
			uint32_t n;

			memcpy(&n, p + off + 8, 4);
			off += 16 + (size_t)n * 4096;
		}
		put(p, size, off + 12, rnd() % 2 ? PPM_RUN_ZERO : PPM_RUN_ZERO | pick(), 4);
		if (rnd() % 2)
			put(p, size, off + 8, pick(), 4);
		return size;
	}
	default: /* garbage appended, or a huge size claimed at the end */
		put(p, size, size - 8, pick(), 8);
		return size;
	}
}

int main(int argc, char **argv)
{
	unsigned char *orig, *p;
	long cases, counts[4] = { 0 };
	struct ppm_plan_header *h;
	size_t size;
	int fd, mapfd;

	if (argc != 5)
		return 2;
	fd = open(argv[1], O_RDONLY);
	if (fd < 0)
		return 2;
	size = lseek(fd, 0, SEEK_END);
	orig = malloc(size);
	p = malloc(size);
	if (!orig || !p || pread(fd, orig, size, 0) != (ssize_t)size)
		return 2;
	close(fd);
	/* Only now: the plan may have been fd 3 itself. */
	mapfd = open(argv[2], O_RDONLY);
	if (mapfd < 0 || (mapfd != 3 && dup2(mapfd, 3) != 3))
		return 2;
	h = (struct ppm_plan_header *)orig;
	h->vdso = getauxval(AT_SYSINFO_EHDR);
	for (uint32_t i = 0; i < h->nr_vmas; i++) {
		struct ppm_plan_vma *v = (struct ppm_plan_vma *)(orig + sizeof(*h)) + i;

		if (v->fd >= 0)
			v->fd = 3;
	}
	cases = atol(argv[3]);
	rng = strtoull(argv[4], NULL, 0) | 1;

	for (long c = 0; c < cases; c++) {
		int kind = c ? rnd() % 12 : -1, status, memfd;
		size_t n;
		pid_t pid;

		memcpy(p, orig, size);
		/* Case 0 is the plan as it is: it must get past every check. */
		n = kind < 0 ? size : mutate(p, size, kind, h->nr_vmas);
		memfd = memfd_create("plan", 0);
		if (memfd < 0 || write(memfd, p, n) != (ssize_t)n)
			return 2;
		pid = fork();
		if (pid == 0) {
			struct ppm_restore req = { .plan_fd = memfd };
			int dev = open("/dev/ppm", O_RDWR);

			alarm(20);
			if (dev < 0)
				_exit(90);
			if (ioctl(dev, PPM_IOC_RESTORE, &req)) {
				if (kind < 0)
					dprintf(2, "plan_fuzz: the intact plan was refused: %s\n",
						req.error);
				_exit(req.error[0] ? 0 : 91);
			}
			_exit(92); /* not reached when the memory was replaced */
		}
		close(memfd);
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			return 2;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			counts[0]++;	/* refused with a message */
		else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			counts[1]++;	/* killed past the point of no return */
		else if (WIFSIGNALED(status))
			counts[2]++;	/* restored something that then crashed */
		else
			counts[3]++;	/* refused without a message, or odd */
	}
	printf("{\"cases\": %ld, \"refused\": %ld, \"killed\": %ld, \"crashed\": %ld, \"other\": %ld}\n",
	       cases, counts[0], counts[1], counts[2], counts[3]);
	return 0;
}
