/* mem_uffd.h: a restored VM's RAM as anonymous memory filled through
 * userfaultfd (docs/state-format.md, "Filling restored memory").
 *
 * The default restore maps the state file copy-on-write: nothing is read
 * up front, but every page the guest touches is then a 4 KiB private copy
 * (the kernel cannot collapse those into huge pages), and on a host where
 * KVM pays a fault per 4 KiB mapping the guest's re-read of its memory
 * costs far more than with QEMU's anonymous, transparent-huge-page RAM.
 * Here RAM is anonymous memory with MADV_HUGEPAGE, registered with a
 * userfaultfd for missing pages, and a thread fills it in 2 MiB blocks:
 * each block is read from the file (pread) into a staging huge page and
 * moved into place whole (UFFDIO_MOVE, Linux 6.8: the page table entry of
 * the huge page moves, nothing is copied twice; UFFDIO_COPY of 4 KiB pages
 * on older kernels). The thread answers the guest's faults first (the
 * block around the fault) and fills the rest ahead of the guest in the
 * prefetch's order (mem_prefetch.h); once every block that has data in the
 * file is in place it unregisters the range (what is left reads as zeros,
 * as the file's holes do) and ends.
 *
 * Nothing is read before the vCPUs run, as with the file mapping. The
 * thread starts with the memory (a device's load may read a ring), without
 * a seccomp filter and with the process's privileges: the worker ends it
 * (guest_mem_prefetch_setup_end) before it sandboxes itself, and
 * guest_mem_prefetch_start starts the filtered one. A page the balloon
 * gave back is not filled again (it reads as zeros).
 *
 * Needs /dev/userfaultfd or the userfaultfd() system call with kernel
 * faults allowed (root, or vm.unprivileged_userfaultfd = 1): KVM touches
 * guest memory from the kernel. Without it the restore maps the file
 * copy-on-write as before. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "mem.h"

struct mem_prefetch;

struct mem_uffd {
	int fd;                 /* the userfaultfd, O_NONBLOCK */
	int wake_fd;            /* eventfd: the thread's stop and quit */
	bool move;              /* UFFDIO_MOVE available */
	atomic_bool registered; /* RAM is still registered */
	uint8_t *staging;       /* 2 MiB, 2 MiB aligned, MADV_HUGEPAGE */
	uint8_t *page;          /* 4 KiB for single pages */
	unsigned long *filled;  /* one bit per 2 MiB block in place */
	uint64_t nblocks;
	atomic_uint_fast64_t outside; /* faults reported outside RAM (never expected) */
};

#define MEM_UFFD_BLOCK (2ULL << 20)

/* Whether a restore should try userfaultfd: not when the environment has
 * CELLA_RESTORE_FILL=populate (the copy-on-write file mapping instead,
 * for comparisons). */
bool guest_mem_uffd_wanted(void);

/* RAM of `size` bytes (multiple of 2 MiB) that reads as fd's bytes from
 * `off` (page aligned, the file at least off + size long), filled through
 * userfaultfd; starts the setup phase's fault thread. fd is duplicated.
 * dev: an open /dev/userfaultfd (cellad's), or -1: the node, then the
 * system call.
 * 0 or -errno (-EPERM, -ENOSYS: no userfaultfd for this process: the
 * caller maps the file instead); m is left empty on error. */
int guest_mem_init_uffd(struct guest_mem *m, uint64_t size, int fd, uint64_t off,
			int dev) __must_check;
/* The same on `at`, when not NULL: `size` bytes a guest_mem_map_aligned
 * made (a standby's prepared range, vm_prep.h), untouched since, instead of
 * a new mapping. On success m owns it; on error it is still the caller's
 * (registered with nothing). */
int guest_mem_init_uffd_at(struct guest_mem *m, uint64_t size, int fd, uint64_t off, int dev,
			   void *at) __must_check;
/* Anonymous private memory of `size` bytes at a 2 MiB boundary, with
 * MADV_HUGEPAGE, MADV_DONTDUMP and MADV_DONTFORK, nothing populated
 * (MAP_NORESERVE): what restored RAM is before the fill. NULL with errno
 * set on failure. */
void *guest_mem_map_aligned(uint64_t size);
/* After the thread has ended: close and unmap what init made (not RAM). */
void guest_mem_uffd_free(struct guest_mem *m);

/* For mem_prefetch.c. Start pf's thread (pf->setup: faults only); quit:
 * make it end and wait for it (quit_request: without waiting); kick: wake
 * it to see pf->stop. */
int mem_uffd_thread_start(struct mem_prefetch *pf) __must_check;
void mem_uffd_thread_quit(struct mem_prefetch *pf);
void mem_uffd_thread_quit_request(struct mem_prefetch *pf);
void mem_uffd_kick(struct mem_prefetch *pf);
/* Room for the blocks to fill (pf->plan), which the thread lists in order
 * (mem_prefetch.h's three steps, by 2 MiB block). 0 or -ENOMEM. */
int mem_uffd_plan(struct mem_prefetch *pf) __must_check;
/* Fill every planned block now on the calling thread and unregister (when
 * no thread could be started: a fault would otherwise wait forever). */
void mem_uffd_fill_all(struct mem_prefetch *pf);
