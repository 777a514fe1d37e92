/* vconsole.c: writes known text through the first virtio-console's
 * transmitq (queue 1; receiveq 0 is set up and given a buffer, as a driver
 * does): one line in one descriptor, then `lines` numbered lines each split
 * over two descriptors of one chain. The host checks its output file.
 * wait=1: between the two, print "vconsole: waiting" and wait for a line on
 * the UART (the host saves and restores the VM meanwhile). */
#include "virtio.h"

TEST_PROGRAM("vconsole");

#define VIRTIO_ID_CONSOLE 3

/* Until a line ends on the UART. */
static void wait_line(void)
{
	for (;;) {
		int c = console_getc();

		if (c == '\n' || c == '\r')
			return;
		if (c < 0)
			cpu_relax();
	}
}

static uint32_t transmit(struct virtq *tx, const char *a, const char *b)
{
	struct vq_buf bufs[2];
	int n = 0;
	uint32_t got = 0;
	uint32_t la = strlen(a), lb = b ? strlen(b) : 0;
	char *pa = mem_alloc(la + 1, 16), *pb = b ? mem_alloc(lb + 1, 16) : 0;

	memcpy(pa, a, la);
	bufs[n++] = (struct vq_buf){ pa, la, false };
	if (b) {
		memcpy(pb, b, lb);
		bufs[n++] = (struct vq_buf){ pb, lb, false };
	}
	if (!virtq_add(tx, bufs, n, pa))
		fail("vconsole: cannot queue a buffer");
	virtq_kick(tx);
	if (virtq_wait(tx, &got, 10000) != pa)
		fail("vconsole: the device completed another buffer");
	return got;
}

int main(int argc, char **argv)
{
	struct virtio_dev dev;
	struct virtq rx, tx;
	uint64_t lines = param_u64("lines", 3);
	char head[32], tail[32];

	if (!virtio_find(VIRTIO_ID_CONSOLE, 0, &dev))
		fail("no virtio-console device on the command line ('%s')", cmdline());
	printf("vconsole: device at 0x%lx irq %u\n", dev.base, dev.irq);
	virtio_begin(&dev, 0);
	virtq_init(&rx, &dev, 0, 16);
	virtq_init(&tx, &dev, 1, 16);
	virtio_driver_ok(&dev);
	{
		struct vq_buf in = { mem_alloc(64, 16), 64, true };

		report(virtq_add(&rx, &in, 1, in.addr), "receive buffer queued");
		virtq_kick(&rx);
	}
	report(transmit(&tx, "cella virtio-console: hello from the guest\n", 0) == 0,
	       "first line transmitted");
	if (param_u64("wait", 0)) {
		printf("vconsole: waiting\n");
		wait_line();
	}
	for (uint64_t i = 0; i < lines; i++) {
		snprintf(head, sizeof(head), "line %u of ", (unsigned)i + 1);
		snprintf(tail, sizeof(tail), "%u\n", (unsigned)lines);
		transmit(&tx, head, tail);
	}
	report(true, "%u two-part lines transmitted", (unsigned)lines);
	report(!virtq_get(&rx, 0, 0), "no input arrived");
	report(!(virtio_status(&dev) & VIRTIO_STATUS_NEEDS_RESET), "device did not ask for a reset");
	return report_summary();
}
