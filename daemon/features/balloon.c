/* balloon.c: a running VM's balloon target (PUT /v1/vms/{name}/balloon):
 * validated here, then applied by the worker's virtio-balloon
 * (balloon-set). The target is not stored: a started VM begins with an
 * empty balloon (docs/memory.md, "Balloon and free page reporting"). */
#include "sup_priv.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

int sup_balloon_set(struct sup *s, const char *name, json_t *body, json_t **out, struct cerr *e)
{
	struct vmrt *vm;
	const char *key;
	json_t *v, *reply = NULL;
	json_int_t target;
	int ret = -1;

	json_object_foreach(body, key, v) {
		if (strcmp(key, "target_mib"))
			return cerr_set(e, CERR_INVALID, key, "unknown field (only target_mib)");
	}
	v = json_object_get(body, "target_mib");
	if (!v)
		return cerr_set(e, CERR_INVALID, "target_mib", "required");
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return cerr_set(e, CERR_INVALID, "target_mib", "expected an integer >= 0");
	target = json_integer_value(v);
	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	if (!vm->def.balloon) {
		cerr_set(e, CERR_STATE, "balloon",
			 "VM '%s' has no balloon (set \"balloon\": true while it is stopped)", name);
		goto out;
	}
	if (vm->def.dynmem.enabled) {
		cerr_set(e, CERR_STATE, "balloon", "VM '%s' has dynamic memory: its balancer sets the "
			 "balloon (turn dynamic_memory off to set it by hand)", name);
		goto out;
	}
	if ((uint64_t)target > vm->def.memory_mib) {
		cerr_set(e, CERR_INVALID, "target_mib",
			 "%lld MiB is more than the VM's memory (%llu MiB)", (long long)target,
			 (unsigned long long)vm->def.memory_mib);
		goto out;
	}
	if (vm->state != VS_RUNNING && vm->state != VS_PAUSED) {
		cerr_set(e, CERR_STATE, "state", "the VM is not running");
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		goto out;
	}
	if (vm->busy) {
		sup_refuse_busy(vm, e);
		goto out;
	}
	vm->busy = true;
	vm->acts++;
	if (!sup_worker_cmd(s, vm, json_pack("{s:s, s:I}", "cmd", "balloon-set", "target_mib",
					     target),
			    NULL, 0, 10000, &reply, e)) {
		*out = json_incref(json_object_get(reply, "balloon"));
		if (!*out)
			*out = json_object();
		json_decref(reply);
		sup_emit(s, vm, "changed", "balloon");
		ret = 0;
	}
	vm->acts++;
	vm->busy = false;
	sup_vm_changed(vm);
out:
	sup_vm_unlock(s, vm);
	return ret;
}
