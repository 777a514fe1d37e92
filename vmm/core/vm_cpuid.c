/* vm_cpuid.c: the host's supported CPUID, asked once per VM beside its
 * creation (vm_cpuid.h). */
#include "vm_cpuid.h"

#include <errno.h>
#include <stdlib.h>

#include "arch/x86/x86.h"
#include "vm.h"

/* Claim the question (PENDING -> BUSY), ask, publish. Returns whether this
 * caller asked. */
static bool ask_if_pending(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;
	struct kvm_cpuid2 *table = NULL;
	int err;

	pthread_mutex_lock(&c->lock);
	if (c->state != VM_CPUID_PENDING) {
		pthread_mutex_unlock(&c->lock);
		return false;
	}
	c->state = VM_CPUID_BUSY;
	pthread_mutex_unlock(&c->lock);
	err = x86_cpuid_get_supported(vm->kvm_fd, &table);
	pthread_mutex_lock(&c->lock);
	c->err = err;
	c->supported = err ? NULL : table;
	c->state = VM_CPUID_DONE;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return true;
}

static void *cpuid_main(void *arg)
{
	ask_if_pending(arg);
	return NULL;
}

static void cpuid_init(struct vm_cpuid *c)
{
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->state = VM_CPUID_PENDING;
	c->inited = true;
}

void vm_cpuid_start(struct vm *vm)
{
	struct vm_cpuid *c = &vm->cpuid;

	if (c->inited)
		return;
	cpuid_init(c);
	c->thread_started = pthread_create(&c->thread, NULL, cpuid_main, vm) == 0;
}

int vm_cpuid_supported(struct vm *vm, const struct kvm_cpuid2 **out)
{
	struct vm_cpuid *c = &vm->cpuid;
	int err;

	if (!c->inited)
		cpuid_init(c); /* not started by vm_create: asked here */
	if (!ask_if_pending(vm)) {
		pthread_mutex_lock(&c->lock);
		while (c->state != VM_CPUID_DONE)
			pthread_cond_wait(&c->cond, &c->lock);
		pthread_mutex_unlock(&c->lock);
	}
	err = c->err;
	*out = c->supported;
	return err;
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
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	c->inited = false;
}
