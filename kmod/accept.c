// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: accept - put an established TCP connection into a listener's accept
 * queue.
 *
 * When a listener migrates, connections that finished their handshake but
 * were not accepted yet must be accepted by the process on the new node.
 * The old node's ppm accepts them itself and dumps them; the new node's
 * ppm rebuilds them (TCP repair) and hands each to the restored listener
 * with PPM_IOC_QUEUE_ACCEPT, which queues it as the kernel queues a child
 * after a handshake: a request sock from the listener's own request ops,
 * holding the child, appended to the accept queue.  The child leaves the
 * caller's descriptor and is the process's at its next accept(2).
 *
 * The caller's socket never stays without a sock: it gets a new, closed
 * TCP sock in the same step (struct socket's sk is never NULL while the
 * file is open; every socket call dereferences it).  Nobody else may use
 * the descriptor meanwhile: a socket whose file has another reference
 * (another descriptor, a dup, a call in progress in another thread) is
 * refused with -EBUSY, since that user could be holding the sock that
 * moves.  Permission: CAP_NET_ADMIN, checked by ppm_ioctl().
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/in.h>
#include <linux/net.h>
#include <linux/security.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <net/inet_connection_sock.h>
#include <net/inet_sock.h>
#include <net/net_namespace.h>
#include <net/request_sock.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "ppm_internal.h"

static bool ppm_is_tcp4(const struct sock *sk)
{
	return sk && sk->sk_family == AF_INET && sk->sk_protocol == IPPROTO_TCP &&
	       sk->sk_type == SOCK_STREAM;
}

/* Whether @csk, the caller's connection, may go into @lsk's accept queue. */
static int ppm_check_pair(struct sock *lsk, struct sock *csk,
			  struct socket *csock)
{
	sock_owned_by_me(lsk);
	sock_owned_by_me(csk);
	if (lsk->sk_state != TCP_LISTEN || csk->sk_state != TCP_ESTABLISHED ||
	    tcp_sk(csk)->repair ||
	    inet_sk(lsk)->inet_num != inet_sk(csk)->inet_num)
		return -EINVAL;
	/* Sockets a ULP (kTLS) or BPF sockmap holds stay where they are. */
	if (inet_csk(csk)->icsk_ulp_ops || READ_ONCE(csk->sk_user_data))
		return -EINVAL;
	if (sk_acceptq_is_full(lsk))
		return -ENOBUFS;
	/* Only the caller's descriptor and our lookup may hold the file. */
	if (file_count(csock->file) != 2)
		return -EBUSY;
	return 0;
}

/* Leaves @sk without a socket, as a child waiting in an accept queue is. */
static void ppm_sk_orphan(struct sock *sk)
{
	write_lock_bh(&sk->sk_callback_lock);
	sk_set_socket(sk, NULL);
	RCU_INIT_POINTER(sk->sk_wq, NULL);
	write_unlock_bh(&sk->sk_callback_lock);
}

/*
 * Makes @sk the sock of @sock, as sock_graft() does, but replacing the
 * sock @sock holds in one store: sock->sk is never NULL in between.
 */
static void ppm_sk_graft(struct sock *sk, struct socket *sock)
{
	write_lock_bh(&sk->sk_callback_lock);
	rcu_assign_pointer(sk->sk_wq, &sock->wq);
	WRITE_ONCE(sock->sk, sk);
	sk_set_socket(sk, sock);
	sk->sk_uid = SOCK_INODE(sock)->i_uid;
	security_sock_graft(sk, sock);
	write_unlock_bh(&sk->sk_callback_lock);
}

/**
 * DOC: PPM_IOC_QUEUE_ACCEPT
 *
 * Moves the established connection of @sock_fd into the accept queue of the
 * listener @listen_fd, as a handshake would have put it there (see the
 * comment at the top of this file); @sock_fd is left holding a new,
 * unconnected TCP socket.
 *
 * Who: CAP_NET_ADMIN (see DOC: permissions).
 *
 * Checks: @flags and @reserved zero; both descriptors sockets of IPv4 TCP,
 * two different ones, in the same network namespace; with both socks
 * locked: the listener listening, the connection established and out of
 * repair mode, both on the same local port, the connection held by no ULP
 * (kTLS) or BPF sockmap, room in the accept queue, and no other reference
 * to @sock_fd's file.
 *
 * Errors: -EFAULT when the structure cannot be read; -EBADF or -ENOTSOCK
 * for a descriptor that is not an open socket; -EINVAL for the rest of the
 * checks above; -ENOBUFS when the accept queue is full; -EBUSY when another
 * descriptor, dup or thread holds @sock_fd's file; -ENOMEM, or the error of
 * creating the new socket.
 */
long ppm_ioctl_queue_accept(void __user *arg)
{
	struct ppm_queue_accept a;
	struct socket *lsock, *csock, *fresh;
	struct request_sock *req;
	struct sock *lsk, *csk, *nsk;
	int err;

	if (copy_from_user(&a, arg, sizeof(a)))
		return -EFAULT;
	if (a.flags || a.reserved)
		return -EINVAL;
	lsock = sockfd_lookup(a.listen_fd, &err);
	if (!lsock)
		return err;
	csock = sockfd_lookup(a.sock_fd, &err);
	if (!csock)
		goto out_listener;
	lsk = lsock->sk;
	csk = csock->sk;
	err = -EINVAL;
	if (!ppm_is_tcp4(lsk) || !ppm_is_tcp4(csk) || lsk == csk ||
	    !net_eq(sock_net(lsk), sock_net(csk)))
		goto out_child;

	/* What the caller's socket holds afterwards: a new, closed TCP sock. */
	err = __sock_create(sock_net(csk), AF_INET, SOCK_STREAM, IPPROTO_TCP,
			    &fresh, 0);
	if (err)
		goto out_child;
	/* The request sock comes from the listener's own ops (TCP's). */
	req = inet_reqsk_alloc(lsk->sk_prot->rsk_prot, lsk, true);
	err = -ENOMEM;
	if (!req)
		goto out_fresh;
	tcp_rsk(req)->tfo_listener = false;
	refcount_set(&req->rsk_refcnt, 1);

	lock_sock(lsk);
	lock_sock_nested(csk, SINGLE_DEPTH_NESTING);
	err = ppm_check_pair(lsk, csk, csock);
	if (err) {
		release_sock(csk);
		release_sock(lsk);
		refcount_set(&req->rsk_refcnt, 0);
		reqsk_free(req);
		goto out_fresh;
	}
	/* The child leaves the caller's socket, which takes the fresh sock. */
	nsk = fresh->sk;
	ppm_sk_orphan(nsk);
	fresh->sk = NULL;
	ppm_sk_orphan(csk);
	ppm_sk_graft(nsk, csock);
	csock->state = SS_UNCONNECTED;
	release_sock(csk);

	local_bh_disable();
	/* NULL (the child dropped) only if @lsk stopped listening: our lock prevents it. */
	if (!inet_csk_reqsk_queue_add(lsk, req, csk)) {
		reqsk_put(req);
		err = -EINVAL;
	}
	local_bh_enable();
	lsk->sk_data_ready(lsk);
	release_sock(lsk);

out_fresh:
	sock_release(fresh);	/* its sock, unless the caller's socket took it */
out_child:
	sockfd_put(csock);
out_listener:
	sockfd_put(lsock);
	return err;
}
