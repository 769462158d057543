/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ppm: declarations shared between the files of the module.
 */
#ifndef _PPM_INTERNAL_H
#define _PPM_INTERNAL_H

#include "uapi/ppm.h"

#define PPM_MODULE_VERSION	"0.2.0"

/* What this build implements. */
#define PPM_FEATURES		(PPM_FEAT_INFO | PPM_FEAT_DUMP | PPM_FEAT_RESTORE | \
				 PPM_FEAT_REDIRECT | PPM_FEAT_GRANT | PPM_FEAT_RUN_AT | \
				 PPM_FEAT_KEEP)

/*
 * The ioctl handlers.  ppm_ioctl() checks each one's capability before it
 * calls it (see DOC: permissions in ppm_main.c); the dump handlers check
 * that the caller traces the task themselves.  A DOC: PPM_IOC_* block next
 * to each handler tells what it does, checks and returns.
 */

/* dump.c */
long ppm_ioctl_dump_task(void __user *arg);
long ppm_ioctl_dump_vmas(void __user *arg);

/* restore.c */
long ppm_ioctl_restore(void __user *arg);

/* redirect.c */
int ppm_redirect_init(void);
void ppm_redirect_exit(void);
long ppm_ioctl_redirect_add(void __user *arg);
long ppm_ioctl_redirect_del(void __user *arg);
long ppm_ioctl_redirect_list(void __user *arg);

/* accept.c */
long ppm_ioctl_queue_accept(void __user *arg);

/* grant.c */
long ppm_ioctl_grant(void __user *arg);

#endif /* _PPM_INTERNAL_H */
