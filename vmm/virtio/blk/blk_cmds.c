/* blk_cmds.c: the virtio-blk device type: its registration, and what it adds
 * to the worker's control socket (devtype.h): the commands set-qos,
 * flush-disks, disk-switch, disk-export, disk-export-cancel and
 * disk-export-commit, the "disks"
 * member of status, the storage retry that `resume` runs first, and the
 * refusal of save and migrate while an export runs. Served on the I/O
 * thread. */
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

static json_t *export_json(const struct blk_export_status *x)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i}", "state",
			      x->state, "point", x->point, "since", x->since, "blocks",
			      (json_int_t)x->blocks, "data_bytes", (json_int_t)x->data_bytes,
			      "stream_bytes", (json_int_t)x->stream_bytes, "sent",
			      (json_int_t)x->sent, "copies", (json_int_t)x->copies, "waits",
			      (json_int_t)x->waits, "held", (int)x->held, "max_copies",
			      (int)x->max_copies);

	if (o) {
		json_object_set_new(o, "cap_waits", json_integer((json_int_t)x->cap_waits));
		json_object_set_new(o, "throttled", json_integer((json_int_t)x->throttled));
		json_object_set_new(o, "max_bandwidth", json_integer((json_int_t)x->max_bandwidth));
		json_object_set_new(o, "stall_ms", json_integer((json_int_t)x->stall_ms));
		json_object_set_new(o, "commit_pending", json_boolean(x->commit_pending));
		json_object_set_new(o, "grain", json_integer(x->grain ? x->grain : 65536));
		json_object_set_new(o, "narrowed", json_boolean(x->narrowed));
		json_object_set_new(o, "error", x->error[0] ? json_string(x->error) : json_null());
	}
	return o;
}

/* [{"id","path","format","qos":{...},"error":null|"...","size":bytes,"export":{...}}] */
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
		json_object_set_new(json_array_get(a, json_array_size(a) - 1), "size",
				    json_integer((json_int_t)virtio_blk_size(d)));
		{
			struct blk_export_status x;

			virtio_blk_export_status(d, &x);
			if (strcmp(x.state, "none"))
				json_object_set_new(json_array_get(a, json_array_size(a) - 1),
						    "export", export_json(&x));
		}
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

/* disk-export {"disk", "point", "since"?, "max_copies"?} with the output
 * attached (fd) or an existing file (path): the cut happens before the
 * reply, which describes it; the stream goes on from the I/O loop and its
 * descriptor is closed when it ends (status: disks[].export). */
/* An optional integer field of req within [lo, hi]: false if present and
 * not. */
static bool export_limit(json_t *req, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
	json_t *v = json_object_get(req, key);

	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < lo || (uint64_t)json_integer_value(v) > hi)
		return false;
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static json_t *cmd_disk_export(struct vm *vm, json_t *req, int fd)
{
	json_t *rep = NULL, *jmax = json_object_get(req, "max_copies");
	json_t *jsince = json_object_get(req, "since");
	json_t *jdefer = json_object_get(req, "deferred_commit");
	struct device *d = disk_arg(vm, req, &rep);
	struct blk_export_args a = { 0 };
	struct blk_export_status st;
	uint64_t stall = 0, bw = 0;
	char err[256] = "";
	int ret;

	if (!d) {
		close(fd);
		return rep;
	}
	a.point = json_string_value(json_object_get(req, "point"));
	a.since = json_string_value(jsince);
	if (!a.point || (jsince && !json_is_null(jsince) && !a.since)) {
		close(fd);
		return disk_error("disk-export: \"point\" (and \"since\", if given) must be "
				  "point names%s%s", "", "");
	}
	if (jdefer && !json_is_boolean(jdefer)) {
		close(fd);
		return disk_error("deferred_commit: expected a boolean%s%s", "", "");
	}
	a.deferred_commit = json_is_true(jdefer);
	if (jmax) {
		if (!json_is_integer(jmax) || json_integer_value(jmax) < 1 ||
		    json_integer_value(jmax) > BLK_EXPORT_COPIES_MAX) {
			close(fd);
			return disk_error("max_copies: expected an integer from 1 to %s%s",
					  "16384", "");
		}
		a.max_copies = (unsigned)json_integer_value(jmax);
	}
	if (!export_limit(req, "stall_ms", 1, BLK_EXPORT_STALL_MAX, &stall) ||
	    !export_limit(req, "max_bandwidth", BLK_EXPORT_BW_MIN, 1ULL << 40, &bw)) {
		close(fd);
		return disk_error("disk-export: stall_ms (1-%s ms) or max_bandwidth (%s bytes/s "
				  "to 1 TiB/s): out of range or not an integer", "3600000",
				  "65536");
	}
	a.stall_ms = (uint32_t)stall;
	a.max_bandwidth = bw;
	{
		json_t *jg = json_object_get(req, "grain");

		if (jg && !json_is_null(jg) &&
		    (!json_is_integer(jg) || (json_integer_value(jg) != 4096 &&
					      json_integer_value(jg) != 65536))) {
			close(fd);
			return disk_error("grain: expected %s or %s", "4096", "65536");
		}
		a.grain = jg && json_is_integer(jg) ? (uint32_t)json_integer_value(jg) : 0;
	}
	ret = virtio_blk_export(d, &a, fd, &st, err, sizeof(err));
	if (ret)
		return disk_error("disk-export: %s%s", err[0] ? err : strerror(-ret), "");
	return json_pack("{s:b, s:o}", "ok", 1, "export", export_json(&st));
}

static json_t *cmd_disk_export_cancel(struct vm *vm, json_t *req, int fd)
{
	json_t *rep = NULL;
	struct device *d = disk_arg(vm, req, &rep);
	struct blk_export_status st;

	if (!d)
		return rep;
	if (virtio_blk_export_cancel(d))
		return disk_error("disk-export-cancel: no export is running%s%s", "", "");
	virtio_blk_export_status(d, &st);
	return json_pack("{s:b, s:o}", "ok", 1, "export", export_json(&st));
}

/* disk-export-commit {"disk", "point"}: the receiver stored the stream of an
 * export that ran with "deferred_commit": true. */
static json_t *cmd_disk_export_commit(struct vm *vm, json_t *req, int fd)
{
	json_t *rep = NULL;
	struct device *d = disk_arg(vm, req, &rep);
	const char *point = json_string_value(json_object_get(req, "point"));
	int ret;

	if (!d)
		return rep;
	if (!point)
		return disk_error("point: expected a point name%s%s", "", "");
	ret = virtio_blk_export_commit(d, point);
	if (ret == -ENOENT)
		return disk_error("disk-export-commit: no completed export to point '%.31s' waits "
				  "for its commit%s", point, "");
	if (ret)
		return disk_error("disk-export-commit: %s%s", strerror(-ret), "");
	return json_pack("{s:b}", "ok", 1);
}

json_t *virtio_blk_export_cmd(struct vm *vm, json_t *req, int fd)
{
	return cmd_disk_export(vm, req, fd);
}

/* Save and migrate copy the VM as it is; an export's cut cannot follow. */
static bool disks_may_save(struct vm *vm, char *why, size_t len)
{
	for (struct device *d = virtio_blk_next(vm, NULL); d; d = virtio_blk_next(vm, d)) {
		if (virtio_blk_exporting(d)) {
			struct blk_status st;

			virtio_blk_get_status(d, &st);
			snprintf(why, len, "an export of disk %s is running: wait for it or "
				 "cancel it (disk-export-cancel)", st.id);
			return false;
		}
	}
	return true;
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
	{ "disk-export", cmd_disk_export, DEVTYPE_CMD_FILE | DEVTYPE_CMD_NOT_MIGRATING },
	{ "disk-export-cancel", cmd_disk_export_cancel, 0 },
	{ "disk-export-commit", cmd_disk_export_commit, 0 },
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
	.may_save = disks_may_save,
};
