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
 * The first matching entry decides; rewrites are matched before drops, so
 * an old node can forward a flow it dropped during the freeze by adding a
 * forward entry before removing the drop.
 *
 * Every entry holds a reference on the module, so the module cannot be
 * unloaded while redirects are active.  TCP entries of one flow end a few
 * seconds after a RST or FINs both ways; any entry may end after an idle
 * time.  Only CAP_NET_ADMIN may change or read the table.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/jiffies.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/rculist.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <net/checksum.h>
#include <net/ip.h>
#include <net/net_namespace.h>
#include <net/route.h>

#include "ppm_internal.h"

/* How long a closed TCP flow's entries stay, for late retransmissions. */
#define PPM_RDR_LINGER		(10 * HZ)

#define PPM_TCP_FIN		0x1
#define PPM_TCP_RST		0x2
#define PPM_TCP_SYN		0x4	/* SYN without ACK: opens a connection */

#define PPM_RDR_FIN_IN		0x1
#define PPM_RDR_FIN_OUT		0x2

struct ppm_rdr {
	struct list_head list;
	struct rcu_head rcu;
	struct ppm_redirect r;
	atomic64_t packets;
	atomic64_t bytes;
	unsigned long created;
	unsigned long last_used;
	unsigned long closed_at;
	u32 fins;
	u32 state;
};

static LIST_HEAD(ppm_rdr_list);
static DEFINE_MUTEX(ppm_rdr_lock);
static unsigned int ppm_rdr_count;
static u64 ppm_rdr_next_id = 1;

static void ppm_rdr_expire(struct work_struct *work);
static DECLARE_DELAYED_WORK(ppm_rdr_work, ppm_rdr_expire);

/* The four ends of a packet, in network order. */
struct ppm_flow {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	u8 proto;
	u8 tcp_flags;	/* PPM_TCP_* */
};

static bool ppm_eq32(__be32 have, __be32 want)
{
	return !want || have == want;
}

static bool ppm_eq16(__be16 have, __be16 want)
{
	return !want || have == want;
}

/* Reads the ends of an IPv4 TCP/UDP packet; false for anything else. */
static bool ppm_parse(const struct sk_buff *skb, struct ppm_flow *f)
{
	const struct iphdr *iph = ip_hdr(skb);
	unsigned int thoff;
	__be16 ports[2];
	struct tcphdr _th;
	const struct tcphdr *th;

	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return false;
	if (ip_is_fragment(iph))
		return false;
	thoff = iph->ihl * 4;
	if (thoff < sizeof(*iph))
		return false;
	f->saddr = iph->saddr;
	f->daddr = iph->daddr;
	f->proto = iph->protocol;
	f->tcp_flags = 0;
	if (f->proto == IPPROTO_TCP) {
		th = skb_header_pointer(skb, skb_network_offset(skb) + thoff,
					sizeof(_th), &_th);
		if (!th)
			return false;
		f->sport = th->source;
		f->dport = th->dest;
		if (th->fin)
			f->tcp_flags |= PPM_TCP_FIN;
		if (th->rst)
			f->tcp_flags |= PPM_TCP_RST;
		if (th->syn && !th->ack)
			f->tcp_flags |= PPM_TCP_SYN;
		return true;
	}
	if (skb_copy_bits(skb, skb_network_offset(skb) + thoff, ports,
			  sizeof(ports)))
		return false;
	f->sport = ports[0];
	f->dport = ports[1];
	return true;
}

/* Rewrites the source (or destination) address and port of the packet. */
static bool ppm_rewrite(struct sk_buff *skb, bool source, __be32 addr,
			__be16 port)
{
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

static void ppm_account(struct ppm_rdr *e, const struct sk_buff *skb,
			const struct ppm_flow *f, bool out)
{
	atomic64_inc(&e->packets);
	atomic64_add(skb->len, &e->bytes);
	WRITE_ONCE(e->last_used, jiffies);
	if (e->r.proto != IPPROTO_TCP || !e->r.peer_port ||
	    READ_ONCE(e->state) == PPM_RDR_ST_CLOSING)
		return;
	if (f->tcp_flags & PPM_TCP_FIN)
		WRITE_ONCE(e->fins, READ_ONCE(e->fins) |
			   (out ? PPM_RDR_FIN_OUT : PPM_RDR_FIN_IN));
	if ((f->tcp_flags & PPM_TCP_RST) ||
	    READ_ONCE(e->fins) == (PPM_RDR_FIN_IN | PPM_RDR_FIN_OUT)) {
		WRITE_ONCE(e->closed_at, jiffies);
		WRITE_ONCE(e->state, PPM_RDR_ST_CLOSING);
	}
}

/* Does the packet go from PEER to OLD (@to_old) or from OLD to PEER? */
static bool ppm_old_peer(const struct ppm_redirect *r,
			 const struct ppm_flow *f, bool to_old)
{
	if (to_old)
		return f->daddr == r->old_addr && f->dport == r->old_port &&
		       ppm_eq32(f->saddr, r->peer_addr) &&
		       ppm_eq16(f->sport, r->peer_port);
	return f->saddr == r->old_addr && f->sport == r->old_port &&
	       ppm_eq32(f->daddr, r->peer_addr) &&
	       ppm_eq16(f->dport, r->peer_port);
}

/* Does the packet go from NEW to PEER? */
static bool ppm_new_to_peer(const struct ppm_redirect *r,
			    const struct ppm_flow *f)
{
	return f->saddr == r->new_addr && f->sport == r->new_port &&
	       ppm_eq32(f->daddr, r->peer_addr) &&
	       ppm_eq16(f->dport, r->peer_port);
}

static unsigned int ppm_hook_in(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	struct ppm_flow f;
	struct ppm_rdr *e;

	if (list_empty(&ppm_rdr_list) || !ppm_parse(skb, &f))
		return NF_ACCEPT;
	list_for_each_entry_rcu(e, &ppm_rdr_list, list) {
		const struct ppm_redirect *r = &e->r;

		if (r->proto != f.proto)
			continue;
		switch (r->action) {
		case PPM_RDR_DROP:
			if (!ppm_old_peer(r, &f, true))
				continue;
			if ((r->flags & PPM_RDR_F_SYN) &&
			    !(f.tcp_flags & PPM_TCP_SYN))
				continue;
			ppm_account(e, skb, &f, false);
			return NF_DROP;
		case PPM_RDR_FORWARD:
			if (!ppm_old_peer(r, &f, true))
				continue;
			ppm_account(e, skb, &f, false);
			if (!ppm_rewrite(skb, false, r->new_addr, r->new_port))
				return NF_DROP;
			return NF_ACCEPT;
		case PPM_RDR_PEER:
			if (!ppm_new_to_peer(r, &f))
				continue;
			ppm_account(e, skb, &f, false);
			if (!ppm_rewrite(skb, true, r->old_addr, r->old_port))
				return NF_DROP;
			return NF_ACCEPT;
		default:
			continue;
		}
	}
	return NF_ACCEPT;
}

static unsigned int ppm_hook_out(void *priv, struct sk_buff *skb,
				 const struct nf_hook_state *state)
{
	struct ppm_flow f;
	struct ppm_rdr *e;

	if (list_empty(&ppm_rdr_list) || !ppm_parse(skb, &f))
		return NF_ACCEPT;
	list_for_each_entry_rcu(e, &ppm_rdr_list, list) {
		const struct ppm_redirect *r = &e->r;

		if (r->proto != f.proto)
			continue;
		switch (r->action) {
		case PPM_RDR_DROP:
			/* A SYN drop holds back what comes in only. */
			if ((r->flags & PPM_RDR_F_SYN) ||
			    !ppm_old_peer(r, &f, false))
				continue;
			ppm_account(e, skb, &f, true);
			return NF_DROP;
		case PPM_RDR_PEER:
			/* From this node (the peer) to the old endpoint. */
			if (f.daddr != r->old_addr || f.dport != r->old_port ||
			    !ppm_eq32(f.saddr, r->peer_addr) ||
			    !ppm_eq16(f.sport, r->peer_port))
				continue;
			ppm_account(e, skb, &f, true);
			if (!ppm_rewrite(skb, false, r->new_addr, r->new_port))
				return NF_DROP;
			if (ip_route_me_harder(state->net, state->sk, skb,
					       RTN_UNSPEC))
				return NF_DROP;
			return NF_ACCEPT;
		case PPM_RDR_ANSWER:
			if (!ppm_new_to_peer(r, &f))
				continue;
			ppm_account(e, skb, &f, true);
			if (!ppm_rewrite(skb, true, r->old_addr, r->old_port))
				return NF_DROP;
			return NF_ACCEPT;
		default:
			continue;
		}
	}
	return NF_ACCEPT;
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

/* Removes @e; the caller holds ppm_rdr_lock. */
static void ppm_rdr_remove(struct ppm_rdr *e)
{
	list_del_rcu(&e->list);
	ppm_rdr_count--;
	kfree_rcu(e, rcu);
	module_put(THIS_MODULE);
}

static bool ppm_rdr_expired(const struct ppm_rdr *e, unsigned long now)
{
	unsigned long idle = e->r.idle_timeout * HZ;

	if (READ_ONCE(e->state) == PPM_RDR_ST_CLOSING &&
	    time_after(now, READ_ONCE(e->closed_at) + PPM_RDR_LINGER))
		return true;
	return idle && time_after(now, READ_ONCE(e->last_used) + idle);
}

static void ppm_rdr_expire(struct work_struct *work)
{
	struct ppm_rdr *e, *tmp;
	unsigned long now = jiffies;

	mutex_lock(&ppm_rdr_lock);
	list_for_each_entry_safe(e, tmp, &ppm_rdr_list, list) {
		if (ppm_rdr_expired(e, now))
			ppm_rdr_remove(e);
	}
	if (ppm_rdr_count)
		schedule_delayed_work(&ppm_rdr_work, HZ);
	mutex_unlock(&ppm_rdr_lock);
}

static bool ppm_rdr_same(const struct ppm_redirect *a,
			 const struct ppm_redirect *b)
{
	return a->proto == b->proto && a->action == b->action &&
	       a->flags == b->flags && a->old_addr == b->old_addr && a->old_port == b->old_port &&
	       a->new_addr == b->new_addr && a->new_port == b->new_port &&
	       a->peer_addr == b->peer_addr && a->peer_port == b->peer_port;
}

static int ppm_rdr_check(const struct ppm_redirect *r)
{
	if (r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP)
		return -EPROTONOSUPPORT;
	if (r->action < PPM_RDR_DROP || r->action > PPM_RDR_ANSWER)
		return -EINVAL;
	if ((r->flags & ~PPM_RDR_F_SYN) || r->reserved0 || r->reserved[0] ||
	    r->reserved[1])
		return -EINVAL;
	if ((r->flags & PPM_RDR_F_SYN) &&
	    (r->action != PPM_RDR_DROP || r->proto != IPPROTO_TCP))
		return -EINVAL;
	if (!r->old_addr || !r->old_port)
		return -EINVAL;
	if (r->action != PPM_RDR_DROP && (!r->new_addr || !r->new_port))
		return -EINVAL;
	if (r->idle_timeout > PPM_RDR_MAX_IDLE)
		return -EINVAL;
	return 0;
}

long ppm_ioctl_redirect_add(void __user *arg)
{
	struct ppm_redirect r;
	struct ppm_rdr *e, *it;
	int ret;

	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
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
	mutex_lock(&ppm_rdr_lock);
	if (ppm_rdr_count >= PPM_RDR_MAX) {
		ret = -ENOSPC;
		goto out_free;
	}
	list_for_each_entry(it, &ppm_rdr_list, list) {
		if (ppm_rdr_same(&it->r, &r)) {
			ret = -EEXIST;
			goto out_free;
		}
	}
	if (!try_module_get(THIS_MODULE)) {
		ret = -ENODEV;
		goto out_free;
	}
	r.id = ppm_rdr_next_id++;
	e->r = r;
	e->created = jiffies;
	e->last_used = e->created;
	/* Rewrites go first: a flow forwarded after its freeze is no longer dropped. */
	if (r.action == PPM_RDR_DROP)
		list_add_tail_rcu(&e->list, &ppm_rdr_list);
	else
		list_add_rcu(&e->list, &ppm_rdr_list);
	if (!ppm_rdr_count++)
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

long ppm_ioctl_redirect_del(void __user *arg)
{
	struct ppm_redirect_del d;
	struct ppm_rdr *e, *tmp;

	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
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

long ppm_ioctl_redirect_list(void __user *arg)
{
	struct ppm_redirect_list l;
	struct ppm_redirect __user *out;
	struct ppm_redirect r;
	struct ppm_rdr *e;
	unsigned long now = jiffies;
	u32 n = 0;
	int ret = 0;

	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
	if (copy_from_user(&l, arg, sizeof(l)))
		return -EFAULT;
	if (l.max > PPM_RDR_MAX)
		return -EINVAL;
	out = u64_to_user_ptr(l.entries);
	mutex_lock(&ppm_rdr_lock);
	list_for_each_entry(e, &ppm_rdr_list, list) {
		if (n < l.max) {
			r = e->r;
			r.state = READ_ONCE(e->state);
			r.packets = atomic64_read(&e->packets);
			r.bytes = atomic64_read(&e->bytes);
			r.age_ms = jiffies_to_msecs(now - e->created);
			r.idle_ms = jiffies_to_msecs(now - READ_ONCE(e->last_used));
			if (copy_to_user(&out[n], &r, sizeof(r))) {
				ret = -EFAULT;
				break;
			}
		}
		n++;
	}
	mutex_unlock(&ppm_rdr_lock);
	if (ret)
		return ret;
	l.count = n;
	if (copy_to_user(arg, &l, sizeof(l)))
		return -EFAULT;
	return 0;
}

int ppm_redirect_init(void)
{
	return nf_register_net_hooks(&init_net, ppm_nf_ops,
				     ARRAY_SIZE(ppm_nf_ops));
}

void ppm_redirect_exit(void)
{
	/* Every entry holds a module reference: the table is empty here. */
	nf_unregister_net_hooks(&init_net, ppm_nf_ops, ARRAY_SIZE(ppm_nf_ops));
	cancel_delayed_work_sync(&ppm_rdr_work);
	rcu_barrier();
}
