/* vmdef_vsock.c: the "vsock" field of a VM definition: a virtio-vsock
 * device whose host side is a Unix socket cellad makes in its run_dir
 * (docs/virtio.md, "virtio-vsock"). true gives the guest CID 3: with a
 * Unix-socket host side CIDs name nothing outside the guest, so every VM
 * may have the same one; {"cid": N} picks another. */
#include <stdio.h>
#include <string.h>

#include "vmdef.h"

int vmdef_vsock_parse(struct vmdef *d, json_t *v, struct cerr *e)
{
	const char *key;
	json_t *x;

	if (json_is_null(v) || json_is_false(v)) {
		d->vsock_cid = 0;
		return 0;
	}
	if (json_is_true(v)) {
		d->vsock_cid = VMDEF_VSOCK_CID_DEFAULT;
		return 0;
	}
	if (!json_is_object(v))
		return cerr_set(e, CERR_INVALID, "vsock", "expected true, false, null or {\"cid\": N}");
	json_object_foreach(v, key, x) {
		if (strcmp(key, "cid"))
			return cerr_set(e, CERR_INVALID, "vsock", "unknown field %s (only cid)", key);
	}
	x = json_object_get(v, "cid");
	if (!x) {
		d->vsock_cid = VMDEF_VSOCK_CID_DEFAULT;
		return 0;
	}
	if (!json_is_integer(x) || json_integer_value(x) < 3 ||
	    json_integer_value(x) > 0xfffffffeLL)
		return cerr_set(e, CERR_INVALID, "vsock.cid",
				"expected an integer from 3 to 4294967294 (0-2 are reserved)");
	d->vsock_cid = (uint32_t)json_integer_value(x);
	return 0;
}

json_t *vmdef_vsock_json(const struct vmdef *d)
{
	if (!d->vsock_cid)
		return json_null();
	return json_pack("{s:I}", "cid", (json_int_t)d->vsock_cid);
}

void vmdef_vsock_worker(const struct vmdef *d, json_t *cfg)
{
	json_t *devices;

	if (!d->vsock_cid)
		return;
	devices = json_object_get(cfg, "devices");
	if (!devices) {
		devices = json_array();
		json_object_set_new(cfg, "devices", devices);
	}
	/* "uds" becomes fd:N of the listening socket, and "connector" is
	 * added, when cellad opens the worker's files (worker/files.c). */
	json_array_append_new(devices, json_pack("{s:s, s:I, s:s}", "type", "virtio-vsock", "cid",
						 (json_int_t)d->vsock_cid, "uds", ""));
}
