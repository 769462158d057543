// SPDX-License-Identifier: GPL-2.0
/*
 * bench_stream: the TCP peer of the benchmark (bench/). Opens CONNS
 * connections to an echo server (echo_server.c) and streams a
 * deterministic byte sequence on each, at most KIB_PER_S KiB/s per
 * connection with at most 64 KiB in flight, checking every echoed byte in
 * order. It measures the stall a migration of the server causes: per
 * connection, the longest time without any echoed byte while bytes were
 * outstanding.
 *
 *   bench_stream HOST PORT CONNS SECONDS [KIB_PER_S]
 *
 * Streams for SECONDS, or until SIGUSR1; then half-closes every connection
 * and waits for the rest of the echo. Prints `ready <pid>`, one
 * `tick <s> sent=<n> recv=<n>` line per second, a
 * `stall <conn> ms=<ms>` line per connection at the end, and
 * `ok bench_stream conns=<n> bytes=<n> max_stall_ms=<ms>`. A wrong byte, a
 * reset, or no progress for 120 s is a FAIL.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#define WINDOW (64 * 1024)
#define MAX_CONNS 64

static volatile sig_atomic_t stop_now;

static void on_usr1(int sig)
{
	(void)sig;
	stop_now = 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint8_t pattern(int conn, uint64_t off)
{
	return (uint8_t)(mix64((off >> 3) ^ ((uint64_t)conn << 56)) >> ((off & 7) * 8));
}

struct conn {
	int fd;
	int done;
	uint64_t sent, recvd;
	double last_rx, max_stall;
};

int main(int argc, char **argv)
{
	static struct conn c[MAX_CONNS];
	static uint8_t buf[65536];
	struct pollfd p[MAX_CONNS];
	struct sockaddr_in a = { .sin_family = AF_INET };
	struct sigaction sa = { .sa_handler = on_usr1 };
	double start, rate, max_stall = 0;
	long conns, seconds, next_tick = 1;
	uint64_t total = 0;
	int closing = 0, one = 1;

	*prog_name_slot() = "bench_stream";
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGUSR1, &sa, NULL);
	if (argc != 5 && argc != 6) {
		const char *u = "usage: bench_stream HOST PORT CONNS SECONDS [KIB_PER_S]\n";

		write_all(2, u, strlen(u));
		return 2;
	}
	CHECK(inet_aton(argv[1], &a.sin_addr), "bad HOST '%s'", argv[1]);
	a.sin_port = htons((uint16_t)strtol(argv[2], NULL, 10));
	conns = strtol(argv[3], NULL, 10);
	seconds = strtol(argv[4], NULL, 10);
	rate = (argc == 6 ? strtod(argv[5], NULL) : 128) * 1024 / 1000; /* bytes per ms */
	CHECK(conns > 0 && conns <= MAX_CONNS, "bad CONNS '%s'", argv[3]);
	CHECK(seconds > 0 && rate > 0, "bad SECONDS or KIB_PER_S");
	for (long i = 0; i < conns; i++) {
		c[i].fd = socket(AF_INET, SOCK_STREAM, 0);
		CHECK(c[i].fd >= 0, "socket: %s", strerror(errno));
		CHECK(connect(c[i].fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect %s:%s: %s",
		      argv[1], argv[2], strerror(errno));
		setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	ready_line();
	start = now_ms();
	for (long i = 0; i < conns; i++)
		c[i].last_rx = start;

	for (;;) {
		double t = now_ms();
		long open = 0;
		int n;

		if (!closing && (stop_now || t - start >= seconds * 1000.0)) {
			for (long i = 0; i < conns; i++)
				CHECK(shutdown(c[i].fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
			closing = 1;
		}
		if (t - start >= next_tick * 1000.0) {
			uint64_t s = 0, r = 0;

			for (long i = 0; i < conns; i++) {
				s += c[i].sent;
				r += c[i].recvd;
			}
			tick_line(next_tick - 1, "sent=%llu recv=%llu", (unsigned long long)s,
				  (unsigned long long)r);
			next_tick++;
		}
		for (long i = 0; i < conns; i++) {
			struct conn *k = &c[i];
			int want_out = !closing && k->sent - k->recvd < WINDOW &&
				       k->sent < (t - start) * rate;

			if (k->sent > k->recvd && t - k->last_rx > k->max_stall)
				k->max_stall = t - k->last_rx;
			CHECK(t - k->last_rx < 120000 || k->sent == k->recvd,
			      "connection %ld: no echo for 120 s", i);
			p[i] = (struct pollfd){ k->done ? -1 : k->fd,
						POLLIN | (want_out ? POLLOUT : 0), 0 };
			open += !k->done;
		}
		if (!open)
			break;
		n = poll(p, (nfds_t)conns, 10);
		if (n < 0) {
			CHECK(errno == EINTR, "poll: %s", strerror(errno));
			continue;
		}
		for (long i = 0; i < conns; i++) {
			struct conn *k = &c[i];

			if (p[i].revents & POLLOUT) {
				size_t len = WINDOW - (size_t)(k->sent - k->recvd);
				ssize_t w;

				if (len > sizeof(buf))
					len = sizeof(buf);
				/* A stall is counted from the moment bytes are outstanding. */
				if (k->sent == k->recvd)
					k->last_rx = now_ms();
				for (size_t j = 0; j < len; j++)
					buf[j] = pattern((int)i, k->sent + j);
				w = write(k->fd, buf, len);
				if (w < 0)
					CHECK(errno == EINTR || errno == EAGAIN,
					      "connection %ld: write at %llu: %s", i,
					      (unsigned long long)k->sent, strerror(errno));
				else
					k->sent += (uint64_t)w;
			}
			if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
				ssize_t r = read(k->fd, buf, sizeof(buf));

				if (r < 0) {
					CHECK(errno == EINTR || errno == EAGAIN,
					      "connection %ld: read at %llu: %s", i,
					      (unsigned long long)k->recvd, strerror(errno));
					continue;
				}
				if (r == 0) {
					CHECK(closing, "connection %ld: closed early at %llu", i,
					      (unsigned long long)k->recvd);
					CHECK(k->recvd == k->sent, "connection %ld: sent %llu, got %llu",
					      i, (unsigned long long)k->sent,
					      (unsigned long long)k->recvd);
					k->done = 1;
					close(k->fd);
					continue;
				}
				for (ssize_t j = 0; j < r; j++)
					CHECK(buf[j] == pattern((int)i, k->recvd + (uint64_t)j),
					      "connection %ld: wrong byte at offset %llu", i,
					      (unsigned long long)(k->recvd + (uint64_t)j));
				k->recvd += (uint64_t)r;
				k->last_rx = now_ms();
			}
		}
	}
	for (long i = 0; i < conns; i++) {
		out("stall %ld ms=%.0f\n", i, c[i].max_stall);
		total += c[i].recvd;
		if (c[i].max_stall > max_stall)
			max_stall = c[i].max_stall;
	}
	ok_line("conns=%ld bytes=%llu max_stall_ms=%.0f", conns, (unsigned long long)total,
		max_stall);
	return 0;
}
