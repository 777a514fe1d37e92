/* imageboot.c: boot the kernel a VM's first disk holds (imageboot.h). The
 * image is read at every start, so what boots is always the image's
 * current default entry (a kernel upgraded inside the guest included);
 * nothing is cached beside the VM. */
#include "imageboot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bootfs.h"
#include "disk.h"
#include "files.h"
#include "log.h"
#include "storage.h"
#include "sup_priv.h"
#include "vmdef.h"

/* Seal a memfd the reader filled with exactly len bytes (at most max), and
 * hand it to the worker as cfg's key. */
static int pass(struct worker_files *wf, json_t *cfg, const char *key, int fd, size_t len,
		uint64_t max, struct cerr *e)
{
	struct stat st;
	char spec[24];
	int n;

	if (fstat(fd, &st) || (uint64_t)st.st_size != len || len > max ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		close(fd);
		return cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: the image's %s "
				"(%zu bytes) did not arrive whole", key, len);
	}
	if (worker_files_add_fd(wf, fd, &n, e))
		return -1;
	snprintf(spec, sizeof(spec), "fd:%d", n);
	json_object_set_new(cfg, key, json_string(spec));
	return 0;
}

#define READ_TIMEOUT_MS 120000

int worker_image_boot(const struct storage *st, struct worker_files *wf, const struct vmdef *d,
		      json_t *cfg, struct cerr *e)
{
	const struct vmdef_disk *dk = &d->disks[0];
	struct disk_fd_chain chain = { 0 };
	struct imageboot_answer *a;
	struct storage_file f;
	uint64_t max_initrd = d->memory_mib << 20;
	int ret, kfd, ifd;

	if (!d->nr_disks)
		return cerr_set(e, CERR_INVALID, "kernel", "required (or a first disk whose image "
				"holds the kernel in its /boot)");
	if (storage_open_file(st, ROLE_ADMIN, "disks[0].path", dk->path, sup_disk_fmt(dk),
			      STORAGE_DISK, &f, e))
		return -1;
	a = calloc(1, sizeof(*a));
	if (!a) {
		storage_file_close(&f);
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	}
	chain.nr = f.nr;
	for (unsigned i = 0; i < f.nr; i++) {
		chain.fd[i] = f.fd[i]; /* still f's: closed with it */
		chain.name[i] = f.name[i];
	}
	if (max_initrd > BOOTFS_INITRD_MAX)
		max_initrd = BOOTFS_INITRD_MAX;
	kfd = memfd_create("kernel", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ifd = memfd_create("initrd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	/* The image's bytes are parsed in a jailed helper, never in cellad
	 * (imageboot_jail.c); no lock: the worker takes the image's own. */
	ret = kfd < 0 || ifd < 0 ? -errno
	      : imageboot_read_jailed(&chain, sup_disk_fmt(dk), BOOTFS_KERNEL_MAX, max_initrd,
				      kfd, ifd, a, READ_TIMEOUT_MS);
	storage_file_close(&f);
	if (ret || !a->ok) {
		if (kfd >= 0)
			close(kfd);
		if (ifd >= 0)
			close(ifd);
		if (ret)
			cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: cannot read its "
				 "image's /boot: %s", strerror(-ret));
		else
			cerr_set(e, CERR_INVALID, "disks[0].path", "cannot boot from %s: %s",
				 dk->path, a->err);
		free(a);
		return -1;
	}
	log_info("VM %s boots from its image: %s (kernel %zu bytes, initrd %zu bytes)", d->name,
		 a->from, a->kernel_len, a->initrd_len);
	ret = pass(wf, cfg, "kernel", kfd, a->kernel_len, BOOTFS_KERNEL_MAX, e);
	if (!ret && a->has_initrd && !d->initrd)
		ret = pass(wf, cfg, "initrd", ifd, a->initrd_len, max_initrd, e);
	else
		close(ifd);
	if (!ret && (a->cmdline[0] || d->cmdline)) {
		char cmdline[VMDEF_CMDLINE_MAX + sizeof(a->cmdline) + 2];
		size_t n = (size_t)snprintf(cmdline, sizeof(cmdline), "%s%s%s", a->cmdline,
					    a->cmdline[0] && d->cmdline ? " " : "",
					    d->cmdline ? d->cmdline : "");

		if (n >= VMDEF_CMDLINE_MAX)
			ret = cerr_set(e, CERR_INVALID, "disks[0].path", "cannot boot from %s: the "
				       "command line of %s and the definition's is %zu bytes, more "
				       "than %d", dk->path, a->from, n, VMDEF_CMDLINE_MAX - 1);
		else
			json_object_set_new(cfg, "cmdline", json_string(cmdline));
	}
	free(a);
	return ret ? -1 : 0;
}
