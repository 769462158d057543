// SPDX-License-Identifier: GPL-2.0
/*
 * ppm: preemptive process migration.
 *
 * Device and ioctl dispatch: registers the misc device /dev/ppm and routes
 * each ioctl to the part of the module that implements it.  Checkpoint
 * (dump.c), restore (restore.c) and the netfilter redirects (redirect.c)
 * live in their own files.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/build_bug.h>
#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/stddef.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>

#include "ppm_internal.h"

/*
 * The ABI's layout, fixed: the sizes (the ioctl numbers encode them) and the
 * offsets of the fields after a change of width or an array, where padding
 * would show first.  ffi/uapi.ts has the same values, compared with this
 * header by tests/unit/uapi_layout_test.ts.
 */
static_assert(sizeof(struct ppm_info) == 120);
static_assert(offsetof(struct ppm_info, features) == 8);
static_assert(offsetof(struct ppm_info, release) == 48);
static_assert(offsetof(struct ppm_info, reserved) == 113);

static_assert(sizeof(struct ppm_sigaction) == 32);

static_assert(sizeof(struct ppm_dump_task) == 2792);
static_assert(offsetof(struct ppm_dump_task, struct_size) == 4);
static_assert(offsetof(struct ppm_dump_task, start_code) == 16);
static_assert(offsetof(struct ppm_dump_task, auxv) == 112);
static_assert(offsetof(struct ppm_dump_task, sas_ss_sp) == 624);
static_assert(offsetof(struct ppm_dump_task, blocked) == 648);
static_assert(offsetof(struct ppm_dump_task, action) == 672);
static_assert(offsetof(struct ppm_dump_task, robust_list) == 2720);
static_assert(offsetof(struct ppm_dump_task, rseq_len) == 2752);
static_assert(offsetof(struct ppm_dump_task, reserved) == 2776);

static_assert(sizeof(struct ppm_vma) == 48);
static_assert(offsetof(struct ppm_vma, dev) == 40);

static_assert(sizeof(struct ppm_dump_vmas) == 16);
static_assert(offsetof(struct ppm_dump_vmas, count) == 4);
static_assert(offsetof(struct ppm_dump_vmas, vmas) == 8);

static_assert(sizeof(struct ppm_plan_header) == 672);
static_assert(offsetof(struct ppm_plan_header, start_code) == 16);
static_assert(offsetof(struct ppm_plan_header, auxv) == 112);
static_assert(offsetof(struct ppm_plan_header, auxv_words) == 624);
static_assert(offsetof(struct ppm_plan_header, rseq) == 632);
static_assert(offsetof(struct ppm_plan_header, reserved) == 640);

static_assert(sizeof(struct ppm_plan_vma) == 40);
static_assert(offsetof(struct ppm_plan_vma, prot) == 24);
static_assert(offsetof(struct ppm_plan_vma, fd) == 32);

static_assert(sizeof(struct ppm_plan_run) == 16);
static_assert(offsetof(struct ppm_plan_run, nr_pages) == 8);

static_assert(sizeof(struct ppm_restore) == 128);
static_assert(offsetof(struct ppm_restore, failed_at) == 8);
static_assert(offsetof(struct ppm_restore, error) == 16);

static_assert(sizeof(struct ppm_redirect) == 88);
static_assert(offsetof(struct ppm_redirect, proto) == 8);
static_assert(offsetof(struct ppm_redirect, old_addr) == 12);
static_assert(offsetof(struct ppm_redirect, old_port) == 24);
static_assert(offsetof(struct ppm_redirect, idle_timeout) == 32);
static_assert(offsetof(struct ppm_redirect, packets) == 40);
static_assert(offsetof(struct ppm_redirect, reserved) == 72);

static_assert(sizeof(struct ppm_redirect_del) == 16);
static_assert(offsetof(struct ppm_redirect_del, flags) == 8);

static_assert(sizeof(struct ppm_redirect_list) == 16);
static_assert(offsetof(struct ppm_redirect_list, max) == 8);

static_assert(sizeof(struct ppm_queue_accept) == 16);
static_assert(offsetof(struct ppm_queue_accept, flags) == 8);

static_assert(sizeof(struct ppm_grant) == 16);
static_assert(offsetof(struct ppm_grant, flags) == 8);

/**
 * DOC: permissions
 *
 * /dev/ppm is created with mode 0600: only root opens it.  Each ioctl also
 * checks its own permission, before it reads its argument, so that a
 * descriptor passed to (or inherited by) a less privileged process carries
 * no rights.  A capability is checked in the initial user namespace, for
 * the caller and for the opener of the device (file_ns_capable() on the
 * file's credentials): root in a container's own user namespace has
 * neither and is refused.  A refusal is -EPERM.
 *
 * ======================  ==============================================
 * PPM_IOC_INFO            anyone who could open the device
 * PPM_IOC_DUMP_TASK       the caller must be the ptracer of the task and
 * PPM_IOC_DUMP_VMAS       the task ptrace-stopped (dump.c): the kernel's
 *                         ptrace access check passed when it attached
 * PPM_IOC_RESTORE         CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN
 * PPM_IOC_REDIRECT_ADD    CAP_NET_ADMIN
 * PPM_IOC_REDIRECT_DEL    CAP_NET_ADMIN
 * PPM_IOC_REDIRECT_LIST   CAP_NET_ADMIN
 * PPM_IOC_QUEUE_ACCEPT    CAP_NET_ADMIN
 * PPM_IOC_GRANT           CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN, and
 *                         CAP_SETUID and CAP_SETGID: a grant hands on
 *                         the caller's credentials (grant.c)
 * PPM_IOC_GRANT_TAKE      not on /dev/ppm: on a grant's own descriptor,
 *                         by the one task it names (grant.c)
 * ======================  ==============================================
 */

/* @cap in the initial user namespace, for the caller and the opener of @file. */
static bool ppm_capable(const struct file *file, int cap)
{
	return file_ns_capable(file, &init_user_ns, cap) && capable(cap);
}

/**
 * DOC: PPM_IOC_INFO
 *
 * Tells what the loaded module is: struct ppm_info with PPM_ABI_VERSION,
 * the size of the structure, the PPM_FEAT_* bits this build implements, the
 * module's version and the running kernel's release.  The tool's preflight
 * checks compare the ABI and the features with its own.
 *
 * Who: anyone who could open /dev/ppm; no capability is checked and nothing
 * is read from the caller.
 *
 * Errors: -EFAULT when the structure cannot be written.
 */
static long ppm_ioctl_info(void __user *arg)
{
	struct ppm_info info;

	memset(&info, 0, sizeof(info));
	info.abi_version = PPM_ABI_VERSION;
	info.struct_size = sizeof(info);
	info.features = PPM_FEATURES;
	strscpy(info.version, PPM_MODULE_VERSION, sizeof(info.version));
	strscpy(info.release, utsname()->release, sizeof(info.release));

	if (copy_to_user(arg, &info, sizeof(info)))
		return -EFAULT;
	return 0;
}

/* Routes an ioctl once its permission is checked (see DOC: permissions). */
static long ppm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PPM_IOC_INFO:
		return ppm_ioctl_info(uarg);
	case PPM_IOC_DUMP_TASK:
		/* Permission: the caller traces the stopped task (dump.c). */
		return ppm_ioctl_dump_task(uarg);
	case PPM_IOC_DUMP_VMAS:
		/* Permission: as PPM_IOC_DUMP_TASK. */
		return ppm_ioctl_dump_vmas(uarg);
	case PPM_IOC_RESTORE:
		if (!ppm_capable(file, CAP_CHECKPOINT_RESTORE) &&
		    !ppm_capable(file, CAP_SYS_ADMIN))
			return -EPERM;
		return ppm_ioctl_restore(uarg);
	case PPM_IOC_REDIRECT_ADD:
		if (!ppm_capable(file, CAP_NET_ADMIN))
			return -EPERM;
		return ppm_ioctl_redirect_add(uarg);
	case PPM_IOC_REDIRECT_DEL:
		if (!ppm_capable(file, CAP_NET_ADMIN))
			return -EPERM;
		return ppm_ioctl_redirect_del(uarg);
	case PPM_IOC_REDIRECT_LIST:
		if (!ppm_capable(file, CAP_NET_ADMIN))
			return -EPERM;
		return ppm_ioctl_redirect_list(uarg);
	case PPM_IOC_QUEUE_ACCEPT:
		if (!ppm_capable(file, CAP_NET_ADMIN))
			return -EPERM;
		return ppm_ioctl_queue_accept(uarg);
	case PPM_IOC_GRANT:
		if ((!ppm_capable(file, CAP_CHECKPOINT_RESTORE) &&
		     !ppm_capable(file, CAP_SYS_ADMIN)) ||
		    !ppm_capable(file, CAP_SETUID) ||
		    !ppm_capable(file, CAP_SETGID))
			return -EPERM;
		return ppm_ioctl_grant(uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations ppm_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = ppm_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice ppm_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = PPM_DEVICE_NAME,
	.fops = &ppm_fops,
	.mode = 0600,	/* root only; the ioctls check permission too */
};

static int __init ppm_init(void)
{
	int ret;

	ret = ppm_redirect_init();
	if (ret) {
		pr_err("cannot register the netfilter hooks: %d\n", ret);
		return ret;
	}
	ret = misc_register(&ppm_misc);
	if (ret) {
		pr_err("cannot register /dev/%s: %d\n", PPM_DEVICE_NAME, ret);
		ppm_redirect_exit();
		return ret;
	}
	pr_info("loaded, version %s, abi %d\n", PPM_MODULE_VERSION,
		PPM_ABI_VERSION);
	return 0;
}

static void __exit ppm_exit(void)
{
	misc_deregister(&ppm_misc);
	ppm_redirect_exit();
	pr_info("unloaded\n");
}

module_init(ppm_init);
module_exit(ppm_exit);

MODULE_DESCRIPTION("ppm: preemptive process migration with socket migration");
MODULE_AUTHOR("The ppm developers");
MODULE_LICENSE("GPL");
MODULE_VERSION(PPM_MODULE_VERSION);
MODULE_INFO(ppm_abi, __stringify(PPM_ABI_VERSION));
