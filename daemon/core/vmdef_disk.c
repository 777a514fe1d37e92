/* vmdef_disk.c: the disks of a VM definition: validation of the API's disk
 * objects (path, readonly, id, format, qos, cbt), format pinning, and their
 * JSON in the API and in the worker's configuration. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/disk.h"
#include "vmdef.h"
#include "vmdef_priv.h"

static const char *const format_names[] = { [VMDEF_FMT_RAW] = "raw", [VMDEF_FMT_QCOW2] = "qcow2" };

const char *vmdef_format_name(enum vmdef_disk_format f)
{
	return (unsigned)f < ARRAY_SIZE(format_names) ? format_names[f] : "raw";
}

int vmdef_format_parse(const char *s, enum vmdef_disk_format *f)
{
	for (unsigned i = 0; i < ARRAY_SIZE(format_names); i++) {
		if (!strcmp(s, format_names[i])) {
			*f = (enum vmdef_disk_format)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* Probing happens once, when the disk is defined, and the result is stored:
 * a raw image whose guest writes a qcow2 header into its first sector must
 * not become a qcow2 image (with a backing file of the guest's choosing) at
 * the next start. */
int vmdef_format_probe(const char *path, enum vmdef_disk_format *f)
{
	unsigned char magic[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, magic, sizeof(magic), 0);
	close(fd);
	if (n < 0)
		return -errno;
	*f = n == 4 && !memcmp(magic, "QFI\xfb", 4) ? VMDEF_FMT_QCOW2 : VMDEF_FMT_RAW;
	return 0;
}

static struct disk_qos_config qos_to_conf(const struct vmdef_qos *q)
{
	return (struct disk_qos_config){ q->iops, q->iops_burst, q->bps, q->bps_burst };
}

/* The QoS keys are the shared schema's (conf/disk.h): one limit, one
 * parser for cellad, cella-vm and the CLI. */
int vmdef_qos_parse(struct vmdef_qos *q, json_t *v, const char *field, struct cerr *e)
{
	struct disk_qos_config next = qos_to_conf(q);
	struct conf_err ce;

	if (conf_from_json(&conf_qos_schema, &next, v, field, &conf_api_dialect, &ce))
		return vmdef_conf_error(&ce, e);
	*q = (struct vmdef_qos){ next.iops, next.iops_burst, next.bps, next.bps_burst };
	return 0;
}

json_t *vmdef_qos_json(const struct vmdef_qos *q)
{
	struct disk_qos_config c = qos_to_conf(q);

	return conf_to_json(&conf_qos_schema, &c);
}

/* One disk object through the disk schema, then what only cellad checks:
 * the image exists and is readable, and its format is pinned now. */
static int parse_disk(struct vmdef_disk *dk, json_t *it, size_t i, bool replica, struct cerr *e)
{
	struct disk_config dc = { 0 };
	struct conf_err ce;
	char field[64];

	snprintf(field, sizeof(field), "disks[%zu]", i);
	if (conf_from_json(&conf_disk_schema, &dc, it, field, &conf_api_dialect, &ce)) {
		conf_free(&conf_disk_schema, &dc);
		return vmdef_conf_error(&ce, e);
	}
	dk->path = dc.path; /* dk owns it now */
	dk->readonly = dc.readonly;
	snprintf(dk->id, sizeof(dk->id), "%s", dc.id);
	dk->qos = (struct vmdef_qos){ dc.qos.iops, dc.qos.iops_burst, dc.qos.bps, dc.qos.bps_burst };
	dk->cbt = dc.cbt;
	snprintf(field, sizeof(field), "disks[%zu].path", i);
	/* A replica's disks are its point stores, which change as points
	 * arrive; nothing opens them until a failover replaces them. */
	if (replica)
		return !dc.format[0] || vmdef_format_parse(dc.format, &dk->format) ?
		       cerr_set(e, CERR_INVALID, field, "a replica's disk needs its format") : 0;
	if (vmdef_check_file(field, dk->path, e))
		return -1;
	if (dc.format[0])
		return vmdef_format_parse(dc.format, &dk->format) ? -1 : 0;
	if (vmdef_format_probe(dk->path, &dk->format))
		return cerr_set(e, CERR_INVALID, field, "%s: cannot read it to probe its format", dk->path);
	return 0;
}

int vmdef_parse_disks(struct vmdef *d, json_t *arr, struct cerr *e)
{
	size_t i;
	json_t *it;

	if (!json_is_array(arr))
		return cerr_set(e, CERR_INVALID, "disks", "expected an array of disk objects");
	if (json_array_size(arr) > VMDEF_MAX_DISKS)
		return cerr_set(e, CERR_INVALID, "disks", "at most %d disks", VMDEF_MAX_DISKS);
	for (unsigned k = 0; k < d->nr_disks; k++)
		free(d->disks[k].path);
	d->nr_disks = 0;
	json_array_foreach(arr, i, it) {
		struct vmdef_disk *dk = &d->disks[d->nr_disks];
		char field[64];

		snprintf(field, sizeof(field), "disks[%zu]", i);
		if (!json_is_object(it))
			return cerr_set(e, CERR_INVALID, field, "expected an object");
		memset(dk, 0, sizeof(*dk));
		d->nr_disks++; /* counted now so that vmdef_free releases the path */
		if (parse_disk(dk, it, i, d->replica.on, e))
			return -1;
	}
	/* Every disk gets an id: set-qos, disk-switch and checkpoints name it. */
	for (unsigned k = 0; k < d->nr_disks; k++) {
		for (unsigned n = k; !d->disks[k].id[0]; n++) {
			char id[21];

			snprintf(id, sizeof(id), "disk%u", n);
			if (vmdef_disk_find(d, id) < 0)
				snprintf(d->disks[k].id, sizeof(d->disks[k].id), "%s", id);
		}
		for (unsigned j = 0; j < k; j++) {
			if (!strcmp(d->disks[j].path, d->disks[k].path)) {
				char field[64];

				/* Two devices on one image corrupt it (and the worker
				 * refuses it): say so when the VM is defined. */
				snprintf(field, sizeof(field), "disks[%u].path", k);
				return cerr_set(e, CERR_INVALID, field, "'%s' is disks[%u] already",
						d->disks[k].path, j);
			}
			if (!strcmp(d->disks[j].id, d->disks[k].id)) {
				char field[64];

				snprintf(field, sizeof(field), "disks[%u].id", k);
				return cerr_set(e, CERR_INVALID, field, "'%s' is used by disks[%u] already",
						d->disks[k].id, j);
			}
		}
	}
	return 0;
}

int vmdef_disk_find(const struct vmdef *d, const char *id)
{
	for (unsigned i = 0; i < d->nr_disks; i++)
		if (!strcmp(d->disks[i].id, id))
			return (int)i;
	return -1;
}

static bool qos_set(const struct vmdef_qos *q)
{
	return q->iops || q->iops_burst || q->bps || q->bps_burst;
}

static json_t *disk_json(const struct vmdef_disk *dk, bool worker)
{
	struct disk_config dc = { .path = dk->path, .readonly = dk->readonly, .qos = qos_to_conf(&dk->qos),
				  .cbt = dk->cbt };
	json_t *o;

	snprintf(dc.id, sizeof(dc.id), "%s", dk->id);
	snprintf(dc.format, sizeof(dc.format), "%s", vmdef_format_name(dk->format));
	o = conf_to_json(&conf_disk_schema, &dc);
	/* The worker gets only what it needs, the API always the whole shape. */
	if (worker && !qos_set(&dk->qos))
		json_object_del(o, "qos");
	if (worker && !dk->cbt)
		json_object_del(o, "cbt");
	return o;
}

json_t *vmdef_disk_json(const struct vmdef_disk *dk)
{
	return disk_json(dk, false);
}

json_t *vmdef_disks_json(const struct vmdef *d, bool worker)
{
	json_t *disks = json_array();

	for (unsigned i = 0; i < d->nr_disks; i++)
		json_array_append_new(disks, disk_json(&d->disks[i], worker));
	return disks;
}
