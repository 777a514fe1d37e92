/* vm_prep.c: a KVM VM prepared for one RAM size before its configuration
 * (vm_prep.h), and the KVM creation steps vm_create shares with it. */
#include "vm_prep.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "config.h"
#include "log.h"
#include "mem.h"
#include "mem_uffd.h"
#include "vm.h"

#define KVM_TSS_ADDR      0xFFFBD000ULL
#define KVM_IDENTITY_ADDR 0xFFFBC000ULL

int vm_kvm_set_slots(int vm_fd, const struct guest_mem *m, uint8_t *host)
{
	struct guest_mem_slot sl[GUEST_MEM_MAX_SLOTS];
	unsigned n = guest_mem_slots(m, sl);

	for (unsigned i = 0; i < n; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = sl[i].slot,
			.guest_phys_addr = sl[i].gpa,
			.memory_size = sl[i].size,
			.userspace_addr = (uint64_t)(uintptr_t)(host + sl[i].off),
		};

		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
			return -errno;
	}
	return 0;
}

int vm_kvm_irqchip(int vm_fd, char *err, size_t errlen)
{
	struct kvm_pit_config pit = { .flags = 0 };
	uint64_t id_addr = KVM_IDENTITY_ADDR;
	int ret;

	/* Intel needs these two pages in the hole; other hosts may refuse them. */
	if (ioctl(vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0)
		log_debug("KVM_SET_TSS_ADDR: %s (ignored)", strerror(errno));
	if (ioctl(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &id_addr) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s (ignored)", strerror(errno));
	if (ioctl(vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(-ret));
		return ret;
	}
	if (ioctl(vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

int vm_prep_make(struct vm_prep *p, int vm_fd, uint64_t mem_mib, char *err, size_t errlen)
{
	/* The layout vm_create gives a VM of mem_mib (vm_config_mem_size
	 * without devices: no hot-pluggable region). */
	uint64_t size = ALIGN_UP(mem_mib, 2) << 20;
	struct guest_mem m = { .size = size };
	int ret;

	*p = (struct vm_prep){ .vm_fd = -1 };
	m.low_size = size < MEM_HOLE_START ? size : MEM_HOLE_START;
	m.high_size = size - m.low_size;
	p->host = guest_mem_map_aligned(size);
	if (!p->host) {
		ret = -errno;
		snprintf(err, errlen, "cannot reserve %llu MiB of address space: %s",
			 (unsigned long long)(size >> 20), strerror(-ret));
		return ret;
	}
	/* Slots first: once the irqchip exists each slot change waits for an
	 * SRCU grace period (vm.c). */
	ret = vm_kvm_set_slots(vm_fd, &m, p->host);
	if (ret)
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	else
		ret = vm_kvm_irqchip(vm_fd, err, errlen);
	if (ret) {
		munmap(p->host, size);
		p->host = NULL;
		return ret;
	}
	p->vm_fd = vm_fd;
	p->size = size;
	p->mem_mib = mem_mib;
	return 0;
}

bool vm_prep_fits(const struct vm_prep *p, const struct vm_config *cfg, bool restore, char *why,
		  size_t whylen)
{
	uint64_t size = vm_config_mem_size(cfg), ram = ALIGN_UP(cfg->mem_mib, 2) << 20;

	if (!p->host || p->vm_fd < 0)
		snprintf(why, whylen, "nothing prepared");
	else if (!restore)
		snprintf(why, whylen, "not a restore");
	else if (ram != p->size)
		snprintf(why, whylen, "prepared for %llu MiB of RAM, the VM has %llu MiB",
			 (unsigned long long)p->mem_mib, (unsigned long long)cfg->mem_mib);
	else if (size != ram) /* a device's region beyond RAM changes the slots */
		snprintf(why, whylen, "the VM has a hot-pluggable memory region (%llu MiB)",
			 (unsigned long long)((size - ram) >> 20));
	else if (cfg->memory.hugepages || cfg->memory.prealloc || cfg->memory.merge)
		snprintf(why, whylen, "memory.%s asks for another backing than the prepared one",
			 cfg->memory.hugepages ? "hugepages"
			 : cfg->memory.prealloc ? "prealloc" : "merge");
	else
		return true;
	return false;
}

void vm_prep_release(struct vm_prep *p)
{
	if (p->host)
		munmap(p->host, p->size);
	if (p->vm_fd >= 0)
		close(p->vm_fd);
	p->host = NULL;
	p->vm_fd = -1;
}
