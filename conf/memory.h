/* memory.h: the "memory" object of a VM's configuration (docs/memory.md):
 * how guest RAM is backed. The same schema for cella-vm's JSON, cellad's VM
 * definitions and the cella CLI. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/schema.h"

struct mem_backing_config {
	bool merge;     /* KSM page sharing (MADV_MERGEABLE): off by default */
	bool hugepages; /* 2 MiB hugetlb pages (memfd MFD_HUGETLB), reserved on the host */
	bool prealloc;  /* every page populated at start (MADV_POPULATE_WRITE) */
	bool thp;       /* anonymous RAM in transparent huge pages (MADV_HUGEPAGE) */
};

extern const struct conf_schema conf_memory_schema;

/* The combinations a VM may not have: "merge" with "hugepages" or "thp"
 * (KSM merges only 4 KiB anonymous pages), "thp" with "hugepages" (two
 * kinds of huge page). Returns false with the reason in buf. */
bool conf_memory_valid(const struct mem_backing_config *m, char *buf, size_t len);

/* 2 MiB huge pages this host has free for a new mapping (HugePages_Free
 * less HugePages_Rsvd, from /proc/meminfo), and how many it has at all.
 * -errno when /proc/meminfo cannot be read. */
int conf_hugepages_available(uint64_t *free_pages, uint64_t *total_pages) __must_check;
