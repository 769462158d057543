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

#define PPM_IOC_MAGIC		0xB7

#define PPM_IOC_INFO		_IOR(PPM_IOC_MAGIC, 0x00, struct ppm_info)

#endif /* _UAPI_LINUX_PPM_H */
