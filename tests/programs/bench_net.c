// SPDX-License-Identifier: GPL-2.0
/*
 * bench_net: the benchmark's (bench/) plain TCP tools, small enough to
 * start fast in a TCG guest. Every mode ends within 300 s (alarm).
 *
 *   bench_net serve PORT          accept one connection, send it stdin, close
 *   bench_net fetch HOST PORT [WAIT_S]
 *                                 connect (retrying up to WAIT_S s, default 30),
 *                                 copy to stdout; prints on stderr
 *                                 `fetched bytes=<n> us=<connected to end>`
 *   bench_net sink PORT           accept one connection, read it to the end;
 *                                 prints `sink bytes=<n> us=<first byte to end>`
 *   bench_net blast HOST PORT MIB connect, send MIB MiB, half-close, wait for
 *                                 the peer's end; prints `blast bytes=<n> us=<n>`
 *
 * serve + fetch carry CRIU's images between guests (tar | serve, fetch |
 * tar); sink + blast measure the link's raw throughput.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

static char buf[1 << 16];

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static long port_arg(const char *s)
{
	long port = strtol(s, NULL, 10);

	CHECK(port > 0 && port < 65536, "bad PORT '%s'", s);
	return port;
}

static int accept_one(long port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0), c;

	CHECK(l >= 0, "socket: %s", strerror(errno));
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %ld: %s", port,
	      strerror(errno));
	CHECK(listen(l, 1) == 0, "listen: %s", strerror(errno));
	do
		c = accept(l, NULL, NULL);
	while (c < 0 && errno == EINTR);
	CHECK(c >= 0, "accept: %s", strerror(errno));
	close(l);
	return c;
}

static int connect_to(const char *host, long port, long wait_s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

	CHECK(inet_aton(host, &a.sin_addr), "bad HOST '%s'", host);
	for (long tries = 0; tries < wait_s * 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		CHECK(fd >= 0, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		CHECK(errno == ECONNREFUSED || errno == EINTR || errno == ETIMEDOUT,
		      "connect %s:%ld: %s", host, port, strerror(errno));
		close(fd);
		sleep_ms(10);
	}
	fail("connect %s:%ld: nobody listened within %ld s", host, port, wait_s);
}

/* Copies from `in` to `out` until end of file; returns the bytes copied. */
static unsigned long long copy(int in, int out)
{
	unsigned long long total = 0;

	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n >= 0, "read: %s", strerror(errno));
		if (n == 0)
			return total;
		CHECK(write_all(out, buf, (size_t)n) == 0, "write: %s", strerror(errno));
		total += (unsigned long long)n;
	}
}

int main(int argc, char **argv)
{
	*prog_name_slot() = "bench_net";
	signal(SIGPIPE, SIG_IGN);
	alarm(600);
	if (argc == 3 && !strcmp(argv[1], "serve")) {
		int c = accept_one(port_arg(argv[2]));
		unsigned long long n = copy(0, c);

		CHECK(close(c) == 0, "close: %s", strerror(errno));
		out("served bytes=%llu\n", n);
		return 0;
	}
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "fetch")) {
		long wait_s = argc == 5 ? strtol(argv[4], NULL, 10) : 30;
		int c;
		double t0;
		unsigned long long n;
		char line[128];
		int len;

		CHECK(wait_s > 0 && wait_s <= 540, "bad WAIT_S '%s'", argv[4]);
		c = connect_to(argv[2], port_arg(argv[3]), wait_s);
		t0 = now_us();
		n = copy(c, 1);
		len = snprintf(line, sizeof(line), "fetched bytes=%llu us=%.0f\n", n, now_us() - t0);
		write_all(2, line, (size_t)len);
		close(c);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "sink")) {
		int c = accept_one(port_arg(argv[2]));
		unsigned long long total = 0;
		double first = 0;

		for (;;) {
			ssize_t n = read(c, buf, sizeof(buf));

			if (n < 0 && errno == EINTR)
				continue;
			CHECK(n >= 0, "read: %s", strerror(errno));
			if (n == 0)
				break;
			if (total == 0)
				first = now_us();
			total += (unsigned long long)n;
		}
		out("sink bytes=%llu us=%.0f\n", total, total ? now_us() - first : 0.0);
		close(c);
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "blast")) {
		long mib = strtol(argv[4], NULL, 10);
		int c = connect_to(argv[2], port_arg(argv[3]), 30);
		double t0;

		CHECK(mib > 0 && mib <= 65536, "bad MIB '%s'", argv[4]);
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (char)mix64(i);
		t0 = now_us();
		for (long i = 0; i < mib * 16; i++)
			CHECK(write_all(c, buf, sizeof(buf)) == 0, "write: %s", strerror(errno));
		CHECK(shutdown(c, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
		/* The peer closes once it read everything. */
		while (read(c, buf, sizeof(buf)) > 0)
			;
		out("blast bytes=%llu us=%.0f\n", (unsigned long long)mib << 20, now_us() - t0);
		close(c);
		return 0;
	}
	{
		const char *u = "usage: bench_net serve PORT | fetch HOST PORT [WAIT_S] | sink PORT | "
				"blast HOST PORT MIB\n";

		write_all(2, u, strlen(u));
	}
	return 2;
}
