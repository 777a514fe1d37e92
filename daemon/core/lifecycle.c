/* lifecycle.c: the only writer of a VM's state. Each change is an event
 * checked against the table (lifecycle_table.c), recorded in the store and
 * announced on the event stream. */
#include "sup_priv.h"

#include "log.h"

int lifecycle_fire(struct sup *s, struct vmrt *vm, enum vm_event ev, const char *detail)
{
	enum vm_state next;

	if (lifecycle_next(vm->state, ev, &next)) {
		/* A bug, not a user error: every caller checks the state first. */
		log_err("vm %s: lifecycle: event '%s' refused in state %s", vm->def.name,
			vm_event_name(ev), vm_state_name(vm->state));
		return -1;
	}
	vm->state = next;
	sup_persist(s, vm);
	if (!vm_event_quiet(ev))
		sup_emit(s, vm, vm_event_name(ev), detail);
	sup_vm_changed(vm);
	return 0;
}

void lifecycle_load(struct vmrt *vm, enum vm_state st)
{
	vm->state = st == VS_NONE ? VS_DEFINED : st;
}
