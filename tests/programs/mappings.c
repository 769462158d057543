/*
 * mappings ITERATIONS PRIVATE_FILE SHARED_FILE
 *
 * Memory mappings of several kinds that a restore must recreate with the
 * right backing, contents and protections:
 *
 *  - private file mapping: PRIVATE_FILE is created with known contents
 *    (PRIV_PAGES pages), then mapped MAP_PRIVATE, PROT_READ|PROT_WRITE.
 *    Pages 0, 3, 6, ... are written at start (copy-on-write copies) and
 *    their first and last words are rewritten every tick; page 1 is first
 *    written at tick 2 (so its copy-on-write happens after a checkpoint
 *    taken in ticks 0-1); the other pages are never written and must equal
 *    the file (checked against the expected pattern and a pread() of the
 *    file). At the end the file itself must still hold the original
 *    contents: private writes must never reach it.
 *  - shared file mapping: SHARED_FILE (created, SHARED_PAGES pages) mapped
 *    MAP_SHARED. Each tick checks that the counter in word 0 is the previous
 *    tick's and that the whole mapping equals a pread() of the file, then
 *    writes the new counter and a pattern into one page and checks pread()
 *    sees them - i.e. the mapping is still the file's page cache, not a
 *    private copy.
 *  - shared anonymous page (MAP_SHARED|MAP_ANONYMOUS) with a counter.
 *  - read-only anonymous region (RO_PAGES pages, filled, then mprotect'ed
 *    PROT_READ) followed by a PROT_NONE guard page. Each tick verifies the
 *    contents and probes the protections: a write to a read-only page and
 *    a read of the guard page must both raise SIGSEGV (SEGV_ACCERR at the
 *    probed address); a SIGSEGV handler siglongjmp()s back.
 *  - sparse anonymous region (SPARSE_PAGES pages, MAP_NORESERVE): one more
 *    page is touched per tick; every page is checked each tick (touched
 *    pages hold their marker, the rest read as zero).
 *
 * Tick line: `tick <i> shared=<counter> sum=<hex>` (hash of all contents).
 */
#include "common.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096
#define WORDS (PAGE / sizeof(uint64_t))
#define PRIV_PAGES 16
#define SHARED_PAGES 4
#define RO_PAGES 4
#define SPARSE_PAGES 4096 /* 16 MiB */
#define LATE_PAGE 1	  /* first written at tick LATE_TICK */
#define LATE_TICK 2

static uint64_t file_word(long page, size_t w)
{
	return mix64(0xf11e000000000000ULL ^ ((uint64_t)page << 20) ^ w);
}

static uint64_t ro_word(long page, size_t w)
{
	return mix64(0x0a0a000000000000ULL ^ ((uint64_t)page << 20) ^ w);
}

static int priv_modified(long page, long ticks_done)
{
	if (page == LATE_PAGE)
		return ticks_done > LATE_TICK;
	return page % 3 == 0;
}

/* Expected word of the private mapping after `ticks_done` ticks. */
static uint64_t priv_expect(long page, size_t w, long ticks_done)
{
	if (!priv_modified(page, ticks_done))
		return file_word(page, w);
	if (w == 0)
		return 0x1000000ULL + (uint64_t)ticks_done;
	if (w == WORDS - 1)
		return ~(0x1000000ULL + (uint64_t)ticks_done);
	return file_word(page, w) ^ 0xc0c0c0c0c0c0c0c0ULL;
}

static void pread_all(int fd, void *buf, size_t len, off_t off, const char *what)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		CHECK_SYS(n >= 0, what);
		CHECK(n > 0, "%s: unexpected end of file", what);
		got += (size_t)n;
	}
}

static void write_file_all(int fd, const void *buf, size_t len, const char *what)
{
	CHECK_SYS(write_all(fd, buf, len) == 0, what);
}

/* ---- SIGSEGV probes ---- */

static sigjmp_buf probe_env;
static volatile sig_atomic_t probing;
static void *volatile fault_addr;
static volatile int fault_code;

static void segv_handler(int sig, siginfo_t *info, void *uctx)
{
	(void)uctx;
	if (!probing) {
		/* a real crash: restore the default action and re-fault */
		signal(sig, SIG_DFL);
		return;
	}
	fault_addr = info->si_addr;
	fault_code = info->si_code;
	siglongjmp(probe_env, 1);
}

/* Returns 1 if the access faulted (and where/how in fault_addr/code). */
static int probe(volatile uint64_t *addr, int write)
{
	fault_addr = NULL;
	fault_code = 0;
	if (sigsetjmp(probe_env, 1) == 0) {
		probing = 1;
		if (write)
			*addr = 0x5a5a5a5a5a5a5a5aULL;
		else
			(void)*addr;
		probing = 0;
		return 0;
	}
	probing = 0;
	return 1;
}

static void check_segv_handler(void)
{
	struct sigaction sa;

	CHECK_SYS(sigaction(SIGSEGV, NULL, &sa) == 0, "sigaction query");
	CHECK(sa.sa_sigaction == segv_handler && (sa.sa_flags & SA_SIGINFO),
	      "SIGSEGV handler not installed");
}

int main(int argc, char **argv)
{
	long iters = prog_init("mappings", argc, argv, 2,
			       "ITERATIONS PRIVATE_FILE SHARED_FILE");
	const char *priv_path = argv[2], *shared_path = argv[3];
	static uint64_t page_buf[WORDS * SHARED_PAGES];
	static uint32_t sparse_marker[SPARSE_PAGES];
	uint64_t *priv, *shared, *anon_shared, *ro, *sparse;
	int priv_fd, shared_fd;
	struct sigaction sa;
	uint64_t h = FNV_INIT;

	/* the private file: create with known contents, then map privately */
	priv_fd = open(priv_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK_SYS(priv_fd >= 0, priv_path);
	for (long p = 0; p < PRIV_PAGES; p++) {
		for (size_t w = 0; w < WORDS; w++)
			page_buf[w] = file_word(p, w);
		write_file_all(priv_fd, page_buf, PAGE, "write private file");
	}
	CHECK_SYS(close(priv_fd) == 0, "close");
	priv_fd = open(priv_path, O_RDONLY | O_CLOEXEC);
	CHECK_SYS(priv_fd >= 0, priv_path);
	priv = mmap(NULL, PRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, priv_fd, 0);
	CHECK_SYS(priv != MAP_FAILED, "mmap private file");

	/* the shared file */
	shared_fd = open(shared_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK_SYS(shared_fd >= 0, shared_path);
	CHECK_SYS(ftruncate(shared_fd, SHARED_PAGES * PAGE) == 0, "ftruncate");
	shared = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd,
		      0);
	CHECK_SYS(shared != MAP_FAILED, "mmap shared file");

	anon_shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(anon_shared != MAP_FAILED, "mmap shared anonymous");
	anon_shared[0] = 0;
	anon_shared[1] = mix64(0);

	ro = mmap(NULL, (RO_PAGES + 1) * PAGE, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(ro != MAP_FAILED, "mmap read-only region");
	for (long p = 0; p < RO_PAGES + 1; p++)
		for (size_t w = 0; w < WORDS; w++)
			ro[p * WORDS + w] = ro_word(p, w);
	CHECK_SYS(mprotect(ro, RO_PAGES * PAGE, PROT_READ) == 0, "mprotect PROT_READ");
	CHECK_SYS(mprotect((char *)ro + RO_PAGES * PAGE, PAGE, PROT_NONE) == 0,
		  "mprotect PROT_NONE");

	sparse = mmap(NULL, (size_t)SPARSE_PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK_SYS(sparse != MAP_FAILED, "mmap sparse region");

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction SIGSEGV");

	/* copy-on-write the "modified" private pages */
	for (long p = 0; p < PRIV_PAGES; p++)
		if (priv_modified(p, 0))
			for (size_t w = 0; w < WORDS; w++)
				priv[p * WORDS + w] = priv_expect(p, w, 0);

	ready_line();
	for (long i = 0; i < iters; i++) {
		uint64_t counter;

		/* private mapping: verify, then update the modified pages */
		for (long p = 0; p < PRIV_PAGES; p++) {
			for (size_t w = 0; w < WORDS; w++)
				CHECK(priv[p * WORDS + w] == priv_expect(p, w, i),
				      "private page %ld word %zu: %016llx, expected %016llx", p, w,
				      (unsigned long long)priv[p * WORDS + w],
				      (unsigned long long)priv_expect(p, w, i));
			if (!priv_modified(p, i)) {
				pread_all(priv_fd, page_buf, PAGE, p * PAGE, "pread private file");
				CHECK(memcmp(page_buf, priv + p * WORDS, PAGE) == 0,
				      "untouched private page %ld differs from the file", p);
			}
		}
		for (long p = 0; p < PRIV_PAGES; p++)
			if (priv_modified(p, i + 1))
				for (size_t w = 0; w < WORDS; w++)
					priv[p * WORDS + w] = priv_expect(p, w, i + 1);

		/* shared file mapping */
		pread_all(shared_fd, page_buf, SHARED_PAGES * PAGE, 0, "pread shared file");
		CHECK(memcmp(page_buf, shared, SHARED_PAGES * PAGE) == 0,
		      "tick %ld: shared mapping differs from the file", i);
		CHECK(shared[0] == (uint64_t)i, "shared counter is %llu, expected %ld",
		      (unsigned long long)shared[0], i);
		counter = (uint64_t)i + 1;
		shared[0] = counter;
		for (size_t w = 1; w < WORDS; w++)
			shared[(i % SHARED_PAGES) * WORDS + w] = mix64(counter ^ (w << 32));
		pread_all(shared_fd, page_buf, SHARED_PAGES * PAGE, 0, "pread shared file");
		CHECK(memcmp(page_buf, shared, SHARED_PAGES * PAGE) == 0,
		      "tick %ld: file does not see the writes to the shared mapping", i);

		/* shared anonymous page */
		CHECK(anon_shared[0] == (uint64_t)i && anon_shared[1] == mix64((uint64_t)i),
		      "shared anonymous page holds %llu, expected %ld",
		      (unsigned long long)anon_shared[0], i);
		anon_shared[0] = counter;
		anon_shared[1] = mix64(counter);

		/* read-only region and guard page */
		for (long p = 0; p < RO_PAGES; p++) /* the guard page is only probed */
			for (size_t w = 0; w < WORDS; w++)
				CHECK(ro[p * WORDS + w] == ro_word(p, w),
				      "read-only page %ld word %zu corrupted", p, w);
		check_segv_handler();
		{
			volatile uint64_t *target = &ro[(i % RO_PAGES) * WORDS + (size_t)(i % WORDS)];
			volatile uint64_t *guard = &ro[RO_PAGES * WORDS + (size_t)(i % WORDS)];

			CHECK(probe(target, 1), "write to read-only page %ld did not fault",
			      i % RO_PAGES);
			CHECK(fault_addr == (void *)target && fault_code == SEGV_ACCERR,
			      "read-only fault: wrong si_addr or si_code %d", fault_code);
			CHECK(probe(guard, 0), "read of the PROT_NONE guard page did not fault");
			CHECK(fault_addr == (void *)guard && fault_code == SEGV_ACCERR,
			      "guard fault: wrong si_addr or si_code %d", fault_code);
			CHECK(ro[(i % RO_PAGES) * WORDS + (size_t)(i % WORDS)] ==
				      ro_word(i % RO_PAGES, (size_t)(i % WORDS)),
			      "faulting write changed the read-only page");
		}

		/* sparse region: touch one more page, check them all */
		{
			long p = (i * 37) % SPARSE_PAGES;

			if (!sparse_marker[p]) {
				sparse_marker[p] = (uint32_t)(i + 1);
				sparse[p * WORDS] = (uint64_t)(i + 1);
				sparse[p * WORDS + WORDS - 1] = mix64((uint64_t)p);
			}
		}
		for (long p = 0; p < SPARSE_PAGES; p++) {
			const uint64_t *pg = sparse + p * WORDS;

			if (sparse_marker[p]) {
				CHECK(pg[0] == sparse_marker[p] && pg[WORDS - 1] == mix64((uint64_t)p),
				      "sparse page %ld lost its marker", p);
				for (size_t w = 1; w < WORDS - 1; w++)
					CHECK(pg[w] == 0, "sparse page %ld word %zu not zero", p, w);
			} else {
				for (size_t w = 0; w < WORDS; w += 64)
					CHECK(pg[w] == 0, "untouched sparse page %ld not zero", p);
			}
		}

		h = fnv1a(h, priv, PRIV_PAGES * PAGE);
		h = fnv1a(h, shared, SHARED_PAGES * PAGE);
		h = hash_u64(h, anon_shared[0] ^ anon_shared[1]);
		tick_line(i, "shared=%llu sum=%016llx", (unsigned long long)counter,
			  (unsigned long long)h);
		sleep_ms(100);
	}

	/* private writes must never have reached the private file */
	for (long p = 0; p < PRIV_PAGES; p++) {
		pread_all(priv_fd, page_buf, PAGE, p * PAGE, "pread private file");
		for (size_t w = 0; w < WORDS; w++)
			CHECK(page_buf[w] == file_word(p, w),
			      "private file page %ld changed on disk", p);
	}
	CHECK_SYS(msync(shared, SHARED_PAGES * PAGE, MS_SYNC) == 0, "msync");
	pread_all(shared_fd, page_buf, SHARED_PAGES * PAGE, 0, "pread shared file");
	CHECK(memcmp(page_buf, shared, SHARED_PAGES * PAGE) == 0 && page_buf[0] == (uint64_t)iters,
	      "shared file does not hold the final contents");
	CHECK_SYS(munmap(priv, PRIV_PAGES * PAGE) == 0, "munmap");
	CHECK_SYS(munmap(shared, SHARED_PAGES * PAGE) == 0, "munmap");
	close(priv_fd);
	close(shared_fd);
	ok_line("shared=%ld sum=%016llx", iters, (unsigned long long)h);
	return 0;
}
