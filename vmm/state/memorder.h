/* memorder.h: the "mem-order" section of a state file (docs/state-format.md,
 * "The memory order record"): which guest pages the VM wrote in the last
 * moments before its save, and in what order, so that a restore can fill its
 * lazily mapped memory ahead of the guest (vmm/core/mem_prefetch.h).
 *
 * Payload (version 1, little-endian): page shift (u32, 12), reserved (u32,
 * 0), number of runs (u64), then per run: first page (u64, by RAM offset /
 * 4096, the layout of struct guest_mem), page count (u32, >= 1), flags (u32:
 * MEM_ORDER_WRITTEN; other bits 0). Runs are in priority order (the first
 * to fill first), lie inside RAM and do not overlap.
 *
 * The section is a hint: a file without it restores as before. It comes
 * from an untrusted file: mem_order_parse checks every field (fuzzed through
 * statefile_check_buffer). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler.h"

struct state_writer;

#define MEM_ORDER_SECTION    "mem-order"
#define MEM_ORDER_VERSION    1
#define MEM_ORDER_PAGE_SHIFT 12
#define MEM_ORDER_WRITTEN    0x1u /* written in the sample window */
/* At most this many runs (16 bytes each: 16 MiB of section); a sample with
 * more keeps its first runs (the hint gets shorter, never wrong). */
#define MEM_ORDER_MAX_RUNS   (1u << 20)
/* Ranks a sample may give a page (1 = first seen); 0: not recorded. */
#define MEM_ORDER_MAX_RANK   255

struct mem_order_run {
	uint64_t first;  /* page index by RAM offset */
	uint32_t count;
	uint32_t flags;
};

struct mem_order {
	struct mem_order_run *runs;
	size_t nr_runs;
	uint64_t pages;  /* total pages in the runs */
};

/* Append the section for `npages` pages of RAM from rank[] (one byte per
 * page: 0 not recorded, 1..MEM_ORDER_MAX_RANK the sample round it was first
 * written in). Runs go by rank, then by address; all are MEM_ORDER_WRITTEN.
 * Writes nothing when no page is ranked. Errors stick in w. */
void mem_order_write(struct state_writer *w, const uint8_t *rank, uint64_t npages);

/* Parse and check a payload for RAM of mem_size bytes. 0 with *out filled
 * (mem_order_free), or -EINVAL with the reason in err ("mem-order: run 3
 * overlaps an earlier run") or -ENOMEM. */
int mem_order_parse(const uint8_t *data, size_t len, uint64_t mem_size, struct mem_order *out,
		    char *err, size_t errlen) __must_check;
void mem_order_free(struct mem_order *o);
