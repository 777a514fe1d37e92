/* blk_group.c: disk-export-group, several disks' exports cut at one instant
 * of the guest (docs/storage.md "Live exports", docs/replica.md). Each
 * export's cut drains its own disk, so cut in turn, a guest could complete a
 * write on the first disk after its cut and then start, on the second, one
 * that depends on it: the second disk's point would hold a write the first's
 * is missing. Here the vCPUs are held (unless paused already) across every
 * cut, so no request starts between them; the streams then go on as
 * separate exports (disk-export, status disks[].export). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blk_ctl.h"
#include "vm.h"

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static json_t *group_error(const char *fmt, const char *a, const char *b)
{
	char msg[320];

	snprintf(msg, sizeof(msg), fmt, a, b);
	return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

json_t *virtio_blk_export_group(struct vm *vm, json_t *exports, int *fds, unsigned n)
{
	json_t *done, *x, *err_rep = NULL;
	struct device *devs[VIRTIO_BLK_GROUP_MAX] = { 0 };
	bool paused_here, failed = false;
	const char *why = "";
	char bad[40] = "";
	uint64_t t0;
	unsigned i, cut = 0;

	if (!json_is_array(exports) || !n || n != json_array_size(exports) ||
	    n > VIRTIO_BLK_GROUP_MAX) {
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return group_error("exports: expected 1 to %s disk-export requests%s", "8", "");
	}
	/* Every disk known and named once, before anything is cut. */
	for (i = 0; i < n && !why[0]; i++) {
		const char *id;

		x = json_array_get(exports, i);
		id = json_string_value(json_object_get(x, "disk"));
		if (!json_is_object(x) || !id) {
			why = "exports: each a disk-export request with \"disk\"";
			break;
		}
		devs[i] = virtio_blk_find(vm, id);
		snprintf(bad, sizeof(bad), "%.31s", id);
		if (!devs[i])
			why = "no such disk";
		for (unsigned j = 0; j < i && !why[0]; j++)
			if (devs[j] == devs[i])
				why = "named twice";
	}
	if (why[0]) {
		for (i = 0; i < n; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return group_error("disk-export-group: %s: %s", bad, why);
	}
	done = json_array();
	t0 = mono_us();
	paused_here = !vm_paused(vm);
	if (paused_here)
		vm_pause(vm);
	for (i = 0; i < n; i++) {
		json_t *rep;

		if (failed) {
			if (fds[i] >= 0)
				close(fds[i]);
			continue;
		}
		rep = virtio_blk_export_cmd(vm, json_array_get(exports, i), fds[i]); /* takes fd */
		fds[i] = -1;
		if (!json_is_true(json_object_get(rep, "ok"))) {
			failed = true;
			snprintf(bad, sizeof(bad), "%.31s",
				 json_string_value(json_object_get(json_array_get(exports, i),
								   "disk")));
			err_rep = rep;
			continue;
		}
		json_array_append_new(done, rep);
		cut++;
	}
	if (failed) /* all or none: the cuts made go */
		for (i = 0; i < cut; i++)
			(void)!virtio_blk_export_cancel(devs[i]); /* -ENOENT: ended already */
	if (paused_here) {
		vm_resume(vm);
		/* A disk whose storage failed during the cut holds the VM. */
		for (i = 0; i < n; i++) {
			struct blk_status st;

			virtio_blk_get_status(devs[i], &st);
			if (st.stalled) {
				char reason[256];

				snprintf(reason, sizeof(reason), "storage: %s: %s", st.id, st.error);
				vm_pause_for(vm, reason);
				break;
			}
		}
	}
	if (failed) {
		char msg[200];

		snprintf(msg, sizeof(msg), "%s",
			 json_string_value(json_object_get(err_rep, "error")) ?: "refused");
		json_decref(err_rep);
		json_decref(done);
		return group_error("disk %s: %s (no disk was cut)", bad, msg);
	}
	return json_pack("{s:b, s:o, s:I}", "ok", 1, "exports", done, "held_us",
			 (json_int_t)(mono_us() - t0));
}
