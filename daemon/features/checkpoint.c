/* checkpoint.c: VM checkpoints (Checkpoint-VM), a tree per VM in SQLite.
 *
 * A checkpoint freezes every writable disk's top image (its "layer") and
 * puts a new qcow2 overlay on top, created here with the frozen image as
 * its backing file; the VM carries on in the overlay. A running VM switches
 * to the overlays through its worker (flush-disks, then disk-switch with
 * the overlay passed as a descriptor). A standard checkpoint also keeps the
 * memory: the VM is paused, its disks are switched, and the worker saves
 * its state without stopping ("stop": false), so disks and memory show the
 * same instant. Production checkpoints keep the disks only (applying one
 * cold-boots). Read-only disks are never layered.
 *
 * Layers form a tree that mirrors the checkpoint tree: a checkpoint's layer
 * has the parent checkpoint's layer as its backing file, and the VM's active
 * overlay sits on the current checkpoint's layer. Applying a checkpoint
 * creates a fresh overlay on its layers (the state since the last
 * checkpoint is discarded, as Hyper-V does) and, for standard ones, makes
 * its memory the VM's saved state.
 *
 * Deleting a checkpoint merges its layer away: checkpoint_delete.c. */
#include "sup_priv.h"
#include "checkpoint_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "json_find.h"

#include "log.h"

const char *cp_str(json_t *cp, const char *key)
{
	return json_string_value(json_object_get(cp, key));
}

json_t *cp_layer(json_t *cp, const char *id)
{
	size_t i;
	json_t *l;

	json_array_foreach(json_object_get(cp, "layers"), i,
	                   l) if (!strcmp(cp_str(l, "id") ?: "", id)) return l;
	return NULL;
}

void cp_memory_path(struct sup *s, const struct vmrt *vm, const char *cp, char *out,
                    size_t len)
{
	snprintf(out, len, "%s/vms/%s/cp-%s.state", s->conf.state_dir, vm->def.uuid, cp);
}

/* A file cellad created (lives in the VM's directory), not the user's. */
bool cp_owned(struct sup *s, const struct vmrt *vm, const char *path)
{
	char dir[512];
	size_t n;

	snprintf(dir, sizeof(dir), "%s/vms/%s/", s->conf.state_dir, vm->def.uuid);
	n = strlen(dir);
	return path && !strncmp(path, dir, n) && !strchr(path + n, '/');
}

/* Is `cp` the current checkpoint or one of its ancestors? */
bool cp_in_current_chain(json_t *list, const char *current, const char *cp)
{
	for (int depth = 0; current && *current && depth < 10000; depth++) {
		json_t *c = cp_find(list, current);

		if (!strcmp(current, cp))
			return true;
		current = c ? cp_str(c, "parent") : NULL;
	}
	return false;
}

/* A new qcow2 overlay over `backing`, named after the disk. */
static int overlay_create(struct sup *s, const struct vmrt *vm, const struct vmdef_disk *dk,
                          const char *backing, enum vmdef_disk_format bfmt, char *out, size_t len,
                          struct cerr *e)
{
	struct disk_create_opts o = {
	    .fmt = DISK_FMT_QCOW2,
	    .backing = backing,
	    .backing_fmt = bfmt == VMDEF_FMT_QCOW2 ? DISK_FMT_QCOW2 : DISK_FMT_RAW,
	};
	char err[256] = "";
	int ret;

	snprintf(out, len, "%s/vms/%s/%s-%llx.qcow2", s->conf.state_dir, vm->def.uuid, dk->id,
	         (unsigned long long)sup_mono_ns());
	ret = disk_create(out, &o, err, sizeof(err));
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot create the overlay %s: %s", out,
		                err[0] ? err : strerror(-ret));
	return 0;
}

int sup_cp_list(struct sup *s, const char *name, json_t **out, struct cerr *e)
{
	struct vmrt *vm;
	json_t *list;
	size_t i;
	json_t *cp;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	list = store_cp_list(s->db, vm->def.uuid);
	json_array_foreach(list, i, cp)
	{
		json_t *children = json_array(), *o;
		size_t j;

		json_array_foreach(list, j,
		                   o) if (!strcmp(cp_str(o, "parent") ?: "", cp_str(cp, "name")))
		    json_array_append_new(children, json_string(cp_str(o, "name")));
		json_object_set_new(cp, "children", children);
		json_object_set_new(cp, "current",
		                    json_boolean(!strcmp(vm->def.checkpoint, cp_str(cp, "name"))));
	}
	*out = json_pack("{s:o, s:o}", "current",
	                 vm->def.checkpoint[0] ? json_string(vm->def.checkpoint) : json_null(),
	                 "checkpoints", list);
	sup_vm_unlock(s, vm);
	return 0;
}

/* Switch a running VM's writable disks to the overlays (lock held, dropped
 * around worker calls). Returns the number switched; on failure e is set
 * and the count says which disks already write into their overlay. */
static int cp_switch_disks(struct sup *s, struct vmrt *vm, char (*ov)[512], struct cerr *e)
{
	json_t *reply = NULL;
	int done = 0;

	if (sup_worker_cmd(s, vm, json_pack("{s:s}", "cmd", "flush-disks"), NULL, 0, CP_TIMEOUT_MS,
	                   &reply, e))
		return -1;
	json_decref(reply);
	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		int fd;

		if (vm->def.disks[i].readonly)
			continue;
		fd = open(ov[i], O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			cerr_set(e, CERR_INTERNAL, "", "%s: %s", ov[i], strerror(errno));
			return -1 - done;
		}
		if (sup_worker_cmd(s, vm,
		                   json_pack("{s:s, s:s, s:i}", "cmd", "disk-switch", "disk",
		                             vm->def.disks[i].id, "fd", 0),
		                   &fd, 1, CP_TIMEOUT_MS, &reply, e)) {
			close(fd);
			return -1 - done;
		}
		close(fd);
		json_decref(reply);
		done++;
	}
	return done;
}

static void cp_worker_quiet(struct sup *s, struct vmrt *vm, const char *cmd)
{
	struct cerr ignored = {0};
	json_t *reply = NULL;

	if (sup_worker_cmd(s, vm, json_pack("{s:s}", "cmd", cmd), NULL, 0, CP_TIMEOUT_MS, &reply,
	                   &ignored))
		log_debug("vm %s: %s: %s", vm->def.name, cmd, ignored.reason);
	json_decref(reply);
}

/* Take the running VM's part of a checkpoint: disks, and memory for the
 * standard kind. *switched = disks now writing into their overlays. */
static int cp_take_online(struct sup *s, struct vmrt *vm, bool standard, const char *mem,
                          char (*ov)[512], int *switched, struct cerr *e)
{
	bool was_running = vm->state == VS_RUNNING;
	json_t *reply = NULL;
	int ret = 0, fd;

	*switched = 0;
	if (standard && was_running &&
	    sup_worker_cmd(s, vm, json_pack("{s:s}", "cmd", "pause"), NULL, 0, CP_TIMEOUT_MS,
	                   &reply, e))
		return -1;
	json_decref(reply);
	reply = NULL;
	ret = cp_switch_disks(s, vm, ov, e);
	if (ret < 0) {
		*switched = -1 - ret;
		ret = -1;
	} else {
		*switched = ret;
		ret = 0;
	}
	if (!ret && standard) {
		fd = open(mem, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			ret = cerr_set(e, CERR_INTERNAL, "", "%s: %s", mem, strerror(errno));
		else {
			ret = sup_worker_cmd(
			    s, vm, json_pack("{s:s, s:i, s:b}", "cmd", "save", "fd", 0, "stop", 0),
			    &fd, 1, CP_SAVE_TIMEOUT_MS, &reply, e);
			close(fd);
			json_decref(reply);
			if (ret)
				unlink(mem);
		}
	}
	/* Back to the state the API shows, whatever save left the vCPUs in. */
	if (standard && vm->pid)
		cp_worker_quiet(s, vm, was_running ? "resume" : "pause");
	return ret;
}

static int cp_body(json_t *body, const char **name, bool *standard, struct cerr *e)
{
	const char *key, *kind = "standard";
	json_t *v;

	*name = NULL;
	json_object_foreach(body, key, v)
	{
		if (!strcmp(key, "name")) {
			*name = json_string_value(v);
			if (!*name || !vmdef_name_valid(*name))
				return cerr_set(e, CERR_INVALID, "name",
				                "expected 1-63 of A-Z a-z 0-9 . _ -, "
				                "starting with a letter or digit");
		} else if (!strcmp(key, "kind")) {
			kind = json_string_value(v);
			if (!kind || (strcmp(kind, "standard") && strcmp(kind, "production")))
				return cerr_set(e, CERR_INVALID, "kind",
				                "expected \"standard\" or "
				                "\"production\"");
		} else {
			return cerr_set(e, CERR_INVALID, key, "unknown field");
		}
	}
	if (!*name)
		return cerr_set(e, CERR_INVALID, "name", "required");
	*standard = !strcmp(kind, "standard");
	return 0;
}

/* Record the checkpoint and the VM's new tops in one transaction. */
static int cp_commit_create(struct sup *s, struct vmrt *vm, json_t *cp, struct vmdef *next,
                            struct cerr *e)
{
	int ret = store_begin(s->db);

	if (!ret)
		ret = store_cp_put(s->db, vm->def.uuid, cp);
	if (!ret)
		ret = store_vm_put(s->db, next);
	if (store_end(s->db, ret) || ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot store the checkpoint");
	vmdef_free(&vm->def);
	vm->def = *next;
	return 0;
}

/* Checkpoint creation as a job: "switching" is recorded once the overlays
 * exist (their paths in the job's data), "switched" once the disks write
 * into them and the memory is saved (the checkpoint's record in the data);
 * cp_create_recover (below) settles what a crash left. */
static int cp_create_locked(struct sup *s, struct vmrt *vm, struct job *job, const char *cpname,
                            bool standard, json_t **out, struct cerr *e)
{
	char ov[VMDEF_MAX_DISKS][512] = {{0}}, mem[512], dir[512];
	bool online = vm->state == VS_RUNNING || vm->state == VS_PAUSED, memory = false;
	json_t *layers = json_array(), *cp, *jov = json_object();
	struct vmdef next;
	int switched = 0, ret = -1;

	json_object_set_new(job->data, "checkpoint", json_string(cpname));
	json_object_set_new(job->data, "standard", json_boolean(standard));
	json_object_set_new(job->data, "was_running", json_boolean(vm->state == VS_RUNNING));
	json_object_set_new(job->data, "overlays", jov);

	if (sup_vm_dir(s, vm, dir, sizeof(dir))) {
		cerr_set(e, CERR_INTERNAL, "", "cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	cp_memory_path(s, vm, cpname, mem, sizeof(mem));
	unlink(mem); /* a leftover of a failed attempt */
	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		const struct vmdef_disk *dk = &vm->def.disks[i];

		json_array_append_new(layers,
		                      json_pack("{s:s, s:s, s:s, s:b}", "id", dk->id, "path",
		                                dk->path, "format", vmdef_format_name(dk->format),
		                                "readonly", dk->readonly));
		if (!dk->readonly &&
		    overlay_create(s, vm, dk, dk->path, dk->format, ov[i], sizeof(ov[i]), e))
			goto out;
		if (ov[i][0])
			json_object_set_new(jov, dk->id, json_string(ov[i]));
	}
	json_object_set_new(job->data, "memory_path", json_string(mem));
	if (job_phase(s, job, "switching", e))
		goto out;
	if (online) {
		ret = cp_take_online(s, vm, standard, mem, ov, &switched, e);
		memory = standard && !ret;
	} else {
		ret = 0;
		if (standard && vm->state == VS_SAVED) {
			char saved[512];

			/* The saved state matches the disks as they are: share it. */
			sup_saved_path(s, vm, saved, sizeof(saved));
			if (link(saved, mem) < 0)
				ret = cerr_set(e, CERR_INTERNAL, "", "cannot link %s: %s", mem,
				               strerror(errno));
			memory = !ret;
		}
		switched = ret ? 0 : VMDEF_MAX_DISKS;
	}
	if (vmdef_copy(&next, &vm->def)) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		ret = -1;
		goto out;
	}
	/* Disks that write into their overlay already must keep it, even when
	 * the checkpoint failed half-way (their old top is merely deeper). */
	for (unsigned i = 0, n = 0; i < next.nr_disks; i++) {
		if (next.disks[i].readonly || !ov[i][0] || n++ >= (unsigned)switched)
			continue;
		free(next.disks[i].path);
		next.disks[i].path = strdup(ov[i]);
		next.disks[i].format = VMDEF_FMT_QCOW2;
		ov[i][0] = 0; /* in use: not cleaned up below */
	}
	cp = json_pack("{s:s, s:o, s:s, s:I, s:b, s:O}", "name", cpname, "parent",
	               vm->def.checkpoint[0] ? json_string(vm->def.checkpoint) : json_null(),
	               "kind", standard ? "standard" : "production", "created_at",
	               (json_int_t)sup_now_wall(), "memory", memory, "layers", layers);
	if (!ret)
		snprintf(next.checkpoint, sizeof(next.checkpoint), "%s", cpname);
	if (!ret) {
		json_object_set(job->data, "record", cp);
		if (job_phase(s, job, "switched", e)) {
			/* Not recorded: undo like any other failure below. */
			ret = -1;
			snprintf(next.checkpoint, sizeof(next.checkpoint), "%s", vm->def.checkpoint);
		}
	}
	if (ret) {
		if (switched && store_vm_put(s->db, &next) == 0) {
			vmdef_free(&vm->def);
			vm->def = next;
		} else {
			vmdef_free(&next);
		}
	} else if (cp_commit_create(s, vm, cp, &next, e)) {
		vmdef_free(&next);
		ret = -1;
	}
	if (!ret) {
		sup_emit(s, vm, "checkpoint-created", cpname);
		*out = cp;
	} else {
		json_decref(cp);
		if (memory)
			unlink(mem);
	}
out:
	for (unsigned i = 0; i < VMDEF_MAX_DISKS; i++)
		if (ov[i][0])
			unlink(ov[i]);
	json_decref(layers);
	return ret;
}

int sup_cp_create(struct sup *s, const char *name, json_t *body, json_t **out, struct cerr *e)
{
	const char *cpname;
	struct vmrt *vm;
	bool standard = true;
	json_t *list;
	int ret = -1;

	if (cp_body(body, &cpname, &standard, e))
		return -1;
	vm = sup_lookup_idle(s, name, e);
	if (!vm)
		return -1;
	if (lifecycle_request_check(REQ_CHECKPOINT_CREATE, vm->state, e)) {
		goto out;
	}
	list = store_cp_list(s->db, vm->def.uuid);
	if (cp_find(list, cpname)) {
		json_decref(list);
		cerr_set(e, CERR_EXISTS, "name", "VM '%s' has a checkpoint '%s' already", name, cpname);
		goto out;
	}
	json_decref(list);
	{
		struct job job;

		if (job_begin(s, vm, "checkpoint-create", NULL, &job, e))
			goto out;
		ret = cp_create_locked(s, vm, &job, cpname, standard, out, e);
		job_end(s, &job);
	}
out:
	if (ret && (e->kind == CERR_STATE || e->kind == CERR_CONFLICT) && !e->state[0])
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	sup_vm_unlock(s, vm);
	return ret;
}

/* Whether process pid has the file at path open (compared by inode, so it
 * holds whatever mount namespace the worker sandboxed itself into). */
static bool worker_holds(pid_t pid, const char *path)
{
	struct stat want, got;
	char fdp[64];

	if (!pid || stat(path, &want) < 0)
		return false;
	for (int fd = 0; fd < 4096; fd++) {
		snprintf(fdp, sizeof(fdp), "/proc/%d/fd/%d", (int)pid, fd);
		if (stat(fdp, &got) == 0 && got.st_dev == want.st_dev && got.st_ino == want.st_ino)
			return true;
	}
	return false;
}

/* A checkpoint creation a crash interrupted. Recorded already: finished.
 * Every disk switched and the memory saved ("switched"): record it. Else
 * roll back: overlays the worker writes into stay the disks' tops (their
 * old tops are merely deeper, as after any failed checkpoint); the others,
 * and the memory file, go. */
static enum job_outcome cp_create_recover(struct sup *s, struct vmrt *vm,
                                          const struct store_job *job, char *detail, size_t len)
{
	const char *cpname = json_string_value(json_object_get(job->data, "checkpoint")) ?: "";
	const char *mem = json_string_value(json_object_get(job->data, "memory_path"));
	json_t *ovs = json_object_get(job->data, "overlays"), *rec = json_object_get(job->data, "record");
	bool finish = !strcmp(job->phase, "switched") && json_is_object(rec);
	json_t *list = store_cp_list(s->db, vm->def.uuid), *p;
	struct vmdef next;
	const char *id;
	unsigned kept = 0;
	int ret;

	if (cp_find(list, cpname)) {
		json_decref(list);
		snprintf(detail, len, "checkpoint '%s' was recorded", cpname);
		return JOB_FINISHED;
	}
	json_decref(list);
	if (vmdef_copy(&next, &vm->def)) {
		snprintf(detail, len, "out of memory");
		return JOB_FAILED;
	}
	json_object_foreach(ovs, id, p) {
		const char *path = json_string_value(p);
		int di = vmdef_disk_find(&next, id);

		if (!path || di < 0)
			continue;
		if (finish || worker_holds(vm->pid, path)) {
			free(next.disks[di].path);
			next.disks[di].path = strdup(path);
			next.disks[di].format = VMDEF_FMT_QCOW2;
			kept++;
		} else {
			unlink(path);
		}
	}
	if (finish)
		snprintf(next.checkpoint, sizeof(next.checkpoint), "%s", cpname);
	ret = store_begin(s->db);
	if (!ret && finish)
		ret = store_cp_put(s->db, vm->def.uuid, rec);
	if (!ret)
		ret = store_vm_put(s->db, &next);
	if (store_end(s->db, ret) || ret) {
		vmdef_free(&next);
		snprintf(detail, len, "cannot update the store");
		return JOB_FAILED;
	}
	vmdef_free(&vm->def);
	vm->def = next;
	if (!finish && mem)
		unlink(mem);
	/* A standard checkpoint pauses a running VM while it saves memory. */
	if (json_is_true(json_object_get(job->data, "was_running")) && vm->state == VS_PAUSED &&
	    vm->pid) {
		cp_worker_quiet(s, vm, "resume");
		vm->pause_reason[0] = 0;
		lifecycle_fire(s, vm, EV_RESUME, "after an interrupted checkpoint");
	}
	if (finish) {
		sup_emit(s, vm, "checkpoint-created", cpname);
		snprintf(detail, len, "checkpoint '%s' recorded", cpname);
		return JOB_FINISHED;
	}
	snprintf(detail, len, "checkpoint '%s' not taken; %u disk(s) kept their new overlay",
	         cpname, kept);
	return JOB_ROLLED_BACK;
}

const struct job_kind checkpoint_create_job = { "checkpoint-create", cp_create_recover };

/* Apply ------------------------------------------------------------------ */

/* Applying as a job: "switching" is recorded once the new overlays exist
 * (their paths, and the tops they replace, in the job's data); the store's
 * definition then makes it done. cp_apply_recover settles a crash. */
static int cp_apply_locked(struct sup *s, struct vmrt *vm, struct job *job, json_t *list,
                           json_t *cp, struct cerr *e)
{
	char ov[VMDEF_MAX_DISKS][512] = {{0}}, old[VMDEF_MAX_DISKS][512] = {{0}};
	char mem[512], saved[512];
	const char *cpname = cp_str(cp, "name");
	bool memory = json_is_true(json_object_get(cp, "memory"));
	struct vmdef next;
	int ret = -1;

	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		json_t *l = cp_layer(cp, vm->def.disks[i].id);

		if (!l && !vm->def.disks[i].readonly)
			return cerr_set(e, CERR_CONFLICT, "disks",
			                "disk '%s' is not in checkpoint '%s' (the "
			                "disks changed since)",
			                vm->def.disks[i].id, cpname);
	}
	if (state_active(vm->state) && sup_act_kill(s, vm, e))
		return -1;
	for (unsigned i = 0; i < vm->def.nr_disks; i++) {
		const struct vmdef_disk *dk = &vm->def.disks[i];
		json_t *l = cp_layer(cp, dk->id);
		enum vmdef_disk_format f;

		if (dk->readonly)
			continue;
		if (vmdef_format_parse(cp_str(l, "format") ?: "", &f))
			f = VMDEF_FMT_RAW;
		if (overlay_create(s, vm, dk, cp_str(l, "path"), f, ov[i], sizeof(ov[i]), e))
			goto out;
	}
	{
		json_t *jov = json_object(), *jold = json_object();

		for (unsigned i = 0; i < vm->def.nr_disks; i++) {
			if (!ov[i][0])
				continue;
			json_object_set_new(jov, vm->def.disks[i].id, json_string(ov[i]));
			json_object_set_new(jold, vm->def.disks[i].id,
			                    json_string(vm->def.disks[i].path));
		}
		json_object_set_new(job->data, "overlays", jov);
		json_object_set_new(job->data, "old", jold);
		json_object_set_new(job->data, "memory", json_boolean(memory));
		if (job_phase(s, job, "switching", e))
			goto out;
	}
	sup_saved_path(s, vm, saved, sizeof(saved));
	unlink(saved);
	if (memory) {
		cp_memory_path(s, vm, cpname, mem, sizeof(mem));
		if (link(mem, saved) < 0) {
			cerr_set(e, CERR_INTERNAL, "", "cannot link %s: %s", saved, strerror(errno));
			goto out;
		}
	}
	if (vmdef_copy(&next, &vm->def)) {
		cerr_set(e, CERR_INTERNAL, "", "out of memory");
		goto out;
	}
	for (unsigned i = 0; i < next.nr_disks; i++) {
		if (!ov[i][0])
			continue;
		snprintf(old[i], sizeof(old[i]), "%s", next.disks[i].path);
		free(next.disks[i].path);
		next.disks[i].path = strdup(ov[i]);
		next.disks[i].format = VMDEF_FMT_QCOW2;
	}
	snprintf(next.checkpoint, sizeof(next.checkpoint), "%s", cpname);
	if (store_vm_put(s->db, &next)) {
		vmdef_free(&next);
		cerr_set(e, CERR_INTERNAL, "", "cannot store the definition");
		goto out;
	}
	vmdef_free(&vm->def);
	vm->def = next;
	/* The discarded overlays: cellad's files that no checkpoint holds. */
	for (unsigned i = 0; i < VMDEF_MAX_DISKS; i++) {
		bool held = false;
		size_t k;
		json_t *c;

		if (!old[i][0] || !cp_owned(s, vm, old[i]))
			continue;
		json_array_foreach(list, k, c) held |=
		    !strcmp(cp_str(cp_layer(c, vm->def.disks[i].id), "path") ?: "", old[i]);
		if (!held)
			unlink(old[i]);
		ov[i][0] = 0;
	}
	memset(ov, 0, sizeof(ov));
	lifecycle_fire(s, vm, memory ? EV_CHECKPOINT_APPLIED_MEMORY : EV_CHECKPOINT_APPLIED, cpname);
	ret = 0;
out:
	for (unsigned i = 0; i < VMDEF_MAX_DISKS; i++)
		if (ov[i][0])
			unlink(ov[i]);
	if (ret && memory)
		unlink(saved);
	return ret;
}

/* The idle VM name (*vm, pinned and locked: sup_vm_unlock it when not
 * NULL), its checkpoint tree (*list, the caller's to free, NULL when there
 * is no VM) and checkpoint cpname in it; NULL with e set when the VM or
 * the checkpoint is missing. */
json_t *cp_lookup(struct sup *s, const char *name, const char *cpname, struct vmrt **vm,
                  json_t **list, struct cerr *e)
{
	json_t *cp;

	*vm = sup_lookup_idle(s, name, e);
	if (!*vm)
		return NULL;
	*list = store_cp_list(s->db, (*vm)->def.uuid);
	cp = cp_find(*list, cpname);
	if (!cp)
		cerr_set(e, CERR_NOT_FOUND, "checkpoint", "VM '%s' has no checkpoint '%.64s'", name, cpname);
	return cp;
}

int cp_run_job(struct sup *s, struct vmrt *vm, const char *kind, const char *cpname,
               cp_job_fn fn, json_t *list, json_t *cp, struct cerr *e)
{
	json_t *data = json_pack("{s:s}", "checkpoint", cpname);
	struct job job;
	int ret = job_begin(s, vm, kind, data, &job, e);

	json_decref(data);
	if (ret)
		return -1;
	ret = fn(s, vm, &job, list, cp, e);
	job_end(s, &job);
	return ret;
}

int sup_cp_apply(struct sup *s, const char *name, const char *cpname, json_t **out, struct cerr *e)
{
	struct vmrt *vm;
	json_t *list = NULL, *cp;
	int ret = -1;

	cp = cp_lookup(s, name, cpname, &vm, &list, e);
	if (!cp)
		goto out;
	if (lifecycle_request_check(REQ_CHECKPOINT_APPLY, vm->state, e)) {
		goto out;
	}
	ret = cp_run_job(s, vm, "checkpoint-apply", cpname, cp_apply_locked, list, cp, e);
	if (!ret)
		*out = sup_vm_json(s, vm);
out:
	json_decref(list);
	if (vm)
		sup_vm_unlock(s, vm);
	return ret;
}

/* An apply a crash interrupted: the definition in the store tells whether
 * it took (then the replaced tops no checkpoint holds go, and the state
 * follows), or not (then the new overlays, and a saved state linked from
 * the checkpoint, go; the VM keeps its disks). */
static enum job_outcome cp_apply_recover(struct sup *s, struct vmrt *vm,
                                         const struct store_job *job, char *detail, size_t len)
{
	const char *cpname = json_string_value(json_object_get(job->data, "checkpoint")) ?: "";
	json_t *ovs = json_object_get(job->data, "overlays"), *old = json_object_get(job->data, "old");
	bool memory = json_is_true(json_object_get(job->data, "memory")), took = json_object_size(ovs);
	json_t *p, *list;
	const char *id;
	char saved[512];

	json_object_foreach(ovs, id, p) {
		int di = vmdef_disk_find(&vm->def, id);

		took &= di >= 0 && !strcmp(vm->def.disks[di].path, json_string_value(p) ?: "");
	}
	sup_saved_path(s, vm, saved, sizeof(saved));
	if (!took) {
		json_object_foreach(ovs, id, p)
			if (json_string_value(p))
				unlink(json_string_value(p));
		if (memory && !strcmp(job->phase, "switching")) {
			unlink(saved); /* possibly the checkpoint's memory, linked */
			if (vm->state == VS_SAVED)
				lifecycle_fire(s, vm, EV_STATE_DELETED, "the checkpoint was not applied");
		}
		snprintf(detail, len, "checkpoint '%s' was not applied; the VM keeps its disks", cpname);
		return JOB_ROLLED_BACK;
	}
	list = store_cp_list(s->db, vm->def.uuid);
	json_object_foreach(old, id, p) {
		const char *path = json_string_value(p);
		bool held = false;
		size_t k;
		json_t *c;

		if (!path || !cp_owned(s, vm, path))
			continue;
		json_array_foreach(list, k, c)
			held |= !strcmp(cp_str(cp_layer(c, id), "path") ?: "", path);
		if (!held)
			unlink(path);
	}
	json_decref(list);
	if (!vm_state_active(vm->state) && vm->state != (memory ? VS_SAVED : VS_STOPPED))
		lifecycle_fire(s, vm, memory ? EV_CHECKPOINT_APPLIED_MEMORY : EV_CHECKPOINT_APPLIED,
		               cpname);
	snprintf(detail, len, "checkpoint '%s' applied", cpname);
	return JOB_FINISHED;
}

const struct job_kind checkpoint_apply_job = { "checkpoint-apply", cp_apply_recover };
