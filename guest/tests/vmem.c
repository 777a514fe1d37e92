/* vmem.c: a minimal virtio-mem driver. It reads the device's region,
 * maps it (2 MiB pages above 4 GiB, added to the identity map at run
 * time), and follows the host's requested size for ever: plugging blocks
 * from the bottom of the region and writing every page of each (ring 3),
 * unplugging from the top when the host lowers the target. After each
 * change it checks that every plugged block still holds its pattern (so a
 * save/restore that lost plugged memory fails) and prints
 * "vmem: plugged N MiB". At start, and each time it reaches a target, it
 * checks the device's refusals: misaligned and out-of-range requests and
 * unplugging an unplugged block get ERROR, plugging past the requested
 * size gets NACK. */
#include "virtio.h"

TEST_PROGRAM("vmem");

#define VIRTIO_ID_MEM      24
#define REQ_PLUG           0
#define REQ_UNPLUG         1
#define REQ_UNPLUG_ALL     2
#define REQ_STATE          3
#define RESP_ACK           0
#define RESP_NACK          1
#define RESP_ERROR         3
#define STATE_UNPLUGGED    1
#define CFG_BLOCK_SIZE     0
#define CFG_ADDR           16
#define CFG_REGION_SIZE    24
#define CFG_PLUGGED_SIZE   40
#define CFG_REQUESTED_SIZE 48
#define PAGE               4096ul
#define MAX_BLOCKS         4096

struct req {
	uint16_t type, pad[3];
	uint64_t addr;
	uint16_t nb_blocks, pad2[3];
};

struct resp {
	uint16_t type, pad[3];
	uint16_t state;
};

struct vmem {
	struct virtio_dev dev;
	struct virtq q;
	uint64_t block, addr, region, nblocks, plugged;
	struct req *rq;
	struct resp *rs;
};

/* The boot page tables (start.S): pml4, then the PDPT in the next page. */
extern uint64_t pml4[];

static uint16_t request(struct vmem *v, uint16_t type, uint64_t addr, uint16_t n,
			uint16_t *state)
{
	struct vq_buf bufs[2] = { { v->rq, sizeof(*v->rq), false }, { v->rs, sizeof(*v->rs), true } };
	uint32_t len;

	memset(v->rq, 0, sizeof(*v->rq));
	v->rq->type = type;
	v->rq->addr = addr;
	v->rq->nb_blocks = n;
	v->rs->type = 0xffff;
	if (!virtq_add(&v->q, bufs, 2, v->rq))
		fail("vmem: cannot queue a request");
	virtq_kick(&v->q);
	virtq_wait(&v->q, &len, 10000);
	if (len < 10)
		fail("vmem: response of %u bytes", len);
	if (state)
		*state = v->rs->state;
	return v->rs->type;
}

/* Map [addr, addr + size) with user-writable 2 MiB pages, one page
 * directory per GiB. The PDPT entries were not present before, so no TLB
 * holds them: no flush needed. */
static void map_region(uint64_t addr, uint64_t size)
{
	uint64_t *pdpt = pml4 + 512;

	for (uint64_t gib = addr >> 30; gib <= (addr + size - 1) >> 30; gib++) {
		uint64_t *pd;

		if (gib >= 512)
			fail("vmem: region past 512 GiB");
		if (pdpt[gib] & 1)
			continue;
		pd = mem_alloc(PAGE, PAGE);
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = ((gib << 30) + (i << 21)) | 0x87;
		pdpt[gib] = (uint64_t)pd | 0x7;
	}
}

static uint8_t pattern(uint64_t block, uint64_t page)
{
	return (uint8_t)(0xa5 ^ block ^ (page << 3));
}

static uint8_t *block_ptr(struct vmem *v, uint64_t b)
{
	return (uint8_t *)(v->addr + b * v->block);
}

static void fill(struct vmem *v, uint64_t b)
{
	for (uint64_t p = 0; p < v->block / PAGE; p++)
		memset(block_ptr(v, b) + p * PAGE, pattern(b, p), PAGE);
}

/* Every plugged block (the first `plugged`) holds its pattern. */
static void verify(struct vmem *v)
{
	for (uint64_t b = 0; b < v->plugged; b++)
		for (uint64_t p = 0; p < v->block / PAGE; p++) {
			const uint8_t *q = block_ptr(v, b) + p * PAGE;

			if (q[0] != pattern(b, p) || q[PAGE - 1] != pattern(b, p))
				fail("vmem: block %lu page %lu lost its content (0x%x)", b, p, q[0]);
		}
}

static void expect(struct vmem *v, uint16_t type, uint64_t addr, uint16_t n, uint16_t want,
		   const char *what)
{
	uint16_t got = request(v, type, addr, n, NULL);

	if (got != want)
		fail("vmem: %s: response %u, expected %u", what, got, want);
}

static void refusals(struct vmem *v)
{
	expect(v, REQ_PLUG, v->addr + PAGE, 1, RESP_ERROR, "misaligned plug");
	expect(v, REQ_PLUG, v->addr + v->region, 1, RESP_ERROR, "plug past the region");
	expect(v, REQ_PLUG, v->addr - v->block, 1, RESP_ERROR, "plug below the region");
	expect(v, REQ_STATE, v->addr, 0, RESP_ERROR, "state of no blocks");
	if (v->plugged < v->nblocks) {
		expect(v, REQ_UNPLUG, v->addr + v->plugged * v->block, 1, RESP_ERROR,
		       "unplug of an unplugged block");
		expect(v, REQ_PLUG, v->addr + v->plugged * v->block, 1, RESP_NACK,
		       "plug past the requested size");
	}
	if (v->plugged)
		expect(v, REQ_PLUG, v->addr, 1, RESP_ERROR, "plug of a plugged block");
}

static void follow(struct vmem *v, uint64_t target)
{
	target = MIN(target, v->nblocks);
	while (v->plugged < target) {
		uint16_t r = request(v, REQ_PLUG, v->addr + v->plugged * v->block, 1, NULL);

		if (r != RESP_ACK) {
			/* The host lowered the target meanwhile. */
			printf("vmem: plug refused (%u)\n", r);
			break;
		}
		fill(v, v->plugged);
		v->plugged++;
	}
	while (v->plugged > target) {
		if (request(v, REQ_UNPLUG, v->addr + (v->plugged - 1) * v->block, 1, NULL) !=
		    RESP_ACK)
			fail("vmem: unplug of block %lu refused", v->plugged - 1);
		v->plugged--;
	}
	if (virtio_cfg64(&v->dev, CFG_PLUGGED_SIZE) != v->plugged * v->block)
		fail("vmem: plugged_size %lu, driver has %lu blocks",
		     virtio_cfg64(&v->dev, CFG_PLUGGED_SIZE), v->plugged);
	verify(v);
	refusals(v);
	printf("vmem: plugged %lu MiB\n", v->plugged * v->block >> 20);
}

int main(int argc, char **argv)
{
	struct vmem v = { 0 };
	uint64_t last = ~0ul;
	uint16_t st;

	if (!virtio_find(VIRTIO_ID_MEM, 0, &v.dev))
		fail("no virtio-mem device on the command line ('%s')", cmdline());
	virtio_begin(&v.dev, 0);
	virtq_init(&v.q, &v.dev, 0, 8);
	virtio_driver_ok(&v.dev);
	v.rq = mem_alloc(64, 64);
	v.rs = mem_alloc(64, 64);
	v.block = virtio_cfg64(&v.dev, CFG_BLOCK_SIZE);
	v.addr = virtio_cfg64(&v.dev, CFG_ADDR);
	v.region = virtio_cfg64(&v.dev, CFG_REGION_SIZE);
	if (!v.block || v.block % PAGE || v.addr % v.block || v.region % v.block ||
	    v.region / v.block > MAX_BLOCKS)
		fail("vmem: odd config: block %lu addr 0x%lx region %lu", v.block, v.addr, v.region);
	v.nblocks = v.region / v.block;
	printf("vmem: region %lu MiB at 0x%lx, block %lu KiB\n", v.region >> 20, v.addr,
	       v.block >> 10);
	/* A new driver starts from nothing (the spec's advice after a reboot). */
	if (virtio_cfg64(&v.dev, CFG_PLUGGED_SIZE))
		expect(&v, REQ_UNPLUG_ALL, 0, 0, RESP_ACK, "unplug all");
	if (request(&v, REQ_STATE, v.addr, (uint16_t)v.nblocks, &st) != RESP_ACK ||
	    st != STATE_UNPLUGGED)
		fail("vmem: the region is not unplugged at start (%u)", st);
	map_region(v.addr, v.region);
	printf("vmem: ready\n");
	for (;;) {
		uint64_t target = virtio_cfg64(&v.dev, CFG_REQUESTED_SIZE) / v.block;

		if (target != last) {
			follow(&v, target);
			last = target;
		}
		if (virtio_status(&v.dev) & VIRTIO_STATUS_NEEDS_RESET)
			fail("vmem: the device asks for a reset");
		delay_us(5000);
	}
	return report_summary();
}
