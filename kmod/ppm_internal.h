/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ppm: declarations shared between the files of the module.
 */
#ifndef _PPM_INTERNAL_H
#define _PPM_INTERNAL_H

#include "uapi/ppm.h"

#define PPM_MODULE_VERSION	"0.1.0"

/* What this build implements; grows as the dump/restore/redirect parts land. */
#define PPM_FEATURES		(PPM_FEAT_INFO)

#endif /* _PPM_INTERNAL_H */
