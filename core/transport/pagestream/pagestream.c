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
 *                       --plan-vma V --max-pages N [--timeout-ms T]
 *                       [--hello-timeout-ms T]
 *
 * Both read the 16-byte key and the 16-byte session id on stdin first.
 *
 * send: connects at once (before the process is frozen); then reads a u32
 * on stdin, the mappings the restore plan recreates, and sends its hello
 * with it; then reads requests on stdin, 16 bytes each: u64 address, u32
 * pages (1..1024; 0 ends), u32 tag. It reads those pages of PID
 * (process_vm_readv, /proc/PID/mem for what that cannot read), leaves out
 * the ones that hold only zeros, sends the others, and answers each request
 * on stdout: u32 tag, u32 pages, then one bit per page (set: zeros, not
 * sent). The end request is answered with u32 0xffffffff, u32 frames, u64
 * pages sent.
 *
 * recv: prints "port P" once it listens; takes one connection from ADDR
 * (others are closed); waits for its hello (--hello-timeout-ms: the
 * pre-copy rounds come first); writes each run of pages into the plan from
 * offset H + VMAS * V, after the header and the mappings the hello names
 * (struct ppm_plan_run, then the pages), printing
 * "run ADDRESS PAGES"; at the sender's end frame prints
 * "end FRAMES PAGES VMAS OFFSET" and exits 0. Anything wrong: a line on
 * stderr and exit 1.
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
#define HELLO_MAGIC 0x50504d50u /* "PMPP" */
#define HELLO_VERSION 1u
#define END_TAG 0xffffffffu

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

	nonce_of(seq++, nonce);
	aegis_seal(key, nonce, (uint8_t *)&h, sizeof(h), out, payload, n, tag);
	writev_full(fd, iov, 3, "sending pages");
}

/* Receives one frame into buf (at most cap bytes of payload); returns its length. */
static size_t recv_frame(int fd, struct frame_head *h, uint8_t *buf, size_t cap)
{
	uint8_t nonce[16], tag[16];
	size_t n;

	read_full(fd, h, sizeof(*h), "receiving pages");
	if (h->kind == KIND_PAGES) {
		if (h->pages < 1 || h->pages > FRAME_PAGES)
			die("a frame of %u pages (1..%u)", h->pages, FRAME_PAGES);
		n = (size_t)h->pages * PAGE;
	} else if (h->kind == KIND_HELLO || h->kind == KIND_END) {
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
	nonce_of(seq++, nonce);
	if (aegis_open(key, nonce, (uint8_t *)h, sizeof(*h), buf, buf, n, tag))
		die("frame %llu failed its check: altered, or not from the source",
		    (unsigned long long)(seq - 1));
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

static void tune(int fd)
{
	int one = 1, buf = 4 << 20;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- send ---- */

struct sender {
	int sock, mem;
	pid_t pid;
	uint8_t *data, *out;
	uint64_t frames, pages;
};

static void read_pages(struct sender *s, uint64_t addr, uint32_t pages)
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
			die("cannot read the process's page at 0x%llx: %s",
			    (unsigned long long)(addr + got), r ? strerror(errno) : "end of memory");
		got += r;
	}
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

static void send_run(struct sender *s, uint64_t addr, uint32_t first, uint32_t count)
{
	while (count) {
		uint32_t k = count < FRAME_PAGES ? count : FRAME_PAGES;
		size_t off = (size_t)first * PAGE;

		send_frame(s->sock, KIND_PAGES, addr + off, k, s->data + off, s->out + off,
			   (size_t)k * PAGE);
		s->frames++;
		s->pages += k;
		first += k;
		count -= k;
	}
}

static void serve_request(struct sender *s, uint64_t addr, uint32_t pages, uint32_t tag)
{
	uint8_t bits[REQ_PAGES / 8];
	uint32_t head[2] = { tag, pages };
	uint32_t i, run = 0;
	int in_run = 0;
	struct iovec iov[2] = { { head, sizeof(head) }, { bits, (pages + 7) / 8 } };

	if (pages > REQ_PAGES || addr % PAGE || addr >= USER_TOP ||
	    USER_TOP - addr < (uint64_t)pages * PAGE)
		die("a bad request: 0x%llx, %u pages", (unsigned long long)addr, pages);
	read_pages(s, addr, pages);
	memset(bits, 0, sizeof(bits));
	for (i = 0; i < pages; i++) {
		int zero = zero_page(s->data + (size_t)i * PAGE);

		if (zero)
			bits[i / 8] |= 1u << (i % 8);
		if (!zero && !in_run) {
			run = i;
			in_run = 1;
		} else if (zero && in_run) {
			send_run(s, addr, run, i - run);
			in_run = 0;
		}
	}
	if (in_run)
		send_run(s, addr, run, pages - run);
	writev_full(1, iov, 2, "answering");
}

static int do_send(int argc, char **argv)
{
	struct sockaddr_in to;
	struct sender s = { .sock = -1 };
	const char *host = NULL;
	long long port = -1;
	uint32_t vmas;
	uint8_t hello[32], buf[32];
	char path[64];
	int i;

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
	s.sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s.sock < 0)
		die("socket: %s", strerror(errno));
	tune(s.sock);
	if (connect(s.sock, (struct sockaddr *)&to, sizeof(to)) && errno != EINPROGRESS)
		die("cannot connect to %s:%lld: %s", host, port, strerror(errno));
	await_fd(s.sock, POLLOUT, "connecting");
	{
		int err = 0;
		socklen_t l = sizeof(err);

		getsockopt(s.sock, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err)
			die("cannot connect to %s:%lld: %s", host, port, strerror(err));
	}
	read_full(0, &vmas, sizeof(vmas), "the mappings on stdin");
	memset(hello, 0, sizeof(hello));
	memcpy(hello, session, 16);
	put32(hello + 16, HELLO_MAGIC);
	put32(hello + 20, HELLO_VERSION);
	put32(hello + 24, vmas);
	send_frame(s.sock, KIND_HELLO, 0, 0, hello, buf, sizeof(hello));
	for (;;) {
		struct { uint64_t addr; uint32_t pages, tag; } req;

		read_full(0, &req, sizeof(req), "requests on stdin");
		if (!req.pages)
			break;
		serve_request(&s, req.addr, req.pages, req.tag);
	}
	memset(hello, 0, sizeof(hello));
	memcpy(hello, &s.frames, 8);
	memcpy(hello + 8, &s.pages, 8);
	send_frame(s.sock, KIND_END, 0, 0, hello, buf, sizeof(hello));
	{
		struct { uint32_t tag, frames; uint64_t pages; } done = {
			END_TAG, (uint32_t)s.frames, s.pages,
		};
		struct iovec iov = { &done, sizeof(done) };

		shutdown(s.sock, SHUT_WR);
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

static int do_recv(int argc, char **argv)
{
	struct sockaddr_in bind_to, from;
	const char *bind_s = NULL, *from_s = NULL, *plan = NULL;
	long long offset, head = -1, vma_bytes = -1, max_pages = -1;
	int hello_ms = -1;
	uint64_t frames = 0, pages = 0, vmas;
	socklen_t len = sizeof(bind_to);
	struct frame_head h;
	uint8_t *buf;
	int i, l, c, fd;

	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--bind"))
			bind_s = argv[i + 1];
		else if (!strcmp(argv[i], "--from"))
			from_s = argv[i + 1];
		else if (!strcmp(argv[i], "--plan"))
			plan = argv[i + 1];
		else if (!strcmp(argv[i], "--plan-head"))
			head = num_arg(argv[i + 1], 1, 1 << 20, "plan head");
		else if (!strcmp(argv[i], "--plan-vma"))
			vma_bytes = num_arg(argv[i + 1], 1, 4096, "plan mapping size");
		else if (!strcmp(argv[i], "--hello-timeout-ms"))
			hello_ms = num_arg(argv[i + 1], 1, 86400000, "hello timeout");
		else if (!strcmp(argv[i], "--max-pages"))
			max_pages = num_arg(argv[i + 1], 0, 1ll << 36, "max pages");
		else if (!strcmp(argv[i], "--timeout-ms"))
			timeout_ms = num_arg(argv[i + 1], 1, 3600000, "timeout");
		else
			return EXIT_USAGE;
	}
	if (!bind_s || !from_s || !plan || head < 0 || vma_bytes < 0 || max_pages < 0 ||
	    parse_addr(bind_s, &bind_to) || parse_addr(from_s, &from))
		return EXIT_USAGE;
	read_secrets();
	fd = open(plan, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		die("cannot open the plan %s: %s", plan, strerror(errno));
	buf = aligned_alloc(PAGE, (size_t)FRAME_PAGES * PAGE);
	if (!buf)
		die("out of memory");
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&bind_to, sizeof(bind_to)) || listen(l, 4) ||
	    getsockname(l, (struct sockaddr *)&bind_to, &len))
		die("cannot listen on %s: %s", bind_s, strerror(errno));
	printf("port %u\n", ntohs(bind_to.sin_port));
	fflush(stdout);
	{
		int step = timeout_ms;

		timeout_ms = hello_ms > 0 ? hello_ms : step;
		c = accept_from(l, &from);
		close(l);
		tune(c);
		recv_frame(c, &h, buf, 32);
		timeout_ms = step;
	}
	if (h.kind != KIND_HELLO || memcmp(buf, session, 16) ||
	    get32(buf + 16) != HELLO_MAGIC || get32(buf + 20) != HELLO_VERSION)
		die("the source's first frame is not its hello for this migration");
	vmas = get32(buf + 24);
	if (vmas > 1u << 20)
		die("the hello names %llu mappings", (unsigned long long)vmas);
	offset = head + (long long)vmas * vma_bytes;
	for (;;) {
		struct plan_run run;
		struct iovec iov[2];
		size_t n = recv_frame(c, &h, buf, (size_t)FRAME_PAGES * PAGE);
		off_t at = offset;

		if (h.kind == KIND_END) {
			uint64_t f, p;

			memcpy(&f, buf, 8);
			memcpy(&p, buf + 8, 8);
			if (f != frames || p != pages)
				die("the source sent %llu frames (%llu pages), %llu (%llu) arrived",
				    (unsigned long long)f, (unsigned long long)p,
				    (unsigned long long)frames, (unsigned long long)pages);
			break;
		}
		if (h.kind != KIND_PAGES)
			die("a second hello");
		if (h.addr % PAGE || h.addr >= USER_TOP || USER_TOP - h.addr < n)
			die("pages at 0x%llx: outside user space", (unsigned long long)h.addr);
		if (pages + h.pages > (uint64_t)max_pages)
			die("more than the %lld pages announced", max_pages);
		run = (struct plan_run){ .start = h.addr, .nr_pages = h.pages };
		iov[0] = (struct iovec){ &run, sizeof(run) };
		iov[1] = (struct iovec){ buf, n };
		while (iov[0].iov_len + iov[1].iov_len) {
			ssize_t w = pwritev(fd, iov, 2, at);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("cannot write the plan: %s", w ? strerror(errno) : "no room");
			at += w;
			for (i = 0; i < 2; i++) {
				size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

				iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
				iov[i].iov_len -= k;
				w -= k;
			}
		}
		offset = at;
		frames++;
		pages += h.pages;
		printf("run %llu %u\n", (unsigned long long)h.addr, h.pages);
	}
	printf("end %llu %llu %llu %lld\n", (unsigned long long)frames,
	       (unsigned long long)pages, (unsigned long long)vmas, offset);
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
