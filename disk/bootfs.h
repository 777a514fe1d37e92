/* bootfs.h: the kernel, initrd and command line a guest image boots by
 * default, read from its own /boot through libext2fs over the disk library
 * (raw, qcow2, backing chains). Used by cellad to boot an image directly
 * (docs/boot.md, "Booting from a disk image"). The image is untrusted:
 * every size is bounded, paths never leave the image's file system. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct disk;

#define BOOTFS_KERNEL_MAX (256ull << 20) /* a larger "kernel" is refused */
#define BOOTFS_INITRD_MAX (1ull << 30)   /* all initrd files together */

struct bootfs_result {
	uint8_t *kernel, *initrd; /* malloc'd (initrd NULL when none) */
	size_t kernel_len, initrd_len;
	char cmdline[4096];       /* the entry's command line ("" none) */
	char from[512];           /* what was booted, for logs: "partition 2 (ext4):
				   * /boot/grub/grub.cfg, entry \"Debian\": /boot/vmlinuz-6.1" */
};

/* Find the default boot entry of the image d: a whole-disk ext2/3/4 file
 * system or, in an MBR or GPT partition table, the first ext2/3/4
 * partition holding boot files (a root file system's /boot, or a separate
 * /boot partition's root); there, in this order, Boot Loader
 * Specification entries (loader/entries/NAME.conf), GRUB's grub/grub.cfg (or
 * grub2/), Debian's vmlinuz and initrd.img links. Kernel and initrd are
 * read whole, at most max_kernel and max_initrd bytes (BOOTFS_*_MAX when
 * 0). 0 with r filled (bootfs_result_free), or -errno with err naming what
 * was missing: "unsupported filesystem: xfs", "no /boot", "no kernel:
 * /boot/vmlinuz-6.1 not found", a grub.cfg error, a path escaping the
 * file system. */
int bootfs_read(struct disk *d, uint64_t max_kernel, uint64_t max_initrd, struct bootfs_result *r,
		char *err, size_t errlen) __must_check;
void bootfs_result_free(struct bootfs_result *r);
