/* demo.c: the bundled demo VM. Says what it finds and does, step by step:
 * memory map, processors (starts every AP), virtio devices, a disk write /
 * flush / read-back, random bytes from virtio-rng; then powers the machine
 * off through the PM1a control port, so cella-vm exits with status 0. */
#include "hw.h"
#include "virtio_blk.h"

TEST_PROGRAM("demo");

#define PM1A_CNT_PORT 0x604
#define PM1_SLP_EN    0x2000

static void demo_memory(void)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)boot_start_info;
	const struct hvm_memmap_entry *e;
	uint64_t total = 0;

	if (!si || si->magic != HVM_START_MAGIC || !si->memmap_paddr) {
		printf("demo: no PVH memory map\n");
		return;
	}
	e = (const void *)(uintptr_t)si->memmap_paddr;
	printf("demo: memory map (%u entries):\n", si->memmap_entries);
	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		printf("demo:   %016lx-%016lx %s\n", e[i].addr, e[i].addr + e[i].size - 1,
		       e[i].type == 1 ? "RAM" : "reserved");
		if (e[i].type == 1)
			total += e[i].size;
	}
	printf("demo: %lu MiB of RAM\n", total >> 20);
}

static void demo_cpus(void)
{
	struct mp_cpu cpus[MAX_CPUS];
	int n = mptable_cpus(cpus, MAX_CPUS);
	bool ipi_ok;

	if (n < 0) {
		report(false, "MP table found");
		return;
	}
	printf("demo: MP table lists %d processor(s); starting the application processors\n", n);
	lapic_setup();
	int aps = smp_start_aps(cpus, n, 10000, &ipi_ok);
	report(ipi_ok && ap_checked_in == (uint32_t)aps, "%u of %d processors running",
	       ap_checked_in + 1, aps + 1);
}

static void demo_disk(void)
{
	struct vblk b;
	char id[21] = "";
	uint8_t *out = mem_alloc(4096, 4096), *in = mem_alloc(4096, 4096);
	uint64_t seed = rdtsc();

	if (!vblk_open(&b, 0)) {
		printf("demo: no virtio-blk disk attached\n");
		return;
	}
	vblk_get_id(&b, id);
	printf("demo: virtio-blk disk '%s': %lu MiB%s\n", id, b.capacity >> 11,
	       b.ro ? ", read-only" : "");
	if (b.ro)
		return;
	for (int i = 0; i < 4096; i += 8) {
		uint64_t v = splitmix64(&seed);
		memcpy(out + i, &v, 8);
	}
	snprintf((char *)out, 64, "written by the cella demo VM");
	report(vblk_rw(&b, VIRTIO_BLK_T_OUT, 0, out, 4096) == 0, "wrote 4 KiB to sector 0");
	report(vblk_flush(&b) == 0, "flushed the disk (the data is on stable storage)");
	report(vblk_rw(&b, VIRTIO_BLK_T_IN, 0, in, 4096) == 0, "read the 4 KiB back");
	report(memcmp(in, out, 4096) == 0, "read-back matches (crc32 %08x)", crc32(in, 4096));
}

static void demo_rng(void)
{
	struct virtio_dev dev;
	struct virtq q;
	uint8_t *buf = mem_alloc(16, 16);
	struct vq_buf vb = { buf, 16, true };
	uint32_t got = 0;

	if (!virtio_find(VIRTIO_ID_RNG, 0, &dev)) {
		printf("demo: no virtio-rng device\n");
		return;
	}
	virtio_begin(&dev, 0);
	virtq_init(&q, &dev, 0, 16);
	virtio_driver_ok(&dev);
	if (!virtq_add(&q, &vb, 1, buf))
		fail("rng: cannot queue a buffer");
	virtq_kick(&q);
	virtq_wait(&q, &got, 10000);
	printf("demo: virtio-rng gave %u random bytes: ", got);
	for (uint32_t i = 0; i < got; i++)
		printf("%02x", buf[i]);
	printf("\n");
	report(got == 16, "got 16 random bytes");
}

int main(int argc, char **argv)
{
	printf("demo: cella demo VM up; command line: %s\n", cmdline());
	demo_memory();
	demo_cpus();
	demo_disk();
	demo_rng();
	if (report_summary() != 0)
		exit(1);
	printf("demo: all done, powering off\n");
	outw(PM1A_CNT_PORT, PM1_SLP_EN);
	fail("still running after the power-off request");
}
