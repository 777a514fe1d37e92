/* vm_prep.h: a KVM VM made ahead of its configuration for one RAM size
 * (cella-vm --standby --mem MIB, vmm/standby_prep.c), and the KVM steps it
 * shares with vm_create (vm.c): memory slots, then TSS, identity map,
 * irqchip and PIT. The prepared VM has exactly the slots a VM of that size
 * gets (mem.h's layout, no hot-pluggable region, flags 0) over an
 * anonymous, 2 MiB aligned range reserved as a restore's userfaultfd RAM
 * is (guest_mem_map_aligned): nothing in it is touched. A restore whose
 * configuration fits takes both (vm_create_restore); one that does not
 * throws them away and makes its VM as a cold restore does. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct guest_mem;
struct vm_config;

struct vm_prep {
	int vm_fd;     /* the prepared VM; -1 once taken or released */
	uint8_t *host; /* the reserved RAM range; NULL once taken or released */
	uint64_t size; /* its bytes: the RAM of a VM configured with mem_mib */
	uint64_t mem_mib;
};

/* Prepare p on vm_fd (a KVM_CREATE_VM of kvm_fd with nothing in it yet)
 * for a VM configured with mem_mib MiB: reserve the RAM range, register
 * the memory slots, then TSS, identity map, irqchip and PIT. On success p
 * owns vm_fd. -errno with err set otherwise; p then holds nothing and
 * vm_fd is the caller's still (it may hold part of the setup: close it). */
int vm_prep_make(struct vm_prep *p, int vm_fd, uint64_t mem_mib, char *err,
		 size_t errlen) __must_check;
/* Whether a VM made from cfg (restore: from a state file) can take p:
 * the same RAM size, no hot-pluggable region, a restore with the default
 * backing (no memory.hugepages, prealloc or merge). false with why set
 * (one phrase for a log line) otherwise. */
bool vm_prep_fits(const struct vm_prep *p, const struct vm_config *cfg, bool restore, char *why,
		  size_t whylen);
/* Close and unmap what p still holds. */
void vm_prep_release(struct vm_prep *p);

/* The KVM steps of a VM's creation (vm_create and vm_prep_make). Register
 * m's slots (guest_mem_slots) with host as the mapping's start: 0 or -errno.
 * Then TSS and identity map (ignored where refused), irqchip and PIT: 0 or
 * -errno with err naming the ioctl. */
int vm_kvm_set_slots(int vm_fd, const struct guest_mem *m, uint8_t *host) __must_check;
int vm_kvm_irqchip(int vm_fd, char *err, size_t errlen) __must_check;
