/* vm_cpuid.c: the host's supported CPUID, asked once per VM beside its
 * creation (vm_cpuid.h). */
#include "vm_cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>

#include "arch/x86/x86.h"
#include "bgthread.h"
#include "vm.h"

/* Publish table as the answer unless one is there already (then it is
 * freed). */
static void publish(struct vm_cpuid *c, int err, struct kvm_cpuid2 *table)
{
	pthread_mutex_lock(&c->lock);
	if (c->state != VM_CPUID_DONE) {
		c->err = err;
		c->supported = err ? NULL : table;
		table = NULL;
		c->state = VM_CPUID_DONE;
	}
	pthread_mutex_unlock(&c->lock);
	free(table);
}

/* Ask KVM unless the answer is there; claim the question first (PENDING ->
 * BUSY) when nobody has. */
static void ask(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;
	struct kvm_cpuid2 *table = NULL;
	int err;

	pthread_mutex_lock(&c->lock);
	if (c->state == VM_CPUID_DONE) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->state = VM_CPUID_BUSY;
	pthread_mutex_unlock(&c->lock);
	err = x86_cpuid_get_supported(vm->kvm_fd, &table);
	publish(c, err, table);
}

static void *cpuid_main(void *arg)
{
	ask(arg);
	return NULL;
}

static void cpuid_init(struct vm_cpuid *c)
{
	pthread_mutex_init(&c->lock, NULL);
	c->state = VM_CPUID_PENDING;
	c->inited = true;
}

void vm_cpuid_start(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;

	if (c->inited)
		return;
	cpuid_init(c);
	c->thread_started = bgthread_create(&c->thread, cpuid_main, vm) == 0;
}

void vm_cpuid_preset(struct vm *vm, const struct kvm_cpuid2 *table)
{
	struct vm_cpuid *c = &vm->cpuid;
	size_t size = sizeof(*table) + table->nent * sizeof(table->entries[0]);
	struct kvm_cpuid2 *copy;

	if (c->inited)
		return;
	cpuid_init(c);
	copy = malloc(size);
	if (!copy)
		return;
	memcpy(copy, table, size);
	c->supported = copy;
	c->err = 0;
	c->state = VM_CPUID_DONE;
}

int vm_cpuid_supported(struct vm *vm, const struct kvm_cpuid2 **out)
{
	struct vm_cpuid *c = &vm->cpuid;

	if (!c->inited)
		cpuid_init(c); /* not started by vm_create: asked here */
	/* Never wait for the thread: on a loaded host it may not have run yet,
	 * or have been preempted half-way; asking again costs what asking
	 * without it would have, and the first answer stands. */
	ask(vm);
	*out = c->supported;
	return c->err;
}

void vm_cpuid_join(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;

	if (c->thread_started) {
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
}

void vm_cpuid_free(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;

	if (!c->inited)
		return;
	vm_cpuid_join(vm);
	free(c->supported);
	c->supported = NULL;
	pthread_mutex_destroy(&c->lock);
	c->inited = false;
}
