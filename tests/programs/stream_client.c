/*
 * stream_client HOST PORT SECONDS [KIB_PER_S]
 *
 * Streams a deterministic byte sequence to an echo server for SECONDS, at
 * most KIB_PER_S (default 256) KiB/s with at most 256 KiB in flight, and
 * checks every byte that comes back, in order. Then it half-closes and
 * waits for the rest of the echo and the server's end of file.
 *
 * Prints `ready <pid>`, one `tick <s> sent=<n> recv=<n>` line per second,
 * and at the end `ok stream_client bytes=<n> max_stall_ms=<ms>`: the
 * longest time without any echoed byte while bytes were outstanding (the
 * stall a migration of either end causes). A wrong byte, a reset or no
 * progress for 60 s is a FAIL.
 *
 * SIGUSR1 ends the stream early, as if SECONDS had passed: a test lets it
 * run a few seconds past the event it watches, instead of a fixed time.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#define WINDOW (256 * 1024)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile sig_atomic_t stop_early;

static void on_usr1(int sig)
{
	(void)sig;
	stop_early = 1;
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(mix64(off >> 3) >> ((off & 7) * 8));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	static uint8_t buf[65536];
	uint64_t sent = 0, recvd = 0;
	double start, last_rx, max_stall = 0, rate;
	long seconds, next_tick = 1;
	int fd, closing = 0;

	*prog_name_slot() = "stream_client";
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGUSR1, &(struct sigaction){ .sa_handler = on_usr1 }, NULL);
	if (argc != 4 && argc != 5) {
		write_all(2, "usage: stream_client HOST PORT SECONDS [KIB_PER_S]\n", 51);
		return 2;
	}
	CHECK(inet_aton(argv[1], &a.sin_addr), "bad HOST '%s'", argv[1]);
	a.sin_port = htons((uint16_t)strtol(argv[2], NULL, 10));
	seconds = strtol(argv[3], NULL, 10);
	rate = (argc == 5 ? strtod(argv[4], NULL) : 256) * 1024 / 1000; /* bytes per ms */
	CHECK(seconds > 0 && rate > 0, "bad SECONDS or KIB_PER_S");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0, "socket: %s", strerror(errno));
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect %s:%s: %s", argv[1],
	      argv[2], strerror(errno));
	ready_line();
	start = now_ms();
	last_rx = start;

	for (;;) {
		double t = now_ms();
		int want_out;
		struct pollfd p;
		int n;

		if (!closing && (stop_early || t - start >= seconds * 1000.0)) {
			CHECK(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
			closing = 1;
		}
		want_out = !closing && sent - recvd < WINDOW && sent < (t - start) * rate;
		p = (struct pollfd){ fd, POLLIN | (want_out ? POLLOUT : 0), 0 };
		if (t - start >= next_tick * 1000.0) {
			tick_line(next_tick - 1, "sent=%llu recv=%llu", (unsigned long long)sent,
				  (unsigned long long)recvd);
			next_tick++;
		}
		if (sent > recvd && t - last_rx > max_stall)
			max_stall = t - last_rx;
		CHECK(t - last_rx < 60000 || sent == recvd, "no echo for 60 s (%llu outstanding)",
		      (unsigned long long)(sent - recvd));
		n = poll(&p, 1, 20);
		if (n < 0) {
			CHECK(errno == EINTR, "poll: %s", strerror(errno));
			continue;
		}
		if (p.revents & POLLOUT) {
			size_t len = sizeof(buf);
			ssize_t w;

			if (len > WINDOW - (sent - recvd))
				len = WINDOW - (sent - recvd);
			for (size_t i = 0; i < len; i++)
				buf[i] = pattern(sent + i);
			w = write(fd, buf, len);
			if (w < 0)
				CHECK(errno == EINTR || errno == EAGAIN, "write at %llu: %s",
				      (unsigned long long)sent, strerror(errno));
			else
				sent += (uint64_t)w;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = read(fd, buf, sizeof(buf));

			if (r < 0) {
				CHECK(errno == EINTR || errno == EAGAIN, "read at %llu: %s",
				      (unsigned long long)recvd, strerror(errno));
				continue;
			}
			if (r == 0) {
				CHECK(closing, "the server closed early at %llu",
				      (unsigned long long)recvd);
				break;
			}
			for (ssize_t i = 0; i < r; i++)
				CHECK(buf[i] == pattern(recvd + (uint64_t)i),
				      "wrong byte at offset %llu",
				      (unsigned long long)(recvd + (uint64_t)i));
			recvd += (uint64_t)r;
			last_rx = now_ms();
		}
	}
	CHECK(recvd == sent, "sent %llu, got back %llu", (unsigned long long)sent,
	      (unsigned long long)recvd);
	ok_line("bytes=%llu max_stall_ms=%.0f", (unsigned long long)recvd, max_stall);
	return 0;
}
