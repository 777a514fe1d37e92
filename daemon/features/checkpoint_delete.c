/* checkpoint_delete.c: deleting a checkpoint (Remove-VMSnapshot).
 *
 * Deleting checkpoint C merges its layer L away without changing what any
 * other checkpoint (or the VM) sees. The images backed by L (its children's
 * layers, and the active overlay when C is current) are its dependents:
 *  - none: L is deleted;
 *  - one, D: D is committed into L (D's clusters written into L), then L is
 *    renamed over D. Committing the other way (L into its parent's layer)
 *    would change the parent checkpoint's content, so it is never done.
 *    The file keeps D's path, so whatever names D as its backing file stays
 *    valid, and only D's (usually small) delta is copied;
 *  - several: each is rebased (safe mode: the clusters L provided are copied
 *    into it) onto L's backing file, then L is deleted.
 * A layer that is not cellad's (the VM's original image, under the first
 * checkpoint) is never merged or deleted: it stays the root of the chain.
 * Layers in the chain a running VM has open cannot be rewritten: deleting
 * the current checkpoint or one of its ancestors needs the VM stopped (or
 * saved). */
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
#include "log.h"

/* Merge layer L (of one disk) away; deps are the images backed by it. */
static int cp_merge_layer(const char *layer, const char **deps, unsigned nr, struct cerr *e)
{
	char err[256] = "";
	struct disk *d;
	int ret;

	/* Merged already (the delete is being repeated after a crash): a
	 * single dependent has it renamed over itself, several had it
	 * unlinked once they were rebased. */
	if (access(layer, F_OK) < 0 && errno == ENOENT)
		return 0;
	if (nr == 1) {
		ret = disk_open(&d, deps[0], -1, 0, err, sizeof(err));
		if (ret)
			return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", deps[0], err);
		ret = disk_commit(d);
		if (ret)
			cerr_set(e, CERR_INTERNAL, "", "cannot commit %s into %s: %s", deps[0], layer,
			         disk_error(d));
		if (disk_close(d) && !ret)
			ret = cerr_set(e, CERR_INTERNAL, "", "%s: flush failed", deps[0]);
		if (ret)
			return -1;
		/* L now holds D's content over its own backing: it becomes D. */
		if (rename(layer, deps[0]) < 0)
			return cerr_set(e, CERR_INTERNAL, "", "rename %s: %s", layer, strerror(errno));
		return 0;
	}
	if (nr > 1) {
		struct disk_info info;

		ret = disk_open(&d, layer, -1, DISK_RDONLY | DISK_NO_BACKING, err, sizeof(err));
		if (ret)
			return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", layer, err);
		ret = disk_get_info(d, &info);
		disk_close(d);
		if (ret)
			return cerr_set(e, CERR_INTERNAL, "", "%s: cannot read its header", layer);
		for (unsigned i = 0; i < nr; i++) {
			ret = disk_open(&d, deps[i], -1, 0, err, sizeof(err));
			if (ret)
				return cerr_set(e, CERR_INTERNAL, "", "cannot open %s: %s", deps[i], err);
			ret = disk_rebase(d, info.backing[0] ? info.backing : NULL,
			                  info.backing_fmt, false);
			if (ret)
				cerr_set(e, CERR_INTERNAL, "", "cannot rebase %s: %s", deps[i],
				         disk_error(d));
			if (disk_close(d) && !ret)
				ret = cerr_set(e, CERR_INTERNAL, "", "%s: flush failed", deps[i]);
			if (ret)
				return -1;
		}
	}
	if (unlink(layer) < 0 && errno != ENOENT)
		log_warn("cannot delete %s: %s", layer, strerror(errno));
	return 0;
}

/* Merge every disk's layer of cp into its dependents. */
static int cp_merge(struct sup *s, struct vmrt *vm, struct job *job, json_t *list, json_t *cp,
                    struct cerr *e)
{
	const char *cpname = cp_str(cp, "name");
	uint64_t merged = 0, layers = 0;
	size_t i;
	json_t *l;

	/* Progress (GET /v1/jobs, job-phase events): layers merged of those to merge. */
	json_array_foreach(json_object_get(cp, "layers"), i, l)
		if (!json_is_true(json_object_get(l, "readonly")) && cp_owned(s, vm, cp_str(l, "path")))
			layers++;
	if (job)
		job_progress(s, job, 0, layers);
	json_array_foreach(json_object_get(cp, "layers"), i, l)
	{
		const char *id = cp_str(l, "id"), *layer = cp_str(l, "path"), *deps[64];
		unsigned nr = 0;
		size_t k;
		json_t *c;
		int di;

		if (json_is_true(json_object_get(l, "readonly")) || !cp_owned(s, vm, layer))
			continue;
		json_array_foreach(list, k, c)
		{
			const char *p = cp_str(cp_layer(c, id), "path");

			if (!strcmp(cp_str(c, "parent") ?: "", cpname) && p &&
			    nr < ARRAY_SIZE(deps))
				deps[nr++] = p;
		}
		di = vmdef_disk_find(&vm->def, id);
		if (!strcmp(vm->def.checkpoint, cpname) && di >= 0 && nr < ARRAY_SIZE(deps))
			deps[nr++] = vm->def.disks[di].path;
		if (cp_merge_layer(layer, deps, nr, e))
			return -1;
		if (job)
			job_progress(s, job, ++merged, layers);
		if (job && job_phase(s, job, "layer-merged", e))
			return -1;
	}
	return 0;
}

/* Deletion as a job: "merging" is recorded before the first layer is
 * merged and "layer-merged" after each; every step can be repeated (a
 * merged layer is skipped), so recovery runs the delete again. */
static int cp_delete_locked(struct sup *s, struct vmrt *vm, struct job *job, json_t *list,
                            json_t *cp, struct cerr *e)
{
	const char *cpname = cp_str(cp, "name"), *parent = cp_str(cp, "parent");
	struct vmdef next;
	char mem[512];
	size_t k;
	json_t *c;
	int ret;

	if (job && job_phase(s, job, "merging", e))
		return -1;
	if (cp_merge(s, vm, job, list, cp, e))
		return -1;
	if (vmdef_copy(&next, &vm->def))
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	if (!strcmp(next.checkpoint, cpname))
		snprintf(next.checkpoint, sizeof(next.checkpoint), "%s", parent ? parent : "");
	ret = store_begin(s->db);
	json_array_foreach(list, k, c)
	{
		if (ret || strcmp(cp_str(c, "parent") ?: "", cpname))
			continue;
		json_object_set_new(c, "parent", parent ? json_string(parent) : json_null());
		ret = store_cp_put(s->db, vm->def.uuid, c);
	}
	if (!ret)
		ret = store_cp_delete(s->db, vm->def.uuid, cpname);
	if (!ret)
		ret = store_vm_put(s->db, &next);
	if (store_end(s->db, ret) || ret) {
		vmdef_free(&next);
		return cerr_set(e, CERR_INTERNAL, "", "cannot update the checkpoint tree");
	}
	vmdef_free(&vm->def);
	vm->def = next;
	cp_memory_path(s, vm, cpname, mem, sizeof(mem));
	unlink(mem);
	sup_emit(s, vm, "checkpoint-deleted", cpname);
	return 0;
}

int sup_cp_delete(struct sup *s, const char *name, const char *cpname, struct cerr *e)
{
	struct vmrt *vm;
	json_t *list = NULL, *cp;
	int ret = -1;

	cp = cp_lookup(s, name, cpname, &vm, &list, e);
	if (!cp)
		goto out;
	if (state_active(vm->state) && cp_in_current_chain(list, vm->def.checkpoint, cpname)) {
		cerr_set(e, CERR_STATE, "state",
		         "checkpoint '%s' holds layers the running VM uses: stop or "
		         "save the VM first",
		         cpname);
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		goto out;
	}
	ret = cp_run_job(s, vm, "checkpoint-delete", cpname, cp_delete_locked, list, cp, e);
out:
	json_decref(list);
	if (vm)
		sup_vm_unlock(s, vm);
	return ret;
}

static enum job_outcome cp_delete_recover(struct sup *s, struct vmrt *vm,
                                          const struct store_job *job, char *detail, size_t len)
{
	const char *cpname = json_string_value(json_object_get(job->data, "checkpoint")) ?: "";
	json_t *list = store_cp_list(s->db, vm->def.uuid), *cp = cp_find(list, cpname);
	struct cerr e = {0};
	int ret;

	if (!cp) {
		json_decref(list);
		snprintf(detail, len, "checkpoint '%s' was deleted", cpname);
		return JOB_FINISHED;
	}
	ret = cp_delete_locked(s, vm, NULL, list, cp, &e);
	json_decref(list);
	if (ret) {
		snprintf(detail, len, "deleting checkpoint '%s' again failed: %s", cpname, e.reason);
		return JOB_FAILED;
	}
	snprintf(detail, len, "checkpoint '%s' deleted", cpname);
	return JOB_FINISHED;
}

const struct job_kind checkpoint_delete_job = { "checkpoint-delete", cp_delete_recover };
