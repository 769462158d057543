// SPDX-License-Identifier: MIT
/*
 * ppm-pagestream: a migration's pages from the frozen process on the source
 * to the restore plan on the destination, never through JavaScript. One
 * TCP connection per migration, sealed with AEGIS-128L under a key the
 * destination made for it and sent over the agents' encrypted link.
 *
 *   ppm-pagestream selftest
 *   ppm-pagestream send --to ADDR --port P --pid PID [--timeout-ms T]
 *   ppm-pagestream recv --bind ADDR --from ADDR --plan PATH --plan-head H
 *                       --plan-vma V --max-pages N [--store PATH
 *                       --max-held N [--store-offset B] [--vessel PID
 *                       --room START-END...]] [--timeout-ms T]
 *                       [--hello-timeout-ms T]
 *
 * Both read the 16-byte key and the 16-byte session id on stdin first.
 *
 * send: connects at once and sends its hello; then reads requests on
 * stdin, 16 bytes each: u64 argument, u32 pages, u32 op.
 *   OP_HELD (a pre-copy round, the process running) and OP_PAGES (the
 *   freeze): the argument is an address, pages 1..1024. It reads those
 *   pages of PID (process_vm_readv, /proc/PID/mem for what that cannot
 *   read), leaves out the ones that hold only zeros, sends the others, and
 *   answers: u32 op, u32 pages, u32 status (0, or 1: they could not be read
 *   and none was sent; only for OP_HELD, else it fails), then one bit per
 *   page (set: zeros, not sent).
 *   OP_FREEZE: the argument is the number of mappings the restore plan
 *   recreates; sent on, no answer. After it, only OP_PAGES.
 *   OP_END: sends the end frame; answers u32 0xffffffff, u32 frames,
 *   u64 pages (both counted from OP_FREEZE on).
 *
 * recv: prints "port P" once it listens; takes one connection from ADDR
 * (others are closed) and its hello (--hello-timeout-ms). Pre-copy pages
 * (HELD frames, only before FREEZE, only with --store) are appended to the
 * store from offset B (default 0; the store may be the plan itself, far
 * past its runs), at most N pages in all, printing
 * "held ADDRESS PAGES OFFSET". With --vessel (the restore stub started
 * ahead, core/restore/stub/vessel.h), a run that one of its rooms (hex
 * START-END) holds whole is written into it where it belongs instead
 * (process_vm_writev), printing "placed ADDRESS PAGES"; the same bound
 * counts both.
 * After FREEZE, each PAGES frame becomes a run in the plan, from offset
 * H + VMAS * V, after the header and the mappings FREEZE names (struct
 * ppm_plan_run, then the pages), printing "run ADDRESS PAGES". At the end
 * frame it prints "end FRAMES PAGES VMAS OFFSET" and exits 0. Anything
 * wrong: a line on stderr and exit 1.
 *
 * On the wire, each frame is a 16-byte header (u64 address, u32 pages, u32
 * kind), authenticated as associated data, then the sealed payload and its
 * 16-byte tag. The nonce is the frame's number: the key is never used for
 * another connection, so nothing can be replayed, dropped or reordered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "aegis128l.h"

#define PAGE 4096u
#define FRAME_PAGES 256u
#define REQ_PAGES 1024u
#define USER_TOP 0x0000800000000000ull
#define KIND_HELLO 1u
#define KIND_PAGES 2u
#define KIND_END 3u
#define KIND_HELD 4u
#define KIND_FREEZE 5u
#define HELLO_MAGIC 0x50504d50u /* "PMPP" */
#define HELLO_VERSION 2u
#define END_TAG 0xffffffffu

enum op { OP_PAGES = 1, OP_HELD = 2, OP_FREEZE = 3, OP_END = 4 };

enum exit_code { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_NO_AES = 3 };

struct frame_head {
	uint64_t addr;
	uint32_t pages;
	uint32_t kind;
};

struct plan_run {
	uint64_t start;
	uint32_t nr_pages;
	uint32_t reserved;
};

static uint8_t key[AEGIS_KEY], session[16];
static uint64_t seq;
static int timeout_ms = 60000;

/* Microseconds spent on each part of the work, for the figures. */
static struct {
	uint64_t read, seal, net, wait, write;
} spent;

static uint64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000 + (uint64_t)t.tv_nsec / 1000;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("ppm-pagestream: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(EXIT_FAIL);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void nonce_of(uint64_t n, uint8_t out[16])
{
	memset(out, 0, 16);
	memcpy(out, &n, 8);
}

/* Waits until fd is ready for events, within the timeout. */
static void await_fd(int fd, short events, const char *what)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		die("%s: nothing for %d ms", what, timeout_ms);
	if (r < 0)
		die("%s: poll: %s", what, strerror(errno));
}

static void read_full(int fd, void *buf, size_t n, const char *what)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && (errno == EINTR))
			continue;
		if (r < 0 && errno == EAGAIN) {
			await_fd(fd, POLLIN, what);
			continue;
		}
		if (r < 0)
			die("%s: %s", what, strerror(errno));
		if (r == 0)
			die("%s: the stream ended early", what);
		p += r;
		n -= r;
	}
}

static void writev_full(int fd, struct iovec *iov, int cnt, const char *what)
{
	while (cnt) {
		ssize_t r = writev(fd, iov, cnt);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			await_fd(fd, POLLOUT, what);
			continue;
		}
		if (r < 0)
			die("%s: %s", what, strerror(errno));
		while (cnt && (size_t)r >= iov->iov_len) {
			r -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= r;
		}
	}
}

static void read_secrets(void)
{
	read_full(0, key, sizeof(key), "the key on stdin");
	read_full(0, session, sizeof(session), "the session on stdin");
}

/* Seals and sends one frame; payload is encrypted into out. */
static void send_frame(int fd, uint32_t kind, uint64_t addr, uint32_t pages,
		       const uint8_t *payload, uint8_t *out, size_t n)
{
	struct frame_head h = { .addr = addr, .pages = pages, .kind = kind };
	uint8_t nonce[16], tag[16];
	struct iovec iov[3] = {
		{ &h, sizeof(h) }, { out, n }, { tag, sizeof(tag) },
	};

	uint64_t t0 = now_us(), t1;

	nonce_of(seq++, nonce);
	aegis_seal(key, nonce, (uint8_t *)&h, sizeof(h), out, payload, n, tag);
	t1 = now_us();
	writev_full(fd, iov, 3, "sending pages");
	spent.seal += t1 - t0;
	spent.net += now_us() - t1;
}

/* Receives one frame into buf (at most cap bytes of payload); returns its length. */
static size_t recv_frame(int fd, struct frame_head *h, uint8_t *buf, size_t cap)
{
	uint8_t nonce[16], tag[16];
	size_t n;

	uint64_t t0 = now_us(), t1;

	read_full(fd, h, sizeof(*h), "receiving pages");
	if (h->kind == KIND_PAGES || h->kind == KIND_HELD) {
		if (h->pages < 1 || h->pages > FRAME_PAGES)
			die("a frame of %u pages (1..%u)", h->pages, FRAME_PAGES);
		n = (size_t)h->pages * PAGE;
	} else if (h->kind == KIND_HELLO || h->kind == KIND_END || h->kind == KIND_FREEZE) {
		if (h->pages || h->addr)
			die("a malformed frame of kind %u", h->kind);
		n = 32;
	} else {
		die("a frame of unknown kind %u", h->kind);
	}
	if (n > cap)
		die("a frame larger than its buffer");
	read_full(fd, buf, n, "receiving pages");
	read_full(fd, tag, sizeof(tag), "receiving pages");
	t1 = now_us();
	nonce_of(seq++, nonce);
	if (aegis_open(key, nonce, (uint8_t *)h, sizeof(*h), buf, buf, n, tag))
		die("frame %llu failed its check: altered, or not from the source",
		    (unsigned long long)(seq - 1));
	spent.net += t1 - t0;
	spent.seal += now_us() - t1;
	return n;
}

static int parse_addr(const char *s, struct sockaddr_in *a)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	return inet_pton(AF_INET, s, &a->sin_addr) == 1 ? 0 : -1;
}

static long long num_arg(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 0);
	if (errno || *end || v < lo || v > hi) {
		fprintf(stderr, "ppm-pagestream: bad %s: %s\n", what, s);
		exit(EXIT_USAGE);
	}
	return v;
}

/*
 * Buffers of 4 MiB, so that sealing, sending and receiving overlap: forced
 * (the agent is root), since SO_SNDBUF and SO_RCVBUF are capped at
 * wmem_max and rmem_max (200 KiB by default) and switch the kernel's own
 * tuning off. Without the right to force them, the kernel's tuning stays.
 */
static void tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- send ---- */

struct sender {
	int sock, mem;
	pid_t pid;
	uint8_t *data, *out;
	uint64_t frames, pages;
};

/* Reads pages of the process into s->data; -1 when some cannot be read. */
static int read_pages(struct sender *s, uint64_t addr, uint32_t pages)
{
	size_t n = (size_t)pages * PAGE, got = 0;
	struct iovec local = { s->data, n };
	struct iovec remote = { (void *)(uintptr_t)addr, n };
	ssize_t r = process_vm_readv(s->pid, &local, 1, &remote, 1, 0);

	if (r > 0)
		got = r;
	/* /proc/PID/mem reads through FOLL_FORCE what it cannot (no read permission). */
	while (got < n) {
		r = pread(s->mem, s->data + got, n - got, (off_t)(addr + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

static int zero_page(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned int i;

	for (i = 0; i < PAGE / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static void send_run(struct sender *s, uint32_t kind, uint64_t addr, uint32_t first,
		     uint32_t count)
{
	while (count) {
		uint32_t k = count < FRAME_PAGES ? count : FRAME_PAGES;
		size_t off = (size_t)first * PAGE;

		send_frame(s->sock, kind, addr + off, k, s->data + off, s->out + off,
			   (size_t)k * PAGE);
		if (kind == KIND_PAGES) {
			s->frames++;
			s->pages += k;
		}
		first += k;
		count -= k;
	}
}

static void serve_request(struct sender *s, uint32_t op, uint64_t addr, uint32_t pages)
{
	uint32_t kind = op == OP_HELD ? KIND_HELD : KIND_PAGES;
	uint8_t bits[REQ_PAGES / 8];
	uint32_t head[3] = { op, pages, 0 };
	uint32_t i, run = 0;
	int in_run = 0;
	struct iovec iov[2] = { { head, sizeof(head) }, { bits, (pages + 7) / 8 } };

	if (pages < 1 || pages > REQ_PAGES || addr % PAGE || addr >= USER_TOP ||
	    USER_TOP - addr < (uint64_t)pages * PAGE)
		die("a bad request: 0x%llx, %u pages", (unsigned long long)addr, pages);
	uint64_t t0 = now_us();
	int unreadable;

	memset(bits, 0, sizeof(bits));
	unreadable = read_pages(s, addr, pages);
	spent.read += now_us() - t0;
	if (unreadable) {
		if (op != OP_HELD)
			die("cannot read the process's pages at 0x%llx: %s",
			    (unsigned long long)addr, strerror(errno));
		/* The process runs: unmapped meanwhile, say. */
		head[2] = 1;
		writev_full(1, iov, 2, "answering");
		return;
	}
	for (i = 0; i < pages; i++) {
		int zero = zero_page(s->data + (size_t)i * PAGE);

		if (zero)
			bits[i / 8] |= 1u << (i % 8);
		if (!zero && !in_run) {
			run = i;
			in_run = 1;
		} else if (zero && in_run) {
			send_run(s, kind, addr, run, i - run);
			in_run = 0;
		}
	}
	if (in_run)
		send_run(s, kind, addr, run, pages - run);
	writev_full(1, iov, 2, "answering");
}

static void connect_to(struct sender *s, const char *host, struct sockaddr_in *to)
{
	int err = 0;
	socklen_t l = sizeof(err);

	s->sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->sock < 0)
		die("socket: %s", strerror(errno));
	tune(s->sock);
	if (connect(s->sock, (struct sockaddr *)to, sizeof(*to)) && errno != EINPROGRESS)
		die("cannot connect to %s:%u: %s", host, ntohs(to->sin_port), strerror(errno));
	await_fd(s->sock, POLLOUT, "connecting");
	getsockopt(s->sock, SOL_SOCKET, SO_ERROR, &err, &l);
	if (err)
		die("cannot connect to %s:%u: %s", host, ntohs(to->sin_port), strerror(err));
}

/* A 32-byte control payload: the session, the magic, the version and a value. */
static void control(struct sender *s, uint32_t kind, uint64_t value)
{
	uint8_t p[32], buf[32];

	memset(p, 0, sizeof(p));
	memcpy(p, session, 16);
	put32(p + 16, HELLO_MAGIC);
	put32(p + 20, HELLO_VERSION);
	memcpy(p + 24, &value, 8);
	send_frame(s->sock, kind, 0, 0, p, buf, sizeof(p));
}

static int do_send(int argc, char **argv)
{
	struct sockaddr_in to;
	struct sender s = { .sock = -1 };
	const char *host = NULL;
	long long port = -1;
	int frozen = 0, i;
	char path[64];

	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--to"))
			host = argv[i + 1];
		else if (!strcmp(argv[i], "--port"))
			port = num_arg(argv[i + 1], 1, 65535, "port");
		else if (!strcmp(argv[i], "--pid"))
			s.pid = num_arg(argv[i + 1], 1, 0x3fffffff, "pid");
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = num_arg(argv[i + 1], 1, 3600000, "timeout");
		else
			return EXIT_USAGE;
	}
	if (!host || port < 0 || !s.pid || parse_addr(host, &to))
		return EXIT_USAGE;
	to.sin_port = htons(port);
	read_secrets();
	snprintf(path, sizeof(path), "/proc/%d/mem", s.pid);
	s.mem = open(path, O_RDONLY | O_CLOEXEC);
	if (s.mem < 0)
		die("cannot open %s: %s", path, strerror(errno));
	s.data = aligned_alloc(PAGE, (size_t)REQ_PAGES * PAGE);
	s.out = aligned_alloc(PAGE, (size_t)REQ_PAGES * PAGE);
	if (!s.data || !s.out)
		die("out of memory");
	connect_to(&s, host, &to);
	control(&s, KIND_HELLO, 0);
	for (;;) {
		struct { uint64_t arg; uint32_t pages, op; } req;
		uint64_t t0 = now_us();

		read_full(0, &req, sizeof(req), "requests on stdin");
		spent.wait += now_us() - t0;
		if (req.op == OP_END)
			break;
		if (req.op == OP_FREEZE && !frozen) {
			if (req.arg > 1u << 20)
				die("%llu mappings", (unsigned long long)req.arg);
			control(&s, KIND_FREEZE, req.arg);
			frozen = 1;
		} else if ((req.op == OP_HELD && !frozen) || (req.op == OP_PAGES && frozen)) {
			serve_request(&s, req.op, req.arg, req.pages);
		} else {
			die("request %u out of turn", req.op);
		}
	}
	if (!frozen)
		die("the end before the freeze");
	{
		uint8_t p[32], buf[32];
		struct { uint32_t tag, frames; uint64_t pages; } done = {
			END_TAG, (uint32_t)s.frames, s.pages,
		};
		struct iovec iov = { &done, sizeof(done) };

		memset(p, 0, sizeof(p));
		memcpy(p, &s.frames, 8);
		memcpy(p + 8, &s.pages, 8);
		send_frame(s.sock, KIND_END, 0, 0, p, buf, sizeof(p));
		shutdown(s.sock, SHUT_WR);
		fprintf(stderr, "stats read %llu seal %llu net %llu wait %llu\n",
			(unsigned long long)spent.read, (unsigned long long)spent.seal,
			(unsigned long long)spent.net, (unsigned long long)spent.wait);
		fflush(stderr);
		writev_full(1, &iov, 1, "answering");
	}
	return EXIT_OK;
}

/* ---- recv ---- */

static int accept_from(int l, const struct sockaddr_in *from)
{
	for (;;) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		int c;

		await_fd(l, POLLIN, "waiting for the source");
		c = accept4(l, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			die("accept: %s", strerror(errno));
		}
		if (peer.sin_addr.s_addr == from->sin_addr.s_addr)
			return c;
		close(c); /* not the source: it is not waited for */
	}
}

/* Writes the iovecs at offset `at` of fd, all of them; returns the offset after. */
static off_t pwrite_all(int fd, struct iovec *iov, int cnt, off_t at, const char *what)
{
	int i;

	for (;;) {
		size_t left = 0;
		ssize_t w;

		for (i = 0; i < cnt; i++)
			left += iov[i].iov_len;
		if (!left)
			return at;
		w = pwritev(fd, iov, cnt, at);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("cannot write %s: %s", what, w ? strerror(errno) : "no room");
		at += w;
		for (i = 0; i < cnt; i++) {
			size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

			iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			w -= k;
		}
	}
}

#define MAX_ROOMS 64

struct receiver {
	int sock, plan, store;
	long long head, vma_bytes, max_pages, max_held;
	uint8_t *buf;
	uint64_t frames, pages, held, vmas;
	off_t plan_at, store_at;
	/* The vessel (the restore stub started ahead) and its rooms, [start, end). */
	pid_t vessel;
	unsigned int nrooms;
	uint64_t rooms[MAX_ROOMS][2];
};

/* A 32-byte control payload must name this session, magic and version. */
static uint64_t control_value(const uint8_t *p, const char *what)
{
	uint64_t v;

	if (memcmp(p, session, 16) || get32(p + 16) != HELLO_MAGIC ||
	    get32(p + 20) != HELLO_VERSION)
		die("the source's %s is not for this migration", what);
	memcpy(&v, p + 24, 8);
	return v;
}

static void check_run(struct receiver *r, const struct frame_head *h, size_t n)
{
	if (h->addr % PAGE || h->addr >= USER_TOP || USER_TOP - h->addr < n)
		die("pages at 0x%llx: outside user space", (unsigned long long)h->addr);
}

/*
 * Writes a pre-copy run into the vessel, where it will be at the restore,
 * when one of its rooms holds all of it; true when all of it was written.
 * Anything else (no vessel, outside the rooms, the vessel gone) goes to the
 * store: its copy there is the one the restore uses.
 */
static int place(struct receiver *r, uint64_t addr, size_t n)
{
	struct iovec local = { r->buf, n };
	struct iovec remote = { (void *)(uintptr_t)addr, n };
	unsigned int i;

	if (!r->vessel)
		return 0;
	for (i = 0; i < r->nrooms; i++)
		if (addr >= r->rooms[i][0] && addr < r->rooms[i][1] && n <= r->rooms[i][1] - addr)
			break;
	if (i == r->nrooms)
		return 0;
	return process_vm_writev(r->vessel, &local, 1, &remote, 1, 0) == (ssize_t)n;
}

/* A pre-copy round's pages: into the vessel, or appended to the store. */
static void take_held(struct receiver *r, const struct frame_head *h, size_t n)
{
	struct iovec iov = { r->buf, n };
	off_t at = r->store_at;

	if (r->store < 0)
		die("pre-copy pages, and no pre-copy was agreed");
	check_run(r, h, n);
	if (r->held + h->pages > (uint64_t)r->max_held)
		die("more than the %lld pre-copy pages allowed", r->max_held);
	uint64_t t0 = now_us();

	if (place(r, h->addr, n)) {
		spent.write += now_us() - t0;
		r->held += h->pages;
		printf("placed %llu %u\n", (unsigned long long)h->addr, h->pages);
		return;
	}
	r->store_at = pwrite_all(r->store, &iov, 1, at, "the pre-copy store");
	spent.write += now_us() - t0;
	r->held += h->pages;
	printf("held %llu %u %lld\n", (unsigned long long)h->addr, h->pages, (long long)at);
}

/* A frozen run: into the plan, after its header and mappings. */
static void take_run(struct receiver *r, const struct frame_head *h, size_t n)
{
	struct plan_run run = { .start = h->addr, .nr_pages = h->pages };
	struct iovec iov[2] = { { &run, sizeof(run) }, { r->buf, n } };

	check_run(r, h, n);
	if (r->pages + h->pages > (uint64_t)r->max_pages)
		die("more than the %lld pages announced", r->max_pages);
	uint64_t t0 = now_us();

	r->plan_at = pwrite_all(r->plan, iov, 2, r->plan_at, "the plan");
	spent.write += now_us() - t0;
	r->frames++;
	r->pages += h->pages;
	printf("run %llu %u\n", (unsigned long long)h->addr, h->pages);
}

/* Frames from the hello to the end, in their order: HELD*, FREEZE, PAGES*, END. */
static void receive(struct receiver *r, int before_freeze_ms)
{
	int step = timeout_ms, frozen = 0;
	struct frame_head h;

	for (;;) {
		size_t n;

		timeout_ms = frozen ? step : before_freeze_ms;
		n = recv_frame(r->sock, &h, r->buf, (size_t)FRAME_PAGES * PAGE);
		if (h.kind == KIND_HELD && !frozen) {
			take_held(r, &h, n);
		} else if (h.kind == KIND_FREEZE && !frozen) {
			r->vmas = control_value(r->buf, "freeze");
			if (r->vmas > 1u << 20)
				die("the freeze names %llu mappings", (unsigned long long)r->vmas);
			r->plan_at = r->head + (off_t)r->vmas * r->vma_bytes;
			frozen = 1;
		} else if (h.kind == KIND_PAGES && frozen) {
			take_run(r, &h, n);
		} else if (h.kind == KIND_END && frozen) {
			uint64_t f, p;

			memcpy(&f, r->buf, 8);
			memcpy(&p, r->buf + 8, 8);
			if (f != r->frames || p != r->pages)
				die("the source sent %llu frames (%llu pages), %llu (%llu) arrived",
				    (unsigned long long)f, (unsigned long long)p,
				    (unsigned long long)r->frames, (unsigned long long)r->pages);
			return;
		} else {
			die("a frame of kind %u out of turn", h.kind);
		}
	}
}

/* Reads n bytes within the timeout; -1 on an error, the end, or the time up. */
static int try_read(int fd, uint8_t *p, size_t n)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN) {
			if (poll(&pf, 1, timeout_ms) <= 0)
				return -1;
			continue;
		}
		if (r <= 0)
			return -1;
		p += r;
		n -= r;
	}
	return 0;
}

#define MAX_INTERLOPERS 16

/*
 * The source's connection: the first from its address whose first frame is
 * its hello, sealed under the key and naming the session. Others (another
 * process on the source's node that found the port first) are closed, and
 * the wait goes on, a few times at most: they cannot stop a migration.
 */
static int take_source(int l, const struct sockaddr_in *from, uint8_t *buf)
{
	int tries;

	for (tries = 0; tries < MAX_INTERLOPERS; tries++) {
		int c = accept_from(l, from);
		struct frame_head h;
		uint8_t nonce[16], tag[16];

		tune(c);
		nonce_of(0, nonce);
		if (!try_read(c, (uint8_t *)&h, sizeof(h)) && h.kind == KIND_HELLO && !h.pages &&
		    !h.addr && !try_read(c, buf, 32) && !try_read(c, tag, sizeof(tag)) &&
		    !aegis_open(key, nonce, (uint8_t *)&h, sizeof(h), buf, buf, 32, tag) &&
		    !memcmp(buf, session, 16) && get32(buf + 16) == HELLO_MAGIC &&
		    get32(buf + 20) == HELLO_VERSION) {
			seq = 1;
			return c;
		}
		fprintf(stderr, "ppm-pagestream: a connection without the migration's hello, closed\n");
		close(c);
	}
	die("frame 0 failed its check %d times: no hello from the source", MAX_INTERLOPERS);
	return -1;
}

/* `--room START-END` (hex, page aligned, in user space); -1 when malformed or too many. */
static int room_arg(struct receiver *r, const char *s)
{
	unsigned long long a, b;
	int n = 0;

	if (r->nrooms == MAX_ROOMS || sscanf(s, "%llx-%llx%n", &a, &b, &n) != 2 || s[n] ||
	    a % PAGE || b % PAGE || a >= b || b > USER_TOP)
		return -1;
	r->rooms[r->nrooms][0] = a;
	r->rooms[r->nrooms][1] = b;
	r->nrooms++;
	return 0;
}

static int do_recv(int argc, char **argv)
{
	struct receiver r = { .store = -1, .head = -1, .vma_bytes = -1, .max_pages = -1 };
	struct sockaddr_in bind_to, from;
	const char *bind_s = NULL, *from_s = NULL, *plan = NULL, *store = NULL;
	int hello_ms = -1, i, l;
	socklen_t len = sizeof(bind_to);

	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--bind"))
			bind_s = argv[i + 1];
		else if (!strcmp(argv[i], "--from"))
			from_s = argv[i + 1];
		else if (!strcmp(argv[i], "--plan"))
			plan = argv[i + 1];
		else if (!strcmp(argv[i], "--store"))
			store = argv[i + 1];
		else if (!strcmp(argv[i], "--plan-head"))
			r.head = num_arg(argv[i + 1], 1, 1 << 20, "plan head");
		else if (!strcmp(argv[i], "--plan-vma"))
			r.vma_bytes = num_arg(argv[i + 1], 1, 4096, "plan mapping size");
		else if (!strcmp(argv[i], "--hello-timeout-ms"))
			hello_ms = num_arg(argv[i + 1], 1, 86400000, "hello timeout");
		else if (!strcmp(argv[i], "--max-pages"))
			r.max_pages = num_arg(argv[i + 1], 0, 1ll << 36, "max pages");
		else if (!strcmp(argv[i], "--store-offset"))
			r.store_at = num_arg(argv[i + 1], 0, 1ll << 50, "store offset");
		else if (!strcmp(argv[i], "--max-held"))
			r.max_held = num_arg(argv[i + 1], 0, 1ll << 36, "max held pages");
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = num_arg(argv[i + 1], 1, 3600000, "timeout");
		else if (!strcmp(argv[i], "--vessel"))
			r.vessel = num_arg(argv[i + 1], 1, 0x3fffffff, "vessel pid");
		else if (!strcmp(argv[i], "--room") && room_arg(&r, argv[i + 1]))
			return EXIT_USAGE;
		else if (strcmp(argv[i], "--room"))
			return EXIT_USAGE;
	}
	if (!bind_s || !from_s || !plan || r.head < 0 || r.vma_bytes < 0 || r.max_pages < 0 ||
	    r.store_at % PAGE || (r.vessel && !store) ||
	    parse_addr(bind_s, &bind_to) || parse_addr(from_s, &from))
		return EXIT_USAGE;
	read_secrets();
	r.plan = open(plan, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (r.plan < 0)
		die("cannot open the plan %s: %s", plan, strerror(errno));
	if (store) {
		r.store = open(store, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
		if (r.store < 0)
			die("cannot open the store %s: %s", store, strerror(errno));
	}
	r.buf = aligned_alloc(PAGE, (size_t)FRAME_PAGES * PAGE);
	if (!r.buf)
		die("out of memory");
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&bind_to, sizeof(bind_to)) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&bind_to, &len))
		die("cannot listen on %s: %s", bind_s, strerror(errno));
	printf("port %u\n", ntohs(bind_to.sin_port));
	fflush(stdout);
	r.sock = take_source(l, &from, r.buf);
	close(l);
	/* Pre-copy rounds run before the freeze: their pauses may be long. */
	receive(&r, hello_ms > 0 ? hello_ms : timeout_ms);
	printf("stats net %llu open %llu write %llu\n", (unsigned long long)spent.net,
	       (unsigned long long)spent.seal, (unsigned long long)spent.write);
	printf("end %llu %llu %llu %lld\n", (unsigned long long)r.frames,
	       (unsigned long long)r.pages, (unsigned long long)r.vmas, (long long)r.plan_at);
	fflush(stdout);
	return EXIT_OK;
}

/* ---- selftest: the draft's AEGIS-128L test vectors ---- */

static void hex(const char *s, uint8_t *out, size_t *n)
{
	size_t i;

	*n = strlen(s) / 2;
	for (i = 0; i < *n; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
}

static int vector(const char *k, const char *nn, const char *ad, const char *msg,
		  const char *ct, const char *tag, int valid)
{
	uint8_t kb[16], nb[16], ab[64], mb[64], cb[64], tb[16], out[64], t[16];
	size_t kl, nl, al, ml, cl, tl;

	hex(k, kb, &kl);
	hex(nn, nb, &nl);
	hex(ad, ab, &al);
	hex(msg, mb, &ml);
	hex(ct, cb, &cl);
	hex(tag, tb, &tl);
	if (valid) {
		aegis_seal(kb, nb, ab, al, out, mb, ml, t);
		if (memcmp(out, cb, cl) || memcmp(t, tb, 16))
			return -1;
	}
	return aegis_open(kb, nb, ab, al, out, cb, cl, tb) == (valid ? 0 : -1) ? 0 : -1;
}

static int selftest(void)
{
	static const char *k = "10010000000000000000000000000000";
	static const char *n = "10000200000000000000000000000000";
	int bad = 0;

	bad |= vector(k, n, "", "00000000000000000000000000000000",
		      "c1c0e58bd913006feba00f4b3cc3594e", "abe0ece80c24868a226a35d16bdae37a", 1);
	bad |= vector(k, n, "", "", "", "c2b879a67def9d74e6c14f708bbcc9b4", 1);
	bad |= vector(k, n, "0001020304050607",
		      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		      "79d94593d8c2119d7e8fd9b8fc77845c5c077a05b2528b6ac54b563aed8efe84",
		      "cc6f3372f6aa1bb82388d695c3962d9a", 1);
	bad |= vector(k, n, "0001020304050607", "000102030405060708090a0b0c0d",
		      "79d94593d8c2119d7e8fd9b8fc77", "5c04b3dba849b2701effbe32c7f0fab7", 1);
	bad |= vector(k, n,
		      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829",
		      "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637",
		      "b31052ad1cca4e291abcf2df3502e6bdb1bfd6db36798be3607b1f94d34478aa7ede7f7a990fec10",
		      "7542a745733014f9474417b337399507", 1);
	bad |= vector(n, k, "0001020304050607", "", "79d94593d8c2119d7e8fd9b8fc77",
		      "5c04b3dba849b2701effbe32c7f0fab7", 0);
	bad |= vector(k, n, "0001020304050607", "", "79d94593d8c2119d7e8fd9b8fc78",
		      "5c04b3dba849b2701effbe32c7f0fab7", 0);
	bad |= vector(k, n, "0001020304050608", "", "79d94593d8c2119d7e8fd9b8fc77",
		      "5c04b3dba849b2701effbe32c7f0fab7", 0);
	bad |= vector(k, n, "0001020304050607", "", "79d94593d8c2119d7e8fd9b8fc77",
		      "6c04b3dba849b2701effbe32c7f0fab8", 0);
	puts(bad ? "AEGIS-128L test vectors: FAILED" : "AEGIS-128L test vectors: ok");
	return bad ? EXIT_FAIL : EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return EXIT_USAGE;
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("aes") || !__builtin_cpu_supports("sse4.1")) {
		fputs("ppm-pagestream: this CPU has no AES instructions\n", stderr);
		return EXIT_NO_AES;
	}
	if (!strcmp(argv[1], "selftest"))
		return selftest();
	if (!strcmp(argv[1], "send"))
		return do_send(argc, argv);
	if (!strcmp(argv[1], "recv"))
		return do_recv(argc, argv);
	return EXIT_USAGE;
}
