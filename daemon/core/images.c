/* images.c: every image of the storage locations, as the images API lists
 * it (docs/disks.md, "Images in cellad"): format, virtual size, bytes the
 * file takes and allocates, the backing chain, which VM disk (or kernel,
 * initrd, checkpoint) uses it, and the jobs working on it. Each location's
 * directory is read beneath it with its rights (storage.h); only plain
 * files with image names (images.h) at its top level are images: no
 * symlinks, no sub-directories, no tracking files (NAME.cbt, shown as the
 * image's "tracking"). Images are matched with what VMs use by device and
 * inode, on the files storage_open_file opens, never by name. */
#include "images_priv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"

bool img_loc_visible(const struct storage_loc *l, enum role role)
{
	return role >= l->role || (role == ROLE_VIEWER && l->role <= ROLE_OPERATOR);
}

static struct img_rec *rec_add(struct img_scan *sc)
{
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 32;
		struct img_rec *r = realloc(sc->r, cap * sizeof(*r));

		if (!r)
			return NULL;
		sc->r = r;
		sc->cap = cap;
	}
	memset(&sc->r[sc->n], 0, sizeof(sc->r[0]));
	sc->r[sc->n].bidx = -1;
	sc->r[sc->n].used_by = json_array();
	sc->r[sc->n].checkpoints = json_array();
	sc->r[sc->n].backing_of = json_array();
	return &sc->r[sc->n++];
}

void img_scan_free(struct img_scan *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		json_decref(sc->r[i].used_by);
		json_decref(sc->r[i].checkpoints);
		json_decref(sc->r[i].backing_of);
	}
	free(sc->r);
	memset(sc, 0, sizeof(*sc));
}

/* What the file open on fd is: an image (its header), an incremental
 * backup, or unreadable. Takes fd. */
static void rec_read(struct img_rec *r, int fd)
{
	struct disk_fd_chain one = { .nr = 1 };
	struct disk_info info;
	struct stat st;
	struct disk *d;
	char magic[8], err[256];
	uint64_t dsz;

	if (fstat(fd, &st) == 0) {
		r->dev = st.st_dev;
		r->ino = st.st_ino;
		r->file_bytes = (uint64_t)st.st_blocks * 512;
	}
	r->fmt = -1;
	if (pread(fd, magic, 8, 0) == 8 && !memcmp(magic, CBT_INCR_MAGIC, 8)) {
		r->kind = "incremental";
		if (cbt_incr_header(fd, &dsz, r->point, r->since, err, sizeof(err)) == 0)
			r->size = dsz;
		r->allocated = r->file_bytes;
		close(fd);
		return;
	}
	one.fd[0] = fd;
	one.name[0] = r->name;
	if (disk_open_fds(&d, &one, -1, DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING, err,
			  sizeof(err))) {
		r->kind = "unreadable";
		snprintf(r->err, sizeof(r->err), "%.190s", err);
		return;
	}
	if (disk_get_info(d, &info)) {
		r->kind = "unreadable";
		snprintf(r->err, sizeof(r->err), "cannot read its header");
	} else {
		r->kind = "image";
		r->fmt = (int)info.fmt;
		r->size = info.size;
		r->allocated = info.fmt == DISK_FMT_QCOW2 ? info.allocated : r->file_bytes;
		snprintf(r->backing, sizeof(r->backing), "%s", info.backing);
	}
	disk_close(d);
}

static int scan_location(const struct storage_loc *l, struct img_scan *sc)
{
	int dfd = storage_loc_open(l, ".", O_RDONLY | O_DIRECTORY);
	struct dirent *de;
	DIR *dir;

	if (dfd < 0)
		return dfd;
	dir = fdopendir(dfd);
	if (!dir) {
		close(dfd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		char cbt[IMG_NAME_MAX + 8];
		struct img_rec *r;
		struct stat st;
		int fd;

		if (!img_name_valid(de->d_name) ||
		    fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		r = rec_add(sc);
		if (!r)
			break;
		r->loc = l;
		snprintf(r->name, sizeof(r->name), "%.63s", de->d_name);
		snprintf(cbt, sizeof(cbt), "%.63s.cbt", de->d_name);
		r->tracking = fstatat(dirfd(dir), cbt, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      S_ISREG(st.st_mode);
		fd = storage_loc_open(l, de->d_name, O_RDONLY);
		if (fd < 0) {
			r->kind = "unreadable";
			r->fmt = -1;
			snprintf(r->err, sizeof(r->err), "%s", strerror(-fd));
			continue;
		}
		rec_read(r, fd);
	}
	closedir(dir);
	return 0;
}

static int rec_by_inode(const struct img_scan *sc, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < sc->n; i++)
		if (sc->r[i].kind && strcmp(sc->r[i].kind, "unreadable") && sc->r[i].dev == dev &&
		    sc->r[i].ino == ino)
			return (int)i;
	return -1;
}

static int rec_by_path(const struct img_scan *sc, const char *path)
{
	struct stat st;

	if (!path || !*path || stat(path, &st) < 0)
		return -1;
	return rec_by_inode(sc, st.st_dev, st.st_ino);
}

/* Each image's backing file among the records (by inode). */
static void link_backing(struct img_scan *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		struct img_rec *r = &sc->r[i];
		char top[8192], *bp;
		struct stat st;

		if (!r->backing[0])
			continue;
		snprintf(top, sizeof(top), "%s/%s", r->loc->path, r->name);
		bp = disk_backing_path(top, r->backing);
		if (!bp)
			continue;
		r->backing_missing = stat(bp, &st) < 0;
		if (!r->backing_missing)
			r->bidx = rec_by_inode(sc, st.st_dev, st.st_ino);
		if (r->bidx >= 0 && (size_t)r->bidx != i)
			json_array_append_new(sc->r[r->bidx].backing_of, json_string(r->name));
		else
			r->bidx = -1;
		free(bp);
	}
}

/* What one VM uses, copied under its lock. */
struct vm_files {
	char name[VMDEF_NAME_MAX + 1], uuid[37], state[16];
	bool active;
	unsigned nr;
	struct { char *path; char id[32]; int fmt; bool cbt; } disk[VMDEF_MAX_DISKS];
	char *kernel, *initrd;
};

static void use_add(struct img_scan *sc, int i, const struct vm_files *v, const char *disk,
		    const char *layer)
{
	json_t *u;

	if (i < 0)
		return;
	u = json_pack("{s:s, s:s, s:s, s:s}", "vm", v->name, "disk", disk, "state", v->state,
		      "layer", layer);
	/* Running VMs first: the refusals name the first user. */
	if (v->active)
		json_array_insert_new(sc->r[i].used_by, 0, u);
	else
		json_array_append_new(sc->r[i].used_by, u);
	if (v->active)
		sc->r[i].in_use_active = true;
}

static void vm_uses(struct sup *s, struct img_scan *sc, const struct vm_files *v)
{
	json_t *cps, *cp, *l;
	size_t k, m;

	for (unsigned d = 0; d < v->nr; d++) {
		struct storage_file f;
		struct cerr e = {0};

		/* The chain as a start would open it (an admin's view: every file). */
		if (storage_open_file(s->conf.storage, ROLE_ADMIN, "disk", v->disk[d].path,
				      v->disk[d].fmt, STORAGE_DISK, &f, &e)) {
			use_add(sc, rec_by_path(sc, v->disk[d].path), v, v->disk[d].id, "top");
			continue;
		}
		for (unsigned i = 0; i < f.nr; i++) {
			struct stat st;
			int ri;

			if (fstat(f.fd[i], &st) < 0)
				continue;
			ri = rec_by_inode(sc, st.st_dev, st.st_ino);
			use_add(sc, ri, v, v->disk[d].id, i ? "backing" : "top");
			if (ri >= 0 && !i && v->disk[d].cbt)
				sc->r[ri].top_of_cbt_disk = true;
		}
		storage_file_close(&f);
	}
	use_add(sc, rec_by_path(sc, v->kernel), v, "", "kernel");
	use_add(sc, rec_by_path(sc, v->initrd), v, "", "initrd");
	cps = store_cp_list(s->db, v->uuid);
	json_array_foreach(cps, k, cp) {
		json_array_foreach(json_object_get(cp, "layers"), m, l) {
			int ri = rec_by_path(sc, json_string_value(json_object_get(l, "path")));

			if (ri >= 0)
				json_array_append_new(
				    sc->r[ri].checkpoints,
				    json_pack("{s:s, s:s?, s:s?}", "vm", v->name, "checkpoint",
					      json_string_value(json_object_get(cp, "name")), "disk",
					      json_string_value(json_object_get(l, "id"))));
		}
	}
	json_decref(cps);
}

static void scan_vms(struct sup *s, struct img_scan *sc)
{
	size_t n;
	struct vmrt **vms = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		struct vm_files v = { .nr = 0 };
		struct vmrt *vm = vms[i];
		bool gone;

		pthread_mutex_lock(&vm->lock);
		snprintf(v.name, sizeof(v.name), "%s", vm->def.name);
		snprintf(v.uuid, sizeof(v.uuid), "%s", vm->def.uuid);
		snprintf(v.state, sizeof(v.state), "%s", vm_state_name(vm->state));
		v.active = vm_state_active(vm->state) || vm->busy;
		for (unsigned d = 0; d < vm->def.nr_disks; d++) {
			v.disk[v.nr].path = vm->def.disks[d].path ? strdup(vm->def.disks[d].path) : NULL;
			snprintf(v.disk[v.nr].id, sizeof(v.disk[0].id), "%s", vm->def.disks[d].id);
			v.disk[v.nr].fmt = sup_disk_fmt(&vm->def.disks[d]);
			v.disk[v.nr].cbt = vm->def.disks[d].cbt && !vm->def.disks[d].readonly;
			if (v.disk[v.nr].path)
				v.nr++;
		}
		v.kernel = vm->def.kernel ? strdup(vm->def.kernel) : NULL;
		v.initrd = vm->def.initrd ? strdup(vm->def.initrd) : NULL;
		gone = vm->deleted;
		pthread_mutex_unlock(&vm->lock);
		if (!gone)
			vm_uses(s, sc, &v);
		for (unsigned d = 0; d < v.nr; d++)
			free(v.disk[d].path);
		free(v.kernel);
		free(v.initrd);
	}
	sup_vm_unpin_all(s, vms, n);
}

int img_scan(struct sup *s, enum role role, const struct storage_loc *loc, struct img_scan *sc,
	     struct cerr *e)
{
	const struct storage *st = s->conf.storage;

	memset(sc, 0, sizeof(*sc));
	/* Every location is read (a chain may cross them: an admin's), only
	 * the visible ones are shown (img_rec_json's callers filter). */
	for (unsigned i = 0; st && i < st->nr; i++) {
		int ret = scan_location(&st->locs[i], sc);

		if (ret && (!loc || loc == &st->locs[i]) && img_loc_visible(&st->locs[i], role)) {
			img_scan_free(sc);
			return cerr_set(e, CERR_INTERNAL, "location", "storage '%s': %s",
					st->locs[i].name, strerror(-ret));
		}
	}
	link_backing(sc);
	scan_vms(s, sc);
	return 0;
}

int img_find(struct sup *s, const struct img_scan *sc, enum role role, const char *location,
	     const char *name, struct cerr *e)
{
	const struct storage_loc *l = NULL;
	char where[256] = "";
	int hit = -1, hits = 0;

	if (location && *location) {
		l = storage_loc_find(s->conf.storage, location);
		if (!l || !img_loc_visible(l, role))
			return cerr_set(e, CERR_NOT_FOUND, "location", "no storage location '%s'%s",
					location, l ? " your role may see" : "");
	}
	for (size_t i = 0; i < sc->n; i++) {
		const struct img_rec *r = &sc->r[i];

		if (strcmp(r->name, name) || (l && r->loc != l) || !img_loc_visible(r->loc, role))
			continue;
		hit = (int)i;
		hits++;
		snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
			 where[0] ? ", " : "", r->loc->name);
	}
	if (hits > 1)
		return cerr_set(e, CERR_CONFLICT, "location", "'%s' is in several storage locations "
				"(%s): name one with ?location=", name, where);
	if (hit < 0)
		return cerr_set(e, CERR_NOT_FOUND, "file", "no image '%s'%s%s", name,
				l ? " in storage " : "", l ? l->name : "");
	return hit;
}

static json_t *ref_json(const struct img_rec *r)
{
	return json_pack("{s:s, s:s}", "location", r->loc->name, "name", r->name);
}

json_t *img_rec_json(struct sup *s, const struct img_scan *sc, size_t i)
{
	const struct img_rec *r = &sc->r[i];
	json_t *o, *chain = json_array(), *backing = json_null();
	char path[8192];
	unsigned depth = 1;

	snprintf(path, sizeof(path), "%s/%s", r->loc->path, r->name);
	/* The chain below it: each backing file, top first. */
	for (int b = (int)i, guard = 0; b >= 0 && guard < DISK_MAX_CHAIN; guard++) {
		const struct img_rec *x = &sc->r[b];

		if (!x->backing[0])
			break;
		depth++;
		if (x->bidx < 0) {
			json_array_append_new(chain, json_pack("{s:s, s:b}", "path", x->backing,
							       "missing", x->backing_missing));
			break;
		}
		json_array_append_new(chain, ref_json(&sc->r[x->bidx]));
		b = x->bidx;
	}
	if (r->backing[0]) {
		json_decref(backing);
		backing = r->bidx >= 0 ? ref_json(&sc->r[r->bidx])
				       : json_pack("{s:s, s:b}", "path", r->backing, "missing",
						   r->backing_missing);
	}
	o = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:I, s:I, s:I, s:o, s:o, s:i, s:O, s:O, s:O, "
		      "s:b, s:b}",
		      "location", r->loc->name, "name", r->name, "path", path, "kind", r->kind,
		      "format", r->fmt < 0 ? NULL : r->fmt == DISK_FMT_QCOW2 ? "qcow2" : "raw",
		      "virtual_size", (json_int_t)r->size, "file_bytes", (json_int_t)r->file_bytes,
		      "allocated", (json_int_t)r->allocated, "backing", backing, "chain", chain,
		      "depth", (int)depth, "used_by", r->used_by, "checkpoints", r->checkpoints,
		      "backing_of", r->backing_of, "tracking", r->tracking, "in_use",
		      r->in_use_active);
	if (!strcmp(r->kind, "incremental"))
		json_object_set_new(o, "backup", json_pack("{s:s, s:s}", "point", r->point,
							   "since", r->since));
	if (r->err[0])
		json_object_set_new(o, "error", json_string(r->err));
	json_object_set_new(o, "job", img_jobs_json(s, r->loc->name, r->name));
	return o;
}

json_t *sup_images_list(struct sup *s, enum role role, const char *location, struct cerr *e)
{
	const struct storage *st = s->conf.storage;
	const struct storage_loc *only = NULL;
	json_t *locs = json_array();
	struct img_scan sc;

	if (location && *location) {
		only = storage_loc_find(st, location);
		if (!only || !img_loc_visible(only, role)) {
			json_decref(locs);
			cerr_set(e, CERR_NOT_FOUND, "location", "no storage location '%s'", location);
			return NULL;
		}
	}
	if (img_scan(s, role, only, &sc, e)) {
		json_decref(locs);
		return NULL;
	}
	for (unsigned l = 0; st && l < st->nr; l++) {
		const struct storage_loc *loc = &st->locs[l];
		json_t *imgs = json_array();

		if (!img_loc_visible(loc, role) || (only && loc != only)) {
			json_decref(imgs);
			continue;
		}
		for (size_t i = 0; i < sc.n; i++)
			if (sc.r[i].loc == loc)
				json_array_append_new(imgs, img_rec_json(s, &sc, i));
		json_array_append_new(locs, json_pack("{s:s, s:s, s:s, s:b, s:b, s:o}", "name",
						      loc->name, "path", loc->path, "role",
						      role_name(loc->role), "pool", loc->pool,
						      "writable", role >= loc->role, "images", imgs));
	}
	img_scan_free(&sc);
	return json_pack("{s:o, s:o}", "locations", locs, "jobs", img_jobs_json(s, NULL, NULL));
}

int sup_image_get(struct sup *s, enum role role, const char *location, const char *name,
		  json_t **out, struct cerr *e)
{
	struct img_scan sc;
	int i;

	if (img_scan(s, role, NULL, &sc, e))
		return -1;
	i = img_find(s, &sc, role, location, name, e);
	if (i >= 0)
		*out = img_rec_json(s, &sc, (size_t)i);
	img_scan_free(&sc);
	return i < 0 ? -1 : 0;
}
