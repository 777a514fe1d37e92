/* lifecycle.c: the only writer of a VM's state. Each change is an event
 * checked against the table (lifecycle_table.c), recorded in the store and
 * announced on the event stream. */
#include "sup_priv.h"

#include <unistd.h>

#include "log.h"

/* What a VM commits while it runs: the most memory it can have without a
 * restart (docs/memory.md, "Admission and placement"): its hot-plug
 * ceiling memory_max_mib where it has virtio-mem (cella vm set --memory and
 * the dynamic-memory balancer grow it there with no further check), else
 * its startup memory; plus the per-VM overhead. */
static uint64_t vm_need_mib(struct sup *s, const struct vmrt *vm)
{
	return vmdef_dynmem_ceiling(&vm->def) + s->conf.memory_overhead_mib;
}

int admission_reserve(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	uint64_t need = vm_need_mib(s, vm), ceiling = vmdef_dynmem_ceiling(&vm->def);
	bool grows = ceiling > vm->def.memory_mib;
	int ret = 0;

	if (vm->committed_mib)
		return 0;
	pthread_mutex_lock(&s->adm_lock);
	if (s->committed_mib + need > s->capacity_mib)
		ret = cerr_set(e, CERR_CAPACITY, grows ? "memory_max_mib" : "memory_mib",
			       "not enough memory on this host: the VM needs %llu MiB (%s%llu%s + "
			       "%llu overhead), %llu of %llu MiB are committed to running VMs",
			       (unsigned long long)need, grows ? "its memory_max_mib " : "",
			       (unsigned long long)ceiling,
			       grows ? ", which virtio-mem may grow it to," : "",
			       (unsigned long long)s->conf.memory_overhead_mib,
			       (unsigned long long)s->committed_mib,
			       (unsigned long long)s->capacity_mib);
	else
		s->committed_mib += need;
	pthread_mutex_unlock(&s->adm_lock);
	if (!ret)
		vm->committed_mib = need;
	return ret;
}

void admission_release(struct sup *s, struct vmrt *vm)
{
	if (vm_state_active(vm->state) || !vm->committed_mib)
		return;
	pthread_mutex_lock(&s->adm_lock);
	s->committed_mib -= MIN(s->committed_mib, vm->committed_mib);
	vm->committed_mib = 0;
	pthread_mutex_unlock(&s->adm_lock);
}

int admission_check(struct sup *s, uint64_t memory_mib, struct cerr *e)
{
	uint64_t need = memory_mib + s->conf.memory_overhead_mib;
	int ret = 0;

	pthread_mutex_lock(&s->adm_lock);
	if (s->committed_mib + need > s->capacity_mib)
		ret = cerr_set(e, CERR_CAPACITY, "memory_mib", "not enough memory on this host: "
			       "the VM needs %llu MiB, %llu of %llu MiB are committed to running VMs",
			       (unsigned long long)need, (unsigned long long)s->committed_mib,
			       (unsigned long long)s->capacity_mib);
	pthread_mutex_unlock(&s->adm_lock);
	return ret;
}

/* Keep s->committed_mib in step with what is active. */
static void admission_follow(struct sup *s, struct vmrt *vm, bool was, bool now)
{
	if (was == now)
		return;
	pthread_mutex_lock(&s->adm_lock);
	if (now && !vm->committed_mib) {
		vm->committed_mib = vm_need_mib(s, vm);
		s->committed_mib += vm->committed_mib;
	} else if (!now && vm->committed_mib) {
		s->committed_mib -= MIN(s->committed_mib, vm->committed_mib);
		vm->committed_mib = 0;
	}
	pthread_mutex_unlock(&s->adm_lock);
}

int lifecycle_fire(struct sup *s, struct vmrt *vm, enum vm_event ev, const char *detail)
{
	enum vm_state next;

	if (lifecycle_next(vm->state, ev, &next)) {
		/* A bug, not a user error: every caller checks the state first. */
		log_err("vm %s: lifecycle: event '%s' refused in state %s", vm->def.name,
			vm_event_name(ev), vm_state_name(vm->state));
		return -1;
	}
	admission_follow(s, vm, vm_state_active(vm->state), vm_state_active(next));
	vm->state = next;
	sup_persist(s, vm);
	if (!vm_event_quiet(ev))
		sup_emit(s, vm, vm_event_name(ev), detail);
	sup_vm_changed(vm);
	return 0;
}

void lifecycle_load(struct sup *s, struct vmrt *vm, enum vm_state st)
{
	vm->state = st == VS_NONE ? VS_DEFINED : st;
	admission_follow(s, vm, false, vm_state_active(vm->state));
}
