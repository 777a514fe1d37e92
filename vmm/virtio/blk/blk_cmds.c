/* blk_cmds.c: the virtio-blk device type: its registration, and what it adds
 * to the worker's control socket (devtype.h): the commands set-qos,
 * flush-disks and disk-switch, the "disks" member of status, and the
 * storage retry that `resume` runs first. Served on the I/O thread. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "devtype.h"
#include "virtio/blk/blk_ctl.h"
#include "virtio/virtio.h"
#include "vm.h"

_Static_assert(CONF_QOS_MAX == 1ULL << 40, "set-qos names the QoS limit as 2^40");

static json_t *disk_error(const char *fmt, const char *a, const char *b)
{
	char msg[320];

	snprintf(msg, sizeof(msg), fmt, a, b);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static json_t *qos_json(const struct disk_qos_config *q)
{
	return json_pack("{s:I, s:I, s:I, s:I}", "iops", (json_int_t)q->iops, "iops_burst",
			 (json_int_t)q->iops_burst, "bps", (json_int_t)q->bps, "bps_burst",
			 (json_int_t)q->bps_burst);
}

/* [{"id","path","format","qos":{...},"error":null|"..."}] */
static json_t *disks_status(struct vm *vm)
{
	json_t *a = json_array();

	for (struct device *d = virtio_blk_next(vm, NULL); d; d = virtio_blk_next(vm, d)) {
		struct blk_status st;

		virtio_blk_get_status(d, &st);
		json_t *q = qos_json(&st.qos);

		/* What the buckets did: operations admitted (8 KiB-normalized)
		 * and requests that had to wait for tokens. */
		json_object_set_new(q, "admitted_ops", json_integer((json_int_t)st.qos_admitted));
		json_object_set_new(q, "delayed", json_integer((json_int_t)st.qos_delayed));
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:b}", "id",
						   st.id, "path", st.path, "format", st.format,
						   "qos", q, "error",
						   st.error[0] ? json_string(st.error) : json_null(),
						   "readonly", st.readonly, "cbt", st.cbt));
	}
	return a;
}

static struct device *disk_arg(struct vm *vm, json_t *req, json_t **rep)
{
	const char *id = json_string_value(json_object_get(req, "disk"));
	struct device *d;

	if (!id) {
		*rep = disk_error("disk: expected a disk id (a string)%s%s", "", "");
		return NULL;
	}
	d = virtio_blk_find(vm, id);
	if (!d)
		*rep = disk_error("disk: no disk '%.64s'%s", id, "");
	return d;
}

static json_t *cmd_set_qos(struct vm *vm, json_t *req, int fd)
{
	static const char *const keys[] = { "iops", "iops_burst", "bps", "bps_burst" };
	struct blk_status st;
	struct disk_qos_config q;
	json_t *rep = NULL;
	struct device *d = disk_arg(vm, req, &rep);
	char why[128];

	if (!d)
		return rep;
	virtio_blk_get_status(d, &st);
	q = st.qos; /* keys left out keep their value */
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		json_t *v = json_object_get(req, keys[i]);

		if (!v)
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    conf_qos_set(&q, keys[i], (uint64_t)json_integer_value(v)))
			return json_pack("{s:b, s:s+}", "ok", 0, "error", keys[i],
					 ": expected an integer from 0 to 2^40");
	}
	if (!conf_qos_valid(&q, why, sizeof(why)))
		return disk_error("%s%s", why, "");
	virtio_blk_set_qos(d, &q);
	return json_pack("{s:b, s:s, s:o}", "ok", 1, "disk", st.id, "qos", qos_json(&q));
}

static json_t *cmd_flush_disks(struct vm *vm, json_t *req, int fd)
{
	for (struct device *d = virtio_blk_next(vm, NULL); d; d = virtio_blk_next(vm, d)) {
		int ret = virtio_blk_flush(d);

		if (ret) {
			struct blk_status st;

			virtio_blk_get_status(d, &st);
			return disk_error("%s: flush failed: %s", st.id, strerror(-ret));
		}
	}
	return json_pack("{s:b}", "ok", 1);
}

static json_t *cmd_disk_switch(struct vm *vm, json_t *req, int fd)
{
	const char *path = json_string_value(json_object_get(req, "path"));
	json_t *rep = NULL;
	struct device *d = disk_arg(vm, req, &rep);
	char err[512] = "";
	int ret;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return rep;
	}
	if (fd < 0 && !path)
		return disk_error("disk-switch: give \"path\" or an attached \"fd\"%s%s", "", "");
	if (fd < 0) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return disk_error("%s: %s", path, strerror(errno));
	}
	ret = virtio_blk_switch(d, fd, err, sizeof(err));
	if (ret)
		return disk_error("disk-switch: %s%s", err[0] ? err : strerror(-ret), "");
	return json_pack("{s:b}", "ok", 1);
}

/* Storage that failed is retried first; still failing, the VM stays paused. */
static bool disks_retry(struct vm *vm, char *why, size_t len)
{
	bool ok = true;

	why[0] = 0;
	for (struct device *d = virtio_blk_next(vm, NULL); d; d = virtio_blk_next(vm, d)) {
		struct blk_status st;

		virtio_blk_retry(d);
		virtio_blk_get_status(d, &st);
		if (st.stalled && ok) {
			snprintf(why, len, "storage: %s: %s", st.id, st.error);
			ok = false;
		}
	}
	return ok;
}

static unsigned blk_count(const struct vm_config *cfg)
{
	return cfg->nr_disks;
}

static int blk_type_create(struct vm *vm, unsigned index, const void *config)
{
	return virtio_blk_create(vm, &vm->cfg->disks[index], index);
}

static const struct devtype_command blk_commands[] = {
	{ "set-qos", cmd_set_qos, 0 },
	{ "flush-disks", cmd_flush_disks, 0 },
	{ "disk-switch", cmd_disk_switch, DEVTYPE_CMD_FILE },
	{ NULL, NULL, 0 },
};

const struct device_type devtype_virtio_blk = {
	.name = "virtio-blk",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = CONF_MAX_DISKS,
	.nr_queues = 1,
	.gsis = 1,
	.mmio_windows = 1,
	.count = blk_count,
	.create = blk_type_create,
	.commands = blk_commands,
	.status_key = "disks",
	.status = disks_status,
	.before_resume = disks_retry,
};
