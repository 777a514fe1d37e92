/* disk_settings.c: a disk's live settings (storage QoS): applied to the
 * running worker (set-qos), then stored for the next start. */
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
	if (vm->def.replica.on) {
		sup_refuse_replica(vm, e);
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
