/* rng.c: reads from the first virtio-rng device twice; the two reads must
 * differ and not be all zeros. */
#include "virtio.h"

TEST_PROGRAM("rng");

static uint32_t rng_read(struct virtq *q, uint8_t *buf, uint32_t len)
{
	struct vq_buf b = { buf, len, true };
	uint32_t got = 0;
	memset(buf, 0, len);
	if (!virtq_add(q, &b, 1, buf))
		fail("rng: cannot queue a buffer");
	virtq_kick(q);
	virtq_wait(q, &got, 10000);
	return got;
}

static bool all_zero(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

int main(int argc, char **argv)
{
	struct virtio_dev dev;
	struct virtq q;
	uint32_t len = (uint32_t)param_u64("bytes", 64);
	if (!len || len > 4096)
		fail("bytes=%u out of range 1..4096", len);
	if (!virtio_find(VIRTIO_ID_RNG, 0, &dev))
		fail("no virtio-rng device on the command line ('%s')", cmdline());
	printf("rng: device at 0x%lx irq %u\n", dev.base, dev.irq);
	virtio_begin(&dev, 0);
	virtq_init(&q, &dev, 0, 16);
	virtio_driver_ok(&dev);

	uint8_t *a = mem_alloc(len, 64), *b = mem_alloc(len, 64);
	uint32_t na = rng_read(&q, a, len);
	uint32_t nb = rng_read(&q, b, len);
	report(na > 0 && na <= len, "first read returned %u bytes", na);
	report(nb > 0 && nb <= len, "second read returned %u bytes", nb);
	uint32_t n = MIN(na, nb);
	report(!all_zero(a, na), "first read is not all zeros");
	report(!all_zero(b, nb), "second read is not all zeros");
	report(n == 0 || memcmp(a, b, n), "the two reads differ");
	printf("rng: %02x%02x%02x%02x... %02x%02x%02x%02x...\n", a[0], a[1], a[2], a[3], b[0], b[1],
	       b[2], b[3]);
	report(!(virtio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "device did not ask for a reset");
	return report_summary();
}
