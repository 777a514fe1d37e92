/* netsend.c: bench/net.py's host -> guest sender: frames of SIZE bytes to
 * MAC from an AF_PACKET socket bound to TAP, as fast as the kernel takes
 * them, for SECS seconds, SIZE_BATCH frames per sendmmsg. The Python loop it
 * replaces cost about 5 us per frame, more than either VMM's receive path,
 * so it, not the VMM, set the rate; this one costs what the kernel's
 * packet path costs.
 * Usage: bench-netsend TAP MAC SIZE SECS [BATCH]. Prints the number of
 * frames the kernel accepted (the tap drops what its full queue cannot
 * take, as a wire would, and counts it in its tx_dropped), then the number
 * of sendmmsg calls cut short. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 256
#define MAX_SIZE 9000

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t frame[MAX_SIZE];
	static struct mmsghdr msgs[MAX_BATCH];
	static struct iovec iov;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL) };
	unsigned long long sent = 0, refused = 0;
	long size, batch = 32;
	double secs, end;
	int fd, one = 1;

	if (argc < 5 || argc > 6) {
		fprintf(stderr, "usage: %s TAP MAC SIZE SECS [BATCH]\n", argv[0]);
		return 2;
	}
	size = strtol(argv[3], NULL, 10);
	secs = strtod(argv[4], NULL);
	if (argc == 6)
		batch = strtol(argv[5], NULL, 10);
	if (size < 60 || size > MAX_SIZE || secs <= 0 || batch < 1 || batch > MAX_BATCH ||
	    parse_mac(argv[2], frame)) {
		fprintf(stderr, "%s: bad MAC, size (60..%d), seconds or batch (1..%d)\n", argv[0],
			MAX_SIZE, MAX_BATCH);
		return 2;
	}
	/* Source 02:00:00:00:00:09, an experimental EtherType: nobody but the
	 * guest's counter looks at it. */
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\x09\x88\xb5", 8);
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	sll.sll_ifindex = (int)if_nametoindex(argv[1]);
	if (fd < 0 || !sll.sll_ifindex || bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		perror("netsend: AF_PACKET socket on the tap");
		return 1;
	}
	/* Straight to the tap's queue, as a bridge or a wire would deliver;
	 * no qdisc between (older kernels lack it: then through the qdisc). */
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	iov.iov_base = frame;
	iov.iov_len = (size_t)size;
	for (long i = 0; i < batch; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	end = now() + secs;
	while (now() < end) {
		for (int k = 0; k < 8; k++) {
			int n = sendmmsg(fd, msgs, (unsigned)batch, 0);

			if (n < 0) {
				/* ENOBUFS and the like: the frame at the head is
				 * dropped, the rest of the batch goes next time. */
				refused++;
				continue;
			}
			sent += (unsigned)n;
			if (n < batch)
				refused++;
		}
	}
	printf("%llu\n%llu\n", sent, refused);
	return 0;
}
