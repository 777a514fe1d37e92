/* bus.h: dispatch of port I/O and MMIO exits to the devices that own address ranges.
 *
 * A bus is a sorted array of non-overlapping ranges behind a rwlock: vCPU
 * threads dispatch concurrently under the read lock; registration takes the
 * write lock, so a range can be removed while VCPUs run. Handlers serialise
 * their own device state.
 */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

/* Handle one access at `offset` inside the range. For reads the handler fills
 * data[0..len); unknown registers read as zero and ignore writes. */
typedef void (*bus_io_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			  bool is_write);

struct bus_range {
	uint64_t base, len;
	bus_io_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	pthread_rwlock_t lock;
	struct bus_range *ranges; /* sorted by base */
	unsigned nr, cap;
	const char *name;         /* "pio" or "mmio", for messages */
};

int bus_init(struct bus *b, const char *name) __must_check;
void bus_destroy(struct bus *b);

/* Returns 0, -EEXIST if the range overlaps another, -EINVAL if len is 0 or
 * the range wraps, -ENOMEM. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, bus_io_fn fn, void *opaque,
		 const char *name) __must_check;
/* Returns 0 or -ENOENT when no range starts at base. */
int bus_unregister(struct bus *b, uint64_t base) __must_check;

/* Dispatch one access. Returns false when no device owns addr (the caller
 * then treats reads as all-ones and drops writes, as real hardware does). */
bool bus_dispatch(struct bus *b, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);
