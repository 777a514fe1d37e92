/* memory.c: the memory-backing schema (see memory.h). */
#include "conf/memory.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const struct conf_key memory_keys[] = {
	{ .name = "merge", .type = CONF_BOOL, .offset = offsetof(struct mem_backing_config, merge),
	  .syntax = "merge=on|off" },
	{ .name = "hugepages", .type = CONF_BOOL,
	  .offset = offsetof(struct mem_backing_config, hugepages), .syntax = "hugepages=on|off" },
	{ .name = "prealloc", .type = CONF_BOOL,
	  .offset = offsetof(struct mem_backing_config, prealloc), .syntax = "prealloc=on|off" },
	{ .name = "thp", .type = CONF_BOOL, .offset = offsetof(struct mem_backing_config, thp),
	  .syntax = "thp=on|off" },
};

const struct conf_schema conf_memory_schema = {
	.name = "memory", .keys = memory_keys, .nr_keys = ARRAY_SIZE(memory_keys),
	.list_keys = true,
};

bool conf_memory_valid(const struct mem_backing_config *m, char *buf, size_t len)
{
	if (m->merge && m->hugepages) {
		snprintf(buf, len, "merge and hugepages exclude each other: KSM merges only "
			 "4 KiB pages, never huge pages");
		return false;
	}
	if (m->thp && (m->merge || m->hugepages)) {
		snprintf(buf, len, "thp excludes %s: %s", m->merge ? "merge" : "hugepages",
			 m->merge ? "KSM merges only 4 KiB pages, never huge pages"
				  : "hugepages already gives reserved 2 MiB pages");
		return false;
	}
	return true;
}

int conf_hugepages_available(uint64_t *free_pages, uint64_t *total_pages)
{
	unsigned long long total = 0, nfree = 0, rsvd = 0, v;
	char line[128], key[64];
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %llu", key, &v) != 2)
			continue;
		if (!strcmp(key, "HugePages_Total"))
			total = v;
		else if (!strcmp(key, "HugePages_Free"))
			nfree = v;
		else if (!strcmp(key, "HugePages_Rsvd"))
			rsvd = v;
	}
	fclose(f);
	*free_pages = nfree > rsvd ? nfree - rsvd : 0;
	*total_pages = total;
	return 0;
}
