// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: redirect - the netfilter side of socket migration.
 *
 * A migrated socket keeps the address its peers know.  Each node keeps a
 * small table of redirect entries, filled by the ppm agents, and two hooks
 * apply it to IPv4 TCP and UDP packets:
 *
 *  - PRE_ROUTING (before conntrack): drop a frozen flow's packets on the old
 *    node, forward a flow from a peer outside the cluster to the new node
 *    (dst OLD -> NEW, then routed on), and on a peer inside the cluster turn
 *    the new node's answers back into the old address (src NEW -> OLD);
 *  - LOCAL_OUT: drop what the old node would send for a frozen flow, send a
 *    cluster peer's packets to the new node (dst OLD -> NEW, rerouted), and
 *    on the new node answer outside peers with the old address
 *    (src NEW -> OLD).
 *
 * Of the entries a packet matches, one decides: rewrites before drops, the
 * newest rewrite first; then a drop of the packet's own connection before a
 * drop of any peer (a listener's), the oldest first.  So an old node can
 * forward a flow it dropped during the freeze by adding a forward entry
 * before it removes the drop, and a connection's drop answers its
 * keepalive probes (below) though its listener's drop matches them too.
 *
 * Lookup: a hash table (jhash with a random seed) keyed on an entry's own
 * end (OLD, or NEW for the entries that match the new node's packets), the
 * peer's end and the protocol.  An entry with an any-peer (0) address or
 * port is hashed with that field 0; a packet is looked up once per pattern
 * of wildcards that some entry uses, so a listener's entries cost one more
 * lookup, never a scan.  The hooks read the table under RCU; ppm_rdr_lock
 * serialises every change.
 *
 * TCP flow entries (a peer with address and port) follow their connection
 * as netfilter's conntrack does, but strictly (RFC 5961): per direction the
 * furthest sequence number sent, the highest acknowledgment and the
 * largest window (scaled when both SYNs were seen).  Packets from
 * LOCAL_OUT were sent by this node's own stack and are believed.  Packets
 * from PRE_ROUTING come from the network and may be spoofed:
 *  - a RST ends the entry only if its sequence number is exactly what the
 *    receiver expects: the last acknowledgment of a direction this node
 *    sends, or else the end of what the sender was seen sending.  A blind
 *    RST with the right ports but another sequence number changes nothing
 *    (it is passed on; the endpoint's own TCP ignores it or answers with a
 *    challenge ACK);
 *  - any other segment updates the state, and a FIN counts, only when it
 *    lies within the receiver's window of that same expected number (64 KiB
 *    while the window scale is unknown); a FIN outside it counts once this
 *    node's own stack acknowledges it.
 * An entry starts CLOSING after such a RST or after FINs both ways, and
 * goes 10 s later.
 *
 * Keepalive: a drop with PPM_RDR_F_ALIVE answers the peer's keepalive
 * probes (an ACK-only segment of at most one byte, wholly before what the
 * socket expects next) while the connection is frozen, from the state of
 * the frozen socket itself (in repair mode, still in the established
 * hash): an ACK with its next sequence number, its acknowledgment and its
 * window, the probe's timestamp echoed.  Without it a peer whose
 * keepalive is shorter than the freeze (UCX: 10 s idle, then probes 2 s
 * apart) ends the connection.  At most one answer per entry per
 * PPM_ANSWER_GAP, and only where the socket's own stack would answer.
 *
 * Every entry also goes after its idle time without a packet (idle_timeout,
 * or PPM_RDR_MAX_IDLE when 0), and a TCP flow entry that saw a FIN after
 * PPM_RDR_FIN_IDLE seconds at most.  A delayed work checks once a second
 * while the table has entries, and a full table is swept before an add is
 * refused.  Every entry holds a reference on the module, so the module
 * cannot be unloaded while redirects are active.
 *
 * Permission: CAP_NET_ADMIN in the initial user namespace for add, delete
 * and list, checked by ppm_ioctl().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/build_bug.h>
#include <linux/hashtable.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/jhash.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/lockdep.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/rculist.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <linux/percpu.h>
#include <net/checksum.h>
#include <net/inet_hashtables.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#include <net/route.h>
#include <net/tcp.h>

#include "ppm_internal.h"

/* How long a closed TCP flow's entries stay, for late retransmissions. */
#define PPM_RDR_LINGER		(10 * HZ)
/* Longest idle time of a TCP flow entry once a FIN went through, seconds. */
#define PPM_RDR_FIN_IDLE	120
/* The window assumed while a direction's window scale is unknown. */
#define PPM_TCP_WIN		65535U
#define PPM_RDR_HASH_BITS	11
/* A keepalive probe carries no data, or one garbage byte. */
#define PPM_PROBE_MAX_LEN	1
/* Shortest time between two keepalive answers of one entry. */
#define PPM_ANSWER_GAP		(HZ / 4)

/* What a packet carries (struct ppm_pkt.flags). */
#define PPM_TCP_FIN		BIT(0)
#define PPM_TCP_RST		BIT(1)
#define PPM_TCP_SYN		BIT(2)	/* SYN without ACK: opens a connection */
#define PPM_TCP_ANYSYN		BIT(3)	/* SYN, with or without ACK */
#define PPM_TCP_ACK		BIT(4)
#define PPM_NO_WSCALE		0xff

/* What is known of one direction of a flow (struct ppm_tcp_dir.flags). */
#define PPM_TD_END		BIT(0)	/* @end is set */
#define PPM_TD_ACK		BIT(1)	/* @ack is set */
#define PPM_TD_SCALE		BIT(2)	/* its SYN announced @wscale */
#define PPM_TD_FIN		BIT(3)	/* it sent a FIN */
#define PPM_TD_FINCAND		BIT(4)	/* a FIN ending at @fin_end, unconfirmed */

/* Which end of an entry a hash node is keyed on. */
enum { PPM_END_OLD, PPM_END_NEW, PPM_ENDS };
/* Which way a packet goes, seen from the entry: from the peer, or to it. */
enum { PPM_DIR_PEER, PPM_DIR_END, PPM_DIRS };
/* How a packet is rewritten: for NEW instead of OLD, or as from OLD. */
enum ppm_rw_dir {
	PPM_RW_TO_NEW,	/* destination OLD -> NEW */
	PPM_RW_TO_OLD,	/* source NEW -> OLD */
};

/* Wildcard patterns: bit 0 any peer address, bit 1 any peer port. */
#define PPM_WILD		4

struct ppm_rdr_key {
	__be32 laddr;	/* the entry's own end */
	__be32 paddr;	/* the peer, 0 for any */
	__be16 lport;
	__be16 pport;	/* 0 for any */
	u8 proto;
	u8 end;		/* PPM_END_* */
	u16 zero;
};

static_assert(sizeof(struct ppm_rdr_key) == 16);

struct ppm_rdr;

struct ppm_rdr_node {
	struct hlist_node hnode;
	struct ppm_rdr_key key;
	struct ppm_rdr *e;
	u8 wild;	/* its wildcard pattern */
	bool hashed;
};

struct ppm_tcp_dir {
	u32 end;	/* sequence number after the furthest segment */
	u32 ack;	/* highest acknowledgment */
	u32 fin_end;	/* end of an unconfirmed FIN (PPM_TD_FINCAND) */
	u16 win;	/* largest window field (unscaled) */
	u8 wscale;
	u8 flags;	/* PPM_TD_* */
};

struct ppm_rdr {
	struct ppm_rdr_node n[PPM_ENDS];
	struct list_head list;		/* ppm_rdr_list, by id; under ppm_rdr_lock */
	struct rcu_head rcu;
	struct ppm_redirect r;
	u64 rank;			/* the lowest matching rank decides */
	atomic64_t packets;
	atomic64_t bytes;
	unsigned long created;
	unsigned long last_used;
	unsigned long closed_at;
	unsigned long answered;		/* last keepalive answer (PPM_RDR_F_ALIVE) */
	bool track;			/* a TCP flow: follows its connection */
	bool fin_seen;
	u32 state;			/* PPM_RDR_ST_* */
	spinlock_t lock;		/* @td, @state, @closed_at, @fin_seen */
	struct ppm_tcp_dir td[PPM_DIRS];
};

/* What the hooks read of a packet; addresses and ports in network order. */
struct ppm_pkt {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	u8 proto;
	u8 flags;	/* PPM_TCP_* */
	u8 wscale;	/* of a SYN, or PPM_NO_WSCALE */
	u16 win;
	u32 seq;
	u32 ack;
	u32 len;	/* TCP payload bytes */
	u32 thoff;	/* TCP header, from skb->data */
	u32 doff;	/* TCP header length, options included */
};

/* One way to match a packet: which end, which actions, which direction. */
struct ppm_case {
	u8 end;
	bool local_is_src;	/* the entry's end is the packet's source */
	bool in;		/* PRE_ROUTING: from the network */
	u8 dir;
	u8 actions;		/* BIT(PPM_RDR_*) */
};

static const struct ppm_case ppm_in_cases[] = {
	/* PEER -> OLD: drop (the freeze) or forward to NEW. */
	{ PPM_END_OLD, false, true, PPM_DIR_PEER,
	  BIT(PPM_RDR_DROP) | BIT(PPM_RDR_FORWARD) },
	/* NEW -> PEER, on the peer: src back to OLD. */
	{ PPM_END_NEW, true, true, PPM_DIR_END, BIT(PPM_RDR_PEER) },
};

static const struct ppm_case ppm_out_cases[] = {
	/* OLD -> PEER: drop (the freeze). */
	{ PPM_END_OLD, true, false, PPM_DIR_END, BIT(PPM_RDR_DROP) },
	/* PEER -> OLD, from the peer: dst to NEW. */
	{ PPM_END_OLD, false, false, PPM_DIR_PEER, BIT(PPM_RDR_PEER) },
	/* NEW -> PEER, on the new node: src to OLD. */
	{ PPM_END_NEW, true, false, PPM_DIR_END, BIT(PPM_RDR_ANSWER) },
};

static DEFINE_HASHTABLE(ppm_rdr_hash, PPM_RDR_HASH_BITS);
static LIST_HEAD(ppm_rdr_list);
static DEFINE_MUTEX(ppm_rdr_lock);
static unsigned int ppm_rdr_count;
static unsigned int ppm_rdr_nkeys[PPM_ENDS][PPM_WILD];
static u64 ppm_rdr_next_id = 1;
static u32 ppm_rdr_seed __read_mostly;

static void ppm_rdr_expire_work(struct work_struct *work);
static DECLARE_DELAYED_WORK(ppm_rdr_work, ppm_rdr_expire_work);

static u32 ppm_key_hash(const struct ppm_rdr_key *k)
{
	return jhash2((const u32 *)k, sizeof(*k) / sizeof(u32), ppm_rdr_seed);
}

static bool ppm_key_eq(const struct ppm_rdr_key *a, const struct ppm_rdr_key *b)
{
	return a->laddr == b->laddr && a->paddr == b->paddr &&
	       a->lport == b->lport && a->pport == b->pport &&
	       a->proto == b->proto && a->end == b->end;
}

/*
 * Finds TCP option @kind of length @size among the @optlen bytes of
 * options at @off of @skb and copies its @size - 2 bytes of value to @val;
 * false when it is not there (or the options are malformed).
 */
static bool ppm_tcp_option(const struct sk_buff *skb, unsigned int off,
			   unsigned int optlen, u8 kind, u8 size, u8 *val)
{
	u8 buf[MAX_TCP_OPTION_SPACE];
	const u8 *opt;
	unsigned int i = 0;

	if (!optlen || optlen > sizeof(buf))
		return false;
	opt = skb_header_pointer(skb, off, optlen, buf);
	if (!opt)
		return false;
	while (i < optlen) {
		u8 k = opt[i], len;

		if (k == TCPOPT_EOL)
			break;
		if (k == TCPOPT_NOP) {
			i++;
			continue;
		}
		if (optlen - i < 2)
			break;
		len = opt[i + 1];
		if (len < 2 || len > optlen - i)
			break;
		if (k == kind && len == size) {
			memcpy(val, opt + i + 2, size - 2);
			return true;
		}
		i += len;
	}
	return false;
}

/* Reads the options of a SYN for its window scale. */
static u8 ppm_parse_wscale(const struct sk_buff *skb, unsigned int off,
			   unsigned int optlen)
{
	u8 ws;

	if (!ppm_tcp_option(skb, off, optlen, TCPOPT_WINDOW, TCPOLEN_WINDOW,
			    &ws))
		return PPM_NO_WSCALE;
	return min_t(u8, ws, TCP_MAX_WSCALE);
}

/*
 * Reads the ends of an IPv4 TCP/UDP packet, and a TCP packet's sequence
 * numbers; false for anything else, fragments, and headers that are cut
 * short or inconsistent (the stack drops those itself).
 */
static bool ppm_parse(const struct sk_buff *skb, struct ppm_pkt *p)
{
	const struct iphdr *iph = ip_hdr(skb);
	unsigned int nhoff = skb_network_offset(skb);
	unsigned int thoff, doff;
	const struct tcphdr *th;
	const struct udphdr *uh;
	struct tcphdr _th;
	struct udphdr _uh;

	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return false;
	if (ip_is_fragment(iph))
		return false;
	thoff = iph->ihl * 4;
	if (thoff < sizeof(*iph) || skb->len < nhoff + thoff)
		return false;
	thoff += nhoff;
	p->saddr = iph->saddr;
	p->daddr = iph->daddr;
	p->proto = iph->protocol;
	p->flags = 0;
	p->wscale = PPM_NO_WSCALE;
	if (p->proto == IPPROTO_UDP) {
		uh = skb_header_pointer(skb, thoff, sizeof(_uh), &_uh);
		if (!uh)
			return false;
		p->sport = uh->source;
		p->dport = uh->dest;
		return true;
	}
	th = skb_header_pointer(skb, thoff, sizeof(_th), &_th);
	if (!th)
		return false;
	doff = th->doff * 4;
	if (doff < sizeof(*th) || skb->len - thoff < doff)
		return false;
	p->sport = th->source;
	p->dport = th->dest;
	p->seq = ntohl(th->seq);
	p->ack = ntohl(th->ack_seq);
	p->win = ntohs(th->window);
	p->len = skb->len - thoff - doff;
	p->thoff = thoff;
	p->doff = doff;
	if (th->fin)
		p->flags |= PPM_TCP_FIN;
	if (th->rst)
		p->flags |= PPM_TCP_RST;
	if (th->ack)
		p->flags |= PPM_TCP_ACK;
	if (th->syn) {
		p->flags |= PPM_TCP_ANYSYN;
		if (!th->ack)
			p->flags |= PPM_TCP_SYN;
		p->wscale = ppm_parse_wscale(skb, thoff + sizeof(*th),
					     doff - sizeof(*th));
	}
	return true;
}

/*
 * Rewrites the packet one way of @r: PPM_RW_TO_NEW sets its destination to
 * NEW, PPM_RW_TO_OLD its source to OLD.
 */
static bool ppm_rewrite(struct sk_buff *skb, const struct ppm_redirect *r,
			enum ppm_rw_dir dir)
{
	bool source = dir == PPM_RW_TO_OLD;
	__be32 addr = source ? r->old_addr : r->new_addr;
	__be16 port = source ? r->old_port : r->new_port;
	unsigned int thoff = ip_hdrlen(skb);
	unsigned int need = skb_network_offset(skb) + thoff;
	struct iphdr *iph;
	__be32 *ap;
	__be16 *pp;
	__sum16 *check;
	bool udp = ip_hdr(skb)->protocol == IPPROTO_UDP;

	need += udp ? sizeof(struct udphdr) : sizeof(struct tcphdr);
	if (skb_ensure_writable(skb, need))
		return false;
	iph = ip_hdr(skb);
	ap = source ? &iph->saddr : &iph->daddr;
	if (udp) {
		struct udphdr *uh = (void *)iph + thoff;

		pp = source ? &uh->source : &uh->dest;
		check = &uh->check;
		/* A UDP checksum of 0 means none: keep it that way. */
		if (!*check && skb->ip_summed != CHECKSUM_PARTIAL)
			check = NULL;
	} else {
		struct tcphdr *th = (void *)iph + thoff;

		pp = source ? &th->source : &th->dest;
		check = &th->check;
	}
	if (check) {
		inet_proto_csum_replace4(check, skb, *ap, addr, true);
		inet_proto_csum_replace2(check, skb, *pp, port, false);
		if (udp && !*check)
			*check = CSUM_MANGLED_0;
	}
	csum_replace4(&iph->check, *ap, addr);
	*ap = addr;
	*pp = port;
	return true;
}

static void ppm_rdr_close(struct ppm_rdr *e)
{
	lockdep_assert_held(&e->lock);
	WRITE_ONCE(e->closed_at, jiffies);
	WRITE_ONCE(e->state, PPM_RDR_ST_CLOSING);
}

/* The window @r announced, scaled when both SYNs told the scale. */
static u32 ppm_tcp_window(const struct ppm_tcp_dir *r,
			  const struct ppm_tcp_dir *s)
{
	if (r->flags & s->flags & PPM_TD_SCALE)
		return max_t(u32, (u32)r->win << r->wscale, PPM_TCP_WIN);
	return PPM_TCP_WIN;
}

/*
 * The sequence number the receiver @r expects next from the sender @s:
 * @r's last acknowledgment, or else the end of what @s was seen sending.
 * False when neither is known yet.
 */
static bool ppm_tcp_expected(const struct ppm_tcp_dir *s,
			     const struct ppm_tcp_dir *r, u32 *seq)
{
	if (r->flags & PPM_TD_ACK) {
		*seq = r->ack;
		return true;
	}
	if (s->flags & PPM_TD_END) {
		*seq = s->end;
		return true;
	}
	return false;
}

/* Does the segment [@seq, @end) from @s lie in @r's window? */
static bool ppm_tcp_in_window(const struct ppm_tcp_dir *s,
			      const struct ppm_tcp_dir *r, u32 seq, u32 end)
{
	u32 want, win;

	if (!ppm_tcp_expected(s, r, &want))
		return true;	/* nothing seen yet: pick the flow up */
	win = ppm_tcp_window(r, s);
	return !before(seq, want - win) && !after(end, want + win);
}

/*
 * Follows a TCP flow entry's connection with the packet @p going @dir;
 * @trusted when this node's own stack sent it (LOCAL_OUT).
 */
static void ppm_tcp_track(struct ppm_rdr *e, const struct ppm_pkt *p, u8 dir,
			  bool trusted)
{
	struct ppm_tcp_dir *s = &e->td[dir], *r = &e->td[!dir];
	u32 end = p->seq + p->len, want;

	lockdep_assert_held(&e->lock);
	if (e->state == PPM_RDR_ST_CLOSING)
		return;
	if (p->flags & PPM_TCP_RST) {
		/* RFC 5961: only the exact expected sequence number resets. */
		if (trusted || (ppm_tcp_expected(s, r, &want) && p->seq == want))
			ppm_rdr_close(e);
		return;
	}
	if (p->flags & PPM_TCP_ANYSYN) {
		end++;
		/* A SYN's window scale, unless a stranger's SYN mid-flow. */
		if (trusted || !(s->flags & PPM_TD_END)) {
			s->flags &= ~PPM_TD_SCALE;
			if (p->wscale != PPM_NO_WSCALE) {
				s->wscale = p->wscale;
				s->flags |= PPM_TD_SCALE;
			}
		}
	}
	if (p->flags & PPM_TCP_FIN)
		end++;
	if (!trusted && !ppm_tcp_in_window(s, r, p->seq, end)) {
		/* Counted once this node acknowledges it. */
		if (p->flags & PPM_TCP_FIN) {
			s->fin_end = end;
			s->flags |= PPM_TD_FINCAND;
		}
		return;
	}
	if (!(s->flags & PPM_TD_END) || after(end, s->end)) {
		s->end = end;
		s->flags |= PPM_TD_END;
	}
	if (p->flags & PPM_TCP_ACK) {
		if (!(s->flags & PPM_TD_ACK) || after(p->ack, s->ack)) {
			s->ack = p->ack;
			s->flags |= PPM_TD_ACK;
		}
		if (trusted && (r->flags & PPM_TD_FINCAND) && p->ack == r->fin_end)
			r->flags |= PPM_TD_FIN;
	}
	if (!(p->flags & PPM_TCP_ANYSYN) && p->win > s->win)
		s->win = p->win;
	if (p->flags & PPM_TCP_FIN)
		s->flags |= PPM_TD_FIN;
	if ((s->flags | r->flags) & PPM_TD_FIN)
		WRITE_ONCE(e->fin_seen, true);
	if (s->flags & r->flags & PPM_TD_FIN)
		ppm_rdr_close(e);
}

static void ppm_account(struct ppm_rdr *e, const struct sk_buff *skb,
			const struct ppm_pkt *p, const struct ppm_case *c)
{
	atomic64_inc(&e->packets);
	atomic64_add(skb->len, &e->bytes);
	WRITE_ONCE(e->last_used, jiffies);
	if (!e->track)
		return;
	spin_lock_bh(&e->lock);
	ppm_tcp_track(e, p, c->dir, !c->in);
	spin_unlock_bh(&e->lock);
}

/*
 * The entry of lowest rank among @best and those matching @p as case @c.
 * Called from the hooks, under the RCU read lock netfilter holds.
 */
static struct ppm_rdr *ppm_lookup(struct ppm_rdr *best, const struct ppm_pkt *p,
				  const struct ppm_case *c)
{
	struct ppm_rdr_node *n;
	struct ppm_rdr_key k = {
		.proto = p->proto,
		.end = c->end,
	};
	__be32 paddr;
	__be16 pport;
	unsigned int w;

	RCU_LOCKDEP_WARN(!rcu_read_lock_held(), "ppm redirect lookup outside RCU");
	if (c->local_is_src) {
		k.laddr = p->saddr;
		k.lport = p->sport;
		paddr = p->daddr;
		pport = p->dport;
	} else {
		k.laddr = p->daddr;
		k.lport = p->dport;
		paddr = p->saddr;
		pport = p->sport;
	}
	for (w = 0; w < PPM_WILD; w++) {
		if (!READ_ONCE(ppm_rdr_nkeys[c->end][w]))
			continue;
		k.paddr = w & 1 ? 0 : paddr;
		k.pport = w & 2 ? 0 : pport;
		hash_for_each_possible_rcu(ppm_rdr_hash, n, hnode, ppm_key_hash(&k)) {
			struct ppm_rdr *e = n->e;

			if (!ppm_key_eq(&n->key, &k) ||
			    !(c->actions & BIT(e->r.action)))
				continue;
			/* A SYN drop holds back only SYNs that come in. */
			if ((e->r.flags & PPM_RDR_F_SYN) &&
			    (!c->in || !(p->flags & PPM_TCP_SYN)))
				continue;
			if (!best || e->rank < best->rank)
				best = e;
		}
	}
	return best;
}

/* Finds the deciding entry for @p among @cases, and the case it matched. */
static struct ppm_rdr *ppm_match(const struct ppm_pkt *p,
				 const struct ppm_case *cases, unsigned int n,
				 const struct ppm_case **which)
{
	struct ppm_rdr *best = NULL, *e;
	unsigned int i;

	for (i = 0; i < n; i++) {
		e = ppm_lookup(best, p, &cases[i]);
		if (e != best) {
			best = e;
			*which = &cases[i];
		}
	}
	return best;
}

/*
 * What both hooks do first: the entry that decides about @skb among
 * @cases, with the packet counted on it and read into @p; NULL when none
 * matches.
 */
static struct ppm_rdr *ppm_hook_match(struct sk_buff *skb,
				      const struct ppm_case *cases,
				      unsigned int n, struct ppm_pkt *p)
{
	const struct ppm_case *c = NULL;
	struct ppm_rdr *e;

	if (!READ_ONCE(ppm_rdr_count) || !ppm_parse(skb, p))
		return NULL;
	e = ppm_match(p, cases, n, &c);
	if (e)
		ppm_account(e, skb, p, c);
	return e;
}

/* Set while this CPU sends a keepalive answer: the out hook lets it pass. */
static DEFINE_PER_CPU(bool, ppm_answering);

/* What a keepalive answer says, read from the frozen socket. */
struct ppm_answer {
	u32 seq;
	u32 ack;
	u16 win;
	bool ts;
};

/*
 * Reads into @a what the established socket of the flow of @p (a segment
 * from its peer) would answer to it; false when there is no such socket or
 * the segment is not a keepalive probe: an ACK-only segment of at most
 * PPM_PROBE_MAX_LEN bytes, wholly before what the socket expects next.
 */
static bool ppm_probe_answer(struct net *net, const struct ppm_pkt *p,
			     int dif, struct ppm_answer *a)
{
	const struct tcp_sock *tp;
	struct sock *sk;
	u32 rcv_nxt, win;
	bool ok = false;

	if (p->flags != PPM_TCP_ACK || p->len > PPM_PROBE_MAX_LEN)
		return false;
	sk = inet_lookup_established(net, net->ipv4.tcp_death_row.hashinfo,
				     p->saddr, p->sport, p->daddr, p->dport,
				     dif);
	if (!sk)
		return false;
	if (sk->sk_state == TCP_ESTABLISHED) {
		tp = tcp_sk(sk);
		rcv_nxt = READ_ONCE(tp->rcv_nxt);
		if (before(p->seq, rcv_nxt) &&
		    !after(p->seq + p->len, rcv_nxt)) {
			win = READ_ONCE(tp->rcv_wnd) >> tp->rx_opt.rcv_wscale;
			a->seq = READ_ONCE(tp->snd_nxt);
			a->ack = rcv_nxt;
			a->win = min_t(u32, win, U16_MAX);
			a->ts = tp->rx_opt.tstamp_ok;
			ok = true;
		}
	}
	sock_gen_put(sk);
	return ok;
}

/*
 * Answers the keepalive probe @p (in @skb, from the network) of the flow
 * of drop entry @e for its frozen socket: an ACK from the socket's end,
 * built here and sent past this module's out hook.
 */
static void ppm_answer_probe(const struct nf_hook_state *state,
			     const struct sk_buff *skb,
			     const struct ppm_pkt *p, struct ppm_rdr *e)
{
	unsigned int optlen, tcplen;
	struct net *net = state->net;
	struct flowi4 fl4 = {};
	struct ppm_answer a;
	struct sk_buff *nskb;
	struct rtable *rt;
	struct tcphdr *th;
	struct iphdr *iph;
	__be32 ts[2];
	bool echo;

	if (time_before(jiffies, READ_ONCE(e->answered) + PPM_ANSWER_GAP))
		return;
	if (!ppm_probe_answer(net, p, state->in ? state->in->ifindex : 0, &a))
		return;
	/* The probe's timestamp echoed, and its echo of ours as our own. */
	echo = a.ts && ppm_tcp_option(skb, p->thoff + sizeof(*th),
				      p->doff - sizeof(*th), TCPOPT_TIMESTAMP,
				      TCPOLEN_TIMESTAMP, (u8 *)ts);
	WRITE_ONCE(e->answered, jiffies);
	optlen = echo ? TCPOLEN_TSTAMP_ALIGNED : 0;
	tcplen = sizeof(*th) + optlen;
	nskb = alloc_skb(LL_MAX_HEADER + sizeof(*iph) + tcplen, GFP_ATOMIC);
	if (!nskb)
		return;
	skb_reserve(nskb, LL_MAX_HEADER);
	skb_reset_network_header(nskb);
	iph = skb_put_zero(nskb, sizeof(*iph));
	iph->version = 4;
	iph->ihl = sizeof(*iph) / 4;
	iph->frag_off = htons(IP_DF);
	iph->ttl = READ_ONCE(net->ipv4.sysctl_ip_default_ttl);
	iph->protocol = IPPROTO_TCP;
	iph->saddr = p->daddr;
	iph->daddr = p->saddr;
	skb_set_transport_header(nskb, sizeof(*iph));
	th = skb_put_zero(nskb, tcplen);
	th->source = p->dport;
	th->dest = p->sport;
	th->seq = htonl(a.seq);
	th->ack_seq = htonl(a.ack);
	th->doff = tcplen / 4;
	th->ack = 1;
	th->window = htons(a.win);
	if (echo) {
		__be32 *opt = (__be32 *)(th + 1);

		*opt++ = htonl((TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) |
			       (TCPOPT_TIMESTAMP << 8) | TCPOLEN_TIMESTAMP);
		*opt++ = ts[1];
		*opt = ts[0];
	}
	th->check = tcp_v4_check(tcplen, iph->saddr, iph->daddr,
				 csum_partial(th, tcplen, 0));
	nskb->ip_summed = CHECKSUM_NONE;
	iph->tot_len = htons(nskb->len);
	nskb->protocol = htons(ETH_P_IP);
	/* Routed from scratch: a new skb has no route to start from. */
	fl4.daddr = iph->daddr;
	fl4.saddr = iph->saddr;
	fl4.flowi4_proto = IPPROTO_TCP;
	fl4.flowi4_flags = FLOWI_FLAG_ANYSRC;
	rt = ip_route_output_key(net, &fl4);
	if (IS_ERR(rt)) {
		kfree_skb(nskb);
		return;
	}
	skb_dst_set(nskb, &rt->dst);
	ip_send_check(iph);
	__this_cpu_write(ppm_answering, true);
	ip_local_out(net, NULL, nskb);
	__this_cpu_write(ppm_answering, false);
}

static unsigned int ppm_hook_in(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	struct ppm_pkt p;
	struct ppm_rdr *e;

	e = ppm_hook_match(skb, ppm_in_cases, ARRAY_SIZE(ppm_in_cases), &p);
	if (!e)
		return NF_ACCEPT;
	switch (e->r.action) {
	case PPM_RDR_DROP:
		if (e->r.flags & PPM_RDR_F_ALIVE)
			ppm_answer_probe(state, skb, &p, e);
		return NF_DROP;
	case PPM_RDR_FORWARD:
		if (!ppm_rewrite(skb, &e->r, PPM_RW_TO_NEW))
			return NF_DROP;
		return NF_ACCEPT;
	case PPM_RDR_PEER:
		if (!ppm_rewrite(skb, &e->r, PPM_RW_TO_OLD))
			return NF_DROP;
		return NF_ACCEPT;
	default:
		return NF_ACCEPT;
	}
}

static unsigned int ppm_hook_out(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct ppm_pkt p;
	struct ppm_rdr *e;

	if (__this_cpu_read(ppm_answering))
		return NF_ACCEPT;
	e = ppm_hook_match(skb, ppm_out_cases, ARRAY_SIZE(ppm_out_cases), &p);
	if (!e)
		return NF_ACCEPT;
	switch (e->r.action) {
	case PPM_RDR_DROP:
		return NF_DROP;
	case PPM_RDR_PEER:
		/* From this node (the peer) to the old endpoint. */
		if (!ppm_rewrite(skb, &e->r, PPM_RW_TO_NEW))
			return NF_DROP;
		if (ip_route_me_harder(state->net, state->sk, skb, RTN_UNSPEC))
			return NF_DROP;
		return NF_ACCEPT;
	case PPM_RDR_ANSWER:
		if (!ppm_rewrite(skb, &e->r, PPM_RW_TO_OLD))
			return NF_DROP;
		return NF_ACCEPT;
	default:
		return NF_ACCEPT;
	}
}

static const struct nf_hook_ops ppm_nf_ops[] = {
	{
		.hook = ppm_hook_in,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_PRE_ROUTING,
		.priority = NF_IP_PRI_RAW - 10,
	},
	{
		.hook = ppm_hook_out,
		.pf = NFPROTO_IPV4,
		.hooknum = NF_INET_LOCAL_OUT,
		.priority = NF_IP_PRI_RAW - 10,
	},
};

/* Which ends an action matches packets on. */
static bool ppm_rdr_has_end(const struct ppm_redirect *r, unsigned int end)
{
	if (end == PPM_END_OLD)
		return r->action != PPM_RDR_ANSWER;
	return r->action == PPM_RDR_PEER || r->action == PPM_RDR_ANSWER;
}

static void ppm_rdr_key_of(const struct ppm_redirect *r, unsigned int end,
			   struct ppm_rdr_node *n)
{
	memset(&n->key, 0, sizeof(n->key));
	n->key.laddr = end == PPM_END_OLD ? r->old_addr : r->new_addr;
	n->key.lport = end == PPM_END_OLD ? r->old_port : r->new_port;
	n->key.paddr = r->peer_addr;
	n->key.pport = r->peer_port;
	n->key.proto = r->proto;
	n->key.end = end;
	n->wild = (r->peer_addr ? 0 : 1) | (r->peer_port ? 0 : 2);
}

/* Puts @e in the table. */
static void ppm_rdr_insert(struct ppm_rdr *e)
{
	unsigned int end;

	lockdep_assert_held(&ppm_rdr_lock);
	for (end = 0; end < PPM_ENDS; end++) {
		struct ppm_rdr_node *n = &e->n[end];

		if (!ppm_rdr_has_end(&e->r, end))
			continue;
		n->e = e;
		ppm_rdr_key_of(&e->r, end, n);
		hash_add_rcu(ppm_rdr_hash, &n->hnode, ppm_key_hash(&n->key));
		n->hashed = true;
		WRITE_ONCE(ppm_rdr_nkeys[end][n->wild],
			   ppm_rdr_nkeys[end][n->wild] + 1);
	}
	list_add_tail(&e->list, &ppm_rdr_list);
	WRITE_ONCE(ppm_rdr_count, ppm_rdr_count + 1);
}

/* Takes @e out of the table; it is freed after an RCU grace period. */
static void ppm_rdr_unlink(struct ppm_rdr *e)
{
	unsigned int end;

	lockdep_assert_held(&ppm_rdr_lock);
	for (end = 0; end < PPM_ENDS; end++) {
		struct ppm_rdr_node *n = &e->n[end];

		if (!n->hashed)
			continue;
		hash_del_rcu(&n->hnode);
		WRITE_ONCE(ppm_rdr_nkeys[end][n->wild],
			   ppm_rdr_nkeys[end][n->wild] - 1);
	}
	list_del(&e->list);
	WRITE_ONCE(ppm_rdr_count, ppm_rdr_count - 1);
	kfree_rcu(e, rcu);
}

/* Removes @e and drops the module reference it held. */
static void ppm_rdr_remove(struct ppm_rdr *e)
{
	lockdep_assert_held(&ppm_rdr_lock);
	ppm_rdr_unlink(e);
	module_put(THIS_MODULE);
}

static bool ppm_rdr_expired(const struct ppm_rdr *e, unsigned long now)
{
	unsigned long idle = e->r.idle_timeout ? e->r.idle_timeout :
			     PPM_RDR_MAX_IDLE;

	if (READ_ONCE(e->state) == PPM_RDR_ST_CLOSING &&
	    time_after(now, READ_ONCE(e->closed_at) + PPM_RDR_LINGER))
		return true;
	if (READ_ONCE(e->fin_seen))
		idle = min_t(unsigned long, idle, PPM_RDR_FIN_IDLE);
	return time_after(now, READ_ONCE(e->last_used) + idle * HZ);
}

/* Removes the entries whose time is up; returns how many. */
static unsigned int ppm_rdr_expire(void)
{
	struct ppm_rdr *e, *tmp;
	unsigned long now = jiffies;
	unsigned int n = 0;

	lockdep_assert_held(&ppm_rdr_lock);
	list_for_each_entry_safe(e, tmp, &ppm_rdr_list, list) {
		if (ppm_rdr_expired(e, now)) {
			ppm_rdr_remove(e);
			n++;
		}
	}
	return n;
}

static void ppm_rdr_expire_work(struct work_struct *work)
{
	mutex_lock(&ppm_rdr_lock);
	ppm_rdr_expire();
	if (ppm_rdr_count)
		schedule_delayed_work(&ppm_rdr_work, HZ);
	mutex_unlock(&ppm_rdr_lock);
}

static bool ppm_rdr_same(const struct ppm_redirect *a,
			 const struct ppm_redirect *b)
{
	return a->proto == b->proto && a->action == b->action &&
	       a->flags == b->flags && a->old_addr == b->old_addr &&
	       a->old_port == b->old_port && a->new_addr == b->new_addr &&
	       a->new_port == b->new_port && a->peer_addr == b->peer_addr &&
	       a->peer_port == b->peer_port;
}

/* Is an entry like @r in the table? */
static bool ppm_rdr_exists(const struct ppm_redirect *r)
{
	unsigned int end = ppm_rdr_has_end(r, PPM_END_OLD) ? PPM_END_OLD :
			   PPM_END_NEW;
	struct ppm_rdr_node key, *n;

	lockdep_assert_held(&ppm_rdr_lock);
	ppm_rdr_key_of(r, end, &key);
	hash_for_each_possible(ppm_rdr_hash, n, hnode, ppm_key_hash(&key.key)) {
		if (ppm_key_eq(&n->key, &key.key) && ppm_rdr_same(&n->e->r, r))
			return true;
	}
	return false;
}

static int ppm_rdr_check(const struct ppm_redirect *r)
{
	if (r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP)
		return -EPROTONOSUPPORT;
	if (r->action < PPM_RDR_DROP || r->action > PPM_RDR_ANSWER)
		return -EINVAL;
	if ((r->flags & ~(PPM_RDR_F_SYN | PPM_RDR_F_ALIVE)) || r->reserved0 ||
	    r->reserved[0] || r->reserved[1])
		return -EINVAL;
	if ((r->flags & PPM_RDR_F_SYN) &&
	    (r->action != PPM_RDR_DROP || r->proto != IPPROTO_TCP))
		return -EINVAL;
	if ((r->flags & PPM_RDR_F_ALIVE) &&
	    (r->action != PPM_RDR_DROP || r->proto != IPPROTO_TCP ||
	     (r->flags & PPM_RDR_F_SYN) || !r->peer_addr || !r->peer_port))
		return -EINVAL;
	if (!r->old_addr || !r->old_port)
		return -EINVAL;
	if (r->action != PPM_RDR_DROP && (!r->new_addr || !r->new_port))
		return -EINVAL;
	if (r->idle_timeout > PPM_RDR_MAX_IDLE)
		return -EINVAL;
	return 0;
}

/**
 * DOC: PPM_IOC_REDIRECT_ADD
 *
 * Adds a redirect entry (struct ppm_redirect) to this node's table and
 * returns it with its new @id and @state PPM_RDR_ST_OPEN; a drop's @new_addr
 * and @new_port read back as 0.  Each entry holds a reference on the module
 * until it is removed or expires.
 *
 * Who: CAP_NET_ADMIN (see DOC: permissions).
 *
 * Checks: @proto TCP or UDP; @action one of PPM_RDR_*; only known @flags,
 * PPM_RDR_F_SYN only on a TCP drop, PPM_RDR_F_ALIVE only on a TCP drop of
 * one connection (peer address and port set) without PPM_RDR_F_SYN;
 * reserved fields zero; OLD address and port set, and NEW's too unless the
 * entry drops; @idle_timeout at most
 * PPM_RDR_MAX_IDLE; no identical entry (the same protocol, action, flags,
 * addresses and ports); room in the table (PPM_RDR_MAX entries, after
 * expired ones are swept).
 *
 * Errors: -EFAULT when the structure cannot be read or written back (the
 * entry is then in the table all the same); -EPROTONOSUPPORT for another
 * protocol; -EINVAL for a bad field; -EEXIST for an identical entry;
 * -ENOSPC when the table is full; -ENODEV while the module is unloading;
 * -ENOMEM.
 */
long ppm_ioctl_redirect_add(void __user *arg)
{
	struct ppm_redirect r;
	struct ppm_rdr *e;
	int ret;

	if (copy_from_user(&r, arg, sizeof(r)))
		return -EFAULT;
	ret = ppm_rdr_check(&r);
	if (ret)
		return ret;
	if (r.action == PPM_RDR_DROP) {
		r.new_addr = 0;
		r.new_port = 0;
	}
	r.state = PPM_RDR_ST_OPEN;
	r.packets = 0;
	r.bytes = 0;
	r.age_ms = 0;
	r.idle_ms = 0;

	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	spin_lock_init(&e->lock);
	mutex_lock(&ppm_rdr_lock);
	if (ppm_rdr_count >= PPM_RDR_MAX && !ppm_rdr_expire()) {
		ret = -ENOSPC;
		goto out_free;
	}
	if (ppm_rdr_exists(&r)) {
		ret = -EEXIST;
		goto out_free;
	}
	if (!try_module_get(THIS_MODULE)) {
		ret = -ENODEV;
		goto out_free;
	}
	r.id = ppm_rdr_next_id++;
	e->r = r;
	/*
	 * Rewrites go first, the newest first; then drops, those of one
	 * connection before those of any peer, the oldest first.
	 */
	if (r.action != PPM_RDR_DROP)
		e->rank = BIT_ULL(63) - r.id;
	else if (r.peer_addr && r.peer_port)
		e->rank = BIT_ULL(63) + r.id;
	else
		e->rank = BIT_ULL(63) + BIT_ULL(62) + r.id;
	e->track = r.proto == IPPROTO_TCP && r.peer_addr && r.peer_port;
	e->created = jiffies;
	e->last_used = e->created;
	e->answered = e->created - PPM_ANSWER_GAP;
	ppm_rdr_insert(e);
	if (ppm_rdr_count == 1)
		schedule_delayed_work(&ppm_rdr_work, HZ);
	mutex_unlock(&ppm_rdr_lock);

	if (copy_to_user(arg, &r, sizeof(r)))
		return -EFAULT;	/* it is in the table: list shows it */
	return 0;

out_free:
	mutex_unlock(&ppm_rdr_lock);
	kfree(e);
	return ret;
}

/**
 * DOC: PPM_IOC_REDIRECT_DEL
 *
 * Removes the entry @id, or every entry with PPM_RDR_DEL_ALL, and tells in
 * @removed how many went.
 *
 * Who: CAP_NET_ADMIN (see DOC: permissions).
 *
 * Checks: only known @flags.
 *
 * Errors: -EFAULT when the structure cannot be read or written back (what
 * was removed stays removed); -EINVAL for unknown flags; -ENOENT when no
 * entry has the id (never with PPM_RDR_DEL_ALL, even on an empty table).
 */
long ppm_ioctl_redirect_del(void __user *arg)
{
	struct ppm_redirect_del d;
	struct ppm_rdr *e, *tmp;

	if (copy_from_user(&d, arg, sizeof(d)))
		return -EFAULT;
	if (d.flags & ~PPM_RDR_DEL_ALL)
		return -EINVAL;
	d.removed = 0;
	mutex_lock(&ppm_rdr_lock);
	list_for_each_entry_safe(e, tmp, &ppm_rdr_list, list) {
		if ((d.flags & PPM_RDR_DEL_ALL) || e->r.id == d.id) {
			ppm_rdr_remove(e);
			d.removed++;
		}
	}
	mutex_unlock(&ppm_rdr_lock);
	if (copy_to_user(arg, &d, sizeof(d)))
		return -EFAULT;
	return d.removed || (d.flags & PPM_RDR_DEL_ALL) ? 0 : -ENOENT;
}

/**
 * DOC: PPM_IOC_REDIRECT_LIST
 *
 * Copies up to @max entries, oldest first, with their state, counters,
 * age and idle time, to the user array @entries, and sets @count to the
 * number of entries in the table (more than @max when the array was too
 * short).  The table is read into a kernel buffer first, so no user memory
 * is touched while it is locked.
 *
 * Who: CAP_NET_ADMIN (see DOC: permissions).
 *
 * Checks: @max at most PPM_RDR_MAX.
 *
 * Errors: -EFAULT when the argument or the array cannot be read or written;
 * -EINVAL for a @max too large; -ENOMEM.
 */
long ppm_ioctl_redirect_list(void __user *arg)
{
	struct ppm_redirect_list l;
	struct ppm_redirect *buf = NULL;
	struct ppm_rdr *e;
	unsigned long now = jiffies;
	u32 n = 0;
	int ret = 0;

	if (copy_from_user(&l, arg, sizeof(l)))
		return -EFAULT;
	if (l.max > PPM_RDR_MAX)
		return -EINVAL;
	if (l.max) {
		buf = kvcalloc(l.max, sizeof(*buf), GFP_KERNEL);
		if (!buf)
			return -ENOMEM;
	}
	/* A snapshot: no user memory is touched while the table is locked. */
	mutex_lock(&ppm_rdr_lock);
	list_for_each_entry(e, &ppm_rdr_list, list) {
		if (n < l.max) {
			struct ppm_redirect *r = &buf[n];

			*r = e->r;
			r->state = READ_ONCE(e->state);
			r->packets = atomic64_read(&e->packets);
			r->bytes = atomic64_read(&e->bytes);
			r->age_ms = jiffies_to_msecs(now - e->created);
			r->idle_ms = jiffies_to_msecs(now - READ_ONCE(e->last_used));
		}
		n++;
	}
	mutex_unlock(&ppm_rdr_lock);
	if (copy_to_user(u64_to_user_ptr(l.entries), buf,
			 array_size(min(n, l.max), sizeof(*buf)))) {
		ret = -EFAULT;
		goto out;
	}
	l.count = n;
	if (copy_to_user(arg, &l, sizeof(l)))
		ret = -EFAULT;
out:
	kvfree(buf);
	return ret;
}

int ppm_redirect_init(void)
{
	ppm_rdr_seed = get_random_u32();
	return nf_register_net_hooks(&init_net, ppm_nf_ops,
				     ARRAY_SIZE(ppm_nf_ops));
}

void ppm_redirect_exit(void)
{
	struct ppm_rdr *e, *tmp;

	nf_unregister_net_hooks(&init_net, ppm_nf_ops, ARRAY_SIZE(ppm_nf_ops));
	cancel_delayed_work_sync(&ppm_rdr_work);
	/*
	 * Every entry holds a module reference, so the table is empty here;
	 * whatever were left goes without touching the module's count.
	 */
	mutex_lock(&ppm_rdr_lock);
	list_for_each_entry_safe(e, tmp, &ppm_rdr_list, list)
		ppm_rdr_unlink(e);
	mutex_unlock(&ppm_rdr_lock);
	rcu_barrier();	/* the kfree_rcu() of removed entries */
}
