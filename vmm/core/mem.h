/* mem.h: guest RAM (memfd-backed) and the one bounds-checked accessor for it.
 *
 * Layout of guest-physical space:
 *   [0, low_size)                RAM, low_size <= MEM_HOLE_START (3 GiB)
 *   [MEM_HOLE_START, 4 GiB)      MMIO hole: virtio-mmio, IOAPIC, LAPIC
 *   [4 GiB, 4 GiB + high_size)   RAM above the hole, when RAM > 3 GiB
 * Both RAM ranges are one contiguous host mapping: host + gpa for low RAM,
 * host + low_size + (gpa - 4 GiB) for high RAM.
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
};

/* Allocate RAM of `size` bytes (multiple of 2 MiB). Returns 0 or -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t size) __must_check;
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len), or NULL if any byte is not guest RAM or
 * the range crosses from one RAM region into another. len may be 0. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy to/from guest RAM. Return 0, or -EFAULT when the range is not RAM. */
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len) __must_check;
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src,
		    size_t len) __must_check;

/* True when gpa is inside guest RAM. */
bool guest_mem_is_ram(const struct guest_mem *m, uint64_t gpa);
