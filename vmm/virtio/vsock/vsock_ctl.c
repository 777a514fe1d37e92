/* vsock_ctl.c: virtio-vsock's section of the saved state and its member of
 * the worker's status. */
#include <errno.h>
#include <string.h>

#include <linux/virtio_config.h>

#include "devtype.h"
#include "log.h"
#include "state/state.h"
#include "virtio/vsock/vsock.h"
#include "vm.h"

#define VSOCK_STATE_VERSION 1

/* The CID (also in the config space, which the transport compares) and
 * nothing of the connections: they are reset (vsock.h). */
int vsock_save(struct virtio_dev *vd, struct state_writer *w)
{
	struct vsock *vs = vsock_of(vd);

	state_put_u32(w, VSOCK_STATE_VERSION);
	state_put_u64(w, vs->cid);
	return 0;
}

int vsock_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct vsock *vs = vsock_of(vd);
	uint32_t version = state_get_u32(r);
	uint64_t cid = state_get_u64(r);

	if (state_reader_error(r))
		return -EINVAL;
	if (version != VSOCK_STATE_VERSION) {
		log_err("%s: state version %u, this cella-vm reads %u", vd->name, version,
			VSOCK_STATE_VERSION);
		return -EINVAL;
	}
	if (cid != vs->cid) {
		log_err("%s: the saved guest had CID %llu, this device has %llu", vd->name,
			(unsigned long long)cid, (unsigned long long)vs->cid);
		return -EINVAL;
	}
	/* The transport reset the device before loading: no connection is
	 * left. Tell the driver its sockets are gone when the event queue
	 * has a buffer (the transport kicks every queue after the load). */
	vsock_reset_conns(vs);
	if (vd->status & VIRTIO_CONFIG_S_DRIVER_OK)
		vs->reset_event_pending = true;
	return 0;
}

static struct vsock *vsock_find(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->type, "virtio-vsock"))
			return vsock_of(virtio_dev_of(d));
	return NULL;
}

json_t *vsock_status_json(struct vm *vm);
json_t *vsock_status_json(struct vm *vm)
{
	struct vsock *vs = vsock_find(vm);
	json_t *o, *bad;
	uint64_t malformed = 0;

	if (!vs)
		return json_null();
	pthread_mutex_lock(&vs->vd.lock);
	bad = json_object();
	for (unsigned i = 1; i < VSOCK_BAD_MAX; i++) {
		json_object_set_new(bad, vsock_bad_names[i], json_integer((json_int_t)vs->n.bad[i]));
		malformed += vs->n.bad[i];
	}
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		      "cid", (json_int_t)vs->cid,
		      "connections", (json_int_t)vsock_nr_conns(vs),
		      "malformed", (json_int_t)malformed,
		      "bad_rx_buffers", (json_int_t)vs->n.bad_rx,
		      "bad_event_buffers", (json_int_t)vs->n.bad_event,
		      "unknown", (json_int_t)vs->n.unknown,
		      "host_connects", (json_int_t)vs->n.host_connects,
		      "guest_connects", (json_int_t)vs->n.guest_connects,
		      "refused", (json_int_t)vs->n.refused,
		      "timeouts", (json_int_t)vs->n.timeouts,
		      "resets_sent", (json_int_t)vs->n.resets_sent,
		      "rx_bytes", (json_int_t)vs->n.rx_bytes,
		      "tx_bytes", (json_int_t)vs->n.tx_bytes,
		      "transport_resets", (json_int_t)vs->n.transport_resets,
		      "bad_hello", (json_int_t)vs->n.bad_hello);
	pthread_mutex_unlock(&vs->vd.lock);
	if (!o) {
		json_decref(bad);
		return json_null();
	}
	json_object_set_new(o, "malformed_by_field", bad);
	return o;
}
