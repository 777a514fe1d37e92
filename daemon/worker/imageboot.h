/* imageboot.h: a VM defined with no kernel boots the default entry of its
 * first disk's own /boot (disk/bootfs.h), read by cellad at each start and
 * handed to the worker as sealed memfds (docs/boot.md, "Booting from a disk
 * image"). */
#pragma once
#include <jansson.h>

#include "cerr.h"
#include "compiler.h"

struct storage;
struct vmdef;
struct worker_files;

/* Open d's first disk (beneath its storage location, read-only, its whole
 * chain), read the kernel, initrd and command line of its default boot
 * entry, and set cfg's "kernel", "initrd" (unless the definition names its
 * own) and "cmdline" (the entry's, then the definition's appended). 0, or
 * -1 with e set: 400 naming disks[0].path when the image holds nothing
 * bootable ("unsupported filesystem: xfs", "no /boot", ...). */
int worker_image_boot(const struct storage *st, struct worker_files *wf, const struct vmdef *d,
		      json_t *cfg, struct cerr *e) __must_check;
