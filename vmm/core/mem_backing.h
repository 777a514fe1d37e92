/* mem_backing.h: how guest RAM is backed (docs/memory.md): the default
 * memfd with transparent huge pages, anonymous memory KSM may merge
 * ("merge"), 2 MiB hugetlb pages ("hugepages"), anonymous memory in
 * transparent huge pages ("thp"), and every page populated at start
 * ("prealloc"). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "conf/memory.h"
#include "mem.h"

struct vm_config;

#define HUGEPAGE_SIZE (2ULL << 20)

/* Parse the JSON "memory" object into c->memory (keys absent keep their
 * value) and check the combination. 0, or -EINVAL with "memory.KEY:
 * reason" in err. */
int config_json_memory(struct vm_config *c, json_t *v, char *err, size_t errlen) __must_check;

/* Allocate guest RAM of `size` bytes as b asks (b NULL: the default). With
 * mem_fd >= 0 the RAM starts as that file's bytes from mem_off (a restore):
 * mapped copy-on-write, or copied into huge pages when b->hugepages (a
 * hugetlb mapping cannot be a private view of a regular file), or filled
 * through userfaultfd where the process may have one (mem_uffd.h; uffd_dev:
 * an open /dev/userfaultfd, or -1). Errors are
 * logged with what to do ("reserve huge pages with ..."). 0 or -errno. */
/* at: NULL, or for a restore with the default backing (no hugepages,
 * prealloc or merge) a range of `size` bytes from guest_mem_map_aligned
 * that the RAM goes in (vm_prep.h); on success m owns it, on error the
 * caller still does. */
int guest_mem_init_backing(struct guest_mem *m, const struct mem_backing_config *b,
			   uint64_t size, int mem_fd, uint64_t mem_off, int uffd_dev,
			   void *at) __must_check;
