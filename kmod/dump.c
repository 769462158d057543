// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: dump - what /proc does not show about a task that the caller has
 * frozen with ptrace: mm fields and the saved auxv, signal dispositions,
 * the alternate stack, pending signals, robust list, rseq, and the exact
 * flags of every mapping.
 *
 * Permission: the task must be ptrace-stopped by the calling thread.  That
 * proves the kernel's own ptrace access check (PTRACE_MODE_ATTACH) passed
 * for the caller when it attached (root, or the owner where ptrace is
 * allowed), and that the task is frozen while it is read.  Nothing here is
 * more than the tracer could read through ptrace and /proc; no capability
 * is asked for.  Anything else is -EPERM.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <linux/kdev_t.h>
#include <linux/lockdep.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/ptrace.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/coredump.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "ppm_internal.h"

/* Returns the task @pid with a reference, if it is traced and stopped by current. */
static struct task_struct *ppm_get_stopped_task(pid_t pid, long *err)
{
	struct task_struct *task;
	struct pid *p;
	bool ours;

	if (pid <= 0) {
		*err = -EINVAL;
		return NULL;
	}
	p = find_get_pid(pid);
	if (!p) {
		*err = -ESRCH;
		return NULL;
	}
	task = get_pid_task(p, PIDTYPE_PID);
	put_pid(p);
	if (!task) {
		*err = -ESRCH;
		return NULL;
	}
	rcu_read_lock();
	ours = ptrace_parent(task) == current && task_is_traced(task);
	rcu_read_unlock();
	if (!ours) {
		put_task_struct(task);
		*err = -EPERM;
		return NULL;
	}
	return task;
}

static u64 ppm_sigset(const sigset_t *set)
{
	return set->sig[0];
}

/*
 * lock_task_sighand() is not exported: this is its loop.  sighand_struct
 * is SLAB_TYPESAFE_BY_RCU, so under RCU its siglock stays a lock even if
 * the structure is freed meanwhile; the pointer is checked again once the
 * lock is held.  Returns NULL (nothing locked) when the task is exiting.
 */
static struct sighand_struct *ppm_lock_sighand(struct task_struct *task,
					       unsigned long *flags)
{
	struct sighand_struct *sighand;

	rcu_read_lock();
	for (;;) {
		sighand = rcu_dereference(task->sighand);
		if (!sighand)
			break;
		spin_lock_irqsave(&sighand->siglock, *flags);
		if (likely(sighand == rcu_access_pointer(task->sighand)))
			break;
		spin_unlock_irqrestore(&sighand->siglock, *flags);
	}
	rcu_read_unlock();
	return sighand;
}

static int ppm_dump_signals(struct task_struct *task, struct ppm_dump_task *d)
{
	struct sighand_struct *sighand;
	unsigned long flags;
	int i;

	sighand = ppm_lock_sighand(task, &flags);
	if (!sighand)
		return -ESRCH;
	for (i = 0; i < PPM_NSIG && i < _NSIG; i++) {
		const struct k_sigaction *ka = &sighand->action[i];

		d->action[i].handler = (u64)(unsigned long)ka->sa.sa_handler;
		d->action[i].flags = ka->sa.sa_flags;
#ifdef __ARCH_HAS_SA_RESTORER
		d->action[i].restorer = (u64)(unsigned long)ka->sa.sa_restorer;
#endif
		d->action[i].mask = ppm_sigset(&ka->sa.sa_mask);
	}
	d->blocked = ppm_sigset(&task->blocked);
	d->pending = ppm_sigset(&task->pending.signal);
	d->shared_pending = ppm_sigset(&task->signal->shared_pending.signal);
	d->pdeath_signal = READ_ONCE(task->pdeath_signal);
	spin_unlock_irqrestore(&sighand->siglock, flags);

	d->sas_ss_sp = task->sas_ss_sp;
	d->sas_ss_size = task->sas_ss_size;
	d->sas_ss_flags = task->sas_ss_flags;
	return 0;
}

static void ppm_dump_cred(struct task_struct *task, struct ppm_dump_task *d)
{
	const struct cred *cred = get_task_cred(task);

	d->securebits = cred->securebits;
	put_cred(cred);
}

static void ppm_dump_mm(struct mm_struct *mm, struct ppm_dump_task *d)
{
	unsigned int i;

	mmap_read_lock(mm);
	d->start_code = mm->start_code;
	d->end_code = mm->end_code;
	d->start_data = mm->start_data;
	d->end_data = mm->end_data;
	d->start_brk = mm->start_brk;
	d->brk = mm->brk;
	d->start_stack = mm->start_stack;
	d->arg_start = mm->arg_start;
	d->arg_end = mm->arg_end;
	d->env_start = mm->env_start;
	d->env_end = mm->env_end;
	d->vdso = (u64)(unsigned long)mm->context.vdso;
	d->dumpable = get_dumpable(mm);
	for (i = 0; i < ARRAY_SIZE(mm->saved_auxv) && i < PPM_AUXV_WORDS; i++)
		d->auxv[i] = mm->saved_auxv[i];
	d->auxv_words = i;
	mmap_read_unlock(mm);
}

/**
 * DOC: PPM_IOC_DUMP_TASK
 *
 * Fills struct ppm_dump_task with what /proc does not show about the task
 * @pid: its thread count and personality, the mm fields, the vDSO address,
 * the saved auxv and the dumpable mode; signal dispositions, the blocked
 * and pending signals, the parent-death signal and the alternate signal
 * stack; the securebits of its credentials; its robust list,
 * clear_child_tid and rseq registration.
 *
 * Who: no capability; the calling thread must be the ptracer of @pid and
 * the task stopped (see DOC: permissions).
 *
 * Checks, in this order: @pid and @struct_size are read first; @pid must be
 * positive and exist, traced and stopped by the caller; then @struct_size
 * must be sizeof(struct ppm_dump_task).
 *
 * Errors: -EFAULT when the structure cannot be read or written; -EINVAL for
 * a @pid that is not positive or a wrong @struct_size; -ESRCH when there is
 * no such task, or it has no mm or is exiting; -EPERM when the caller does
 * not trace it or it is not stopped; -ENOMEM.
 */
long ppm_ioctl_dump_task(void __user *arg)
{
	struct task_struct *task;
	struct ppm_dump_task *d;
	struct mm_struct *mm;
	long ret = 0;
	s32 pid;
	u32 size;

	if (get_user(pid, (s32 __user *)arg) ||
	    get_user(size, (u32 __user *)(arg + sizeof(s32))))
		return -EFAULT;
	task = ppm_get_stopped_task(pid, &ret);
	if (!task)
		return ret;
	if (size != sizeof(*d)) {
		ret = -EINVAL;
		goto out_task;
	}
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d) {
		ret = -ENOMEM;
		goto out_task;
	}
	mm = get_task_mm(task);
	if (!mm) {
		ret = -ESRCH;
		goto out_free;
	}
	d->pid = pid;
	d->struct_size = sizeof(*d);
	d->nr_threads = get_nr_threads(task);
	d->personality = task->personality;
	ppm_dump_mm(mm, d);
	mmput(mm);
	ret = ppm_dump_signals(task, d);
	if (ret)
		goto out_free;
	ppm_dump_cred(task, d);
	d->robust_list = (u64)(unsigned long)task->robust_list;
	d->robust_list_len = sizeof(*task->robust_list);
	d->clear_child_tid = (u64)(unsigned long)task->clear_child_tid;
#ifdef CONFIG_RSEQ
	d->rseq = (u64)(unsigned long)task->rseq;
	/* glibc registers the original 32-byte area on both 6.1 and 6.12. */
	d->rseq_len = task->rseq ? 32 : 0;
	d->rseq_sig = task->rseq_sig;
#endif
	if (copy_to_user(arg, d, sizeof(*d)))
		ret = -EFAULT;
out_free:
	kfree(d);
out_task:
	put_task_struct(task);
	return ret;
}

/* Describes @vma; the caller holds its mm's mmap lock (read). */
static void ppm_fill_vma(struct ppm_vma *v, struct vm_area_struct *vma)
{
	lockdep_assert_held(&vma->vm_mm->mmap_lock);
	v->start = vma->vm_start;
	v->end = vma->vm_end;
	v->pgoff = vma->vm_pgoff;
	v->vm_flags = vma->vm_flags;
	if (vma->vm_file) {
		struct inode *inode = file_inode(vma->vm_file);

		v->ino = inode->i_ino;
		v->dev = new_encode_dev(inode->i_sb->s_dev);
	}
}

/**
 * DOC: PPM_IOC_DUMP_VMAS
 *
 * Lists the mappings of the task @pid with their exact VM_* flags, file
 * offset, inode and device: up to @count struct ppm_vma at the user address
 * @vmas, in address order, and sets @count to the number of mappings the
 * task has (more than the room when the array was too short; the caller
 * asks again with a larger one).  The user array is written only after the
 * task's mmap lock is dropped.
 *
 * Who: as PPM_IOC_DUMP_TASK, the ptracer of the stopped task.
 *
 * Checks: @pid as for PPM_IOC_DUMP_TASK; @count at most PPM_MAX_VMAS.
 *
 * Errors: -EFAULT when the argument or the array cannot be read or written;
 * -EINVAL for a bad @pid or @count; -ESRCH when there is no such task or it
 * has no mm; -EPERM when the caller does not trace it or it is not stopped;
 * -EINTR when the caller is killed waiting for the mmap lock; -ENOMEM.
 */
long ppm_ioctl_dump_vmas(void __user *arg)
{
	struct ppm_dump_vmas req;
	struct task_struct *task;
	struct vm_area_struct *vma;
	struct ppm_vma *buf = NULL;
	struct mm_struct *mm;
	long ret = 0;
	u32 n = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	task = ppm_get_stopped_task(req.pid, &ret);
	if (!task)
		return ret;
	mm = get_task_mm(task);
	put_task_struct(task);
	if (!mm)
		return -ESRCH;
	if (req.count > PPM_MAX_VMAS) {
		ret = -EINVAL;
		goto out_mm;
	}
	if (req.count) {
		buf = kvcalloc(req.count, sizeof(*buf), GFP_KERNEL);
		if (!buf) {
			ret = -ENOMEM;
			goto out_mm;
		}
	}
	if (mmap_read_lock_killable(mm)) {
		ret = -EINTR;
		goto out_mm;
	}
	{
		VMA_ITERATOR(vmi, mm, 0);

		for_each_vma(vmi, vma) {
			if (n < req.count)
				ppm_fill_vma(&buf[n], vma);
			n++;
		}
	}
	mmap_read_unlock(mm);
	mmput(mm);
	mm = NULL;

	/* Copy out only after the target's lock is dropped. */
	if (copy_to_user(u64_to_user_ptr(req.vmas), buf,
			 array_size(min(n, req.count), sizeof(*buf))) ||
	    put_user(n, (u32 __user *)(arg + offsetof(struct ppm_dump_vmas, count))))
		ret = -EFAULT;
out_mm:
	if (mm)
		mmput(mm);
	kvfree(buf);
	return ret;
}
