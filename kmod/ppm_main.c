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

#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/utsname.h>

#include "ppm_internal.h"

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

static long ppm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PPM_IOC_INFO:
		return ppm_ioctl_info(uarg);
	case PPM_IOC_DUMP_TASK:
		return ppm_ioctl_dump_task(uarg);
	case PPM_IOC_DUMP_VMAS:
		return ppm_ioctl_dump_vmas(uarg);
	case PPM_IOC_RESTORE:
		return ppm_ioctl_restore(uarg);
	case PPM_IOC_REDIRECT_ADD:
		return ppm_ioctl_redirect_add(uarg);
	case PPM_IOC_REDIRECT_DEL:
		return ppm_ioctl_redirect_del(uarg);
	case PPM_IOC_REDIRECT_LIST:
		return ppm_ioctl_redirect_list(uarg);
	case PPM_IOC_QUEUE_ACCEPT:
		return ppm_ioctl_queue_accept(uarg);
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
	.mode = 0666,	/* the ioctls check permission themselves */
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
