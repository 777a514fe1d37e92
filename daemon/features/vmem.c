/* vmem.c: resizing a running VM's memory (PATCH /v1/vms/{name} with
 * memory_mib alone, `cella vm set NAME --memory N`): the worker's
 * virtio-mem is asked to have N - memory_mib plugged (virtio-mem-set). The
 * definition keeps memory_mib, the startup memory: a VM starts again with
 * it. Stopped VMs take the ordinary change path (the startup memory
 * changes). docs/memory.md, "Memory hot-plug (virtio-mem)". */
#include "sup_priv.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

bool sup_vmem_wants(json_t *body)
{
	return json_is_object(body) && json_object_size(body) == 1 &&
	       json_object_get(body, "memory_mib");
}

int sup_vmem_resize(struct sup *s, const char *name, json_t *body, json_t **out, struct cerr *e)
{
	json_t *v = json_object_get(body, "memory_mib"), *reply = NULL;
	uint64_t want, boot, max;
	struct vmrt *vm;
	int ret = -1;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	if (vm->state != VS_RUNNING && vm->state != VS_PAUSED) {
		sup_vm_unlock(s, vm);
		return 1; /* not running: the startup memory changes */
	}
	boot = vm->def.memory_mib;
	max = vm->def.memory_max_mib;
	if (!max) {
		cerr_set(e, CERR_STATE, "memory_mib",
			 "cannot change while the VM is running: it has no memory_max_mib (the "
			 "hot-plug ceiling; set it while the VM is stopped)");
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
		goto out;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		cerr_set(e, CERR_INVALID, "memory_mib", "expected an integer number of MiB");
		goto out;
	}
	want = (uint64_t)json_integer_value(v);
	if (want < boot) {
		cerr_set(e, CERR_INVALID, "memory_mib",
			 "%llu MiB is below the VM's startup memory (%llu MiB): a running VM "
			 "shrinks only down to it", (unsigned long long)want,
			 (unsigned long long)boot);
		goto out;
	}
	if (want > max) {
		cerr_set(e, CERR_INVALID, "memory_mib", "%llu MiB is past memory_max_mib (%llu MiB)",
			 (unsigned long long)want, (unsigned long long)max);
		goto out;
	}
	if ((want - ALIGN_UP(boot, 2)) % 2 || want < ALIGN_UP(boot, 2)) {
		cerr_set(e, CERR_INVALID, "memory_mib",
			 "%llu MiB: the memory added to the startup %llu MiB must be whole 2 MiB "
			 "blocks", (unsigned long long)want, (unsigned long long)boot);
		goto out;
	}
	if (vm->busy) {
		sup_refuse_busy(vm, e);
		goto out;
	}
	vm->busy = true;
	vm->acts++;
	if (!sup_worker_cmd(s, vm, json_pack("{s:s, s:I}", "cmd", "virtio-mem-set",
					     "requested_mib",
					     (json_int_t)(want - ALIGN_UP(boot, 2))),
			    NULL, 0, 10000, &reply, e)) {
		*out = sup_vm_json(s, vm);
		if (*out && json_object_get(reply, "virtio_mem"))
			json_object_set(*out, "virtio_mem", json_object_get(reply, "virtio_mem"));
		json_decref(reply);
		log_info("vm %s: memory set to %llu MiB (virtio-mem)", name,
			 (unsigned long long)want);
		sup_emit(s, vm, "changed", "memory");
		ret = 0;
	}
	vm->acts++;
	vm->busy = false;
	sup_vm_changed(vm);
out:
	sup_vm_unlock(s, vm);
	return ret;
}
