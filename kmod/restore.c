// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: restore - rebuild the calling process's memory from a restore plan.
 *
 * The caller is ppm's restore stub: a single-threaded process that already
 * holds the restored PID, files, signal dispositions and a vDSO moved to the
 * image's address.  PPM_IOC_RESTORE reads the plan from a file descriptor
 * (never from user memory that is about to be unmapped), checks every
 * size, count and address in it, then replaces every mapping but the vDSO
 * with the plan's, fills the pages, and sets the mm fields and rseq.
 * Registers, FPU state, signal mask and credentials are set by the tool
 * through ptrace when the ioctl returns.
 *
 * The plan is untrusted input: anything malformed is refused with a message
 * in struct ppm_restore.  A failure after the old mappings are gone cannot
 * return to the stub, so the stub is killed; the kernel never is.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>

#include "ppm_internal.h"

#define PPM_IO_PAGES 16
/* Bytes read straight into the process per call, between reschedules. */
#define PPM_DIRECT_CHUNK SZ_1M

struct ppm_restore_ctx {
	struct file *plan;
	loff_t pos;
	struct ppm_plan_header hdr;
	struct ppm_plan_vma *vmas;
	struct file **files;
	void *buf;
	struct ppm_restore *req;
};

static __printf(3, 4)
int ppm_fail(struct ppm_restore_ctx *c, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->req->error, sizeof(c->req->error), fmt, ap);
	va_end(ap);
	c->req->failed_at = c->pos;
	return err;
}

static int ppm_read(struct ppm_restore_ctx *c, void *dst, size_t len)
{
	ssize_t n = kernel_read(c->plan, dst, len, &c->pos);

	if (n < 0)
		return ppm_fail(c, (int)n, "cannot read the plan");
	if ((size_t)n != len)
		return ppm_fail(c, -EINVAL, "plan truncated");
	return 0;
}

static bool ppm_user_range(u64 start, u64 end)
{
	return start <= end && end <= TASK_SIZE_MAX;
}

static int ppm_check_header(struct ppm_restore_ctx *c)
{
	const struct ppm_plan_header *h = &c->hdr;
	unsigned int i;

	if (h->magic != PPM_PLAN_MAGIC)
		return ppm_fail(c, -EINVAL, "not a restore plan (bad magic)");
	if (h->abi_version != PPM_ABI_VERSION)
		return ppm_fail(c, -EINVAL, "plan ABI %u, module ABI %u",
				h->abi_version, PPM_ABI_VERSION);
	if (!h->nr_vmas || h->nr_vmas > PPM_MAX_VMAS)
		return ppm_fail(c, -EINVAL, "bad mapping count %u", h->nr_vmas);
	if (h->nr_runs > PPM_PLAN_MAX_RUNS)
		return ppm_fail(c, -EINVAL, "bad page run count %u", h->nr_runs);
	if (h->auxv_words > PPM_AUXV_WORDS ||
	    h->auxv_words > ARRAY_SIZE(current->mm->saved_auxv))
		return ppm_fail(c, -EINVAL, "auxv too long (%u words)",
				h->auxv_words);
	if (!ppm_user_range(h->start_code, h->end_code) ||
	    !ppm_user_range(h->start_data, h->end_data) ||
	    !ppm_user_range(h->start_brk, h->brk) ||
	    !ppm_user_range(h->arg_start, h->arg_end) ||
	    !ppm_user_range(h->env_start, h->env_end) ||
	    h->start_stack >= TASK_SIZE_MAX || h->rseq >= TASK_SIZE_MAX)
		return ppm_fail(c, -EINVAL, "mm fields out of range");
	if (h->vdso != (u64)(unsigned long)current->mm->context.vdso)
		return ppm_fail(c, -EINVAL, "the vDSO is not at %llx",
				h->vdso);
	for (i = 0; i < ARRAY_SIZE(h->reserved); i++)
		if (h->reserved[i])
			return ppm_fail(c, -EINVAL, "reserved header field set");
	return 0;
}

static int ppm_check_vma(struct ppm_restore_ctx *c, unsigned int i)
{
	const struct ppm_plan_vma *v = &c->vmas[i];
	struct file *file;

	if (!PAGE_ALIGNED(v->start) || !PAGE_ALIGNED(v->end) ||
	    v->start >= v->end || v->end > TASK_SIZE_MAX)
		return ppm_fail(c, -EINVAL, "mapping %u: bad range %llx-%llx",
				i, v->start, v->end);
	if (i && v->start < c->vmas[i - 1].end)
		return ppm_fail(c, -EINVAL, "mapping %u overlaps or is unsorted", i);
	if (v->prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC) ||
	    v->flags & ~PPM_VMA_FLAGS || v->reserved)
		return ppm_fail(c, -EINVAL, "mapping %u: bad flags", i);
	if (v->pgoff > (ULONG_MAX >> PAGE_SHIFT) - ((v->end - v->start) >> PAGE_SHIFT))
		return ppm_fail(c, -EINVAL, "mapping %u: bad file offset", i);
	if ((v->flags & PPM_VMA_KEEP) &&
	    (v->flags != PPM_VMA_KEEP || v->fd != -1 || v->pgoff ||
	     v->prot != (PROT_READ | PROT_WRITE)))
		return ppm_fail(c, -EINVAL,
				"mapping %u: only private anonymous read-write memory is kept", i);
	if (v->fd < 0) {
		if (v->fd != -1)
			return ppm_fail(c, -EINVAL, "mapping %u: bad fd", i);
		return 0;
	}
	file = fget(v->fd);
	if (!file)
		return ppm_fail(c, -EBADF, "mapping %u: fd %d is not open", i, v->fd);
	c->files[i] = file;
	if (!S_ISREG(file_inode(file)->i_mode) || !(file->f_mode & FMODE_READ))
		return ppm_fail(c, -EINVAL, "mapping %u: fd %d is not a readable file",
				i, v->fd);
	if ((v->flags & PPM_VMA_SHARED) && (v->prot & PROT_WRITE) &&
	    !(file->f_mode & FMODE_WRITE))
		return ppm_fail(c, -EACCES, "mapping %u: shared writable, file read-only", i);
	return 0;
}

/* Index of the plan mapping holding [start, start + len), or -1. */
static int ppm_find_vma(struct ppm_restore_ctx *c, u64 start, u64 len)
{
	unsigned int lo = 0, hi = c->hdr.nr_vmas;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		const struct ppm_plan_vma *v = &c->vmas[mid];

		if (start >= v->end) {
			lo = mid + 1;
		} else if (start < v->start) {
			hi = mid;
		} else {
			if (len > v->end - start)
				return -1;
			return mid;
		}
	}
	return -1;
}

/* The kept plan mapping that holds @addr, or the first one above it, or -1. */
static int ppm_kept_from(struct ppm_restore_ctx *c, unsigned long addr)
{
	unsigned int i;

	for (i = 0; i < c->hdr.nr_vmas; i++) {
		const struct ppm_plan_vma *v = &c->vmas[i];

		if ((v->flags & PPM_VMA_KEEP) && v->end > addr)
			return i;
	}
	return -1;
}

/*
 * The first range of @vma at or above @from that no kept plan mapping
 * covers, in [*start, *end); false when there is none.
 */
static bool ppm_unkept_part(struct ppm_restore_ctx *c, struct vm_area_struct *vma,
			    unsigned long from, unsigned long *start, unsigned long *end)
{
	unsigned long s = max(from, vma->vm_start);

	while (s < vma->vm_end) {
		int k = ppm_kept_from(c, s);

		if (k < 0 || c->vmas[k].start >= vma->vm_end) {
			*start = s;
			*end = vma->vm_end;
			return true;
		}
		if (c->vmas[k].start > s) {
			*start = s;
			*end = c->vmas[k].start;
			return true;
		}
		s = c->vmas[k].end;
	}
	return false;
}

/*
 * Unmaps everything but the vDSO, vvar and what the plan keeps; returns 0
 * or an error.
 */
static int ppm_unmap_all(struct ppm_restore_ctx *c, struct mm_struct *mm)
{
	unsigned long vdso = (unsigned long)mm->context.vdso;
	struct vm_area_struct *vma;
	unsigned long from = 0, start, end;
	int ret;

	for (;;) {
		bool found = false;

		mmap_read_lock(mm);
		{
			VMA_ITERATOR(vmi, mm, from);

			for_each_vma(vmi, vma) {
				if (vma->vm_start == vdso ||
				    vma->vm_flags & (VM_PFNMAP | VM_IO))
					continue;
				if (ppm_unkept_part(c, vma, from, &start, &end)) {
					found = true;
					break;
				}
			}
		}
		mmap_read_unlock(mm);
		if (!found)
			return 0;
		ret = vm_munmap(start, end - start);
		if (ret)
			return ret;
		from = end;
		cond_resched();
	}
}

/* Whether the caller's @vma may hold a kept mapping: its own private anonymous memory. */
static bool ppm_keepable(struct vm_area_struct *vma)
{
	return vma_is_anonymous(vma) &&
	       (vma->vm_flags & (VM_READ | VM_WRITE)) == (VM_READ | VM_WRITE) &&
	       !(vma->vm_flags & (VM_SHARED | VM_MAYSHARE | VM_EXEC | VM_GROWSDOWN |
				  VM_GROWSUP | VM_IO | VM_PFNMAP | VM_LOCKED));
}

/*
 * Before anything changes: each kept plan mapping must be covered, without
 * a hole, by the caller's own private anonymous read-write memory.
 */
static int ppm_check_kept(struct ppm_restore_ctx *c, struct mm_struct *mm)
{
	unsigned int i;
	int ret = 0;

	mmap_read_lock(mm);
	for (i = 0; i < c->hdr.nr_vmas && !ret; i++) {
		const struct ppm_plan_vma *v = &c->vmas[i];
		unsigned long at = v->start;

		if (!(v->flags & PPM_VMA_KEEP))
			continue;
		while (at < v->end) {
			struct vm_area_struct *vma = find_vma(mm, at);

			if (!vma || vma->vm_start > at || !ppm_keepable(vma))
				break;
			at = vma->vm_end;
		}
		if (at < v->end)
			ret = ppm_fail(c, -EINVAL,
				       "mapping %u is kept, and the caller has no private anonymous memory at %lx",
				       i, at);
	}
	mmap_read_unlock(mm);
	return ret;
}

static int ppm_map_all(struct ppm_restore_ctx *c)
{
	unsigned int i;

	for (i = 0; i < c->hdr.nr_vmas; i++) {
		const struct ppm_plan_vma *v = &c->vmas[i];
		unsigned long flags = MAP_FIXED_NOREPLACE;
		unsigned long addr;

		if (v->flags & PPM_VMA_KEEP)
			continue;
		flags |= v->flags & PPM_VMA_SHARED ? MAP_SHARED : MAP_PRIVATE;
		if (v->flags & PPM_VMA_GROWSDOWN)
			flags |= MAP_GROWSDOWN;
		if (!c->files[i])
			flags |= MAP_ANONYMOUS;
		addr = vm_mmap(c->files[i], v->start, v->end - v->start, v->prot,
			       flags, c->files[i] ? v->pgoff << PAGE_SHIFT : 0);
		if (IS_ERR_VALUE(addr))
			return ppm_fail(c, (int)addr, "mapping %u at %llx failed (%ld)",
					i, v->start, (long)addr);
		if (addr != v->start)
			return ppm_fail(c, -EINVAL, "mapping %u landed at %lx", i, addr);
	}
	return 0;
}

/*
 * Reads @len bytes of the plan straight into the caller's memory at @addr, a
 * range the plan's own checks placed inside one of its writable mappings:
 * one copy, from the plan's pages to the process's.
 */
static int ppm_read_direct(struct ppm_restore_ctx *c, u64 addr, u64 len, loff_t *pos)
{
	while (len) {
		size_t chunk = min_t(u64, len, PPM_DIRECT_CHUNK);
		struct iovec iov = { .iov_base = u64_to_user_ptr(addr), .iov_len = chunk };
		struct iov_iter iter;
		ssize_t n;

		if (fatal_signal_pending(current))
			return ppm_fail(c, -EINTR, "killed while filling pages");
		iov_iter_init(&iter, ITER_DEST, &iov, 1, chunk);
		n = vfs_iter_read(c->plan, &iter, pos, 0);
		if (n < 0)
			return ppm_fail(c, (int)n, "cannot fill pages at %llx", addr);
		if (!n)
			return ppm_fail(c, -EINVAL, "plan truncated");
		addr += n;
		len -= n;
		cond_resched();
	}
	return 0;
}

/* Read-only private mappings: write through, as a debugger would. */
static int ppm_put_page(struct ppm_restore_ctx *c, u64 addr, void *page)
{
	if (access_process_vm(current, addr, page, PAGE_SIZE,
			      FOLL_FORCE | FOLL_WRITE) != PAGE_SIZE)
		return ppm_fail(c, -EFAULT, "cannot fill read-only page %llx", addr);
	return 0;
}

/*
 * Where a run's pages are: right after its header, or, with PPM_RUN_AT, at
 * the plan offset that follows it (page aligned, not wrapping).
 */
static int ppm_run_pages_at(struct ppm_restore_ctx *c, const struct ppm_plan_run *run,
			    unsigned int r, loff_t *pos)
{
	u64 at;
	int ret;

	if (!(run->flags & PPM_RUN_AT)) {
		*pos = c->pos;
		return 0;
	}
	ret = ppm_read(c, &at, sizeof(at));
	if (ret)
		return ret;
	if (!PAGE_ALIGNED(at) || at > (u64)MAX_LFS_FILESIZE ||
	    (u64)MAX_LFS_FILESIZE - at < (u64)run->nr_pages << PAGE_SHIFT)
		return ppm_fail(c, -EINVAL, "page run %u: bad offset %llx", r, at);
	*pos = at;
	return 0;
}

/* Reads a run's @len bytes for a read-only mapping, from @pos on. */
static int ppm_read_at(struct ppm_restore_ctx *c, void *dst, size_t len, loff_t *pos)
{
	ssize_t n = kernel_read(c->plan, dst, len, pos);

	if (n < 0)
		return ppm_fail(c, (int)n, "cannot read the plan");
	if ((size_t)n != len)
		return ppm_fail(c, -EINVAL, "plan truncated");
	return 0;
}

/* A PPM_RUN_ZERO run: its pages, in a writable mapping, become zeros. */
static int ppm_zero_run(struct ppm_restore_ctx *c, const struct ppm_plan_vma *v,
			const struct ppm_plan_run *run, unsigned int r)
{
	u64 addr = run->start, left = (u64)run->nr_pages << PAGE_SHIFT;

	if (!(v->prot & PROT_WRITE))
		return ppm_fail(c, -EINVAL, "page run %u: zeros in a read-only mapping", r);
	while (left) {
		size_t chunk = min_t(u64, left, PPM_DIRECT_CHUNK);

		if (clear_user(u64_to_user_ptr(addr), chunk))
			return ppm_fail(c, -EFAULT, "cannot clear pages at %llx", addr);
		addr += chunk;
		left -= chunk;
		cond_resched();
	}
	return 0;
}

static int ppm_fill_pages(struct ppm_restore_ctx *c)
{
	struct ppm_plan_run run;
	unsigned int r;
	int ret;

	for (r = 0; r < c->hdr.nr_runs; r++) {
		const struct ppm_plan_vma *v;
		u64 done = 0;
		loff_t pos;
		int idx;

		ret = ppm_read(c, &run, sizeof(run));
		if (ret)
			return ret;
		if (!run.nr_pages || run.nr_pages > PPM_PLAN_MAX_PAGES ||
		    (run.flags & ~PPM_RUN_FLAGS) || !PAGE_ALIGNED(run.start) ||
		    (run.flags & PPM_RUN_AT && run.flags & PPM_RUN_ZERO))
			return ppm_fail(c, -EINVAL, "page run %u: bad header", r);
		ret = ppm_run_pages_at(c, &run, r, &pos);
		if (ret)
			return ret;
		idx = ppm_find_vma(c, run.start, (u64)run.nr_pages << PAGE_SHIFT);
		if (idx < 0)
			return ppm_fail(c, -EINVAL, "page run %u at %llx is outside the mappings",
					r, run.start);
		v = &c->vmas[idx];
		if (run.flags & PPM_RUN_ZERO) {
			ret = ppm_zero_run(c, v, &run, r);
			if (ret)
				return ret;
			continue;
		}
		if (v->prot & PROT_WRITE) {
			ret = ppm_read_direct(c, run.start, (u64)run.nr_pages << PAGE_SHIFT, &pos);
			if (ret)
				return ret;
			if (!(run.flags & PPM_RUN_AT))
				c->pos = pos;
			continue;
		}
		while (done < run.nr_pages) {
			u64 n = min_t(u64, run.nr_pages - done, PPM_IO_PAGES);
			u64 k;

			ret = ppm_read_at(c, c->buf, n << PAGE_SHIFT, &pos);
			if (ret)
				return ret;
			for (k = 0; k < n; k++) {
				ret = ppm_put_page(c, run.start + ((done + k) << PAGE_SHIFT),
						   c->buf + (k << PAGE_SHIFT));
				if (ret)
					return ret;
			}
			done += n;
			cond_resched();
		}
		if (!(run.flags & PPM_RUN_AT))
			c->pos = pos;
	}
	return 0;
}

static void ppm_set_mm(struct ppm_restore_ctx *c)
{
	const struct ppm_plan_header *h = &c->hdr;
	struct mm_struct *mm = current->mm;

	mmap_write_lock(mm);
	mm->start_code = h->start_code;
	mm->end_code = h->end_code;
	mm->start_data = h->start_data;
	mm->end_data = h->end_data;
	mm->start_brk = h->start_brk;
	mm->brk = h->brk;
	mm->start_stack = h->start_stack;
	mm->arg_start = h->arg_start;
	mm->arg_end = h->arg_end;
	mm->env_start = h->env_start;
	mm->env_end = h->env_end;
	memset(mm->saved_auxv, 0, sizeof(mm->saved_auxv));
	memcpy(mm->saved_auxv, h->auxv, h->auxv_words * sizeof(h->auxv[0]));
	mmap_write_unlock(mm);

#ifdef CONFIG_RSEQ
	current->rseq = u64_to_user_ptr(h->rseq);
	current->rseq_sig = h->rseq_sig;
#ifdef PPM_HAVE_RSEQ_LEN
	current->rseq_len = h->rseq ? 32 : 0;
#endif
	if (h->rseq)
		set_tsk_thread_flag(current, TIF_NOTIFY_RESUME);
#endif
}

static int ppm_restore_plan(struct ppm_restore_ctx *c)
{
	struct mm_struct *mm = current->mm;
	size_t table;
	int ret;

	ret = ppm_read(c, &c->hdr, sizeof(c->hdr));
	if (ret)
		return ret;
	ret = ppm_check_header(c);
	if (ret)
		return ret;
	table = array_size(c->hdr.nr_vmas, sizeof(*c->vmas));
	c->vmas = kvmalloc(table, GFP_KERNEL);
	c->files = kvcalloc(c->hdr.nr_vmas, sizeof(*c->files), GFP_KERNEL);
	c->buf = kvmalloc(PPM_IO_PAGES << PAGE_SHIFT, GFP_KERNEL);
	if (!c->vmas || !c->files || !c->buf)
		return ppm_fail(c, -ENOMEM, "out of memory");
	ret = ppm_read(c, c->vmas, table);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < c->hdr.nr_vmas; i++) {
		ret = ppm_check_vma(c, i);
		if (ret)
			return ret;
	}

	ret = ppm_check_kept(c, mm);
	if (ret)
		return ret;

	/* Point of no return: the stub's own mappings go away (but for what the plan keeps). */
	ret = ppm_unmap_all(c, mm);
	if (!ret)
		ret = ppm_map_all(c);
	if (!ret)
		ret = ppm_fill_pages(c);
	if (!ret)
		ppm_set_mm(c);
	if (ret) {
		pr_warn_ratelimited("restore of pid %d failed past the point of no return: %s\n",
				    task_pid_nr(current), c->req->error);
		force_sig(SIGKILL);
	}
	return ret;
}

/**
 * DOC: PPM_IOC_RESTORE
 *
 * Replaces the calling process's memory with the one a restore plan
 * describes (see the comment at the top of this file): the plan is read
 * from @plan_fd, from offset 0; every mapping but the vDSO goes, the plan's
 * mappings are created and filled, and the mm fields, the saved auxv and
 * rseq are set.  A mapping marked PPM_VMA_KEEP is the caller's memory
 * already (a migration's destination filled it ahead): it stays, with its
 * pages, and runs fill (or, with PPM_RUN_ZERO, clear) what changed since.
 *
 * Who: CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN (see DOC: permissions); the
 * caller must be single-threaded and must not share its mm.
 *
 * Checks before anything changes: @flags zero; @plan_fd open for reading;
 * the header (magic, ABI version, counts, auxv length, mm fields within user
 * space, the vDSO already at the plan's address, reserved fields zero);
 * every mapping (page aligned, sorted, not overlapping, within user space,
 * known prot and flags, an offset that does not wrap, and a descriptor that
 * is -1 or an open regular file, readable, and writable for a shared
 * writable mapping; a kept one private, anonymous, read-write, and covered
 * by the caller's own private anonymous read-write memory, without a
 * hole).  The page runs are checked as they are read, once the
 * old mappings are gone (a length of 1..PPM_PLAN_MAX_PAGES, page aligned,
 * inside one mapping of the plan): a bad one kills the caller as below.
 *
 * Errors: a refusal copies @error (a message) and @failed_at (the plan
 * offset) back.  -EFAULT when the argument cannot be read; -EINVAL for
 * unknown flags, a malformed or truncated plan, or a mapping's descriptor
 * that is not a readable regular file; -EBUSY when the caller is not
 * single-threaded or shares its mm; -EBADF for a descriptor that is not
 * open, or a plan not open for reading; -EACCES for a shared writable
 * mapping of a read-only file; -ENOMEM; the error of reading the plan.
 * Once the old mappings are gone (unmapping, mapping, filling the pages)
 * a failure cannot return to the caller: it is killed with SIGKILL.  On
 * success nothing is copied back: the caller's memory is the image's.
 */
long ppm_ioctl_restore(void __user *arg)
{
	struct ppm_restore_ctx c = {};
	struct ppm_restore *req;
	long ret;

	/* Permission (CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN): ppm_ioctl(). */
	req = kzalloc(sizeof(*req), GFP_KERNEL);
	if (!req)
		return -ENOMEM;
	c.req = req;
	if (copy_from_user(req, arg, sizeof(*req))) {
		ret = -EFAULT;
		goto out;
	}
	memset(req->error, 0, sizeof(req->error));
	req->failed_at = 0;
	if (req->flags) {
		ret = ppm_fail(&c, -EINVAL, "unknown flags");
	} else if (get_nr_threads(current) != 1 ||
		   atomic_read(&current->mm->mm_users) != 1) {
		ret = ppm_fail(&c, -EBUSY, "the stub must be single-threaded");
	} else {
		c.plan = fget(req->plan_fd);
		if (!c.plan)
			ret = ppm_fail(&c, -EBADF, "plan fd is not open");
		else if (!(c.plan->f_mode & FMODE_READ))
			ret = ppm_fail(&c, -EBADF, "plan fd is not readable");
		else
			ret = ppm_restore_plan(&c);
	}
	/* On success the caller's memory is the image's: nothing to report there. */
	if (ret && copy_to_user(arg, req, sizeof(*req)))
		pr_debug("cannot report a restore error: %s\n", req->error);
out:
	if (c.files) {
		for (unsigned int i = 0; i < c.hdr.nr_vmas; i++)
			if (c.files[i])
				fput(c.files[i]);
	}
	kvfree(c.files);
	kvfree(c.vmas);
	kvfree(c.buf);
	if (c.plan)
		fput(c.plan);
	kfree(req);
	return ret;
}
