// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: grant - one task may take the agent's credentials, once, to become
 * the restore stub of its own process.
 *
 * A process whose parent waits for it leaves a deputy when it moves away:
 * the original task, its PID, parent and session kept, running a tiny
 * program with the process's own credentials.  When the process comes
 * home it must become that task again, so the restore runs in the deputy:
 * the deputy executes the restore stub, and the stub needs root's rights
 * (PPM_IOC_RESTORE, clone3 with set_tid, the agent's sockets) until ppm
 * gives the process its own credentials back at the end of the restore.
 *
 * PPM_IOC_GRANT, by the agent, names the task and the program it must be
 * running (the stub) and returns a descriptor that holds the grant; the
 * agent passes it to the deputy over a unix socket.  PPM_IOC_GRANT_TAKE on
 * that descriptor commits a copy of the agent's credentials to the caller,
 * once, when:
 *
 * - the caller is the task named, single-threaded;
 * - it runs the named program: a process of the user's that got hold of
 *   the descriptor cannot take it for code of its own;
 * - nobody traces it, and its memory is not dumpable.  The stub is
 *   installed so that its users may run it but not read it, and the
 *   kernel then marks the process not dumpable from its execve on: its
 *   owner can neither attach to it nor write its memory, before or after
 *   the credentials change.  The check is made under cred_guard_mutex,
 *   which ptrace's attach takes as well.  A caller that holds the
 *   granter's ids and capabilities already (a process of root's, which
 *   can read the stub) may be dumpable: it gains nothing;
 * - it has no seccomp filter (one could fake the results of the calls the
 *   stub checks its work with) and no no_new_privs (which promises that
 *   the task never gains rights);
 * - it shares its filesystem context (root, cwd, umask) with no other
 *   process, which could otherwise change it under the stub.
 *
 * Closing every copy of the descriptor withdraws the grant.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/pid.h>
#include <linux/rcupdate.h>
#include <linux/sched.h>
#include <linux/sched/coredump.h>
#include <linux/sched/signal.h>
#include <linux/sched/task.h>
#include <linux/seccomp.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#include "ppm_internal.h"

/**
 * struct ppm_grant_ctx - one grant, the private data of its descriptor
 * @lock: guards @taken
 * @pid: the task that may take it (its thread group)
 * @exe: the program that task must be running
 * @granter: the task whose credentials it gives
 * @taken: taken already: a grant is good once
 */
struct ppm_grant_ctx {
	struct mutex lock;	/* guards @taken */
	struct pid *pid;
	struct file *exe;
	struct task_struct *granter;
	bool taken;
};

static int ppm_grant_release(struct inode *inode, struct file *file)
{
	struct ppm_grant_ctx *g = file->private_data;

	put_pid(g->pid);
	fput(g->exe);
	put_task_struct(g->granter);
	mutex_destroy(&g->lock);
	kfree(g);
	return 0;
}

/*
 * Whether current runs the program of @exe: the same file, by filesystem
 * and inode number (a filesystem without an inode cache, 9p say, gives
 * each open its own struct inode).
 */
static bool ppm_runs(const struct file *exe)
{
	const struct inode *want = file_inode(exe), *got;
	struct file *f;
	bool same;

	rcu_read_lock();
	f = rcu_dereference(current->mm->exe_file);
	got = f ? file_inode(f) : NULL;
	same = got && got->i_sb == want->i_sb && got->i_ino == want->i_ino;
	rcu_read_unlock();
	return same;
}

/* Refuses a take for @why, and says so in the kernel log (rate limited). */
static int ppm_refuse(const char *why)
{
	pr_info_ratelimited("grant refused to %s[%d]: %s\n", current->comm,
			    task_tgid_nr(current), why);
	return -EPERM;
}

/*
 * Whether current holds every right the granter's credentials give: its
 * user and group ids are the granter's and its capabilities include the
 * granter's.  Such a caller gains nothing it could abuse by the grant, and
 * those who may trace it could trace the granter as well.
 */
static bool ppm_has_all(const struct ppm_grant_ctx *g)
{
	const struct cred *c = current_cred(), *gc;
	bool all;

	rcu_read_lock();
	gc = __task_cred(g->granter);
	all = uid_eq(c->uid, gc->uid) && uid_eq(c->euid, gc->euid) &&
	      uid_eq(c->suid, gc->suid) && uid_eq(c->fsuid, gc->fsuid) &&
	      gid_eq(c->gid, gc->gid) && gid_eq(c->egid, gc->egid) &&
	      gid_eq(c->sgid, gc->sgid) && gid_eq(c->fsgid, gc->fsgid) &&
	      cap_issubset(gc->cap_permitted, c->cap_permitted) &&
	      cap_issubset(gc->cap_effective, c->cap_effective);
	rcu_read_unlock();
	return all;
}

/* Whether current may take @g now; called with cred_guard_mutex held. */
static int ppm_take_check(const struct ppm_grant_ctx *g)
{
	bool shared;

	lockdep_assert_held(&current->signal->cred_guard_mutex);
	if (current->ptrace)
		return ppm_refuse("it is traced");
	if (!current->mm)
		return ppm_refuse("it has no memory");
	/* Dumpable: its owner could write its memory once it is root. */
	if (get_dumpable(current->mm) == SUID_DUMP_USER && !ppm_has_all(g))
		return ppm_refuse("it is dumpable (its user may read its program)");
	if (!ppm_runs(g->exe))
		return ppm_refuse("it runs another program than the grant names");
#ifdef CONFIG_SECCOMP
	if (current->seccomp.mode != SECCOMP_MODE_DISABLED)
		return ppm_refuse("it is under seccomp");
#endif
	if (task_no_new_privs(current))
		return ppm_refuse("it has no_new_privs");
	spin_lock(&current->fs->lock);
	shared = current->fs->users != 1;
	spin_unlock(&current->fs->lock);
	if (shared)
		return ppm_refuse("it shares its filesystem context");
	return 0;
}

/**
 * DOC: PPM_IOC_GRANT_TAKE
 *
 * Gives the caller a copy of the credentials of the task that made the
 * grant (see the top of this file for when).  Called on the grant's own
 * descriptor, with no argument.
 *
 * Who: the task the grant names, running its program, as above.
 *
 * Errors: -EPERM when the caller is not the task named, is traced, is
 * dumpable, runs another program, has a seccomp filter or no_new_privs, or
 * shares its filesystem context; -EBUSY when it has other threads;
 * -EALREADY when the grant was taken; -EINVAL for an argument; -ENOMEM;
 * -EINTR when a fatal signal came while it waited for the lock.
 */
static long ppm_grant_take(struct ppm_grant_ctx *g)
{
	struct cred *new;
	long ret;

	if (task_tgid(current) != g->pid || !thread_group_leader(current))
		return ppm_refuse("the grant names another task");
	if (!thread_group_empty(current))
		return -EBUSY;
	ret = mutex_lock_killable(&current->signal->cred_guard_mutex);
	if (ret)
		return ret;
	mutex_lock(&g->lock);
	if (g->taken) {
		ret = -EALREADY;
		goto out;
	}
	ret = ppm_take_check(g);
	if (ret)
		goto out;
	new = prepare_kernel_cred(g->granter);
	if (!new) {
		ret = -ENOMEM;
		goto out;
	}
	g->taken = true;
	commit_creds(new);
out:
	mutex_unlock(&g->lock);
	mutex_unlock(&current->signal->cred_guard_mutex);
	return ret;
}

static long ppm_grant_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	if (cmd != PPM_IOC_GRANT_TAKE)
		return -ENOTTY;
	if (arg)
		return -EINVAL;
	return ppm_grant_take(file->private_data);
}

static const struct file_operations ppm_grant_fops = {
	.owner = THIS_MODULE,
	.release = ppm_grant_release,
	.unlocked_ioctl = ppm_grant_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/**
 * DOC: PPM_IOC_GRANT
 *
 * Makes a grant (struct ppm_grant): task @pid may take the caller's
 * credentials once, while it runs the program of @exe_fd.  Returns the
 * grant's new descriptor, close-on-exec.
 *
 * Who: CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, and CAP_SETUID and
 * CAP_SETGID (see DOC: permissions).
 *
 * Errors: -EFAULT; -EINVAL for flags, reserved, a PID not above 0 or an
 * @exe_fd that is not a regular file; -EBADF for @exe_fd not open;
 * -ESRCH when no thread group has that PID; -ENOMEM; -EMFILE.
 */
long ppm_ioctl_grant(void __user *arg)
{
	struct ppm_grant req;
	struct ppm_grant_ctx *g;
	struct file *exe;
	struct pid *pid;
	bool leader;
	long ret;
	int fd;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved || req.pid <= 0 || req.exe_fd < 0)
		return -EINVAL;
	exe = fget(req.exe_fd);
	if (!exe)
		return -EBADF;
	if (!S_ISREG(file_inode(exe)->i_mode)) {
		ret = -EINVAL;
		goto put_exe;
	}
	pid = find_get_pid(req.pid);
	if (!pid) {
		ret = -ESRCH;
		goto put_exe;
	}
	rcu_read_lock();
	leader = pid_has_task(pid, PIDTYPE_TGID);
	rcu_read_unlock();
	if (!leader) {
		ret = -ESRCH;
		goto put_pid;
	}
	g = kzalloc(sizeof(*g), GFP_KERNEL);
	if (!g) {
		ret = -ENOMEM;
		goto put_pid;
	}
	mutex_init(&g->lock);
	g->pid = pid;
	g->exe = exe;
	g->granter = get_task_struct(current);
	fd = anon_inode_getfd("[ppm-grant]", &ppm_grant_fops, g,
			      O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		put_task_struct(g->granter);
		mutex_destroy(&g->lock);
		kfree(g);
		ret = fd;
		goto put_pid;
	}
	return fd;

put_pid:
	put_pid(pid);
put_exe:
	fput(exe);
	return ret;
}
