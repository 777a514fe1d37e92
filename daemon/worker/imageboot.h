/* imageboot.h: a VM defined with no kernel boots the default entry of its
 * first disk's own /boot (disk/bootfs.h), read by cellad at each start and
 * handed to the worker as sealed memfds (docs/boot.md, "Booting from a disk
 * image"). */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

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

/* The jailed reader (imageboot_jail.c). Its answer, written whole on a pipe. */
struct imageboot_answer {
	int ok;
	int has_initrd;
	size_t kernel_len, initrd_len; /* bytes written to the memfds */
	char cmdline[4096];
	char from[512];
	char err[512];
};
struct disk_fd_chain;

/* Read the boot entry of the image on chain (cellad's descriptors, kept
 * open) in a helper that cellad's binary runs afresh, as nobody, under
 * seccomp; the kernel goes to kfd and the initrd to ifd (memfds). Returns
 * 0 with *a filled (a->ok, or a->err saying why not), or -errno when the
 * helper could not be started. */
int imageboot_read_jailed(const struct disk_fd_chain *chain, int fmt, uint64_t maxk,
			  uint64_t maxi, int kfd, int ifd, struct imageboot_answer *a,
			  int timeout_ms) __must_check;
/* main() of `cellad --bootfs-helper ...` (daemon/main.c calls it first). */
int imageboot_helper_main(int argc, char **argv);
