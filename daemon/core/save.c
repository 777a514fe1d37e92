/* sup_state.c: saved state (Save-VM: the worker writes its state into a
 * file cellad opens and passes as a descriptor; start restores it), live
 * disk QoS changes, and the status poller that notices a worker pausing or
 * resuming itself (storage errors) between API calls. */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "wctl.h"

#define SAVE_TIMEOUT_MS   300000 /* writing and syncing guest memory */
#define SAVE_EXIT_MS      30000  /* from the save reply to the worker's exit */
#define POLL_INTERVAL_MS  500
#define POLL_TIMEOUT_MS   2000

int sup_vm_dir(struct sup *s, const struct vmrt *vm, char *out, size_t len)
{
	char vms[512];

	snprintf(vms, sizeof(vms), "%s/vms", s->conf.state_dir);
	snprintf(out, len, "%s/%s", vms, vm->def.uuid);
	if ((mkdir(vms, 0750) < 0 && errno != EEXIST) || (mkdir(out, 0750) < 0 && errno != EEXIST))
		return -errno;
	return 0;
}

void sup_saved_path(struct sup *s, const struct vmrt *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/vms/%s/saved.state", s->conf.state_dir, vm->def.uuid);
}

/* Save as a job: "saving" is recorded before the worker is asked, "saved"
 * once it answered; save_recover (below) settles what a crash left. */
int sup_act_save(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	unsigned gen = vm->gen;
	json_t *reply = NULL;
	struct job job;
	char path[512];
	int fd, ret;

	if (sup_vm_dir(s, vm, path, sizeof(path)))
		return cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", path, strerror(errno));
	if (job_begin(s, vm, "save", NULL, &job, e))
		return -1;
	sup_saved_path(s, vm, path, sizeof(path));
	/* A new inode every time: the old name may be a checkpoint's memory
	 * (a hard link), which must not be truncated. */
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		job_end(s, &job);
		return cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", path, strerror(errno));
	}
	if (job_phase(s, &job, "saving", e)) {
		close(fd);
		unlink(path);
		job_end(s, &job);
		return -1;
	}
	vm->stop_requested = true; /* the worker exits (status 14): no restart policy */
	ret = sup_worker_cmd(s, vm, json_pack("{s:s, s:i, s:b}", "cmd", "save", "fd", 0, "stop", 1),
			     &fd, 1, SAVE_TIMEOUT_MS, &reply, e);
	close(fd);
	if (ret) {
		vm->stop_requested = false;
		unlink(path);
		job_end(s, &job);
		return -1;
	}
	/* The file is complete: a crash from here on leaves a saved VM. */
	if (job_phase(s, &job, "saved", e))
		log_warn("vm %s: %s", vm->def.name, e->reason);
	log_info("vm %s: state saved (%lld bytes in %lld ms)", vm->def.name,
		 (long long)json_integer_value(json_object_get(reply, "bytes")),
		 (long long)json_integer_value(json_object_get(reply, "ms")));
	json_decref(reply);
	if (!sup_wait_until(s, vm, sup_worker_gone, gen, SAVE_EXIT_MS) && vm->pid) {
		log_warn("vm %s: worker %d did not exit after saving; killing it", vm->def.name,
			 vm->pid);
		kill(vm->pid, SIGKILL);
		sup_wait_until(s, vm, sup_worker_gone, gen, 10000);
	}
	job_end(s, &job);
	if (vm->state != VS_SAVED)
		return cerr_set(e, CERR_INTERNAL, "", "the worker did not end with its state saved: %s",
				vm->exit_reason);
	return 0;
}

static enum job_outcome save_recover(struct sup *s, struct vmrt *vm, const struct store_job *job,
				     char *detail, size_t len)
{
	char path[512];

	(void)job;
	sup_saved_path(s, vm, path, sizeof(path));
	/* A worker that saved exits by itself (status 14), and may be doing so
	 * now (its control socket closed, so adoption could not reach it):
	 * let it end and be settled before judging. */
	if (vm_state_active(vm->state)) {
		struct cerr e = { 0 };
		json_t *reply = NULL;
		const char *st = NULL;

		if (vm->pid && !sup_worker_cmd(s, vm, json_pack("{s:s}", "cmd", "status"), NULL, 0,
					       POLL_TIMEOUT_MS, &reply, &e))
			st = json_string_value(json_object_get(reply, "state"));
		if (!st || !strcmp(st, "stopping"))
			sup_wait_until(s, vm, sup_worker_gone, vm->gen, SAVE_EXIT_MS);
		json_decref(reply);
	}
	if (vm->state == VS_SAVED && access(path, R_OK) == 0) {
		snprintf(detail, len, "the worker had saved the state");
		return JOB_FINISHED;
	}
	/* The worker never saved (it still runs, or it died): the file, if
	 * any, is incomplete. A saved VM keeps its state. */
	if (vm->state != VS_SAVED)
		unlink(path);
	snprintf(detail, len, "the state was not saved; the VM is %s", vm_state_name(vm->state));
	return JOB_ROLLED_BACK;
}

const struct job_kind save_job = { "save", save_recover };

int sup_act_delete_state(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	char path[512];

	sup_saved_path(s, vm, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT)
		return cerr_set(e, CERR_INTERNAL, "", "cannot delete %s: %s", path, strerror(errno));
	lifecycle_fire(s, vm, EV_STATE_DELETED, NULL);
	return 0;
}

/* The worker's per-disk status (path, format, qos, error) joins the
 * definition's disks in the VM's JSON, matched by id. */
void sup_merge_disk_status(json_t *vmjson, json_t *status)
{
	json_t *disks = json_object_get(vmjson, "disks"), *d, *st;
	size_t i, j;

	json_array_foreach(disks, i, d) {
		const char *id = json_string_value(json_object_get(d, "id"));

		json_array_foreach(status, j, st) {
			json_t *err = json_object_get(st, "error");

			if (id && !strcmp(id, json_string_value(json_object_get(st, "id")) ?: ""))
				json_object_set(d, "error", err ? err : json_null());
		}
	}
}

int sup_disk_change(struct sup *s, const char *name, const char *disk, json_t *body, json_t **out,
		    struct cerr *e)
{
	struct vmdef_qos q;
	struct vmrt *vm;
	const char *key;
	json_t *v, *reply = NULL;
	int idx, ret = -1;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	idx = vmdef_disk_find(&vm->def, disk);
	if (idx < 0) {
		cerr_set(e, CERR_NOT_FOUND, "disk", "VM '%s' has no disk '%.32s'", name, disk);
		goto out;
	}
	if (vm->busy) {
		cerr_set(e, CERR_STATE, "state", "another action on this VM is in progress");
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		goto out;
	}
	q = vm->def.disks[idx].qos;
	json_object_foreach(body, key, v) {
		if (strcmp(key, "qos")) {
			cerr_set(e, CERR_INVALID, key, "unknown field (only qos changes here; the rest with "
				 "PATCH /v1/vms/{name} on a stopped VM)");
			goto out;
		}
		if (vmdef_qos_parse(&q, v, "qos", e))
			goto out;
	}
	if (!json_object_get(body, "qos")) {
		cerr_set(e, CERR_INVALID, "qos", "required");
		goto out;
	}
	vm->busy = true;
	vm->acts++;
	if (vm->state == VS_RUNNING || vm->state == VS_PAUSED) {
		json_t *req = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "cmd", "set-qos", "disk",
					disk, "iops", (json_int_t)q.iops, "iops_burst",
					(json_int_t)q.iops_burst, "bps", (json_int_t)q.bps,
					"bps_burst", (json_int_t)q.bps_burst);

		if (sup_worker_cmd(s, vm, req, NULL, 0, 10000, &reply, e))
			goto done;
		json_decref(reply);
	} else if (state_active(vm->state)) {
		sup_refuse(vm, e, "change the limits of");
		goto done;
	}
	/* The worker took it (or none runs): store it for the next start. */
	idx = vmdef_disk_find(&vm->def, disk); /* the lock was dropped */
	if (idx < 0) {
		cerr_set(e, CERR_NOT_FOUND, "disk", "the disk went away");
		goto done;
	}
	vm->def.disks[idx].qos = q;
	if (store_vm_put(s->db, &vm->def)) {
		cerr_set(e, CERR_INTERNAL, "", "cannot store the definition");
		goto done;
	}
	sup_emit(s, vm, "changed", disk);
	*out = vmdef_disk_json(&vm->def.disks[idx]);
	ret = 0;
done:
	vm->acts++;
	vm->busy = false;
	sup_vm_changed(vm);
out:
	sup_vm_unlock(s, vm);
	return ret;
}

/* Status poller -------------------------------------------------------------
 * The control socket is request/response, so a worker that pauses itself
 * (storage failure) or resumes on its own is noticed by asking: every VM
 * that runs or is paused is asked for its status every POLL_INTERVAL_MS.
 * A reply is applied only if no API action touched the VM meanwhile. */

static void poll_apply(struct sup *s, struct vmrt *vm, json_t *reply)
{
	const char *st = json_string_value(json_object_get(reply, "state"));
	const char *why = json_string_value(json_object_get(reply, "pause_reason"));
	json_t *disks = json_object_get(reply, "disks");

	if (json_is_array(disks)) {
		json_decref(vm->disk_status);
		vm->disk_status = json_incref(disks);
	}
	if (!st)
		return;
	if (!strcmp(st, "paused") && vm->state == VS_RUNNING) {
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why ? why : "worker");
		lifecycle_fire(s, vm, EV_PAUSE, vm->pause_reason);
	} else if (!strcmp(st, "paused") && why && strcmp(why, vm->pause_reason) &&
		   strcmp(vm->pause_reason, "api")) {
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why);
		sup_emit(s, vm, "paused", why);
	} else if (!strcmp(st, "running") && vm->state == VS_PAUSED) {
		char was[256];

		snprintf(was, sizeof(was), "resumed by the worker (was: %.200s)", vm->pause_reason);
		vm->pause_reason[0] = 0;
		lifecycle_fire(s, vm, EV_RESUME, was);
	}
}

static void poll_one(struct sup *s, struct vmrt *vm)
{
	json_t *req, *reply = NULL;
	unsigned gen, acts;
	char path[512];
	int ret;

	pthread_mutex_lock(&vm->lock);
	if ((vm->state != VS_RUNNING && vm->state != VS_PAUSED) || vm->busy || !vm->pid ||
	    vm->deleted) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	gen = vm->gen;
	acts = vm->acts;
	sup_paths(s, vm, ".ctl", path, sizeof(path));
	pthread_mutex_unlock(&vm->lock);
	req = json_pack("{s:s}", "cmd", "status");
	ret = wctl_request(path, req, POLL_TIMEOUT_MS, &reply);
	json_decref(req);
	pthread_mutex_lock(&vm->lock);
	if (!ret && vm->gen == gen && vm->acts == acts && !vm->busy && !vm->deleted &&
	    json_is_true(json_object_get(reply, "ok")))
		poll_apply(s, vm, reply);
	pthread_mutex_unlock(&vm->lock);
	json_decref(reply);
}

static void *poller_main(void *opaque)
{
	struct sup *s = opaque;

	while (!s->shutting_down) {
		struct timespec dl;
		size_t n;
		struct vmrt **all = sup_vm_pin_all(s, &n);

		for (size_t i = 0; i < n && !s->shutting_down; i++)
			poll_one(s, all[i]);
		sup_vm_unpin_all(s, all, n);
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += POLL_INTERVAL_MS * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&s->reg_lock);
		while (!s->shutting_down &&
		       pthread_cond_timedwait(&s->poll_wake, &s->reg_lock, &dl) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&s->reg_lock);
	}
	return NULL;
}

int sup_poller_start(struct sup *s)
{
	int ret = pthread_create(&s->poller, NULL, poller_main, s);

	if (ret)
		return -ret;
	s->poller_started = true;
	return 0;
}

void sup_poller_stop(struct sup *s)
{
	if (!s->poller_started)
		return;
	pthread_mutex_lock(&s->reg_lock);
	s->shutting_down = true;
	pthread_cond_broadcast(&s->poll_wake);
	pthread_mutex_unlock(&s->reg_lock);
	pthread_join(s->poller, NULL);
	s->poller_started = false;
}
