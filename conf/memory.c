/* memory.c: the memory-backing schema (see memory.h). */
#include "conf/memory.h"

#include <stddef.h>
#include <stdio.h>

static const struct conf_key memory_keys[] = {
	{ .name = "merge", .type = CONF_BOOL, .offset = offsetof(struct mem_backing_config, merge),
	  .syntax = "merge=on|off" },
	{ .name = "hugepages", .type = CONF_BOOL,
	  .offset = offsetof(struct mem_backing_config, hugepages), .syntax = "hugepages=on|off" },
	{ .name = "prealloc", .type = CONF_BOOL,
	  .offset = offsetof(struct mem_backing_config, prealloc), .syntax = "prealloc=on|off" },
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
	return true;
}
