/* dirty.h: which guest pages changed since the last look, for pre-copy:
 * KVM's dirty log on the RAM memory slots (the guest's own writes) joined
 * with the VMM's marks (guest_mem_mark_dirty: device back ends, emulation
 * fallback). One bit per 4 KiB page by RAM offset (host pointer - mem.host). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"

struct vm;

struct mig_dirty {
	struct vm *vm;
	uint64_t npages;
	size_t words;
	unsigned long *bits;    /* harvested, not yet sent */
	unsigned long *scratch; /* one KVM_GET_DIRTY_LOG result */
	bool manual;            /* KVM_CLEAR_DIRTY_LOG (manual protect) in use */
	bool logging;
	/* Set after start: a sync never re-protects what it harvested (with
	 * manual protect each page then faults once, on its first write; the
	 * save's sample of written pages, vmm/state/memorder_sample.c). */
	bool keep_writable;
};

/* Turn on dirty logging (KVM slots with KVM_MEM_LOG_DIRTY_PAGES, manual
 * protect where KVM offers it, and the VMM-side marks). 0 or -errno. */
int mig_dirty_start(struct mig_dirty *d, struct vm *vm, char *err, size_t errlen) __must_check;
/* Add every page dirtied since the last sync to d->bits and re-arm the
 * tracking for them. 0 or -errno. */
int mig_dirty_sync(struct mig_dirty *d, char *err, size_t errlen) __must_check;
/* Number of set bits. */
uint64_t mig_dirty_count(const struct mig_dirty *d);
/* Turn logging off and free the bitmaps (safe after a failed start). */
void mig_dirty_stop(struct mig_dirty *d);
