/* cpuhp.c: vCPU hot-plug on a running VM (PATCH /v1/vms/{name} with cpus
 * alone, `cella vm set NAME --cpus N`): the worker creates the vCPUs and
 * raises the ACPI hot-plug event (cpus-set; vmm/hw/acpi/cpuhp.c), and the
 * definition's cpus becomes N, so the VM starts again with them. Within
 * cpus_max; never fewer (there is no eject). Stopped VMs take the
 * ordinary change path. docs/guests.md, "vCPU hot-plug". */
#include "sup_priv.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

bool sup_cpuhp_wants(json_t *body)
{
	return json_is_object(body) && json_object_size(body) == 1 &&
	       json_object_get(body, "cpus");
}

static int refuse_state(struct vmrt *vm, struct cerr *e, const char *fmt, unsigned a)
{
	cerr_set(e, CERR_STATE, "cpus", fmt, a);
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	return -1;
}

int sup_cpuhp_set(struct sup *s, const char *name, json_t *body, json_t **out, struct cerr *e)
{
	json_t *v = json_object_get(body, "cpus"), *reply = NULL;
	struct vmdef next;
	struct vmrt *vm;
	unsigned cur, max;
	json_int_t want;
	int ret = -1;

	vm = sup_vm_lock_name(s, name, e);
	if (!vm)
		return -1;
	if (vm->state != VS_RUNNING && vm->state != VS_PAUSED) {
		sup_vm_unlock(s, vm);
		return 1; /* not running: the ordinary change */
	}
	cur = vm->def.cpus;
	max = vm->def.cpus_max;
	if (!json_is_integer(v) || json_integer_value(v) < 1) {
		cerr_set(e, CERR_INVALID, "cpus", "expected an integer from 1 to %d", VMDEF_MAX_CPUS);
		goto out;
	}
	want = json_integer_value(v);
	if (want == (json_int_t)cur) {
		*out = sup_vm_json(s, vm);
		ret = 0;
		goto out;
	}
	if (!vmdef_cpus_hotplug(&vm->def)) {
		refuse_state(vm, e, "cannot change while the VM is running: it has no room for "
			     "more vCPUs (cpus_max, now %u; set it while the VM is stopped)", max);
		goto out;
	}
	if (want > (json_int_t)max) {
		cerr_set(e, CERR_INVALID, "cpus", "%lld is past cpus_max (%u)", (long long)want, max);
		goto out;
	}
	if (want < (json_int_t)cur) {
		cerr_set(e, CERR_INVALID, "cpus", "%lld is below the running VM's %u vCPUs: removing "
			 "vCPUs is not supported (no eject); stop the VM to lower cpus",
			 (long long)want, cur);
		goto out;
	}
	if (vm->busy) {
		sup_refuse_busy(vm, e);
		goto out;
	}
	vm->busy = true;
	vm->acts++;
	if (!sup_worker_cmd(s, vm, json_pack("{s:s, s:I}", "cmd", "cpus-set", "cpus", want), NULL,
			    0, 30000, &reply, e)) {
		/* The worker has them now: the definition follows, so that a
		 * restart, a restore or a move keeps them. */
		if (vmdef_copy(&next, &vm->def) == 0) {
			next.cpus = (unsigned)want;
			if (store_vm_put(s->db, &next))
				log_warn("vm %s: cannot store cpus %lld (the running VM has them)",
					 name, (long long)want);
			vmdef_free(&vm->def);
			vm->def = next;
		}
		if (vm->pid && cgroups_vm_set_cpu(&s->cg, vm->def.uuid, vm->def.cpus,
						  vm->def.cpu_weight, vm->def.cpu_max))
			log_warn("vm %s: cannot apply the CPU limits for %u vCPUs", name, vm->def.cpus);
		*out = sup_vm_json(s, vm);
		if (*out && json_object_get(reply, "cpu_hotplug"))
			json_object_set(*out, "cpu_hotplug", json_object_get(reply, "cpu_hotplug"));
		json_decref(reply);
		log_info("vm %s: %lld vCPUs (hot-plugged %lld)", name, (long long)want,
			 (long long)(want - (json_int_t)cur));
		sup_emit(s, vm, "changed", "cpus");
		ret = 0;
	} else if (strstr(e->reason, "runs no ACPI OS")) {
		/* The guest's state, not cellad's: a conflict, as for a stop. */
		e->kind = CERR_STATE;
		snprintf(e->field, sizeof(e->field), "cpus");
		snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	}
	vm->acts++;
	vm->busy = false;
	sup_vm_changed(vm);
out:
	sup_vm_unlock(s, vm);
	return ret;
}
