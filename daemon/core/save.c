/* save.c: saved state (Save-VM: the worker writes its state into a file
 * cellad opens and passes as a descriptor; start restores it) as a job, and
 * discarding it. */
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
#define POLL_TIMEOUT_MS   2000 /* a status request while recovering a save */

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
