/* imageboot.c: boot the kernel a VM's first disk holds (imageboot.h). The
 * image is read at every start, so what boots is always the image's
 * current default entry (a kernel upgraded inside the guest included);
 * nothing is cached beside the VM. */
#include "imageboot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bootfs.h"
#include "disk.h"
#include "files.h"
#include "log.h"
#include "storage.h"
#include "sup_priv.h"
#include "vmdef.h"

/* A sealed memfd holding buf: the worker reads it as it reads a kernel file. */
static int memfd_of(const char *name, const uint8_t *buf, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	size_t done = 0;

	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t w = write(fd, buf + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int err = w < 0 ? -errno : -EIO;

			close(fd);
			return err;
		}
		done += (size_t)w;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

static int pass(struct worker_files *wf, json_t *cfg, const char *key, const uint8_t *buf,
		size_t len, struct cerr *e)
{
	char spec[24];
	int fd = memfd_of(key, buf, len), n;

	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: a memfd for the "
				"image's %s: %s", key, strerror(-fd));
	if (worker_files_add_fd(wf, fd, &n, e))
		return -1;
	snprintf(spec, sizeof(spec), "fd:%d", n);
	json_object_set_new(cfg, key, json_string(spec));
	return 0;
}

int worker_image_boot(const struct storage *st, struct worker_files *wf, const struct vmdef *d,
		      json_t *cfg, struct cerr *e)
{
	const struct vmdef_disk *dk = &d->disks[0];
	struct disk_fd_chain chain = { 0 };
	struct bootfs_result r;
	struct storage_file f;
	struct disk *disk;
	char err[512];
	uint64_t max_initrd = d->memory_mib << 20;
	int ret;

	if (!d->nr_disks)
		return cerr_set(e, CERR_INVALID, "kernel", "required (or a first disk whose image "
				"holds the kernel in its /boot)");
	if (storage_open_file(st, ROLE_ADMIN, "disks[0].path", dk->path, sup_disk_fmt(dk),
			      STORAGE_DISK, &f, e))
		return -1;
	chain.nr = f.nr;
	for (unsigned i = 0; i < f.nr; i++) {
		chain.fd[i] = f.fd[i];
		chain.name[i] = f.name[i];
		f.fd[i] = -1;
	}
	/* No lock: the worker takes the image's own lock right after. */
	ret = disk_open_fds(&disk, &chain, sup_disk_fmt(dk), DISK_RDONLY | DISK_NO_LOCK, err,
			    sizeof(err));
	storage_file_close(&f);
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: disks[0].path: %s", err);
	if (max_initrd > BOOTFS_INITRD_MAX)
		max_initrd = BOOTFS_INITRD_MAX;
	ret = bootfs_read(disk, BOOTFS_KERNEL_MAX, max_initrd, &r, err, sizeof(err));
	disk_close(disk);
	if (ret)
		return cerr_set(e, CERR_INVALID, "disks[0].path", "cannot boot from %s: %s", dk->path,
				err);
	log_info("VM %s boots from its image: %s (kernel %zu bytes, initrd %zu bytes)", d->name,
		 r.from, r.kernel_len, r.initrd_len);
	ret = pass(wf, cfg, "kernel", r.kernel, r.kernel_len, e);
	if (!ret && r.initrd && !d->initrd)
		ret = pass(wf, cfg, "initrd", r.initrd, r.initrd_len, e);
	if (!ret && (r.cmdline[0] || d->cmdline)) {
		char cmdline[VMDEF_CMDLINE_MAX + sizeof(r.cmdline) + 2];
		size_t n = (size_t)snprintf(cmdline, sizeof(cmdline), "%s%s%s", r.cmdline,
					    r.cmdline[0] && d->cmdline ? " " : "",
					    d->cmdline ? d->cmdline : "");

		if (n >= VMDEF_CMDLINE_MAX)
			ret = cerr_set(e, CERR_INVALID, "disks[0].path", "cannot boot from %s: the "
				       "command line of %s and the definition's is %zu bytes, more "
				       "than %d", dk->path, r.from, n, VMDEF_CMDLINE_MAX - 1);
		else
			json_object_set_new(cfg, "cmdline", json_string(cmdline));
	}
	bootfs_result_free(&r);
	return ret ? -1 : 0;
}
