/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ppm: preemptive process migration - the user/kernel ABI of /dev/ppm.
 *
 * This header is the single source of truth for every ioctl number and
 * structure shared between the module and the ppm tool.  The TypeScript
 * layouts in ffi/uapi.ts are checked against it by
 * tests/unit/uapi_layout_test.ts.
 *
 * Rules for changes: never reorder or resize an existing field; add new
 * fields only where a reserved field was, or append and bump
 * PPM_ABI_VERSION.  Every structure has an explicit size, no implicit
 * padding and 8-byte alignment of 64-bit fields.
 */
#ifndef _UAPI_LINUX_PPM_H
#define _UAPI_LINUX_PPM_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped on every incompatible change of this header. */
#define PPM_ABI_VERSION		4

#define PPM_DEVICE_NAME		"ppm"
#define PPM_VERSION_LEN		32
#define PPM_RELEASE_LEN		65

/* Feature bits reported by PPM_IOC_INFO. */
#define PPM_FEAT_INFO		_BITULL(0)	/* PPM_IOC_INFO */
#define PPM_FEAT_DUMP		_BITULL(1)	/* PPM_IOC_DUMP_TASK, PPM_IOC_DUMP_VMAS */
#define PPM_FEAT_RESTORE	_BITULL(2)	/* PPM_IOC_RESTORE */
#define PPM_FEAT_REDIRECT	_BITULL(3)	/* netfilter redirects of migrated flows */
#define PPM_FEAT_GRANT		_BITULL(4)	/* PPM_IOC_GRANT, PPM_IOC_GRANT_TAKE */
#define PPM_FEAT_RUN_AT		_BITULL(5)	/* plan runs with PPM_RUN_AT */
#define PPM_FEAT_KEEP		_BITULL(6)	/* PPM_VMA_KEEP, PPM_RUN_ZERO */

/**
 * struct ppm_info - what the loaded module is
 * @abi_version: PPM_ABI_VERSION the module was built with
 * @struct_size: sizeof(struct ppm_info) as the module knows it
 * @features: PPM_FEAT_* bits the module implements
 * @version: module version string, NUL terminated
 * @release: utsname release of the running kernel, NUL terminated
 * @reserved: zero
 */
struct ppm_info {
	__u32 abi_version;
	__u32 struct_size;
	__u64 features;
	char version[PPM_VERSION_LEN];
	char release[PPM_RELEASE_LEN];
	__u8 reserved[7];
};

#define PPM_NSIG		64
#define PPM_AUXV_WORDS		64
#define PPM_MAX_VMAS		65536

/**
 * struct ppm_sigaction - one signal's disposition, as the kernel keeps it
 * @handler: sa_handler (0 = SIG_DFL, 1 = SIG_IGN, else an address)
 * @flags: sa_flags
 * @restorer: sa_restorer
 * @mask: sa_mask (bit N-1 = signal N)
 */
struct ppm_sigaction {
	__u64 handler;
	__u64 flags;
	__u64 restorer;
	__u64 mask;
};

/**
 * struct ppm_dump_task - what /proc does not show about a stopped task
 * @pid: in: the task; it must be ptrace-stopped by the caller
 * @struct_size: in: sizeof(struct ppm_dump_task)
 * @nr_threads: threads in the task's thread group
 * @auxv_words: valid words in @auxv
 * @start_code: mm field, as the following ones up to @env_end
 * @end_code: mm field
 * @start_data: mm field
 * @end_data: mm field
 * @start_brk: mm field
 * @brk: mm field
 * @start_stack: mm field
 * @arg_start: mm field
 * @arg_end: mm field
 * @env_start: mm field
 * @env_end: mm field
 * @vdso: address of the vDSO
 * @auxv: the saved auxiliary vector
 * @sas_ss_sp: alternate signal stack
 * @sas_ss_size: its size
 * @sas_ss_flags: its flags
 * @personality: the task's personality
 * @blocked: blocked signals
 * @pending: signals pending for the thread
 * @shared_pending: signals pending for the process
 * @action: the handlers of signals 1..64
 * @robust_list: set_robust_list() head
 * @robust_list_len: its length
 * @clear_child_tid: set_tid_address() pointer
 * @rseq: registered rseq area
 * @rseq_len: its length
 * @rseq_sig: its signature
 * @securebits: SECBIT_* of the task's credentials
 * @dumpable: get_dumpable() of its mm (SUID_DUMP_DISABLE, _USER or _ROOT)
 * @pdeath_signal: prctl(PR_SET_PDEATHSIG) signal, 0 for none
 * @reserved0: zero
 * @reserved: zero
 */
struct ppm_dump_task {
	__s32 pid;
	__u32 struct_size;
	__u32 nr_threads;
	__u32 auxv_words;
	__u64 start_code;
	__u64 end_code;
	__u64 start_data;
	__u64 end_data;
	__u64 start_brk;
	__u64 brk;
	__u64 start_stack;
	__u64 arg_start;
	__u64 arg_end;
	__u64 env_start;
	__u64 env_end;
	__u64 vdso;
	__u64 auxv[PPM_AUXV_WORDS];
	__u64 sas_ss_sp;
	__u64 sas_ss_size;
	__u32 sas_ss_flags;
	__u32 personality;
	__u64 blocked;
	__u64 pending;
	__u64 shared_pending;
	struct ppm_sigaction action[PPM_NSIG];
	__u64 robust_list;
	__u64 robust_list_len;
	__u64 clear_child_tid;
	__u64 rseq;
	__u32 rseq_len;
	__u32 rseq_sig;
	__u32 securebits;
	__u32 dumpable;
	__s32 pdeath_signal;
	__u32 reserved0;
	__u64 reserved[2];
};

/**
 * struct ppm_vma - one mapping with its exact kernel flags
 * @start: first address
 * @end: address past the end
 * @pgoff: file offset in pages
 * @vm_flags: VM_* flags
 * @ino: inode number of the mapped file, 0 for anonymous memory
 * @dev: device of the mapped file (new_encode_dev), 0 for anonymous
 * @reserved: zero
 */
struct ppm_vma {
	__u64 start;
	__u64 end;
	__u64 pgoff;
	__u64 vm_flags;
	__u64 ino;
	__u32 dev;
	__u32 reserved;
};

/**
 * struct ppm_dump_vmas - the mappings of a stopped task
 * @pid: in: the task; it must be ptrace-stopped by the caller
 * @count: in: room in @vmas; out: number of mappings (may exceed the room)
 * @vmas: in: user address of an array of struct ppm_vma
 */
struct ppm_dump_vmas {
	__s32 pid;
	__u32 count;
	__u64 vmas;
};

/* The restore plan: what the ppm tool feeds PPM_IOC_RESTORE through a file. */
#define PPM_PLAN_MAGIC		0x4e4c5050	/* "PPLN" */
#define PPM_PLAN_MAX_PAGES	16384		/* pages in one run */
#define PPM_PLAN_MAX_RUNS	4194304

#define PPM_VMA_SHARED		_BITUL(0)	/* MAP_SHARED, else MAP_PRIVATE */
#define PPM_VMA_GROWSDOWN	_BITUL(1)	/* the stack */
/*
 * Already there: the caller's own anonymous private memory, readable and
 * writable, covers the mapping, with its pages (a migration's destination
 * wrote them while the process still ran at the source).  It is neither
 * unmapped nor mapped again; runs then fill what changed since.  Only for
 * an anonymous private mapping with prot PROT_READ | PROT_WRITE.
 */
#define PPM_VMA_KEEP		_BITUL(2)
#define PPM_VMA_FLAGS		(PPM_VMA_SHARED | PPM_VMA_GROWSDOWN | PPM_VMA_KEEP)

/**
 * struct ppm_plan_header - start of a restore plan
 * @magic: PPM_PLAN_MAGIC
 * @abi_version: PPM_ABI_VERSION
 * @nr_vmas: struct ppm_plan_vma entries that follow the header
 * @nr_runs: struct ppm_plan_run entries (each with its pages) after them
 * @start_code: mm field, as the following ones up to @env_end
 * @end_code: mm field
 * @start_data: mm field
 * @end_data: mm field
 * @start_brk: mm field
 * @brk: mm field
 * @start_stack: mm field
 * @arg_start: mm field
 * @arg_end: mm field
 * @env_start: mm field
 * @env_end: mm field
 * @vdso: where the vDSO must already be (the stub moves it there)
 * @auxv: the saved auxiliary vector
 * @auxv_words: valid words in @auxv
 * @rseq_sig: rseq signature
 * @rseq: rseq area to register, 0 for none
 * @reserved: zero
 */
struct ppm_plan_header {
	__u32 magic;
	__u32 abi_version;
	__u32 nr_vmas;
	__u32 nr_runs;
	__u64 start_code;
	__u64 end_code;
	__u64 start_data;
	__u64 end_data;
	__u64 start_brk;
	__u64 brk;
	__u64 start_stack;
	__u64 arg_start;
	__u64 arg_end;
	__u64 env_start;
	__u64 env_end;
	__u64 vdso;
	__u64 auxv[PPM_AUXV_WORDS];
	__u32 auxv_words;
	__u32 rseq_sig;
	__u64 rseq;
	__u64 reserved[4];
};

/**
 * struct ppm_plan_vma - one mapping to create
 * @start: first address, page aligned
 * @end: address past the end, page aligned
 * @pgoff: file offset in pages
 * @prot: PROT_READ | PROT_WRITE | PROT_EXEC
 * @flags: PPM_VMA_*
 * @fd: descriptor of the file to map in the caller, -1 for anonymous memory
 * @reserved: zero
 */
struct ppm_plan_vma {
	__u64 start;
	__u64 end;
	__u64 pgoff;
	__u32 prot;
	__u32 flags;
	__s32 fd;
	__u32 reserved;
};

#define PPM_RUN_AT		_BITUL(0)	/* the pages are elsewhere in the plan */
#define PPM_RUN_ZERO		_BITUL(1)	/* no pages follow: the range becomes zeros */
#define PPM_RUN_FLAGS		(PPM_RUN_AT | PPM_RUN_ZERO)

/**
 * struct ppm_plan_run - consecutive pages to fill; nr_pages * 4096 bytes follow
 * @start: address of the first page, inside one mapping of the plan
 * @nr_pages: 1..PPM_PLAN_MAX_PAGES
 * @flags: PPM_RUN_*.  With PPM_RUN_AT, a __u64 follows instead of the pages:
 *	the plan offset (page aligned) where they are.  A migration's
 *	destination keeps the pages of pre-copy rounds there, past the runs.
 *	With PPM_RUN_ZERO (not with PPM_RUN_AT), nothing follows: the pages,
 *	in a writable mapping, become zeros (what a kept mapping held of
 *	them is gone).
 */
struct ppm_plan_run {
	__u64 start;
	__u32 nr_pages;
	__u32 flags;
};

/**
 * struct ppm_restore - argument of PPM_IOC_RESTORE
 * @plan_fd: in: descriptor of the plan, read from offset 0
 * @flags: in: zero
 * @failed_at: out: plan byte offset where a problem was found
 * @error: out: what was wrong, NUL terminated
 *
 * Credentials, the exe link and the stub's own descriptors are dealt with by
 * the tool after the ioctl returns, with the process's own system calls.
 */
struct ppm_restore {
	__s32 plan_fd;
	__u32 flags;
	__u64 failed_at;
	char error[112];
};

/*
 * Redirects: what a node's netfilter hooks do with the IPv4 packets of a
 * migrated socket's flows.  The process had the endpoint OLD (old_addr,
 * old_port) on its old node and has NEW (new_addr, new_port) on its new
 * node; PEER (peer_addr, peer_port) is the other end, 0 meaning any.
 */
#define PPM_RDR_DROP		1	/* old node: drop PEER<->OLD, both ways */
#define PPM_RDR_PEER		2	/* a peer: out dst OLD->NEW, in src NEW->OLD */
#define PPM_RDR_FORWARD		3	/* old node: in dst OLD->NEW (then routed on) */
#define PPM_RDR_ANSWER		4	/* new node: out src NEW->OLD */

#define PPM_RDR_F_SYN		_BITUL(0)	/* drop: only TCP SYNs (no ACK) to OLD */
#define PPM_RDR_F_ALIVE		_BITUL(1)	/* drop: answer the peer's keepalive probes */

#define PPM_RDR_ST_OPEN		0	/* packets flow */
#define PPM_RDR_ST_CLOSING	1	/* TCP FIN both ways or a valid RST: expires soon */

#define PPM_RDR_MAX		4096	/* entries per node */
#define PPM_RDR_MAX_IDLE	86400	/* seconds; also the idle time of 0 */

/**
 * struct ppm_redirect - one redirect entry
 * @id: out (add, list): the entry's id
 * @proto: IPPROTO_TCP or IPPROTO_UDP
 * @action: PPM_RDR_*
 * @flags: PPM_RDR_F_* (PPM_RDR_F_SYN: a TCP drop that holds back only new
 *	connections to OLD: a listener's half-done handshakes still complete;
 *	PPM_RDR_F_ALIVE: a TCP connection's drop (peer address and port set)
 *	that answers the peer's keepalive probes for the frozen socket, as its
 *	own stack would, so that a long freeze does not end the connection)
 * @old_addr: the address peers know (network order)
 * @new_addr: the address the process has now (network order)
 * @peer_addr: the remote end, 0 for any (network order)
 * @old_port: the port peers know (network order)
 * @new_port: the port the process has now (network order)
 * @peer_port: the remote port, 0 for any (network order)
 * @reserved0: zero
 * @idle_timeout: seconds without a packet before the entry expires, at most
 *	PPM_RDR_MAX_IDLE; 0 means PPM_RDR_MAX_IDLE.  A TCP flow entry (a peer
 *	with address and port) that saw a FIN goes after 120 s idle at most.
 * @state: out (list): PPM_RDR_ST_*
 * @packets: out (list): packets matched
 * @bytes: out (list): bytes of the packets matched
 * @age_ms: out (list): time since the entry was added
 * @idle_ms: out (list): time since its last packet (its age if none)
 * @reserved: zero
 */
struct ppm_redirect {
	__u64 id;
	__u8 proto;
	__u8 action;
	__u16 flags;
	__be32 old_addr;
	__be32 new_addr;
	__be32 peer_addr;
	__be16 old_port;
	__be16 new_port;
	__be16 peer_port;
	__u16 reserved0;
	__u32 idle_timeout;
	__u32 state;
	__u64 packets;
	__u64 bytes;
	__u64 age_ms;
	__u64 idle_ms;
	__u64 reserved[2];
};

#define PPM_RDR_DEL_ALL		_BITUL(0)	/* every entry, @id ignored */

/**
 * struct ppm_redirect_del - argument of PPM_IOC_REDIRECT_DEL
 * @id: the entry to remove
 * @flags: PPM_RDR_DEL_*
 * @removed: out: entries removed
 */
struct ppm_redirect_del {
	__u64 id;
	__u32 flags;
	__u32 removed;
};

/**
 * struct ppm_redirect_list - argument of PPM_IOC_REDIRECT_LIST
 * @entries: in: user address of an array of struct ppm_redirect
 * @max: in: its length
 * @count: out: entries on the node (more than @max when it was too short)
 */
struct ppm_redirect_list {
	__u64 entries;
	__u32 max;
	__u32 count;
};

/**
 * struct ppm_queue_accept - argument of PPM_IOC_QUEUE_ACCEPT
 * @listen_fd: a listening IPv4 TCP socket of the caller
 * @sock_fd: an established IPv4 TCP socket of the caller, out of repair
 *	mode, on the listener's port, that no other descriptor or thread
 *	uses (else -EBUSY); the connection moves into the listener's accept
 *	queue and @sock_fd is left holding a new, unconnected TCP socket
 * @flags: zero
 * @reserved: zero
 */
struct ppm_queue_accept {
	__s32 listen_fd;
	__s32 sock_fd;
	__u32 flags;
	__u32 reserved;
};

/**
 * struct ppm_grant - argument of PPM_IOC_GRANT
 * @pid: the process (a thread group leader, in the caller's PID namespace)
 *	that may take the grant: a deputy that its process comes home to
 * @exe_fd: an open regular file: the program that must be running in @pid
 *	when it takes the grant (the restore stub, installed so that its
 *	users cannot read it, which makes the kernel mark a process running
 *	it not dumpable from its execve on)
 * @flags: zero
 * @reserved: zero
 *
 * PPM_IOC_GRANT returns a new descriptor (close-on-exec) that holds the
 * grant; closing every copy of it withdraws the grant.  PPM_IOC_GRANT_TAKE
 * on that descriptor, called by @pid itself while it runs @exe_fd's
 * program, untraced, not dumpable, without seccomp filters or
 * no_new_privs, and sharing its filesystem context with nobody, gives it
 * the credentials of the process that made the grant, once.
 */
struct ppm_grant {
	__s32 pid;
	__s32 exe_fd;
	__u32 flags;
	__u32 reserved;
};

/*
 * Permissions.  /dev/ppm is mode 0600 (root); every ioctl checks its own
 * permission as well, before it reads its argument, and refuses with
 * -EPERM.  Capabilities count in the initial user namespace only (root in
 * a container's user namespace has none there), and both the caller and
 * the process that opened the device must hold them.
 *
 *   PPM_IOC_INFO            anyone who could open the device
 *   PPM_IOC_DUMP_TASK       the caller ptrace-stopped the task itself (no
 *   PPM_IOC_DUMP_VMAS       capability: it already passed ptrace's check)
 *   PPM_IOC_RESTORE         CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN
 *   PPM_IOC_REDIRECT_ADD    CAP_NET_ADMIN
 *   PPM_IOC_REDIRECT_DEL    CAP_NET_ADMIN
 *   PPM_IOC_REDIRECT_LIST   CAP_NET_ADMIN
 *   PPM_IOC_QUEUE_ACCEPT    CAP_NET_ADMIN
 *   PPM_IOC_GRANT           CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, and
 *                           CAP_SETUID and CAP_SETGID
 *   PPM_IOC_GRANT_TAKE      (on a grant's descriptor) the task named in the
 *                           grant, in the state struct ppm_grant describes
 */
#define PPM_IOC_MAGIC		0xB7

#define PPM_IOC_INFO		_IOR(PPM_IOC_MAGIC, 0x00, struct ppm_info)
#define PPM_IOC_DUMP_TASK	_IOWR(PPM_IOC_MAGIC, 0x01, struct ppm_dump_task)
#define PPM_IOC_DUMP_VMAS	_IOWR(PPM_IOC_MAGIC, 0x02, struct ppm_dump_vmas)
#define PPM_IOC_RESTORE		_IOWR(PPM_IOC_MAGIC, 0x03, struct ppm_restore)
#define PPM_IOC_REDIRECT_ADD	_IOWR(PPM_IOC_MAGIC, 0x04, struct ppm_redirect)
#define PPM_IOC_REDIRECT_DEL	_IOWR(PPM_IOC_MAGIC, 0x05, struct ppm_redirect_del)
#define PPM_IOC_REDIRECT_LIST	_IOWR(PPM_IOC_MAGIC, 0x06, struct ppm_redirect_list)
#define PPM_IOC_QUEUE_ACCEPT	_IOW(PPM_IOC_MAGIC, 0x07, struct ppm_queue_accept)
#define PPM_IOC_GRANT		_IOW(PPM_IOC_MAGIC, 0x08, struct ppm_grant)
#define PPM_IOC_GRANT_TAKE	_IO(PPM_IOC_MAGIC, 0x09)

#endif /* _UAPI_LINUX_PPM_H */
