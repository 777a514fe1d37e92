/* tapwrite.c: the host's own cost of what a VMM's virtio-net transmit does
 * per frame, with no VM: one thread writes prebuilt frames (a 12-byte vnet
 * header, Ethernet, IPv4, TCP; frames past 1514 bytes as TSO segments of
 * 1448) to a tap with writev, from memory backed as a VMM's guest RAM would
 * be. bench/net.py's figures are compared with it (docs/benchmarks.md).
 * Usage, in a network namespace of its own (it makes tap "tw0" and sets it
 * up): bench-tapwrite memfd|anon|thp SIZE SECS. Prints frames/s, Gbit/s of
 * frame bytes and ns per frame. */
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NBUF 128 /* distinct frames, as the test guest netperf has */
#define POOL (64ul << 20)

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void build(uint8_t *b, size_t size)
{
	uint8_t *h = b, *e = b + 12, *ip = e + 14, *tcp = ip + 20;

	memset(b, 0, 12 + 54);
	memcpy(e, "\x02\x00\x00\x00\x00\x01\x52\x54\x00\x11\x22\x33\x08\x00", 14);
	ip[0] = 0x45;
	put16(ip + 2, (unsigned)(size - 14));
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, "\x0a\x09\x00\x02\x0a\x09\x00\x01", 8);
	put16(tcp, 40000);
	put16(tcp + 2, 5001);
	tcp[12] = 5 << 4;
	tcp[13] = 0x18;
	put16(tcp + 14, 65535);
	h[0] = 1;  /* NEEDS_CSUM at 34 + 16 */
	h[6] = 34;
	h[8] = 16;
	if (size > 1514) {
		h[1] = 1; /* GSO_TCPV4 */
		h[2] = 54;
		h[4] = 1448 & 0xff;
		h[5] = 1448 >> 8;
	}
}

int main(int argc, char **argv)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd, hl = 12, mfd;
	size_t size, stride;
	double secs, t0, end, t;
	unsigned long n = 0;
	uint8_t *p;

	if (argc != 4 || (size = strtoul(argv[2], NULL, 10)) < 60 || size > 65549 ||
	    (secs = strtod(argv[3], NULL)) <= 0) {
		fprintf(stderr, "usage: %s memfd|anon|thp SIZE(60..65549) SECS\n", argv[0]);
		return 2;
	}
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	strcpy(ifr.ifr_name, "tw0");
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hl) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0) {
		perror("tapwrite: tap tw0");
		return 1;
	}
	ifr.ifr_flags = 0;
	{
		int s = socket(AF_INET, SOCK_DGRAM, 0);

		if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
		    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0)) {
			perror("tapwrite: tw0 up");
			return 1;
		}
		close(s);
	}
	if (!strcmp(argv[1], "memfd")) {
		/* cella's default guest RAM: huge pages only where shmem THP allows. */
		mfd = memfd_create("tapwrite", MFD_CLOEXEC);
		if (mfd < 0 || ftruncate(mfd, POOL) < 0)
			return perror("tapwrite: memfd"), 1;
		p = mmap(NULL, POOL, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	} else {
		p = mmap(NULL, POOL, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (p == MAP_FAILED)
		return perror("tapwrite: mmap"), 1;
	madvise(p, POOL, strcmp(argv[1], "anon") ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(p, 0x5a, POOL);
	stride = (12 + size + 4095) & ~4095ul;
	if (stride * NBUF > POOL)
		stride = POOL / NBUF;
	for (unsigned i = 0; i < NBUF; i++)
		build(p + i * stride, size);
	t0 = now();
	end = t0 + secs;
	while (now() < end) {
		for (int k = 0; k < 64; k++, n++) {
			struct iovec iov = { p + (n % NBUF) * stride, 12 + size };

			if (writev(fd, &iov, 1) < 0)
				return perror("tapwrite: writev"), 1;
		}
	}
	t = now() - t0;
	printf("%s size=%zu: %.0f frames/s %.2f Gbit/s %.0f ns/frame\n", argv[1], size,
	       (double)n / t, (double)n * (double)size * 8 / t / 1e9, t / (double)n * 1e9);
	return 0;
}
