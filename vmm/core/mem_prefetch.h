/* mem_prefetch.h: filling a restored VM's lazily mapped RAM ahead of the
 * guest (docs/state-format.md, "Filling restored memory").
 *
 * A restored VM's RAM is a copy-on-write mapping of its state file
 * (guest_mem_init_file): restore maps it and reads nothing, but then every
 * page the guest touches costs it a host fault, and every page it writes a
 * second one (the copy), each through KVM. A prefetch thread populates the
 * mapping from the state file's "mem-order" record and data extents:
 *   1. the pages with data in the file from the end of the record's last
 *      run (where the guest was writing last: it goes on from there) up;
 *   2. the recorded runs, in their order (the pages the guest wrote just
 *      before the save, the first written first);
 *   3. the data pages below step 1's start;
 * all with MADV_POPULATE_WRITE: each page becomes the VM's private,
 * writable copy before the guest gets to it, so its first touch costs one
 * KVM fault, which also maps the neighbouring pages (KVM maps ahead only
 * pages the host has writable). MADV_POPULATE_READ (page cache, shared
 * between VMs restored from one file) measured 6 times slower to the
 * first line of a guest that re-reads 200 MiB (9.4 s against 1.5 s on the
 * development host): every page then faults on its own in KVM, and twice
 * when written (docs/benchmarks.md).
 * It works in chunks of MEM_PREFETCH_CHUNK under a lock that
 * guest_mem_discard also takes, so a page the balloon gives back is never
 * populated again; it stops when asked (a migration, the VM's end) within
 * one chunk. Kernels before 5.14 (no MADV_POPULATE_*) get MADV_WILLNEED
 * (read-ahead into the page cache) instead. */
#pragma once
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "mem.h"

struct mem_order;

#define MEM_PREFETCH_CHUNK (256u << 10)

/* Get ready to prefetch m, a restored VM's file mapping (m->file_fd >= 0;
 * anything else is left alone: 0), before its devices load: from now on
 * guest_mem_discard remembers what it gives back (the balloon's load gives
 * its inflated pages back again). 0 or -ENOMEM. */
int guest_mem_prefetch_prepare(struct guest_mem *m) __must_check;
/* Start the thread (preparing first if need be; nothing for other RAM: 0).
 * Takes the runs of *order (left empty; NULL or empty: the file's data
 * only). filter: a seccomp filter the thread puts on itself first
 * (vm->prefetch_filter; NULL: none). 0 or -errno (nothing started). */
int guest_mem_prefetch_start(struct guest_mem *m, struct mem_order *order,
			     const void *filter) __must_check;
/* Stop the thread (within one chunk) and wait for it; the figures stay
 * readable. Idempotent; guest_mem_destroy calls it before unmapping.
 * With userfaultfd (mem_uffd.h) it stops filling ahead of the guest but
 * goes on answering its faults (until guest_mem_destroy), and returns
 * without waiting. */
void guest_mem_prefetch_stop(struct guest_mem *m);
/* With userfaultfd: end the setup phase's thread, before the worker
 * sandboxes itself (it has neither filter nor dropped privileges); until
 * guest_mem_prefetch_start nothing answers a fault, so nothing may touch
 * guest RAM in between. A no-op otherwise. */
void guest_mem_prefetch_setup_end(struct guest_mem *m);
/* Ask the setup phase's thread to end without waiting for it (the same
 * rule: nothing may touch guest RAM from then on until
 * guest_mem_prefetch_start); guest_mem_prefetch_setup_end then only joins
 * it, its wake-up overlapped with the worker's other set-up. */
void guest_mem_prefetch_setup_ending(struct guest_mem *m);
/* Free what start allocated (after stop). */
void guest_mem_prefetch_free(struct guest_mem *m);
/* Whether the thread has finished (done, stopped or failed); true
 * when none was started. */
bool guest_mem_prefetch_finished(const struct guest_mem *m);
/* {"state": "running"|"done"|"stopped"|"failed", "recorded_pages",
 * "written_pages", "read_pages", "skipped_pages", "errors", "ms",
 * "method" ("populate", "willneed" or "userfaultfd"), "faults" (the
 * guest's, answered by the userfaultfd thread)}, or NULL when no prefetch
 * was started. */
json_t *guest_mem_prefetch_json(const struct guest_mem *m);

/* Give [off, off+len) of RAM (host-mapping offsets) back to the host:
 * punch a hole in the memfd, or drop the private copies of a file or
 * anonymous mapping (MADV_DONTNEED). With a prefetch, the pages are marked
 * so that it never populates them again (under its lock). 0 or -errno. */
int guest_mem_discard(struct guest_mem *m, uint64_t off, uint64_t len) __must_check;
