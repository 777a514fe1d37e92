/* images_job.c: an image's convert (to a new raw or qcow2 image, its chain
 * flattened) and backup (a full copy; with change tracking, a full raw
 * backup or an incremental since a point that starts a new point) as jobs
 * (docs/disks.md, "Images in cellad"). The request checks everything and
 * opens every file (the source's chain read-only with a shared lock, the
 * target created O_EXCL beneath its location), records the job in the
 * store, and answers 202; a thread then copies, reporting its progress
 * (disk_set_progress) into the job, which the listing shows. A failure,
 * cellad stopping (the job is cancelled) or a crash (recovered by the next
 * cellad: image_convert_job, image_backup_job) removes the target. */
#include "images_priv.h"

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

struct img_run {
	struct sup *s;
	struct img_job *ij;          /* in s->img_jobs */
	struct job job;              /* the store's record */
	struct disk *src;
	struct cbt *cbt;             /* a backup with a point, else NULL */
	int out_fd;
	const struct storage_loc *tl;
	dev_t dev;
	ino_t ino;
	struct disk_create_opts o;
	char point[IMG_POINT_MAX + 1], since[IMG_POINT_MAX + 1];
};

static int progress(void *arg, uint64_t done, uint64_t total)
{
	struct img_run *run = arg;
	bool cancel;

	pthread_mutex_lock(&run->s->img_lock);
	run->ij->done = done;
	run->ij->total = total;
	cancel = run->ij->cancel;
	pthread_mutex_unlock(&run->s->img_lock);
	if (run->job.data) /* GET /v1/jobs shows the percent too */
		job_progress(run->s, &run->job, done, total);
	return cancel;
}

static void set_phase(struct img_run *run, const char *phase)
{
	struct cerr e = {0};

	pthread_mutex_lock(&run->s->img_lock);
	snprintf(run->ij->phase, sizeof(run->ij->phase), "%s", phase);
	pthread_mutex_unlock(&run->s->img_lock);
	if (run->job.data && job_phase(run->s, &run->job, phase, &e))
		log_warn("image job %s: %s", run->ij->id, e.reason);
}

/* Keep the newest IMG_JOBS_KEPT ended jobs (img_lock held). */
static void trim_jobs(struct sup *s)
{
	unsigned ended = 0;

	for (struct img_job **p = &s->img_jobs; *p;) {
		if (!(*p)->running && ++ended > IMG_JOBS_KEPT) {
			struct img_job *gone = *p;

			*p = gone->next;
			free(gone);
			continue;
		}
		p = &(*p)->next;
	}
}

static void *run_job(void *arg)
{
	struct img_run *run = arg;
	struct sup *s = run->s;
	struct img_job *ij = run->ij;
	char err[512] = "", proc[64], shown[160], detail[700];
	uint64_t bytes = 0;
	int ret;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", run->out_fd);
	snprintf(shown, sizeof(shown), "%s/%s", ij->target_location, ij->target);
	set_phase(run, "copying");
	disk_set_progress(run->src, progress, run);
	if (!run->cbt)
		ret = disk_convert(run->src, proc, &run->o, err, sizeof(err));
	else if (run->since[0])
		ret = cbt_backup_incremental(run->src, run->cbt, run->since, run->point, run->out_fd,
					     &bytes, err, sizeof(err));
	else
		ret = cbt_backup_full(run->src, run->cbt, run->point, run->out_fd, &bytes, err,
				      sizeof(err));
	if (!ret) {
		set_phase(run, "syncing");
		if (fsync(run->out_fd) < 0) {
			ret = -errno;
			snprintf(err, sizeof(err), "fsync: %s", strerror(errno));
		}
	}
	if (ret) {
		if (ret == -ECANCELED)
			snprintf(err, sizeof(err), "cancelled (cellad is stopping)");
		img_name_in(err, sizeof(err), proc, shown);
		img_unlink_target(run->tl, ij->target, run->dev, run->ino);
	}
	close(run->out_fd);
	if (run->cbt)
		cbt_close(run->cbt, true);
	disk_close(run->src);
	if (run->job.data)
		job_close(s, &run->job);
	snprintf(detail, sizeof(detail), "%s of %s/%s to %s: %s", ij->kind, ij->location, ij->image,
		 shown, ret ? err : "done");
	sup_emit_named(s, "", "", ret ? "image-job-failed" : "image-job-finished", detail);
	log_info("image job %s: %s", ij->id, detail);
	pthread_mutex_lock(&s->img_lock);
	ij->running = false;
	ij->ended_at = sup_now_wall();
	snprintf(ij->phase, sizeof(ij->phase), "%s", ret ? "failed" : "done");
	if (ret)
		snprintf(ij->error, sizeof(ij->error), "%s", err);
	free(run);
	trim_jobs(s);
	s->img_running--;
	pthread_cond_broadcast(&s->img_cond);
	pthread_mutex_unlock(&s->img_lock);
	return NULL;
}

/* Open the tracking file of image r for a backup with a point, checking
 * that it may be trusted and that `since` is a point of it. */
static int open_tracking(const struct img_rec *r, const struct img_req *rq, struct disk *d,
			 struct cbt **c, struct cerr *e)
{
	char name[IMG_NAME_MAX + 8], err[256];
	int fd, ret;

	/* Only a VM's worker marks the bits: an image no VM disk with cbt has
	 * on top would leave a point that misses its writes. */
	if (!r->top_of_cbt_disk)
		return cerr_set(e, CERR_INVALID, "point", "change tracking needs %s/%s to be the "
				"disk of a VM with \"cbt\": true (leave out point for a full copy)",
				r->loc->name, r->name);
	snprintf(name, sizeof(name), "%s.cbt", r->name);
	fd = storage_loc_open(r->loc, name, O_RDWR | O_CREAT);
	if (fd < 0)
		return cerr_set(e, CERR_INTERNAL, "point", "%s/%s: %s", r->loc->name, name,
				strerror(-fd));
	ret = cbt_open_fd(c, fd, name, disk_size(d), err, sizeof(err));
	if (ret)
		return cerr_set(e, ret == -EBUSY ? CERR_CONFLICT : CERR_INTERNAL, "point", "%s: %s",
				name, err);
	if (rq->since[0] && !cbt_point_bits(*c, rq->since, &ret)) {
		cbt_close(*c, true);
		*c = NULL;
		return cerr_set(e, CERR_INVALID, "since", ret == -ESTALE
				? "point '%s' is invalid (the host crashed while the disk was in use): "
				  "take a full backup" : "no point '%s' in %s", rq->since, name);
	}
	return 0;
}

static int start(struct sup *s, enum role role, enum img_op op, const char *location,
		 const char *name, json_t *body, json_t **out, struct cerr *e)
{
	const char *kind = op == IMG_CONVERT ? "convert" : "backup";
	struct img_run *run = NULL;
	struct img_job *ij = NULL;
	struct disk *src = NULL;
	struct cbt *c = NULL;
	struct img_scan sc;
	struct img_req rq;
	struct img_rec r;
	struct stat st;
	pthread_t th;
	pthread_attr_t attr;
	json_t *data;
	int i, fd = -1;

	if (img_parse(op, body, &rq, e))
		return -1;
	i = img_find_for_change(s, role, location, name, &sc, e);
	if (i < 0)
		return -1;
	r = sc.r[i];
	if (strcmp(r.kind, "image")) {
		img_scan_free(&sc);
		return cerr_set(e, CERR_INVALID, "file", "%s/%s is %s, not an image", r.loc->name,
				r.name, strcmp(r.kind, "incremental") ? "unreadable"
				: "an incremental backup");
	}
	if (img_refuse_job(s, r.loc->name, r.name, e) ||
	    !(run = calloc(1, sizeof(*run))) || !(ij = calloc(1, sizeof(*ij))))
		goto fail;
	run->tl = rq.location[0] ? img_writable_loc(s, role, rq.location, "location", e) : r.loc;
	if (!run->tl || img_open_image(s, role, &r, DISK_RDONLY, &src, e))
		goto fail;
	if (rq.point[0] && open_tracking(&r, &rq, src, &c, e))
		goto fail;
	fd = storage_loc_open(run->tl, rq.name, O_RDWR | O_CREAT | O_EXCL);
	if (fd < 0) {
		if (fd == -EEXIST)
			cerr_set(e, CERR_EXISTS, "target", "storage '%s' has a file '%s' already",
				 run->tl->name, rq.name);
		else
			cerr_set(e, CERR_INVALID, "target", "%s/%s: %s", run->tl->name, rq.name,
				 strerror(-fd));
		goto fail;
	}
	if (fstat(fd, &st) < 0) {
		cerr_set(e, CERR_INTERNAL, "target", "fstat: %s", strerror(errno));
		goto fail;
	}
	run->dev = st.st_dev;
	run->ino = st.st_ino;
	data = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "location", r.loc->name, "image", r.name,
			 "target_location", run->tl->name, "target", rq.name, "dev",
			 (json_int_t)st.st_dev, "ino", (json_int_t)st.st_ino);
	if (job_open(s, NULL, op == IMG_CONVERT ? "image-convert" : "image-backup", data, &run->job,
		     e)) {
		json_decref(data);
		goto fail;
	}
	json_decref(data);
	snprintf(ij->id, sizeof(ij->id), "%s", run->job.id);
	snprintf(ij->kind, sizeof(ij->kind), "%s", kind);
	snprintf(ij->phase, sizeof(ij->phase), "begun");
	snprintf(ij->location, sizeof(ij->location), "%s", r.loc->name);
	snprintf(ij->image, sizeof(ij->image), "%s", r.name);
	snprintf(ij->target_location, sizeof(ij->target_location), "%s", run->tl->name);
	snprintf(ij->target, sizeof(ij->target), "%s", rq.name);
	ij->total = disk_size(src);
	ij->running = true;
	ij->started_at = sup_now_wall();
	run->s = s;
	run->ij = ij;
	run->src = src;
	run->cbt = c;
	run->out_fd = fd;
	run->o.fmt = rq.fmt < 0 ? DISK_FMT_RAW : (enum disk_format)rq.fmt;
	run->o.cluster_bits = rq.cluster_bits;
	snprintf(run->point, sizeof(run->point), "%s", rq.point);
	snprintf(run->since, sizeof(run->since), "%s", rq.since);
	pthread_mutex_lock(&s->img_lock);
	if (s->shutting_down) {
		pthread_mutex_unlock(&s->img_lock);
		job_close(s, &run->job);
		cerr_set(e, CERR_UNAVAILABLE, "", "cellad is stopping");
		goto fail;
	}
	ij->next = s->img_jobs;
	s->img_jobs = ij;
	s->img_running++;
	*out = json_pack("{s:o}", "job", img_job_json(ij));
	pthread_mutex_unlock(&s->img_lock);
	img_scan_free(&sc);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, run_job, run)) {
		/* Nothing copied yet: end it at once, through the same path. */
		pthread_mutex_lock(&s->img_lock);
		ij->cancel = true;
		pthread_mutex_unlock(&s->img_lock);
		run_job(run);
	}
	pthread_attr_destroy(&attr);
	return 0;
fail:
	if (fd >= 0) {
		close(fd);
		if (run && run->dev)
			img_unlink_target(run->tl, rq.name, run->dev, run->ino);
	}
	if (c)
		cbt_close(c, true);
	if (src)
		disk_close(src);
	free(run);
	free(ij);
	img_scan_free(&sc);
	return -1;
}

int sup_image_convert(struct sup *s, enum role role, const char *location, const char *name,
		      json_t *body, json_t **out, struct cerr *e)
{
	return start(s, role, IMG_CONVERT, location, name, body, out, e);
}

int sup_image_backup(struct sup *s, enum role role, const char *location, const char *name,
		     json_t *body, json_t **out, struct cerr *e)
{
	return start(s, role, IMG_BACKUP, location, name, body, out, e);
}

/* After a crash: the target was being written; remove it. */
static enum job_outcome recover(struct sup *s, struct vmrt *vm, const struct store_job *job,
				char *detail, size_t len)
{
	const char *loc = json_string_value(json_object_get(job->data, "target_location"));
	const char *t = json_string_value(json_object_get(job->data, "target"));
	const struct storage_loc *l = loc ? storage_loc_find(s->conf.storage, loc) : NULL;

	(void)vm;
	if (!l || !t || !img_name_valid(t)) {
		snprintf(detail, len, "its target is unknown");
		return JOB_FAILED;
	}
	img_unlink_target(l, t, (dev_t)json_integer_value(json_object_get(job->data, "dev")),
		      (ino_t)json_integer_value(json_object_get(job->data, "ino")));
	snprintf(detail, len, "the half-made %s/%s was removed", loc, t);
	return JOB_ROLLED_BACK;
}

const struct job_kind image_convert_job = { .name = "image-convert", .recover = recover,
					    .without_vm = true };
const struct job_kind image_backup_job = { .name = "image-backup", .recover = recover,
					   .without_vm = true };
