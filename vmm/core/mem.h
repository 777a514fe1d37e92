/* mem.h: guest RAM (memfd-backed) and the one bounds-checked accessor for it.
 *
 * Layout of guest-physical space:
 *   [0, low_size)                RAM, low_size <= MEM_HOLE_START (3 GiB)
 *   [MEM_HOLE_START, 4 GiB)      MMIO hole: virtio-mmio, IOAPIC, LAPIC
 *   [4 GiB, 4 GiB + high_size)   RAM above the hole, when RAM > 3 GiB
 *   [hp_base, hp_base + hp_size) virtio-mem's hot-pluggable region, when a
 *                                VM has one (vmm/virtio/mem): hp_base is
 *                                the end of high RAM rounded up to 1 GiB
 * All ranges are one contiguous host mapping: host + gpa for low RAM,
 * host + low_size + (gpa - 4 GiB) for high RAM, host + low_size +
 * high_size + (gpa - hp_base) for the hot-pluggable region.
 *
 * Every guest address that comes from the guest (descriptor addresses,
 * lengths, boot structures) goes through guest_mem_ptr(): it returns NULL
 * unless the whole [gpa, gpa+len) range is RAM inside one region.
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

#define MEM_HOLE_START 0xC0000000ULL
#define MEM_4G         0x100000000ULL

struct guest_mem {
	int memfd;         /* backs all guest RAM; shared with checkpoints later */
	uint8_t *host;     /* MAP_SHARED mapping of the memfd */
	uint64_t size;     /* total RAM bytes */
	uint64_t low_size; /* RAM bytes below MEM_HOLE_START */
	uint64_t high_size;/* RAM bytes from 4 GiB up */
	/* virtio-mem's region (0 bytes without one); part of `size`. Only its
	 * plugged blocks are RAM to guest_mem_ptr: the device points
	 * hp_plugged at its bitmap (one bit per hp_block bytes; NULL: none
	 * plugged). */
	uint64_t hp_base, hp_size, hp_block;
	const unsigned long *hp_plugged;
	/* Restored VMs (guest_mem_init_file): RAM is a MAP_PRIVATE mapping of
	 * a state file from file_off; memfd is -1. The file's pages are read
	 * lazily, the guest's writes go to anonymous copy-on-write pages. */
	int file_fd;       /* -1 for memfd RAM */
	uint64_t file_off;
	int pagemap_fd;    /* /proc/self/pagemap, opened before any sandbox */
	/* memfd is 2 MiB hugetlb pages (mem_backing.c): a hole can be punched
	 * only in whole 2 MiB pages. With memfd and file_fd -1, RAM is
	 * anonymous memory KSM may merge (memory.merge) or in transparent huge
	 * pages (memory.thp). */
	bool hugetlb;
	/* Pages the VMM itself wrote (virtqueue buffers and rings, the
	 * emulation fallback), which KVM's dirty log cannot see: one bit per
	 * 4 KiB page by RAM offset (host pointer - host). Live migration
	 * enables it (guest_mem_dirty_enable); NULL until then. */
	unsigned long *dirty;
	bool dirty_on;     /* read/written atomically */
	/* A restored VM's prefetch thread (mem_prefetch.h), or NULL. */
	struct mem_prefetch *prefetch;
	/* Restored RAM filled through userfaultfd (mem_uffd.h): host is then
	 * anonymous memory, file_fd and file_off its source; NULL otherwise. */
	struct mem_uffd *uffd;
};

/* Allocate RAM of `size` bytes (multiple of 2 MiB). Returns 0 or -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t size) __must_check;
void guest_mem_destroy(struct guest_mem *m);
/* RAM of `size` bytes (multiple of 2 MiB) that is the file fd's bytes from
 * `off` (page aligned; the file must be at least off + size long), mapped
 * copy-on-write: nothing is read now. fd is duplicated. 0 or -errno. */
int guest_mem_init_file(struct guest_mem *m, uint64_t size, int fd, uint64_t off) __must_check;
/* The same mapped over [at, at + size) when at is not NULL (MAP_FIXED: a
 * range the caller reserved, vm_prep.h). On success m owns the range; on
 * error the caller still does (what is left of it). */
int guest_mem_init_file_at(struct guest_mem *m, uint64_t size, int fd, uint64_t off,
			   void *at) __must_check;

/* For saving RAM without reading all of it: for the npages 4 KiB pages of
 * the host mapping from byte offset `off` (page aligned), set vec[i] to 1
 * when page i may hold non-zero data and 0 when it is known to be zero
 * (never touched: a hole in the memfd or state file, and no private copy).
 * 0 or -errno. */
int guest_mem_populated(const struct guest_mem *m, uint64_t off, size_t npages,
			uint8_t *vec) __must_check;

/* Host pointer for [gpa, gpa+len), or NULL if any byte is not guest RAM or
 * the range crosses from one RAM region into another. len may be 0. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* The same, with every byte of the hot-pluggable region counted as RAM
 * whether plugged or not: for the VMM's own copies of whole RAM (a live
 * migration's destination fills pages before the device state arrives). */
void *guest_mem_ptr_any(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM. Return 0, or -EFAULT when the range is not RAM. */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len) __must_check;
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src,
		    size_t len) __must_check;

/* True when gpa is inside guest RAM. */
bool guest_mem_is_ram(const struct guest_mem *m, uint64_t gpa);

/* Make the last hp_size bytes of RAM (a multiple of 2 MiB, < size) the
 * hot-pluggable region instead of boot RAM; called right after the init,
 * before the KVM slots exist. 0 or -EINVAL. */
int guest_mem_set_hotplug(struct guest_mem *m, uint64_t hp_size) __must_check;

/* The KVM memory slots of the layout: slot number, guest address, size
 * and byte offset into the host mapping. Returns how many (at most
 * GUEST_MEM_MAX_SLOTS). vm_create and the migration dirty log use it. */
#define GUEST_MEM_MAX_SLOTS 3
struct guest_mem_slot {
	uint32_t slot;
	uint64_t gpa, size, off;
};
unsigned guest_mem_slots(const struct guest_mem *m, struct guest_mem_slot s[GUEST_MEM_MAX_SLOTS]);
/* Guest address of byte offset `off` (< size) of the host mapping. */
uint64_t guest_mem_gpa_of(const struct guest_mem *m, uint64_t off);
/* guest_mem_discard (mem_prefetch.h): give [off, off + len) of the host
 * mapping back to the host (a hole in the memfd, or the private copy
 * dropped); it reads as zeros (or as the state file's bytes for restored
 * RAM) afterwards, and a restore's prefetch never fills it again. */

/* VMM-side dirty tracking for live migration (vmm/migrate). enable
 * allocates the bitmap on first use (kept until guest_mem_destroy, so a
 * device thread never sees it freed) and starts or stops the marking.
 * 0 or -ENOMEM. */
int guest_mem_dirty_enable(struct guest_mem *m, bool on) __must_check;
/* Record that the VMM wrote [gpa, gpa+len): a no-op unless enabled, or
 * when the range is not RAM. Safe from any thread. */
void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* The same for a host pointer into guest RAM (from guest_mem_ptr). */
void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *p, uint64_t len);
/* OR the marks into out (one bit per page by RAM offset, size/4096 bits)
 * and clear them. */
void guest_mem_dirty_harvest(struct guest_mem *m, unsigned long *out);
