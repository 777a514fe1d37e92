/* memorder_sample.h: the save's sample of the pages a running guest writes
 * (docs/state-format.md, "The memory order record"): KVM's dirty log, on for
 * a short window before the VM is paused, gives each page the round in which
 * it was first written; mem_order_write turns that into the "mem-order"
 * section. */
#pragma once
#include <stdint.h>

#include "compiler.h"

struct vm;

#define MEM_ORDER_SAMPLE_MS_DEFAULT 1000 /* at most, unless the save says */
#define MEM_ORDER_SAMPLE_MS_MAX     10000
#define MEM_ORDER_SAMPLE_QUIET_MS   200  /* no new page for this long: done */
#define MEM_ORDER_SAMPLE_ROUND_MS   20

struct mem_order_sample {
	uint8_t *rank;     /* one byte per 4 KiB page of RAM (mem_order_write) */
	uint64_t pages;    /* pages ranked */
	unsigned rounds;
	unsigned ms;       /* how long it sampled */
};

/* Sample the running VM's writes for up to max_ms (on the calling thread,
 * the I/O loop's: device I/O waits meanwhile): a round every
 * MEM_ORDER_SAMPLE_ROUND_MS; it ends early once no round has found a new
 * page for MEM_ORDER_SAMPLE_QUIET_MS (an idle guest costs that much), or
 * when the VM is ending. 0 with s filled (free s->rank), or
 * -errno (logged; the save goes on without a record). */
int mem_order_sample(struct vm *vm, unsigned max_ms, struct mem_order_sample *s) __must_check;
