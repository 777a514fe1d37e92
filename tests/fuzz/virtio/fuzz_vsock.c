/* fuzz_vsock.c: virtio-vsock end to end. A driver programmed here (three
 * queues of 8 entries at fixed addresses) kicks the queues the input
 * names over guest memory the input fills: packet headers with any field
 * wrong, lying lengths, credit lies, rx and event buffers of any shape,
 * rings that break the rules; meanwhile a real host client may connect
 * through the device's Unix socket and send data, a listener may accept
 * the guest's connections, and the state may be saved and loaded. The
 * header checks and the CONNECT parser also run directly on the input.
 * Must never crash, hang or touch memory outside guest RAM.
 *
 * Input: [0] bit 0: a host client connects first ("CONNECT <[1]>\n"),
 *            bit 1: it also sends the rest of its line's byte as data,
 *            bit 2: host port 5 listens (guest REQUESTs to it succeed)
 *        [1] number of kicks K (low 5 bits); [2, 2 + K) what each does:
 *            low 2 bits the queue (3: deliver socket events to every
 *            connection), bit 7: save and load the device first
 *        then guest memory from RING_BASE: queue q's descriptor table at
 *        RING_BASE + q * 0x1000, avail ring at +0x400, used ring at +0x800.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/virtio_mmio.h>

#include "devtype.h"
#include "fuzzdrv.h"
#include "unixsock.h"
#include "virtio/vsock/vsock.h"
#include "vm.h"

#define RAM_SIZE  (2u << 20)
#define RING_BASE 0x10000u

/* The harness's own sockets, made once per process (not product code). */
static char uds[96];
static int listener5 = -1;

static void parse_direct(const uint8_t *data, size_t size)
{
	struct vsock_hdr h;
	uint8_t raw[VSOCK_HDR_LEN];
	uint32_t port;

	if (size >= VSOCK_HDR_LEN) {
		vsock_hdr_decode(data, &h);
		vsock_hdr_encode(&h, raw);
		if (memcmp(raw, data, VSOCK_HDR_LEN))
			abort();
		vsock_hdr_check(&h, 3, size - VSOCK_HDR_LEN);
	}
	if (vsock_parse_connect((const char *)data, size, &port)) {
		char again[32];
		int n = snprintf(again, sizeof(again), "CONNECT %u", port);

		/* Only canonical lines are accepted, or ones with leading zeros. */
		if ((size_t)n > size)
			abort();
	}
}

/* Remove the harness's socket files and directory at exit. */
static void cleanup(void)
{
	char path[128];

	if (listener5 >= 0)
		close(listener5);
	snprintf(path, sizeof(path), "%s_5", uds);
	unlink(path);
	unlink(uds);
	*strrchr(uds, '/') = 0;
	rmdir(uds);
}

static void setup_once(void)
{
	char dir[] = "/tmp/cella-fuzz-vsock-XXXXXX";
	char path[128];

	if (uds[0])
		return;
	if (!mkdtemp(dir))
		abort();
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	snprintf(path, sizeof(path), "%s_5", uds);
	listener5 = unix_listen(path, 64, 0600);
	if (listener5 < 0)
		abort();
	fcntl(listener5, F_SETFL, O_NONBLOCK);
	atexit(cleanup);
}

static void drain_listener(void)
{
	int fd;

	while ((fd = accept4(listener5, NULL, NULL, SOCK_NONBLOCK)) >= 0)
		close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct device_type *t = devtype_find("virtio-vsock");
	struct vsock_config cfg = { .cid = 3 };
	struct virtio_dev *vd;
	struct vsock *vs;
	struct vm vm;
	unsigned nkick;
	int client = -1;
	size_t pos;

	if (size < 2)
		return 0;
	parse_direct(data, size);
	nkick = data[1] & 31;
	if (size < 2 + (size_t)nkick)
		return 0;
	setup_once();
	cfg.uds = uds;
	if (!t || vm_create_test(&vm, RAM_SIZE) || t->create(&vm, 0, &cfg))
		abort();
	vd = virtio_dev_of(vm.devices_tail);
	vs = vsock_of(vd);
	if (!(data[0] & 4)) {
		/* Nobody listens: guest REQUESTs are refused (RST). */
		free(vs->uds_path);
		vs->uds_path = NULL;
	}
	pos = 2 + nkick;
	fuzz_fill(&vm, RING_BASE, RAM_SIZE, data, pos, size);
	fuzz_drv_start(&vm, vd, -1, VSOCK_NR_QUEUES, RING_BASE);
	if (data[0] & 1) {
		char line[32];
		int n = snprintf(line, sizeof(line), "CONNECT %u\n", data[1]);

		client = unix_connect(uds);
		if (client >= 0) {
			if (write(client, line, (size_t)n) < 0) {
				/* the device will see EOF */
			}
			if ((data[0] & 2) && write(client, data, size < 512 ? size : 512) < 0) {
				/* likewise */
			}
			pthread_mutex_lock(&vd->lock);
			vsock_accept(vs);
			pthread_mutex_unlock(&vd->lock);
		}
	}
	for (unsigned i = 0; i < nkick; i++) {
		uint8_t k = data[2 + i];

		if (k & 0x80) {
			fuzz_save_load(vd);
		}
		if ((k & 3) == 3) {
			pthread_mutex_lock(&vd->lock);
			for (unsigned c = 0; c < VSOCK_MAX_CONNS; c++)
				if (vs->conns[c].state != VC_FREE)
					vsock_conn_event(&vs->conns[c], EPOLLIN | EPOLLOUT);
			vsock_rx_pump(vs);
			pthread_mutex_unlock(&vd->lock);
			continue;
		}
		fuzz_reg(&vm, vd, VIRTIO_MMIO_QUEUE_NOTIFY, k & 3);
		virtio_dev_process(vd, k & 3);
	}
	json_decref(t->status(&vm));
	fuzz_save_load(vd);
	vm_destroy(&vm);
	if (client >= 0)
		close(client);
	drain_listener();
	return 0;
}
