/* netperf.c: bulk frames over the first virtio-net device, from ring 3,
 * for bench/net.py and the tests.
 * mode=tx size=BYTES secs=N [batch=N]: sends frames of BYTES (Ethernet
 *   header included; 60..65549) to a MAC nobody has, as fast as the ring
 *   turns, for N seconds. Frames past 1514 bytes are TCP/IPv4 segments
 *   handed over whole with the vnet header's TSO (VIRTIO_NET_F_HOST_TSO4
 *   must be offered); with VIRTIO_NET_F_CSUM every frame asks for a
 *   partial checksum, as a real stack's would.
 * mode=rx secs=N: counts the frames the host sends for N seconds.
 * ring=N: use at most N ring entries (default: all the device offers, up
 *   to 1024); the ring is kept full either way.
 * Prints "netperf: begin MODE" and "netperf: end MODE", then
 * "netperf: MODE frames=F bytes=B ms=T" and passes when anything moved. */
#include "virtio.h"

TEST_PROGRAM("netperf");

#define F_CSUM     (1ull << 0)
#define F_MAC      (1ull << 5)
#define F_HOST_TSO4 (1ull << 11)
#define NET_HDR_LEN 12
#define NBUF 128  /* distinct tx frames */
#define QMAX 1024
#define RX_BUF 2048

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }

static uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* vnet header, Ethernet, IPv4, TCP, payload. */
static void build_frame(uint8_t *b, size_t size, const uint8_t mac[6], uint64_t features)
{
	static const uint8_t dst[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	uint8_t *h = b, *e = b + NET_HDR_LEN, *ip = e + 14, *tcp = ip + 20;

	memset(b, 0, NET_HDR_LEN + size);
	memcpy(e, dst, 6);
	memcpy(e + 6, mac, 6);
	put16(e + 12, 0x0800);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(size - 14));
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = 6;
	ip[12] = 10; ip[13] = 9; ip[14] = 0; ip[15] = 2;
	ip[16] = 10; ip[17] = 9; ip[18] = 0; ip[19] = 1;
	put16(ip + 10, ip_csum(ip, 20));
	put16(tcp, 40000);
	put16(tcp + 2, 5001);
	tcp[12] = 5 << 4;
	tcp[13] = 0x18; /* PSH, ACK */
	put16(tcp + 14, 65535);
	for (size_t i = 54; i < size; i++)
		e[i] = (uint8_t)i;
	if (features & F_CSUM) {
		h[0] = 1;              /* NEEDS_CSUM */
		h[6] = 34; h[7] = 0;   /* csum_start 34 (LE) */
		h[8] = 16; h[9] = 0;   /* csum_offset 16 */
	}
	if (size > 1514) {
		h[1] = 1;              /* GSO_TCPV4 */
		h[2] = 54; h[3] = 0;   /* hdr_len */
		h[4] = 1448 & 0xff; h[5] = 1448 >> 8; /* gso_size */
	}
}

/* Kick unless the device said it is still polling the ring
 * (VRING_USED_F_NO_NOTIFY), as a real driver does. */
static void kick(struct virtq *q)
{
	__asm__ volatile("mfence" ::: "memory");
	if (!(q->used->flags & 1))
		virtq_kick(q);
}

int main(int argc, char **argv)
{
	static struct virtio_dev dev;
	static struct virtq q;
	const char *mode = param_str("mode", "tx");
	uint64_t size = param_u64("size", 1514), secs = param_u64("secs", 5);
	uint32_t batch = (uint32_t)param_u64("batch", 32), pending = 0;
	bool tx = !strcmp(mode, "tx");
	uint64_t frames = 0, bytes = 0, t0, deadline, want = F_MAC | F_CSUM;
	uint8_t mac[6] = { 0x52, 0x54, 0, 0x11, 0x22, 0x33 };

	if (tx && (size < 60 || size > 65549))
		fail("size=%lu out of range 60..65549", size);
	if (!virtio_find(VIRTIO_ID_NET, 0, &dev))
		fail("no virtio-net device on the command line ('%s')", cmdline());
	if (size > 1514)
		want |= F_HOST_TSO4;
	virtio_begin(&dev, want);
	if (size > 1514 && !(dev.features & F_HOST_TSO4))
		fail("size=%lu needs VIRTIO_NET_F_HOST_TSO4, not offered", size);
	if (dev.features & F_MAC)
		for (int i = 0; i < 6; i++)
			mac[i] = virtio_cfg8(&dev, (uint32_t)i);
	/* As large as the device offers (ring=N: at most N entries). */
	virtq_init(&q, &dev, tx ? 1 : 0, (uint16_t)param_u64("ring", QMAX));
	q.avail->flags = 1; /* VRING_AVAIL_F_NO_INTERRUPT: completions are polled */
	virtio_driver_ok(&dev);
	printf("netperf: features 0x%lx mac %02x:%02x:%02x:%02x:%02x:%02x\n", dev.features,
	       mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);

	/* The whole ring is kept full, as a real driver's would be under
	 * load: one buffer per entry for rx (the device writes them); for tx
	 * the entries share NBUF prebuilt frames (the device only reads
	 * them), so 64 KiB frames fit in guest RAM whatever the ring size. */
	unsigned nbuf = tx && q.size > NBUF ? NBUF : q.size;
	uint64_t blen = tx ? NET_HDR_LEN + size : RX_BUF;
	uint8_t *bufs = mem_alloc(nbuf * ((blen + 63) & ~63ull), 4096);
	for (unsigned i = 0; i < nbuf; i++)
		if (tx)
			build_frame(bufs + i * ((blen + 63) & ~63ull), size, mac, dev.features);
	for (unsigned i = 0; i < q.size; i++) {
		uint8_t *b = bufs + (i % nbuf) * ((blen + 63) & ~63ull);
		struct vq_buf vb = { b, (uint32_t)blen, !tx };

		if (!virtq_add(&q, &vb, 1, b))
			fail("netperf: queue full at %u", i);
	}
	printf("netperf: begin %s\n", mode);
	t0 = rdtsc();
	deadline = tsc_deadline_ms(secs * 1000);
	virtq_kick(&q);
	while (!tsc_expired(deadline)) {
		uint32_t len;
		void *cookie;
		bool got = false;

		while (virtq_get(&q, &len, &cookie)) {
			struct vq_buf vb = { cookie, (uint32_t)blen, !tx };

			frames++;
			bytes += tx ? size : (len > NET_HDR_LEN ? len - NET_HDR_LEN : 0);
			virtq_add(&q, &vb, 1, cookie);
			pending++;
			got = true;
		}
		if (pending >= batch || (pending && !got)) {
			kick(&q);
			pending = 0;
		}
	}
	uint64_t ms = (rdtsc() - t0) / (tsc_hz() / 1000);
	printf("netperf: end %s\n", mode);
	printf("netperf: %s frames=%lu bytes=%lu ms=%lu\n", mode, frames, bytes, ms);
	report(frames > 0, "%s moved %lu frames", mode, frames);
	return report_summary();
}
