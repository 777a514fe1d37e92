/* blk_state.c: virtio-blk's device section of a saved VM: the requests a
 * storage stall holds (see blk_quiesce in blk.c for what completes first). */
#include <errno.h>
#include <stdlib.h>

#include <linux/virtio_blk.h>

#include "log.h"
#include "state/state.h"
#include "virtio/blk/blk.h"

#define BLK_STATE_VERSION 2

int blk_save(struct virtio_dev *vd, struct state_writer *w)
{
	struct blk_dev *blk = container_of(vd, struct blk_dev, vd);
	uint32_t n = 0;

	/* Version 2: the heads of requests a storage stall holds (quiesce
	 * completed everything else). The image itself is the disk's state. */
	for (struct blk_req *r = blk->pending; r; r = r->next)
		n++;
	state_put_u32(w, BLK_STATE_VERSION);
	state_put_u32(w, n);
	for (struct blk_req *r = blk->pending; r; r = r->next)
		state_put_u16(w, r->head);
	return 0;
}

int blk_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct blk_dev *blk = container_of(vd, struct blk_dev, vd);
	uint32_t v = state_get_u32(r), n;

	if (v == 1)
		return state_reader_error(r);
	if (v != BLK_STATE_VERSION)
		return -EINVAL;
	n = state_get_u32(r);
	if (n > BLK_QUEUE_SIZE || state_reader_error(r))
		return -EINVAL;
	blk->dropping = true;
	blk_drop_pending(blk);
	blk_drain(blk);
	blk->dropping = false;
	for (uint32_t i = 0; i < n; i++) {
		uint16_t head = state_get_u16(r);
		struct virtq_error err;
		struct blk_req *req;
		int code;

		if (state_reader_error(r))
			return -EINVAL;
		if (!vd->vqs[0].ready || virtq_walk(&vd->vqs[0], head, blk->chain, &err) != 1 ||
		    blk->chain->out_len < sizeof(struct virtio_blk_outhdr) ||
		    blk->chain->in_len < 1) {
			log_err("%s: saved request %u cannot be read back from the ring", vd->name,
				head);
			return -EINVAL;
		}
		req = calloc(1, sizeof(*req));
		if (!req)
			return -ENOMEM;
		req->head = head;
		{
			const struct iovec *last =
				&blk->chain->iov[blk->chain->nr_out + blk->chain->nr_in - 1];

			req->status = (uint8_t *)last->iov_base + last->iov_len - 1;
		}
		code = blk_parse(blk, blk->chain, req);
		if (code >= 0) {
			blk_req_complete(blk, req, (uint8_t)code);
			continue;
		}
		req->seq = blk->next_seq++;
		blk_requeue(blk, req);
	}
	/* Storage here may work (another host): start them now, the guest
	 * will not kick for requests it already published. */
	blk_dispatch(blk);
	return 0;
}

