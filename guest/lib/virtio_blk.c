/* virtio_blk.c: virtio-blk requests (virtio 1.x, 5.2) over one queue. */
#include "virtio_blk.h"

bool vblk_open(struct vblk *b, int index)
{
	memset(b, 0, sizeof(*b));
	if (!virtio_find(VIRTIO_ID_BLK, index, &b->dev))
		return false;
	virtio_begin(&b->dev, 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
				      1ull << VIRTIO_BLK_F_RO | 1ull << VIRTIO_BLK_F_BLK_SIZE |
				      1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_DISCARD |
				      1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	b->capacity = virtio_cfg64(&b->dev, 0);
	b->size_max = vblk_has(b, VIRTIO_BLK_F_SIZE_MAX) ? virtio_cfg32(&b->dev, 8) : 0;
	b->ro = vblk_has(b, VIRTIO_BLK_F_RO);
	if (vblk_has(b, VIRTIO_BLK_F_DISCARD))
		b->max_discard_sectors = virtio_cfg32(&b->dev, 36);
	if (vblk_has(b, VIRTIO_BLK_F_WRITE_ZEROES))
		b->max_write_zeroes_sectors = virtio_cfg32(&b->dev, 48);
	/* One data descriptor per request keeps seg_max irrelevant. */
	b->max_bytes = 1u << 20;
	if (b->size_max && b->size_max < b->max_bytes)
		b->max_bytes = b->size_max & ~511u;
	if (b->max_bytes < 512)
		fail("virtio-blk size_max %u is below one sector", b->size_max);
	virtq_init(&b->q, &b->dev, 0, 256);
	b->reqs = mem_alloc(sizeof(struct vblk_req) * VBLK_MAX_INFLIGHT, 64);
	virtio_driver_ok(&b->dev);
	return true;
}

int vblk_free_slot(struct vblk *b)
{
	for (int i = 0; i < VBLK_MAX_INFLIGHT; i++)
		if (!b->reqs[i].busy)
			return i;
	return -1;
}

bool vblk_submit(struct vblk *b, int slot, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	struct vblk_req *r = &b->reqs[slot];
	struct vq_buf bufs[3];
	int n = 0;
	r->hdr.type = type;
	r->hdr.reserved = 0;
	r->hdr.sector = sector;
	r->status = 0xFF;
	bufs[n++] = (struct vq_buf){ &r->hdr, sizeof(r->hdr), false };
	if (len)
		bufs[n++] = (struct vq_buf){ buf, len, type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID };
	bufs[n++] = (struct vq_buf){ &r->status, 1, true };
	if (!virtq_add(&b->q, bufs, n, r))
		return false;
	r->busy = true;
	return true;
}

void vblk_kick(struct vblk *b)
{
	virtq_kick(&b->q);
}

int vblk_poll(struct vblk *b)
{
	void *cookie;
	if (!virtq_get(&b->q, NULL, &cookie))
		return -1;
	struct vblk_req *r = cookie;
	r->busy = false;
	return (int)(r - b->reqs);
}

static int vblk_sync(struct vblk *b, int slot, uint32_t type, uint64_t sector, void *buf,
		     uint32_t len)
{
	if (slot < 0 || !vblk_submit(b, slot, type, sector, buf, len))
		fail("virtio-blk: queue full on a synchronous request");
	vblk_kick(b);
	struct vblk_req *r = virtq_wait(&b->q, NULL, VBLK_TIMEOUT_MS);
	r->busy = false;
	return r->status;
}

int vblk_rw(struct vblk *b, uint32_t type, uint64_t sector, void *buf, uint64_t len)
{
	uint8_t *p = buf;
	while (len) {
		uint32_t n = len < b->max_bytes ? (uint32_t)len : b->max_bytes;
		int st = vblk_sync(b, vblk_free_slot(b), type, sector, p, n);
		if (st)
			return st;
		p += n;
		sector += n / 512;
		len -= n;
	}
	return 0;
}

int vblk_flush(struct vblk *b)
{
	return vblk_sync(b, vblk_free_slot(b), VIRTIO_BLK_T_FLUSH, 0, NULL, 0);
}

int vblk_get_id(struct vblk *b, char id[21])
{
	memset(id, 0, 21);
	return vblk_sync(b, vblk_free_slot(b), VIRTIO_BLK_T_GET_ID, 0, id, 20);
}

int vblk_range(struct vblk *b, uint32_t type, uint64_t sector, uint32_t count)
{
	int slot = vblk_free_slot(b);
	if (slot < 0)
		fail("virtio-blk: no free request slot");
	struct vblk_req *r = &b->reqs[slot];
	r->range.sector = sector;
	r->range.num_sectors = count;
	r->range.flags = 0;
	return vblk_sync(b, slot, type, 0, &r->range, sizeof(r->range));
}

void vblk_sector_fill(uint8_t *p, uint64_t s, uint64_t seed)
{
	uint64_t *w = (uint64_t *)p;
	uint64_t st = seed ^ (s * 0xD1B54A32D192ED03ull);
	w[0] = s;
	w[1] = seed;
	for (int i = 2; i < 63; i++)
		w[i] = splitmix64(&st);
	uint32_t *tail = (uint32_t *)(p + 504);
	tail[0] = crc32(p, 504);
	tail[1] = 0x6c6c6563;
}
