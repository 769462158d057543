/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * ppm: preemptive process migration - the user/kernel ABI of /dev/ppm.
 *
 * This header is the single source of truth for every ioctl number and
 * structure shared between the module and the ppm tool.  The TypeScript
 * layouts in ffi/uapi.ts are checked against it by tests/unit/uapi_layout.
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
#define PPM_ABI_VERSION		1

#define PPM_DEVICE_NAME		"ppm"
#define PPM_VERSION_LEN		32
#define PPM_RELEASE_LEN		65

/* Feature bits reported by PPM_IOC_INFO. */
#define PPM_FEAT_INFO		_BITULL(0)	/* PPM_IOC_INFO */
#define PPM_FEAT_DUMP		_BITULL(1)	/* checkpoint (later) */
#define PPM_FEAT_RESTORE	_BITULL(2)	/* restore (later) */
#define PPM_FEAT_REDIRECT	_BITULL(3)	/* netfilter redirects (later) */

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
	__u64 reserved[4];
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
#define PPM_VMA_FLAGS		(PPM_VMA_SHARED | PPM_VMA_GROWSDOWN)

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

/**
 * struct ppm_plan_run - consecutive pages to fill; nr_pages * 4096 bytes follow
 * @start: address of the first page, inside one mapping of the plan
 * @nr_pages: 1..PPM_PLAN_MAX_PAGES
 * @reserved: zero
 */
struct ppm_plan_run {
	__u64 start;
	__u32 nr_pages;
	__u32 reserved;
};

/**
 * struct ppm_restore - argument of PPM_IOC_RESTORE
 * @plan_fd: in: descriptor of the plan, read from offset 0
 * @flags: in: zero
 *
 * Credentials, the exe link and the stub's own descriptors are dealt with by
 * the tool after the ioctl returns, with the process's own system calls.
 * @failed_at: out: plan byte offset where a problem was found
 * @error: out: what was wrong, NUL terminated
 */
struct ppm_restore {
	__s32 plan_fd;
	__u32 flags;
	__u64 failed_at;
	char error[112];
};

#define PPM_IOC_MAGIC		0xB7

#define PPM_IOC_INFO		_IOR(PPM_IOC_MAGIC, 0x00, struct ppm_info)
#define PPM_IOC_DUMP_TASK	_IOWR(PPM_IOC_MAGIC, 0x01, struct ppm_dump_task)
#define PPM_IOC_DUMP_VMAS	_IOWR(PPM_IOC_MAGIC, 0x02, struct ppm_dump_vmas)
#define PPM_IOC_RESTORE		_IOWR(PPM_IOC_MAGIC, 0x03, struct ppm_restore)

#endif /* _UAPI_LINUX_PPM_H */
