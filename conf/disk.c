/* disk.c: the disk schema (see disk.h). */
#include "conf/disk.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define QOS_KEY(n) { .name = #n, .type = CONF_UINT, .offset = offsetof(struct disk_qos_config, n), \
		     .size = sizeof(uint64_t), .min = 0, .max = CONF_QOS_MAX, .syntax = #n "=N" }

static const struct conf_key qos_keys[] = {
	QOS_KEY(iops), QOS_KEY(iops_burst), QOS_KEY(bps), QOS_KEY(bps_burst),
};

const struct conf_schema conf_qos_schema = {
	.name = "qos", .keys = qos_keys, .nr_keys = ARRAY_SIZE(qos_keys), .list_keys = true,
};

static const char *const formats[] = { "raw", "qcow2", NULL };

static const struct conf_key disk_keys[] = {
	{ .name = "path", .type = CONF_STRING, .offset = offsetof(struct disk_config, path),
	  .max = CONF_PATH_MAX, .syntax = "PATH", .flags = CONF_POSITIONAL | CONF_REQUIRED },
	{ .name = "readonly", .type = CONF_BOOL, .offset = offsetof(struct disk_config, readonly),
	  .syntax = "readonly=on|off" },
	{ .name = "id", .type = CONF_STRING, .offset = offsetof(struct disk_config, id),
	  .size = CONF_KEY_SIZE(struct disk_config, id), .max = CONF_DISK_ID_MAX,
	  .syntax = "id=ID", .flags = CONF_NAME_CHARS },
	{ .name = "format", .type = CONF_ENUM, .offset = offsetof(struct disk_config, format),
	  .size = CONF_KEY_SIZE(struct disk_config, format), .choices = formats,
	  .syntax = "format=raw|qcow2" },
	{ .name = "qos", .type = CONF_OBJECT, .offset = offsetof(struct disk_config, qos),
	  .sub = &conf_qos_schema },
	{ .name = "cbt", .type = CONF_BOOL, .offset = offsetof(struct disk_config, cbt),
	  .syntax = "cbt=on|off" },
};

static const struct conf_word disk_words[] = {
	{ "ro", "readonly", true },
	{ "rw", "readonly", false },
	{ NULL, NULL, false },
};

const struct conf_schema conf_disk_schema = {
	.name = "disk", .keys = disk_keys, .nr_keys = ARRAY_SIZE(disk_keys), .words = disk_words,
};

int conf_qos_set(struct disk_qos_config *q, const char *key, uint64_t v)
{
	for (unsigned i = 0; i < ARRAY_SIZE(qos_keys); i++) {
		if (strcmp(qos_keys[i].name, key))
			continue;
		if (v > qos_keys[i].max)
			return -EINVAL;
		*(uint64_t *)((char *)q + qos_keys[i].offset) = v;
		return 0;
	}
	return -ENOENT;
}

bool conf_qos_valid(const struct disk_qos_config *q, char *buf, size_t len)
{
	if ((q->iops_burst && !q->iops) || (q->bps_burst && !q->bps)) {
		snprintf(buf, len, "a burst needs its rate (iops_burst with iops, bps_burst with bps)");
		return false;
	}
	return true;
}
