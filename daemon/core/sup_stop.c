/* sup_stop.c: a pending graceful stop abandoned (lifecycle stopping ->
 * running, event stop-cancelled): the worker disarms its deadline and the
 * VM runs on, untouched. A planned failover whose guest ignored the stop
 * uses it (docs/replica.md); the core knows no feature. */
#include <stdio.h>
#include <string.h>

#include "sup_priv.h"

#define STOP_CANCEL_MS 10000

int sup_stop_cancel(struct sup *s, struct vmrt *vm, const char *why, struct cerr *e)
{
	unsigned gen = vm->gen;
	json_t *reply = NULL;

	if (vm->state != VS_STOPPING)
		return cerr_set(e, CERR_STATE, "", "no graceful stop to cancel: the VM is %s",
				vm_state_name(vm->state));
	if (sup_worker_cmd(s, vm, json_pack("{s:s}", "cmd", "shutdown-cancel"), NULL, 0,
			   STOP_CANCEL_MS, &reply, e))
		return -1; /* e.g. already powering off: it ends as a stop does */
	json_decref(reply);
	if (vm->gen != gen || vm->state != VS_STOPPING)
		return cerr_set(e, CERR_STATE, "", "the VM is %s: it stopped meanwhile",
				vm_state_name(vm->state));
	vm->stop_requested = false; /* a later exit is the guest's own */
	if (lifecycle_fire(s, vm, EV_STOP_CANCELLED, why))
		return cerr_set(e, CERR_INTERNAL, "", "the lifecycle refused stop-cancelled");
	sup_vm_changed(vm);
	return 0;
}
