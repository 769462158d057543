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
 * caller's descriptor (whose socket is left empty) and is the process's
 * at its next accept(2).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/in.h>
#include <linux/net.h>
#include <linux/tcp.h>
#include <linux/uaccess.h>
#include <net/inet_connection_sock.h>
#include <net/inet_sock.h>
#include <net/request_sock.h>
#include <net/sock.h>
#include <net/tcp_states.h>

#include "ppm_internal.h"

static bool ppm_is_tcp4(const struct sock *sk)
{
	return sk && sk->sk_family == AF_INET && sk->sk_protocol == IPPROTO_TCP &&
	       sk->sk_type == SOCK_STREAM;
}

long ppm_ioctl_queue_accept(void __user *arg)
{
	struct ppm_queue_accept a;
	struct socket *lsock, *csock;
	struct request_sock *req;
	struct sock *lsk, *csk;
	int err;

	if (!capable(CAP_NET_ADMIN))
		return -EPERM;
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
	if (!ppm_is_tcp4(lsk) || !ppm_is_tcp4(csk) || lsk == csk)
		goto out_child;

	/* The request sock comes from the listener's own ops (TCP's). */
	req = inet_reqsk_alloc(lsk->sk_prot->rsk_prot, lsk, true);
	err = -ENOMEM;
	if (!req)
		goto out_child;
	tcp_rsk(req)->tfo_listener = false;
	refcount_set(&req->rsk_refcnt, 1);

	lock_sock(lsk);
	lock_sock_nested(csk, SINGLE_DEPTH_NESTING);
	err = -EINVAL;
	if (lsk->sk_state != TCP_LISTEN || csk->sk_state != TCP_ESTABLISHED ||
	    tcp_sk(csk)->repair || inet_sk(lsk)->inet_num != inet_sk(csk)->inet_num) {
		release_sock(csk);
		release_sock(lsk);
		refcount_set(&req->rsk_refcnt, 0);
		reqsk_free(req);
		goto out_child;
	}
	/* Detach the child from the caller's socket, as a child waits in a queue. */
	write_lock_bh(&csk->sk_callback_lock);
	sk_set_socket(csk, NULL);
	RCU_INIT_POINTER(csk->sk_wq, NULL);
	csock->sk = NULL;
	write_unlock_bh(&csk->sk_callback_lock);
	release_sock(csk);

	local_bh_disable();
	inet_csk_reqsk_queue_add(lsk, req, csk);	/* cannot fail: it listens */
	local_bh_enable();
	lsk->sk_data_ready(lsk);
	release_sock(lsk);
	err = 0;

out_child:
	sockfd_put(csock);
out_listener:
	sockfd_put(lsock);
	return err;
}
