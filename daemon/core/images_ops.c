/* images_ops.c: changing the images of the storage locations (docs/disks.md,
 * "Images in cellad"): create, resize (grow), delete, and convert and
 * backup as jobs. Every name a caller gives is one file name of a location
 * (images.h) opened beneath it with openat2 and the location's rights
 * (storage.h); a new file is created O_EXCL there and the disk library
 * works on that descriptor (/proc/self/fd/N), so nothing is made or
 * changed outside a location, and nothing existing is overwritten. A job
 * is recorded in the store (core/job.h, a job on no VM) before it writes;
 * a job that fails, is cancelled by cellad stopping, or is found by the
 * next cellad after a crash removes its half-made target. */
#include "images_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cbt.h"
#include "disk.h"
#include "log.h"

/* --- jobs: the registry ------------------------------------------------- */

void sup_images_init(struct sup *s)
{
	pthread_mutex_init(&s->img_lock, NULL);
	pthread_cond_init(&s->img_cond, NULL);
}

void sup_images_stop(struct sup *s)
{
	pthread_mutex_lock(&s->img_lock);
	for (struct img_job *j = s->img_jobs; j; j = j->next)
		j->cancel = true;
	while (s->img_running)
		pthread_cond_wait(&s->img_cond, &s->img_lock);
	while (s->img_jobs) {
		struct img_job *j = s->img_jobs;

		s->img_jobs = j->next;
		free(j);
	}
	pthread_mutex_unlock(&s->img_lock);
}

json_t *img_job_json(const struct img_job *j)
{
	int pct = j->total ? (int)(j->done * 100 / j->total) : 0;

	if (!j->running && !j->error[0])
		pct = 100;
	return json_pack("{s:s, s:s, s:s, s:i, s:I, s:I, s:b, s:s?, s:s, s:s, s:s, s:s, s:I, s:o?}",
			 "id", j->id, "kind", j->kind, "phase", j->phase, "percent", pct, "done",
			 (json_int_t)j->done, "total", (json_int_t)j->total, "running", j->running,
			 "error", j->error[0] ? j->error : NULL, "location", j->location, "image",
			 j->image, "target_location", j->target_location, "target", j->target,
			 "started_at", (json_int_t)j->started_at, "ended_at",
			 j->ended_at ? json_integer(j->ended_at) : NULL);
}

static bool job_touches(const struct img_job *j, const char *location, const char *name)
{
	return (!strcmp(j->location, location) && !strcmp(j->image, name)) ||
	       (!strcmp(j->target_location, location) && !strcmp(j->target, name));
}

json_t *img_jobs_json(struct sup *s, const char *location, const char *name)
{
	json_t *out = location ? json_null() : json_array();

	pthread_mutex_lock(&s->img_lock);
	for (struct img_job *j = s->img_jobs; j; j = j->next) {
		if (!location) {
			json_array_append_new(out, img_job_json(j));
		} else if (job_touches(j, location, name) && (json_is_null(out) || j->running)) {
			json_decref(out);
			out = img_job_json(j); /* the newest, or the running one */
			if (j->running)
				break;
		}
	}
	pthread_mutex_unlock(&s->img_lock);
	return out;
}

/* A running job on the image (as its source or target): -1 with e. */
int img_refuse_job(struct sup *s, const char *location, const char *name, struct cerr *e)
{
	int ret = 0;

	pthread_mutex_lock(&s->img_lock);
	for (struct img_job *j = s->img_jobs; j && !ret; j = j->next)
		if (j->running && job_touches(j, location, name))
			ret = cerr_set(e, CERR_CONFLICT, "file", "a %s job (%s) works on %s/%s: wait "
				       "for it", j->kind, j->id, location, name);
	pthread_mutex_unlock(&s->img_lock);
	return ret;
}

/* --- helpers ------------------------------------------------------------ */

/* The disk library's messages name /proc/self/fd/N: say the image instead. */
void img_name_in(char *msg, size_t len, const char *proc, const char *shown)
{
	char *p = strstr(msg, proc), tmp[512];

	if (!p)
		return;
	snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)(p - msg), msg, shown, p + strlen(proc));
	snprintf(msg, len, "%s", tmp);
}

/* Remove name from l if it is still the file (dev, ino) made here. */
void img_unlink_target(const struct storage_loc *l, const char *name, dev_t dev, ino_t ino)
{
	int fd = storage_loc_open(l, name, O_RDONLY);
	struct stat st;
	bool ours;

	if (fd < 0)
		return;
	ours = fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
	close(fd);
	if (ours && storage_loc_unlink(l, name))
		log_warn("storage %s: cannot remove %s: %s", l->name, name, strerror(errno));
}

/* The location a change goes to: one the caller's role may use. */
const struct storage_loc *img_writable_loc(struct sup *s, enum role role, const char *name,
					      const char *field, struct cerr *e)
{
	const struct storage_loc *l = storage_loc_find(s->conf.storage, name);

	if (!l || !img_loc_visible(l, role)) {
		cerr_set(e, CERR_INVALID, field, "no storage location '%s'", name);
		return NULL;
	}
	if (role < l->role) {
		cerr_set(e, CERR_FORBIDDEN, field, "storage '%s' needs the %s role; you have %s",
			 l->name, role_name(l->role), role_name(role));
		return NULL;
	}
	return l;
}

/* Open the files f holds as one chain (the descriptors pass to the disk). */
static int open_chain(struct storage_file *f, int fmt, unsigned flags, struct disk **d, char *err,
		      size_t len)
{
	struct disk_fd_chain ch = { .nr = f->nr };
	int ret;

	for (unsigned i = 0; i < f->nr && i < DISK_MAX_CHAIN; i++) {
		ch.fd[i] = f->fd[i];
		ch.name[i] = f->name[i];
		f->fd[i] = -1;
	}
	ret = disk_open_fds(d, &ch, fmt, flags, err, len);
	storage_file_close(f);
	return ret;
}

/* Open image i of sc (its chain beneath its location) for a caller. */
int img_open_image(struct sup *s, enum role role, const struct img_rec *r, unsigned flags,
		      struct disk **d, struct cerr *e)
{
	struct storage_file f;
	char path[8192], err[512];
	int ret;

	snprintf(path, sizeof(path), "%s/%s", r->loc->path, r->name);
	if (storage_open_file(s->conf.storage, role, "file", path, r->fmt,
			      STORAGE_DISK | ((flags & DISK_RDONLY) ? 0 : STORAGE_RDWR), &f, e))
		return -1;
	ret = open_chain(&f, r->fmt, flags, d, err, sizeof(err));
	if (ret == -EBUSY || ret == -EAGAIN)
		return cerr_set(e, CERR_CONFLICT, "file", "%s/%s is in use (a running VM has it "
				"open): %s", r->loc->name, r->name, err);
	if (ret)
		return cerr_set(e, CERR_INVALID, "file", "%s/%s: %s", r->loc->name, r->name, err);
	return 0;
}

/* The users that forbid changing (or, any_vm, deleting) image r. */
static int refuse_used(struct sup *s, const struct img_rec *r, bool any_vm, const char *what,
		       struct cerr *e)
{
	json_t *u;
	size_t k;

	if (strcmp(r->kind, "image") && strcmp(r->kind, "incremental"))
		return cerr_set(e, CERR_CONFLICT, "file", "%s/%s is unreadable: %s", r->loc->name,
				r->name, r->err);
	if (img_refuse_job(s, r->loc->name, r->name, e))
		return -1;
	json_array_foreach(r->used_by, k, u) {
		const char *layer = json_string_value(json_object_get(u, "layer"));
		const char *disk = json_string_value(json_object_get(u, "disk"));

		if (any_vm || r->in_use_active)
			return cerr_set(e, CERR_CONFLICT, "file", "cannot %s %s/%s: VM %s (%s) uses "
					"it as %s%s%s%s", what, r->loc->name, r->name,
					json_string_value(json_object_get(u, "vm")),
					json_string_value(json_object_get(u, "state")),
					!strcmp(layer, "top") ? "disk " : !strcmp(layer, "backing") ?
					"a backing file of disk " : "its ", disk && *disk ? disk : "",
					!strcmp(layer, "kernel") || !strcmp(layer, "initrd") ? layer : "",
					any_vm ? "" : ": stop it first");
	}
	if (json_array_size(r->backing_of))
		return cerr_set(e, CERR_CONFLICT, "file", "cannot %s %s/%s: it is the backing file "
				"of %s%s", what, r->loc->name, r->name,
				json_string_value(json_array_get(r->backing_of, 0)),
				json_array_size(r->backing_of) > 1 ? " and others" : "");
	if (json_array_size(r->checkpoints))
		return cerr_set(e, CERR_CONFLICT, "file", "cannot %s %s/%s: it is a layer of "
				"checkpoint %s of VM %s", what, r->loc->name, r->name,
				json_string_value(json_object_get(json_array_get(r->checkpoints, 0),
								  "checkpoint")),
				json_string_value(json_object_get(json_array_get(r->checkpoints, 0),
								  "vm")));
	return 0;
}

int img_find_for_change(struct sup *s, enum role role, const char *location, const char *name,
			   struct img_scan *sc, struct cerr *e)
{
	int i;

	if (img_scan(s, role, NULL, sc, e))
		return -1;
	i = img_find(s, sc, role, location, name, e);
	if (i >= 0 && role < sc->r[i].loc->role)
		i = cerr_set(e, CERR_FORBIDDEN, "location", "storage '%s' needs the %s role; you "
			     "have %s", sc->r[i].loc->name, role_name(sc->r[i].loc->role),
			     role_name(role));
	if (i < 0)
		img_scan_free(sc);
	return i;
}

static int disk_cerr(struct cerr *e, int ret, const char *field, const char *msg)
{
	if (ret == -ENOSPC || ret == -EDQUOT)
		return cerr_set(e, CERR_NO_SPACE, field, "%s", msg);
	if (ret == -EFBIG || ret == -EINVAL)
		return cerr_set(e, CERR_INVALID, field, "%s", msg);
	return cerr_set(e, CERR_INTERNAL, field, "%s", msg);
}

/* --- create, resize, delete --------------------------------------------- */

int sup_image_create(struct sup *s, enum role role, json_t *body, json_t **out, struct cerr *e)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2 };
	const struct storage_loc *l;
	struct img_req rq;
	char proc[64], err[512], shown[256];
	struct stat st;
	int fd, ret;

	if (img_parse(IMG_CREATE, body, &rq, e))
		return -1;
	l = img_writable_loc(s, role, rq.location, "location", e);
	if (!l)
		return -1;
	o.fmt = (enum disk_format)rq.fmt;
	o.size = rq.size;
	o.cluster_bits = rq.cluster_bits;
	if (rq.backing[0]) {
		struct storage_file f;
		struct disk *b;
		char path[8192];

		if (!strcmp(rq.backing, rq.name))
			return cerr_set(e, CERR_INVALID, "backing", "an image cannot be its own "
					"backing file");
		snprintf(path, sizeof(path), "%s/%s", l->path, rq.backing);
		if (storage_open_file(s->conf.storage, role, "backing", path, -1, STORAGE_DISK, &f,
				      e)) {
			if (f.err == -ENOENT)
				cerr_set(e, CERR_INVALID, "backing", "no image '%s' in storage '%s'",
					 rq.backing, l->name);
			return -1;
		}
		ret = open_chain(&f, -1, DISK_RDONLY | DISK_NO_LOCK, &b, err, sizeof(err));
		if (ret)
			return cerr_set(e, CERR_INVALID, "backing", "%s: %s", rq.backing, err);
		if (!o.size)
			o.size = disk_size(b);
		o.backing = rq.backing; /* relative: beside the new image */
		o.backing_fmt = disk_format_of(b);
		o.backing_fmt_explicit = true;
		disk_close(b);
		if (!o.size)
			return cerr_set(e, CERR_INVALID, "size", "the backing image is empty: give a "
					"size");
	}
	fd = storage_loc_open(l, rq.name, O_RDWR | O_CREAT | O_EXCL);
	if (fd == -EEXIST)
		return cerr_set(e, CERR_EXISTS, "name", "storage '%s' has a file '%s' already",
				l->name, rq.name);
	if (fd < 0)
		return disk_cerr(e, fd, "name", strerror(-fd));
	if (fstat(fd, &st) < 0) {
		close(fd);
		return cerr_set(e, CERR_INTERNAL, "name", "fstat: %s", strerror(errno));
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	snprintf(shown, sizeof(shown), "%s/%s", l->name, rq.name);
	ret = disk_create(proc, &o, err, sizeof(err));
	close(fd);
	if (ret) {
		img_unlink_target(l, rq.name, st.st_dev, st.st_ino);
		img_name_in(err, sizeof(err), proc, shown);
		return disk_cerr(e, ret, ret == -EFBIG ? "size" : "name", err);
	}
	snprintf(err, sizeof(err), "%s: %s, %llu bytes%s%s", shown,
		 o.fmt == DISK_FMT_QCOW2 ? "qcow2" : "raw", (unsigned long long)o.size,
		 o.backing ? " over " : "", o.backing ? o.backing : "");
	sup_emit_named(s, "", "", "image-created", err);
	return sup_image_get(s, role, l->name, rq.name, out, e);
}

int sup_image_resize(struct sup *s, enum role role, const char *location, const char *name,
		     json_t *body, json_t **out, struct cerr *e)
{
	struct img_scan sc;
	struct img_req rq;
	struct img_rec r;
	struct disk *d;
	char detail[256];
	int i, ret;

	if (img_parse(IMG_RESIZE, body, &rq, e))
		return -1;
	i = img_find_for_change(s, role, location, name, &sc, e);
	if (i < 0)
		return -1;
	r = sc.r[i];
	ret = refuse_used(s, &r, false, "resize", e);
	if (!ret && strcmp(r.kind, "image"))
		ret = cerr_set(e, CERR_INVALID, "file", "%s/%s is an incremental backup, not an "
			       "image", r.loc->name, r.name);
	if (!ret && rq.size < r.size)
		ret = cerr_set(e, CERR_INVALID, "size", "%llu bytes is smaller than the image "
			       "(%llu): only growing is offered (shrinking cuts data off)",
			       (unsigned long long)rq.size, (unsigned long long)r.size);
	if (!ret)
		ret = img_open_image(s, role, &r, 0, &d, e);
	img_scan_free(&sc);
	if (ret)
		return -1;
	ret = disk_resize(d, rq.size, false);
	if (ret) {
		snprintf(detail, sizeof(detail), "%s", disk_error(d));
		disk_close(d);
		return disk_cerr(e, ret, "size", detail);
	}
	if (disk_close(d))
		return cerr_set(e, CERR_INTERNAL, "file", "flushing %s/%s failed", r.loc->name,
				r.name);
	snprintf(detail, sizeof(detail), "%s/%s: %llu to %llu bytes", r.loc->name, r.name,
		 (unsigned long long)r.size, (unsigned long long)rq.size);
	sup_emit_named(s, "", "", "image-resized", detail);
	return sup_image_get(s, role, r.loc->name, r.name, out, e);
}

int sup_image_delete(struct sup *s, enum role role, const char *location, const char *name,
		     struct cerr *e)
{
	char cbt[IMG_NAME_MAX + 8], detail[160];
	const struct storage_loc *l;
	struct img_scan sc;
	struct img_rec r;
	int i, fd, ret;

	i = img_find_for_change(s, role, location, name, &sc, e);
	if (i < 0)
		return -1;
	r = sc.r[i];
	ret = refuse_used(s, &r, true, "delete", e);
	img_scan_free(&sc);
	if (ret)
		return -1;
	l = r.loc;
	/* Whoever holds it (a VM of another cellad, a tool) keeps it. */
	fd = storage_loc_open(l, r.name, O_RDONLY);
	if (fd < 0)
		return cerr_set(e, CERR_NOT_FOUND, "file", "%s/%s: %s", l->name, r.name,
				strerror(-fd));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return cerr_set(e, CERR_CONFLICT, "file", "%s/%s is in use by another process (a "
				"running VM?)", l->name, r.name);
	}
	ret = storage_loc_unlink(l, r.name);
	close(fd);
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "file", "cannot remove %s/%s: %s", l->name, r.name,
				strerror(-ret));
	snprintf(cbt, sizeof(cbt), "%s.cbt", r.name);
	if (r.tracking && storage_loc_unlink(l, cbt))
		log_warn("storage %s: cannot remove %s", l->name, cbt);
	snprintf(detail, sizeof(detail), "%s/%s", l->name, r.name);
	sup_emit_named(s, "", "", "image-deleted", detail);
	return 0;
}
