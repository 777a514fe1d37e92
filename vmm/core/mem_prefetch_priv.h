/* mem_prefetch_priv.h: the prefetch's bookkeeping, shared by its two
 * methods: populating a copy-on-write file mapping (mem_prefetch.c) and
 * filling anonymous memory through userfaultfd (mem_uffd.c). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mem.h"
#include "state/memorder.h"

#define PAGE 4096ULL
#define MEM_PREFETCH_MAX_ERRORS 64
#define BITS (8 * sizeof(unsigned long))

enum pf_state { PF_RUNNING, PF_DONE, PF_STOPPED, PF_FAILED };

struct mem_prefetch {
	struct guest_mem *m;
	pthread_t thread;
	bool started, joined;
	const void *filter;
	struct mem_order order;
	/* Held while a chunk is populated (a 2 MiB block filled) and while
	 * pages are given back. Its holder never touches guest RAM. */
	pthread_mutex_t lock;
	unsigned long *gone;      /* pages given back (guest_mem_discard) */
	atomic_bool stop, gave_up;
	atomic_int last_err;      /* errno of the last failed madvise */
	atomic_bool willneed;     /* the kernel has no MADV_POPULATE_*: read-ahead only */
	_Atomic int state;        /* enum pf_state */
	atomic_uint_fast64_t written, read, skipped, errors;
	struct timespec t0;
	atomic_uint_fast64_t ms;  /* when it finished */
	/* userfaultfd method only (m->uffd): the 2 MiB blocks to fill, in
	 * order (built by guest_mem_prefetch_start), how far the thread got,
	 * the guest's faults it answered, and whether it is the setup
	 * phase's thread (faults only, no filter: mem_uffd.h). */
	uint32_t *plan;
	unsigned long *listed;    /* blocks in the plan */
	size_t nplan, next;
	atomic_uint_fast64_t faults, huge;
	atomic_bool quit;
	bool setup;
};

static inline uint64_t pf_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)((now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000);
}

static inline bool page_gone(const struct mem_prefetch *pf, uint64_t pg)
{
	return pf->gone[pg / BITS] & (1UL << (pg % BITS));
}
