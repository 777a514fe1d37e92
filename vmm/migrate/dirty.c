/* dirty.c: KVM dirty logging on the RAM slots plus the VMM's own marks. */
#include "migrate/dirty.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "log.h"
#include "vm.h"

#define BITS_PER_WORD (8 * sizeof(unsigned long))

/* The RAM slots as vm_create registers them (guest_mem_slots): low RAM,
 * the RAM above 4 GiB and virtio-mem's region, one after the other in the
 * host mapping. */
struct ram_slot {
	uint32_t slot;
	uint64_t gpa, size, first_page;
	uint8_t *host;
};

static unsigned ram_slots(const struct vm *vm, struct ram_slot s[GUEST_MEM_MAX_SLOTS])
{
	struct guest_mem_slot g[GUEST_MEM_MAX_SLOTS];
	unsigned n = guest_mem_slots(&vm->mem, g);

	for (unsigned i = 0; i < n; i++)
		s[i] = (struct ram_slot){ g[i].slot, g[i].gpa, g[i].size, g[i].off / 4096,
					  vm->mem.host + g[i].off };
	return n;
}

static int set_logging(struct vm *vm, bool on)
{
	struct ram_slot s[GUEST_MEM_MAX_SLOTS];
	unsigned n = ram_slots(vm, s);

	for (unsigned i = 0; i < n; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = s[i].slot,
			.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0,
			.guest_phys_addr = s[i].gpa,
			.memory_size = s[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)s[i].host,
		};

		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return -errno;
	}
	return 0;
}

int mig_dirty_start(struct mig_dirty *d, struct vm *vm, char *err, size_t errlen)
{
	int ret;

	memset(d, 0, sizeof(*d));
	d->vm = vm;
	d->npages = vm->mem.size / 4096;
	d->words = (size_t)((d->npages + BITS_PER_WORD - 1) / BITS_PER_WORD);
	d->bits = calloc(d->words, sizeof(unsigned long));
	d->scratch = calloc(d->words, sizeof(unsigned long));
	if (!d->bits || !d->scratch) {
		snprintf(err, errlen, "out of memory for the dirty bitmaps");
		mig_dirty_stop(d);
		return -ENOMEM;
	}
	if (vm->vm_fd >= 0) {
		/* Manual protect: KVM_GET_DIRTY_LOG leaves the pages writable
		 * until KVM_CLEAR_DIRTY_LOG re-protects exactly the harvested
		 * ones (and scales better with large slots). Without it,
		 * KVM_GET_DIRTY_LOG clears and re-protects by itself. */
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
					      .args = { KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } };

		if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) > 0 &&
		    ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) == 0)
			d->manual = true;
		ret = set_logging(vm, true);
		if (ret) {
			snprintf(err, errlen, "KVM dirty logging: %s", strerror(-ret));
			mig_dirty_stop(d);
			return ret;
		}
	}
	d->logging = true;
	ret = guest_mem_dirty_enable(&vm->mem, true);
	if (ret) {
		snprintf(err, errlen, "VMM dirty tracking: %s", strerror(-ret));
		mig_dirty_stop(d);
		return ret;
	}
	log_debug("migration: dirty logging on (%s)",
		  d->manual ? "KVM_GET/CLEAR_DIRTY_LOG, manual protect" : "KVM_GET_DIRTY_LOG");
	return 0;
}

static int sync_slot(struct mig_dirty *d, const struct ram_slot *s)
{
	uint64_t pages = s->size / 4096;
	size_t words = (size_t)((pages + BITS_PER_WORD - 1) / BITS_PER_WORD);
	size_t base = (size_t)(s->first_page / BITS_PER_WORD); /* slots start word-aligned */
	struct kvm_dirty_log log = { .slot = s->slot, .dirty_bitmap = d->scratch };
	bool any = false;

	memset(d->scratch, 0, words * sizeof(unsigned long));
	if (ioctl(d->vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	for (size_t i = 0; i < words; i++) {
		if (d->scratch[i]) {
			d->bits[base + i] |= d->scratch[i];
			any = true;
		}
	}
	if (d->manual && any && !d->keep_writable) {
		/* Re-protect what we harvested, before reading those pages. */
		struct kvm_clear_dirty_log clr = {
			.slot = s->slot,
			.first_page = 0,
			.num_pages = (uint32_t)pages,
			.dirty_bitmap = d->scratch,
		};

		if (ioctl(d->vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
			return -errno;
	}
	return 0;
}

int mig_dirty_sync(struct mig_dirty *d, char *err, size_t errlen)
{
	struct ram_slot s[GUEST_MEM_MAX_SLOTS];
	unsigned n;

	if (!d->logging)
		return -EINVAL;
	if (d->vm->vm_fd >= 0) {
		n = ram_slots(d->vm, s);
		for (unsigned i = 0; i < n; i++) {
			int ret = sync_slot(d, &s[i]);

			if (ret) {
				snprintf(err, errlen, "KVM dirty log of slot %u: %s", s[i].slot,
					 strerror(-ret));
				return ret;
			}
		}
	}
	guest_mem_dirty_harvest(&d->vm->mem, d->bits);
	return 0;
}

uint64_t mig_dirty_count(const struct mig_dirty *d)
{
	uint64_t n = 0;

	for (size_t i = 0; i < d->words; i++)
		n += (uint64_t)__builtin_popcountl(d->bits[i]);
	return n;
}

void mig_dirty_stop(struct mig_dirty *d)
{
	if (d->vm && d->logging) {
		if (guest_mem_dirty_enable(&d->vm->mem, false))
			log_warn("migration: cannot stop VMM dirty tracking");
		if (d->vm->vm_fd >= 0 && set_logging(d->vm, false))
			log_warn("migration: cannot turn KVM dirty logging off: %s", strerror(errno));
	}
	d->logging = false;
	free(d->bits);
	free(d->scratch);
	d->bits = d->scratch = NULL;
}
