/* files.c: the files a worker needs, opened by cellad beneath their storage
 * locations and passed as descriptors (files.h). */
#include "files.h"
#include "imageboot.h"
#include "vsock_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf/net.h"
#include "storage.h"
#include "sup_priv.h"
#include "tapdev.h"
#include "unixsock.h"

void worker_files_close(struct worker_files *wf)
{
	for (unsigned i = 0; i < wf->nr; i++)
		if (wf->fd[i] >= 0)
			close(wf->fd[i]);
	wf->nr = 0;
}

/* Hand fd to the worker: its number there, or -1 (fd closed) when full. */
static int files_add(struct worker_files *wf, int fd)
{
	if (wf->nr >= WORKER_FILES_MAX) {
		close(fd);
		return -1;
	}
	wf->fd[wf->nr] = fd;
	return WORKER_FILES_BASE + (int)wf->nr++;
}

static json_t *fd_spec(int n)
{
	char spec[24];

	snprintf(spec, sizeof(spec), "fd:%d", n);
	return json_string(spec);
}

/* The storage file f (taken: f is empty afterwards) into wf; top gets the
 * worker's number of f's first file. 0 or -1 with e set. */
static int take(struct worker_files *wf, struct storage_file *f, int *top, json_t **backing,
		struct cerr *e)
{
	if (backing && f->nr > 1)
		*backing = json_array();
	for (unsigned i = 0; i < f->nr; i++) {
		int n = files_add(wf, f->fd[i]);

		f->fd[i] = -1;
		if (n < 0) {
			storage_file_close(f);
			return cerr_set(e, CERR_INTERNAL, "", "more than %d files for one worker",
					WORKER_FILES_MAX);
		}
		if (!i)
			*top = n;
		else if (backing)
			json_array_append_new(*backing, json_pack("{s:i, s:s}", "fd", n, "name",
								  f->name[i]));
	}
	storage_file_close(f);
	return 0;
}

/* A file that cannot be opened at start (removed since it was defined)
 * fails the start as the worker's own open did (500); a file the rules
 * refuse stays a refusal of the definition's field (400). */
static int start_failed(const struct storage_file *f, struct cerr *e)
{
	if (f->err) {
		char why[sizeof(e->reason)], field[sizeof(e->field)];

		snprintf(why, sizeof(why), "%s", e->reason);
		snprintf(field, sizeof(field), "%s", e->field);
		cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: %s: %s", field, why);
	}
	return -1;
}

/* One file of the definition: checked and opened; cfg[key] = "fd:N". */
static int open_simple(const struct storage *st, struct worker_files *wf, json_t *obj,
		       const char *key, const char *field, const char *path, unsigned flags,
		       struct cerr *e)
{
	struct storage_file f;
	int n;

	/* At start the role is checked already (at definition): only where
	 * the file leads matters now, as for an admin's own check. */
	if (storage_open_file(st, ROLE_ADMIN, field, path, -1, flags, &f, e))
		return start_failed(&f, e);
	if (take(wf, &f, &n, NULL, e))
		return -1;
	json_object_set_new(obj, key, fd_spec(n));
	return 0;
}

static int open_disk(const struct storage *st, struct worker_files *wf, const struct vmdef_disk *dk,
		     json_t *obj, unsigned idx, struct cerr *e)
{
	struct storage_file f;
	json_t *backing = NULL;
	char field[48], cbt[4200];
	int n;

	snprintf(field, sizeof(field), "disks[%u].path", idx);
	if (storage_open_file(st, ROLE_ADMIN, field, dk->path, sup_disk_fmt(dk),
			      STORAGE_DISK | (dk->readonly ? 0 : STORAGE_RDWR), &f, e))
		return start_failed(&f, e);
	if (take(wf, &f, &n, &backing, e))
		return -1;
	json_object_set_new(obj, "path", fd_spec(n));
	if (backing)
		json_object_set_new(obj, "backing", backing);
	if (!dk->cbt || dk->readonly)
		return 0;
	/* The tracking file's name is the disk library's (disk/cbt.h): IMAGE.cbt. */
	snprintf(field, sizeof(field), "disks[%u].cbt", idx);
	if ((size_t)snprintf(cbt, sizeof(cbt), "%s.cbt", dk->path) >= sizeof(cbt))
		return cerr_set(e, CERR_INVALID, field, "path too long");
	return open_simple(st, wf, obj, "cbt_file", field, cbt, STORAGE_RDWR | STORAGE_CREATE, e);
}

/* cellad's own files (saved state, its TLS files): by name, read-only. */
static int open_own(struct worker_files *wf, const char *path, int *n, struct cerr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", path, strerror(errno));
	*n = files_add(wf, fd);
	return *n < 0 ? cerr_set(e, CERR_INTERNAL, "", "too many files for one worker") : 0;
}

/* A descriptor cellad made into wf; its number in *n. */
static int add_fd(struct worker_files *wf, int fd, int *n, struct cerr *e)
{
	*n = files_add(wf, fd);
	return *n < 0 ? cerr_set(e, CERR_INTERNAL, "", "too many files for one worker") : 0;
}

int worker_files_add_fd(struct worker_files *wf, int fd, int *n, struct cerr *e)
{
	return add_fd(wf, fd, n, e);
}

/* virtio-vsock: its listening socket (run_dir/UUID.vsock) and the relay
 * through which cellad connects the guest's streams (vsock_relay.h). */
static int open_vsock(struct sup *s, struct vmrt *vm, json_t *cfg, struct worker_files *wf,
		      struct cerr *e)
{
	json_t *dev = NULL, *o;
	char path[512];
	size_t i;
	int fd, n;

	json_array_foreach(json_object_get(cfg, "devices"), i, o)
		if (!strcmp(json_string_value(json_object_get(o, "type")) ?: "", "virtio-vsock"))
			dev = o;
	if (!dev)
		return 0;
	sup_paths(s, vm, ".vsock", path, sizeof(path));
	fd = unix_listen(path, 16, 0600);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "vsock socket %s: %s", path, strerror(-fd));
	if (add_fd(wf, fd, &n, e))
		return -1;
	json_object_set_new(dev, "uds", fd_spec(n));
	fd = vsock_relay_start(path);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "vsock relay: %s", strerror(-fd));
	if (add_fd(wf, fd, &n, e))
		return -1;
	json_object_set_new(dev, "connector", fd_spec(n));
	return 0;
}

/* A NIC's tap queues (taken) into wf: the worker's "tap_fd" is "fd:N", or
 * "fd:N+fd:M+..." for a multi-queue tap (queue 0 first; cella-vm adopts
 * each, vmm/backend/tap.c). */
static int add_taps(struct worker_files *wf, json_t *o, int *fds, unsigned nr, struct cerr *e)
{
	char spec[16 * CONF_NET_MAX_QUEUES] = "";
	size_t len = 0;
	int n;

	for (unsigned q = 0; q < nr; q++) {
		if (add_fd(wf, fds[q], &n, e)) {
			while (++q < nr)
				close(fds[q]);
			return -1;
		}
		len += (size_t)snprintf(spec + len, sizeof(spec) - len, "%sfd:%d", q ? "+" : "", n);
	}
	json_object_set_new(o, "tap_fd", json_string(spec));
	return 0;
}

/* An administrator's tap (nics[i].tap): one queue, or `queues` queues of
 * a tap made with multi_queue. */
static int open_tap(struct worker_files *wf, json_t *o, const char *tap, unsigned queues,
		    unsigned i, struct cerr *e)
{
	int fds[CONF_NET_MAX_QUEUES];
	char err[256];
	unsigned nr = queues > 1 ? queues : 1;

	for (unsigned q = 0; q < nr; q++) {
		fds[q] = nr > 1 ? tapdev_open_queue(tap, err, sizeof(err))
				: tapdev_open(tap, err, sizeof(err));
		if (fds[q] < 0) {
			while (q--)
				close(fds[q]);
			return cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: nics[%u].tap: "
					"%s", i, err);
		}
	}
	return add_taps(wf, o, fds, nr, e);
}

/* What the worker would need host rights for: /dev/kvm, its taps (TUNSETIFF
 * needs CAP_NET_ADMIN for a tap it does not own), and files in run_dir
 * (0750 root), which it cannot reach from its user namespace. */
static int open_host(struct sup *s, struct vmrt *vm, json_t *cfg, struct worker_files *wf,
		     struct cerr *e)
{
	json_t *nets = json_object_get(cfg, "nets");
	char path[512];
	int fd, n;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: cannot open "
				"/dev/kvm: %s", strerror(errno));
	if (add_fd(wf, fd, &wf->kvm, e))
		return -1;
	for (unsigned i = 0; i < vm->def.nr_nics; i++) {
		json_t *o = json_array_get(nets, i);

		if (!o)
			return cerr_set(e, CERR_INTERNAL, "", "the worker's configuration lacks "
					"nets[%u]", i);
		if (vm->def.nics[i].user) { /* passt's socket (core/sup_usernet.c) */
			fd = sup_usernet_open(s, vm, i, e);
			if (fd < 0 || add_fd(wf, fd, &n, e))
				return -1;
			json_object_set_new(o, "fd", json_integer(n));
			continue;
		}
		if (vm->def.nics[i].sw[0]) { /* a switch port (core/sup_switch.c) */
			int vlan = -1, fds[CONF_NET_MAX_QUEUES];
			int nr = sup_port_open(s, vm, i, &vlan, fds, e);

			if (nr < 0 || add_taps(wf, o, fds, (unsigned)nr, e))
				return -1;
			/* The worker tags and untags as nftables expects. */
			if (vlan > 0)
				json_object_set_new(o, "vlan", json_integer(vlan));
			else if (vlan == 0)
				json_object_set_new(o, "vlan", json_string("trunk"));
			continue;
		}
		if (open_tap(wf, o, vm->def.nics[i].tap, vm->def.nics[i].queues, i, e))
			return -1;
	}
	sup_paths(s, vm, ".exit", path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", path, strerror(errno));
	if (add_fd(wf, fd, &wf->exit, e))
		return -1;
	sup_paths(s, vm, ".console", path, sizeof(path));
	fd = unix_listen(path, 4, 0600);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "console socket %s: %s", path, strerror(-fd));
	if (add_fd(wf, fd, &wf->console, e))
		return -1;
	return open_vsock(s, vm, cfg, wf, e);
}

int worker_files_add_config(struct worker_files *wf, const char *path, struct cerr *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", path, strerror(errno));
	return add_fd(wf, fd, &wf->config, e);
}

int worker_files_open(struct sup *s, struct vmrt *vm, json_t *cfg, struct worker_files *wf,
		      struct cerr *e)
{
	static const struct storage none;
	const struct storage *st = s->conf.storage ? s->conf.storage : &none;
	const struct vmdef *d = &vm->def;
	json_t *disks = json_object_get(cfg, "disks");

	wf->nr = 0;
	wf->restore = wf->uffd = wf->tls[0] = wf->tls[1] = wf->tls[2] = -1;
	wf->kvm = wf->exit = wf->console = wf->config = -1;
	if (open_host(s, vm, cfg, wf, e))
		goto fail;
	if (d->kernel && open_simple(st, wf, cfg, "kernel", "kernel", d->kernel, 0, e))
		goto fail;
	if (!d->kernel && worker_image_boot(st, wf, d, cfg, e))
		goto fail;
	if (d->initrd && open_simple(st, wf, cfg, "initrd", "initrd", d->initrd, 0, e))
		goto fail;
	for (unsigned i = 0; i < d->nr_disks; i++) {
		json_t *o = json_array_get(disks, i);

		if (!o) {
			cerr_set(e, CERR_INTERNAL, "", "the worker's configuration lacks disks[%u]", i);
			goto fail;
		}
		if (open_disk(st, wf, &d->disks[i], o, i, e))
			goto fail;
	}
	if (vm->restore) {
		char saved[512];

		sup_saved_path(s, vm, saved, sizeof(saved));
		if (open_own(wf, saved, &wf->restore, e))
			goto fail;
		/* The worker fills its memory through userfaultfd when it has
		 * one (vmm/core/mem_uffd.h); the node is root's alone, and the
		 * worker makes its own descriptor from it before its sandbox
		 * (docs/security.md). Without it the restore maps the file. */
		int fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (fd >= 0 && add_fd(wf, fd, &wf->uffd, e))
			goto fail;
	}
	if (vm->incoming_fd >= 0) {
		const char *tls[3] = { s->conf.tls_cert, s->conf.tls_key, s->conf.tls_ca };

		for (unsigned i = 0; i < 3; i++)
			if (tls[i] && open_own(wf, tls[i], &wf->tls[i], e))
				goto fail;
	}
	return 0;
fail:
	worker_files_close(wf);
	return -1;
}

int worker_files_lift(const struct worker_files *wf, int *hi)
{
	int top = WORKER_FILES_BASE + (int)wf->nr;

	for (unsigned i = 0; i < wf->nr; i++) {
		hi[i] = fcntl(wf->fd[i], F_DUPFD_CLOEXEC, top);
		if (hi[i] < 0)
			return -1;
	}
	return 0;
}

int worker_files_place(const struct worker_files *wf, const int *hi)
{
	for (unsigned i = 0; i < wf->nr; i++)
		if (dup2(hi[i], WORKER_FILES_BASE + (int)i) < 0)
			return -1;
	return 0;
}
