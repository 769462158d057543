/*
 * spoof_rst: forged TCP packets for the module's security test
 * (tests/guest/security_kmod_test.ts). Needs CAP_NET_RAW (and
 * CAP_NET_ADMIN for `client`'s TCP_REPAIR).
 *
 * spoof_rst send SRC SPORT DST DPORT far
 *	RSTs (and RST+ACKs) with the 4-tuple SRC:SPORT -> DST:DPORT and
 *	sequence numbers spread over the whole space, none near any real one
 *	but by chance, as a blind attacker sends them; and a segment with
 *	data at a made-up sequence number followed by a RST right after it
 *	(an attempt to move the module's idea of the stream first).
 * spoof_rst send SRC SPORT DST DPORT rst SEQ
 *	one RST with sequence number SEQ.
 * spoof_rst send SRC SPORT DST DPORT hostile
 *	malformed packets with that 4-tuple: TCP headers cut short, data
 *	offsets too small and too large, IP fragments (first, middle, last),
 *	IP options, SYNs with broken TCP options, a UDP header cut short,
 *	and out-of-window RST, FIN and data segments.
 * spoof_rst send SRC SPORT DST DPORT malformed
 *	only those of `hostile` that a parser must refuse, and options and
 *	SYNs without ACK, RST or FIN (safe to send through a node's own
 *	LOCAL_OUT, whose packets the module believes).
 *	Each `send` prints `sent <n> dropped <n>` (packets this node's own
 *	netfilter hooks dropped: sendto() says EPERM) and exits 0.
 *
 * spoof_rst server PORT
 *	accepts one TCP connection on PORT, closes its listener (so that the
 *	process holds that connection only) and echoes what comes until the
 *	end of file. Prints `ready <pid>` once listening, `conn` once connected.
 *
 * spoof_rst client HOST PORT DIR
 *	holds one TCP connection to an echo server and prints `ready <pid>`,
 *	`conn <local port>`, then `ping-ok 0` after one echoed line. Every
 *	0.1 s it looks into DIR: for a file `ping` it removes it, sends a line
 *	and checks the echo (`ping-ok <n>`); for a file `seq` it removes it,
 *	reads the sequence number the connection expects next (TCP_REPAIR,
 *	TCP_QUEUE_SEQ) and prints `seq <n>`, and from then on waits for the
 *	reset that a RST with that number causes (`reset`, exit 0). Any reset
 *	or end of the connection before that is a FAIL, as are 600 s without
 *	the expected reset.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#ifndef TCP_REPAIR_OFF_NO_WP
#define TCP_REPAIR_OFF_NO_WP -1
#endif

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

struct tuple {
	struct in_addr src, dst;
	uint16_t sport, dport;	/* network order */
};

static int raw_fd = -1;
static int sent, dropped;

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	return sum;
}

/*
 * Sends one IPv4 packet: an IP header of ihl words (options NOPs), frag_off
 * as given (host order, flags included), protocol proto and payload l4.
 * The kernel fills in the IP checksum, total length and id.
 */
static void send_ip(const struct tuple *t, int ihl, uint16_t frag_off, uint8_t proto,
		    const void *l4, size_t len)
{
	uint8_t pkt[1500];
	struct iphdr *ip = (struct iphdr *)pkt;
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = t->dst };
	size_t hl = (size_t)ihl * 4;

	CHECK(hl + len <= sizeof(pkt), "packet too long");
	memset(pkt, 0, hl);
	ip->version = 4;
	ip->ihl = (unsigned int)ihl;
	ip->ttl = 64;
	ip->protocol = proto;
	ip->frag_off = htons(frag_off);
	ip->saddr = t->src.s_addr;
	ip->daddr = t->dst.s_addr;
	for (size_t i = sizeof(*ip); i < hl; i++)
		pkt[i] = i + 1 == hl ? 0 : 1;	/* NOPs, then end of options */
	memcpy(pkt + hl, l4, len);
	if (sendto(raw_fd, pkt, hl + len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		/* EPERM: a netfilter hook of this node dropped it (a drop entry). */
		CHECK(errno == EPERM, "sendto: %s", strerror(errno));
		dropped++;
		return;
	}
	sent++;
}

/* Builds a TCP header (plus opts and data) with a correct checksum into buf. */
static size_t tcp_segment(uint8_t *buf, const struct tuple *t, uint32_t seq, uint32_t ack,
			  uint8_t flags, const uint8_t *opts, size_t optlen, size_t datalen)
{
	struct tcphdr *th = (struct tcphdr *)buf;
	size_t hl = sizeof(*th) + optlen;
	uint32_t sum = 0;
	uint8_t pseudo[12];

	memset(buf, 0, hl + datalen);
	th->source = t->sport;
	th->dest = t->dport;
	th->seq = htonl(seq);
	th->ack_seq = htonl(ack);
	th->doff = (unsigned int)(hl / 4);
	th->fin = !!(flags & F_FIN);
	th->syn = !!(flags & F_SYN);
	th->rst = !!(flags & F_RST);
	th->psh = !!(flags & F_PSH);
	th->ack = !!(flags & F_ACK);
	th->window = htons(1024);
	if (optlen)
		memcpy(buf + sizeof(*th), opts, optlen);
	for (size_t i = 0; i < datalen; i++)
		buf[hl + i] = (uint8_t)('a' + i % 26);
	memcpy(pseudo, &t->src, 4);
	memcpy(pseudo + 4, &t->dst, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	pseudo[10] = (uint8_t)((hl + datalen) >> 8);
	pseudo[11] = (uint8_t)(hl + datalen);
	sum = csum_add(sum, pseudo, sizeof(pseudo));
	sum = csum_add(sum, buf, hl + datalen);
	th->check = htons(csum_fold(sum));
	return hl + datalen;
}

static void send_tcp(const struct tuple *t, int ihl, uint32_t seq, uint32_t ack, uint8_t flags,
		     const uint8_t *opts, size_t optlen, size_t datalen)
{
	uint8_t seg[1400];
	size_t len;

	CHECK(optlen % 4 == 0 && sizeof(struct tcphdr) + optlen + datalen <= sizeof(seg),
	      "bad segment");
	len = tcp_segment(seg, t, seq, ack, flags, opts, optlen, datalen);
	send_ip(t, ihl, 0x4000 /* DF */, IPPROTO_TCP, seg, len);
}

/* Blind RSTs: far from any real sequence number but by a 1 in 10^4 chance. */
static void send_far(const struct tuple *t)
{
	static const uint32_t base[] = { 0x00000000u, 0x40000000u, 0x80000000u, 0xc0000000u,
					 0x13572468u, 0x9abcdef0u, 0x2468ace0u, 0xfedcba98u };
	uint32_t x;

	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
		send_tcp(t, 5, base[i], 0, F_RST, NULL, 0, 0);
		send_tcp(t, 5, base[i] + 1, base[i] ^ 0x5a5a5a5au, F_RST | F_ACK, NULL, 0, 0);
	}
	/* Data at a made-up number, then a RST at its end and at its start. */
	x = 0x31415926u;
	send_tcp(t, 5, x, 0x27182818u, F_ACK | F_PSH, NULL, 0, 100);
	send_tcp(t, 5, x + 100, 0, F_RST, NULL, 0, 0);
	send_tcp(t, 5, x, 0, F_RST, NULL, 0, 0);
	/* A FIN out of the window, then its ACK from the other side cannot come. */
	send_tcp(t, 5, x + 200, 0x27182818u, F_FIN | F_ACK, NULL, 0, 0);
}

static void send_malformed(const struct tuple *t, int with_flags)
{
	uint8_t seg[128];
	size_t len;
	/* SYN options: length 0, length 1, length past the end, a cut wscale, scale 255. */
	static const uint8_t opt_len0[] = { 2, 0, 0, 0 };
	static const uint8_t opt_len1[] = { 8, 1, 1, 1 };
	static const uint8_t opt_long[] = { 4, 40, 1, 1 };
	static const uint8_t opt_cut[] = { 1, 1, 1, 3 };
	static const uint8_t opt_big[] = { 3, 3, 255, 0 };
	static const uint8_t opt_odd[] = { 3, 2, 3, 3, 9, 1, 1, 0 };
	static const uint8_t udp_cut[] = { 0x30, 0x39, 0x30, 0x39 };

	/* TCP headers cut short: 0, 1, 10 and 19 bytes. */
	tcp_segment(seg, t, 1, 0, F_SYN, NULL, 0, 0);
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, 0);
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, 1);
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, 10);
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, 19);
	/* Data offset 4 (too small) and 15 (past the end). */
	len = tcp_segment(seg, t, 1, 0, F_SYN, NULL, 0, 8);
	((struct tcphdr *)seg)->doff = 4;
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, len);
	((struct tcphdr *)seg)->doff = 0;
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, len);
	((struct tcphdr *)seg)->doff = 15;
	send_ip(t, 5, 0x4000, IPPROTO_TCP, seg, len);
	/* Fragments: the first with 8 bytes of the TCP header, a middle and a last one. */
	len = tcp_segment(seg, t, 7, 0, F_SYN, NULL, 0, 40);
	send_ip(t, 5, 0x2000 /* MF */, IPPROTO_TCP, seg, 8);
	send_ip(t, 5, 0x2000 | 1, IPPROTO_TCP, seg + 8, 16);
	send_ip(t, 5, 3, IPPROTO_TCP, seg + 24, len - 24);
	/* A lone last fragment far into a datagram that never comes. */
	send_ip(t, 5, 100, IPPROTO_TCP, seg, len);
	/* SYNs with broken options, with and without IP options. */
	send_tcp(t, 5, 11, 0, F_SYN, opt_len0, sizeof(opt_len0), 0);
	send_tcp(t, 5, 11, 0, F_SYN, opt_len1, sizeof(opt_len1), 0);
	send_tcp(t, 6, 11, 0, F_SYN, opt_long, sizeof(opt_long), 0);
	send_tcp(t, 15, 11, 0, F_SYN, opt_cut, sizeof(opt_cut), 0);
	send_tcp(t, 5, 11, 0, F_SYN, opt_big, sizeof(opt_big), 0);
	send_tcp(t, 5, 11, 0, F_SYN, opt_odd, sizeof(opt_odd), 0);
	/* IP options with an ordinary segment, without ACK, RST or FIN. */
	send_tcp(t, 15, 0x600d600du, 0, F_PSH, NULL, 0, 32);
	send_tcp(t, 6, 0x600d600du, 0, 0, NULL, 0, 0);
	/* UDP cut short, and a protocol number without a header. */
	send_ip(t, 5, 0x4000, IPPROTO_UDP, udp_cut, sizeof(udp_cut));
	send_ip(t, 5, 0x4000, IPPROTO_UDP, udp_cut, 0);
	if (!with_flags)
		return;
	/* IP options with a RST, a FIN and data, all far out of any window. */
	send_tcp(t, 15, 0xdeadbeefu, 0, F_RST, NULL, 0, 0);
	send_tcp(t, 9, 0xdeadbeefu, 0xdeadbeefu, F_FIN | F_ACK, NULL, 0, 0);
	send_tcp(t, 6, 0xbadc0ffeu, 0xbadc0ffeu, F_ACK | F_PSH, NULL, 0, 200);
	send_tcp(t, 5, 0xbadc0ffeu + 200, 0, F_RST, NULL, 0, 0);
	/* A SYN+ACK announcing the largest window scale, then a far RST. */
	send_tcp(t, 5, 0x0badf00du, 0x0badf00du, F_SYN | F_ACK, opt_odd, sizeof(opt_odd), 0);
	send_tcp(t, 5, 0x0badf00du + 1, 0, F_RST, NULL, 0, 0);
}

static uint16_t port_arg(const char *s)
{
	long v = strtol(s, NULL, 10);

	CHECK(v > 0 && v < 65536, "bad port '%s'", s);
	return htons((uint16_t)v);
}

static int do_send(int argc, char **argv)
{
	struct tuple t;
	char line[64];
	int n;

	CHECK(argc >= 7, "usage: spoof_rst send SRC SPORT DST DPORT far|hostile|malformed|rst SEQ");
	CHECK(inet_aton(argv[2], &t.src), "bad SRC '%s'", argv[2]);
	t.sport = port_arg(argv[3]);
	CHECK(inet_aton(argv[4], &t.dst), "bad DST '%s'", argv[4]);
	t.dport = port_arg(argv[5]);
	raw_fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	CHECK(raw_fd >= 0, "raw socket: %s", strerror(errno));
	if (!strcmp(argv[6], "far")) {
		send_far(&t);
	} else if (!strcmp(argv[6], "hostile")) {
		send_malformed(&t, 1);
	} else if (!strcmp(argv[6], "malformed")) {
		send_malformed(&t, 0);
	} else if (!strcmp(argv[6], "rst") && argc == 8) {
		send_tcp(&t, 5, (uint32_t)strtoul(argv[7], NULL, 10), 0, F_RST, NULL, 0, 0);
	} else {
		fail("unknown mode '%s'", argv[6]);
	}
	n = snprintf(line, sizeof(line), "sent %d dropped %d\n", sent, dropped);
	write_all(1, line, (size_t)n);
	return 0;
}

static void say(const char *fmt, unsigned long v)
{
	char line[64];
	int n = snprintf(line, sizeof(line), fmt, v);

	write_all(1, line, (size_t)n);
}

/* Sends "ping <n>\n" and checks it comes back whole. */
static void ping(int fd, unsigned long n)
{
	char msg[32], got[32];
	size_t len = (size_t)snprintf(msg, sizeof(msg), "ping %lu\n", n), have = 0;

	CHECK(write_all(fd, msg, len) == 0, "send ping %lu: %s", n, strerror(errno));
	while (have < len) {
		ssize_t r = read(fd, got + have, len - have);

		CHECK(r > 0, "ping %lu: %s", n, r ? strerror(errno) : "connection closed");
		have += (size_t)r;
	}
	CHECK(!memcmp(msg, got, len), "ping %lu: wrong echo", n);
	say("ping-ok %lu\n", n);
}

static int take(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return unlink(path) == 0;
}

static uint32_t rcv_nxt(int fd)
{
	int on = 1, off = TCP_REPAIR_OFF_NO_WP, q = TCP_RECV_QUEUE;
	uint32_t seq = 0;
	socklen_t l = sizeof(seq);

	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) == 0, "TCP_REPAIR: %s",
	      strerror(errno));
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) == 0,
	      "TCP_REPAIR_QUEUE: %s", strerror(errno));
	CHECK(getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &seq, &l) == 0, "TCP_QUEUE_SEQ: %s",
	      strerror(errno));
	CHECK(setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off)) == 0,
	      "TCP_REPAIR off: %s", strerror(errno));
	return seq;
}

static int do_client(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET }, me;
	socklen_t ml = sizeof(me);
	unsigned long pings = 0;
	int fd, expect_reset = 0;

	CHECK(argc == 5, "usage: spoof_rst client HOST PORT DIR");
	CHECK(inet_aton(argv[2], &a.sin_addr), "bad HOST '%s'", argv[2]);
	a.sin_port = port_arg(argv[3]);
	mkdir(argv[4], 0700);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0, "socket: %s", strerror(errno));
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect: %s", strerror(errno));
	CHECK(getsockname(fd, (struct sockaddr *)&me, &ml) == 0, "getsockname: %s",
	      strerror(errno));
	say("ready %lu\n", (unsigned long)getpid());
	say("conn %lu\n", ntohs(me.sin_port));
	ping(fd, pings++);
	for (int i = 0; i < 6000; i++) {
		struct pollfd p = { fd, POLLIN, 0 };
		char buf[256];
		ssize_t r;

		if (poll(&p, 1, 100) > 0) {
			r = read(fd, buf, sizeof(buf));
			if (r < 0 && errno == ECONNRESET && expect_reset) {
				write_all(1, "reset\n", 6);
				return 0;
			}
			fail("the connection %s", r < 0 ? strerror(errno) :
			     r ? "sent unexpected data" : "was closed");
		}
		if (expect_reset)
			continue;
		if (take(argv[4], "ping"))
			ping(fd, pings++);
		if (take(argv[4], "seq")) {
			say("seq %lu\n", rcv_nxt(fd));
			expect_reset = 1;
		}
	}
	fail("no reset came");
}

static int do_server(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int l, fd, one = 1;
	char buf[4096];
	ssize_t r;

	CHECK(argc == 3, "usage: spoof_rst server PORT");
	a.sin_port = port_arg(argv[2]);
	l = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(l >= 0, "socket: %s", strerror(errno));
	CHECK(setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0,
	      "SO_REUSEADDR: %s", strerror(errno));
	CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
	CHECK(listen(l, 1) == 0, "listen: %s", strerror(errno));
	say("ready %lu\n", (unsigned long)getpid());
	do
		fd = accept(l, NULL, NULL);
	while (fd < 0 && errno == EINTR);
	CHECK(fd >= 0, "accept: %s", strerror(errno));
	close(l);
	write_all(1, "conn\n", 5);
	for (;;) {
		r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		CHECK(write_all(fd, buf, (size_t)r) == 0, "echo: %s", strerror(errno));
	}
	return 0;
}

int main(int argc, char **argv)
{
	*prog_name_slot() = "spoof_rst";
	if (argc >= 2 && !strcmp(argv[1], "server"))
		return do_server(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "send"))
		return do_send(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "client"))
		return do_client(argc, argv);
	write_all(2, "usage: spoof_rst send|server|client ...\n", 40);
	return 2;
}
