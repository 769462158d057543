/*
 * echo_server PORT
 *
 * A TCP echo server for the socket-migration tests: one process, one
 * thread, a poll loop over the listener and up to 64 clients. Every byte a
 * client sends comes back to it in order. Prints `ready <pid>` once
 * listening, `conn <n> <addr>:<port>` per accepted client and
 * `closed <n> bytes=<echoed>` when one ends. Runs until killed.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#define MAX_CLIENTS 64

int main(int argc, char **argv)
{
	struct pollfd pfd[1 + MAX_CLIENTS];
	unsigned long long echoed[1 + MAX_CLIENTS] = { 0 };
	int ids[1 + MAX_CLIENTS] = { 0 };
	struct sockaddr_in a = { .sin_family = AF_INET };
	static char buf[65536];
	int one = 1, nfds = 1, next_id = 0;
	long port;

	*prog_name_slot() = "echo_server";
	if (argc != 2) {
		write_all(2, "usage: echo_server PORT\n", 24);
		return 2;
	}
	port = strtol(argv[1], NULL, 10);
	CHECK(port > 0 && port < 65536, "bad PORT '%s'", argv[1]);
	pfd[0].fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(pfd[0].fd >= 0, "socket: %s", strerror(errno));
	CHECK(setsockopt(pfd[0].fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0,
	      "SO_REUSEADDR: %s", strerror(errno));
	a.sin_port = htons((uint16_t)port);
	CHECK(bind(pfd[0].fd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %ld: %s", port,
	      strerror(errno));
	CHECK(listen(pfd[0].fd, 16) == 0, "listen: %s", strerror(errno));
	pfd[0].events = POLLIN;
	ready_line();

	for (;;) {
		int n = poll(pfd, (nfds_t)nfds, -1);

		if (n < 0) {
			CHECK(errno == EINTR, "poll: %s", strerror(errno));
			continue;
		}
		if ((pfd[0].revents & POLLIN) && nfds < 1 + MAX_CLIENTS) {
			struct sockaddr_in peer;
			socklen_t len = sizeof(peer);
			int c = accept(pfd[0].fd, (struct sockaddr *)&peer, &len);

			if (c >= 0) {
				setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				pfd[nfds].fd = c;
				pfd[nfds].events = POLLIN;
				pfd[nfds].revents = 0;
				echoed[nfds] = 0;
				ids[nfds] = next_id++;
				out("conn %d %s:%d\n", ids[nfds], inet_ntoa(peer.sin_addr),
				    ntohs(peer.sin_port));
				nfds++;
			}
		}
		for (int i = 1; i < nfds; i++) {
			ssize_t got;

			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			got = read(pfd[i].fd, buf, sizeof(buf));
			if (got < 0 && errno == EINTR)
				continue;
			if (got > 0 && write_all(pfd[i].fd, buf, (size_t)got) == 0) {
				echoed[i] += (unsigned long long)got;
				continue;
			}
			/* End of file, or an error: this client is done. */
			{
				struct tcp_info ti;
				socklen_t tl = sizeof(ti);
				int e = errno;

				memset(&ti, 0, sizeof(ti));
				getsockopt(pfd[i].fd, IPPROTO_TCP, TCP_INFO, &ti, &tl);
				out("closed %d bytes=%llu state=%d%s%s\n", ids[i], echoed[i],
				    ti.tcpi_state, got < 0 ? " error=" : "", got < 0 ? strerror(e) : "");
			}
			close(pfd[i].fd);
			pfd[i] = pfd[nfds - 1];
			echoed[i] = echoed[nfds - 1];
			ids[i] = ids[nfds - 1];
			nfds--;
			i--;
		}
	}
}
