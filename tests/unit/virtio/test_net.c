/* test_net.c: virtio-net over a SOCK_SEQPACKET socketpair standing in for
 * the tap (tx, rx, rx before buffers, MAC and link config), and over a real
 * tap when /dev/net/tun can be opened. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "backend/tap.h"
#include "vdrv.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"

#define F_V1  (1ULL << VIRTIO_F_VERSION_1)
#define F_NET ((1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS))
#define HDR   sizeof(struct virtio_net_hdr_v1)
#define ETHERTYPE_TEST 0x88b5 /* IEEE "local experimental" */

struct fixture {
	struct vdrv *d;
	int peer; /* the host side of the link */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct net_config cfg = { .tap = "tap-test", .mac = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 },
				  .has_mac = true };
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	f->peer = sv[1];
	f->d = vdrv_new();
	assert_int_equal(virtio_net_create_fd(&f->d->vm, &cfg, 0, sv[0]), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1 | F_NET) & VIRTIO_CONFIG_S_DRIVER_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	if (f->peer >= 0)
		close(f->peer);
	free(f);
	return 0;
}

static void make_frame(uint8_t *p, size_t len, uint8_t seed)
{
	memset(p, 0xff, 6);                 /* broadcast */
	memcpy(p + 6, "\x52\x54\x00\x12\x34\x56", 6);
	p[12] = ETHERTYPE_TEST >> 8;
	p[13] = ETHERTYPE_TEST & 0xff;
	for (size_t i = 14; i < len; i++)
		p[i] = (uint8_t)(seed + i);
}

static void test_config_mac_and_link(void **state)
{
	struct fixture *f = *state;
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };

	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(vdrv_config8(f->d, i), mac[i]);
	assert_int_equal(vdrv_config8(f->d, 6), VIRTIO_NET_S_LINK_UP);
}

static void test_derived_mac_stable(void **state)
{
	uint8_t a[6], b[6], c[6];

	tap_derive_mac("tap0", a);
	tap_derive_mac("tap0", b);
	tap_derive_mac("tap1", c);
	assert_memory_equal(a, b, 6);
	assert_memory_not_equal(a, c, 6);
	assert_int_equal(a[0] & 3, 2); /* unicast, locally administered */
}

static void test_tx(void **state)
{
	struct fixture *f = *state;
	uint64_t hdr = vdrv_alloc(f->d, HDR), body = vdrv_alloc(f->d, 100);
	struct vdrv_seg segs[] = { { hdr, HDR, false }, { body, 100, false } };
	uint8_t got[256];
	ssize_t n;

	/* num_buffers is the device's field: the host gets it zero. */
	((struct virtio_net_hdr_v1 *)vdrv_ptr(f->d, hdr, HDR))->num_buffers = 7;
	make_frame(vdrv_ptr(f->d, body, 100), 100, 1);
	vdrv_add(f->d, 1, segs, 2, false);
	vdrv_kick(f->d, 1);
	assert_true(vdrv_wait_used(f->d, 1, 1));
	assert_int_equal(vdrv_used_elem(f->d, 1, 0).len, 0);
	n = recv(f->peer, got, sizeof(got), MSG_DONTWAIT);
	assert_int_equal(n, HDR + 100);
	for (size_t i = 0; i < HDR; i++)
		assert_int_equal(got[i], 0);
	assert_memory_equal(got + HDR, vdrv_ptr(f->d, body, 100), 100);
}

static void post_rx(struct fixture *f, uint64_t *buf, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vdrv_seg seg;

		buf[i] = vdrv_alloc(f->d, 1526);
		seg = (struct vdrv_seg){ buf[i], 1526, true };
		vdrv_add(f->d, 0, &seg, 1, false);
	}
	vdrv_kick(f->d, 0);
}

static void send_frame(struct fixture *f, size_t len, uint8_t seed)
{
	uint8_t pkt[HDR + 1514] = { 0 };

	make_frame(pkt + HDR, len, seed);
	assert_int_equal(send(f->peer, pkt, HDR + len, 0), (ssize_t)(HDR + len));
}

static void check_rx(struct fixture *f, uint64_t buf, uint16_t idx, size_t len, uint8_t seed)
{
	uint8_t want[1514];
	const struct virtio_net_hdr_v1 *h = vdrv_ptr(f->d, buf, HDR);

	make_frame(want, len, seed);
	assert_int_equal(vdrv_used_elem(f->d, 0, idx).len, HDR + len);
	assert_int_equal(h->num_buffers, 1);
	assert_memory_equal((uint8_t *)vdrv_ptr(f->d, buf, HDR + len) + HDR, want, len);
}

static void test_rx(void **state)
{
	struct fixture *f = *state;
	uint64_t buf[4];

	post_rx(f, buf, 4);
	send_frame(f, 60, 3);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	check_rx(f, buf[0], 0, 60, 3);
	send_frame(f, 1514, 4);
	assert_true(vdrv_wait_used(f->d, 0, 2));
	check_rx(f, buf[1], 1, 1514, 4);
}

static void test_rx_waits_for_buffers(void **state)
{
	struct fixture *f = *state;
	uint64_t buf[2];

	/* Frames arrive while the guest has no buffers: they wait in the
	 * socket (the device stops watching it) and flow once buffers come. */
	send_frame(f, 80, 5);
	send_frame(f, 90, 6);
	post_rx(f, buf, 1);
	assert_true(vdrv_wait_used(f->d, 0, 1));
	check_rx(f, buf[0], 0, 80, 5);
	post_rx(f, buf + 1, 1);
	assert_true(vdrv_wait_used(f->d, 0, 2));
	check_rx(f, buf[1], 1, 90, 6);
}

static void test_tx_short_header_breaks_device(void **state)
{
	struct fixture *f = *state;
	struct vdrv_seg seg = { vdrv_alloc(f->d, 4), 4, false };

	vdrv_add(f->d, 1, &seg, 1, false);
	vdrv_kick(f->d, 1);
	assert_true(vdrv_wait_needs_reset(f->d));
}

/* ---- a real tap, when this host lets us create one ---- */

static int if_up(const char *name)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int ret = -1;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		ret = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	if (s >= 0)
		close(s);
	return ret;
}

static void test_real_tap(void **state)
{
	char name[IFNAMSIZ], path[96];
	struct net_config cfg = { .tap = name };
	struct vdrv *d;
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE_TEST) };
	int ps, fd;
	uint64_t hdr, body, rxbuf;
	uint8_t got[256], frame[100];

	snprintf(name, sizeof(name), "cvt%d", (int)getpid() % 100000);
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		print_message("*** SKIPPED real tap test: cannot open /dev/net/tun: %s ***\n",
			      strerror(errno));
		skip();
	}
	close(fd);
	d = vdrv_new();
	if (virtio_net_create(&d->vm, &cfg, 0) != 0) {
		vdrv_free(d);
		print_message("*** SKIPPED real tap test: cannot create tap %s ***\n", name);
		skip();
	}
	vdrv_bind(d);
	vdrv_start_loop(d);
	assert_true(vdrv_init(d, F_V1 | F_NET) & VIRTIO_CONFIG_S_DRIVER_OK);
	/* No IPv6 chatter on the test link. */
	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		assert_int_equal(write(fd, "1", 1), 1);
		close(fd);
	}
	assert_int_equal(if_up(name), 0);
	ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE_TEST));
	assert_true(ps >= 0);
	sll.sll_ifindex = (int)if_nametoindex(name);
	assert_int_equal(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), 0);

	/* Guest -> host. */
	hdr = vdrv_alloc(d, HDR);
	body = vdrv_alloc(d, 100);
	make_frame(vdrv_ptr(d, body, 100), 100, 9);
	{
		struct vdrv_seg segs[] = { { hdr, HDR, false }, { body, 100, false } };
		struct pollfd p = { .fd = ps, .events = POLLIN };

		vdrv_add(d, 1, segs, 2, false);
		vdrv_kick(d, 1);
		assert_true(vdrv_wait_used(d, 1, 1));
		assert_int_equal(poll(&p, 1, 10000), 1);
		assert_int_equal(recv(ps, got, sizeof(got), 0), 100);
		assert_memory_equal(got, vdrv_ptr(d, body, 100), 100);
	}
	/* Host -> guest. */
	rxbuf = vdrv_alloc(d, 1526);
	{
		struct vdrv_seg seg = { rxbuf, 1526, true };

		vdrv_add(d, 0, &seg, 1, false);
		vdrv_kick(d, 0);
	}
	make_frame(frame, 100, 11);
	assert_int_equal(sendto(ps, frame, 100, 0, (struct sockaddr *)&sll, sizeof(sll)), 100);
	assert_true(vdrv_wait_used(d, 0, 1));
	assert_int_equal(vdrv_used_elem(d, 0, 0).len, HDR + 100);
	assert_memory_equal((uint8_t *)vdrv_ptr(d, rxbuf, HDR + 100) + HDR, frame, 100);
	close(ps);
	vdrv_free(d);
}

static void test_tap_bad_name(void **state)
{
	struct vdrv *d = vdrv_new();
	struct net_config cfg = { .tap = "this-name-is-far-too-long-for-linux" };

	assert_int_equal(virtio_net_create(&d->vm, &cfg, 0), -EINVAL);
	assert_null(d->vm.devices);
	vdrv_free(d);
}

/* A tap attached by somebody else (cellad) and passed as "fd:N": taken when
 * it is the named tap with a vnet header; refused when it is another tap,
 * or not a tap at all. */
static void test_passed_tap(void **state)
{
	char name[IFNAMSIZ], spec[24], err[256];
	struct net_config cfg = { .tap = name, .tap_fd = spec };
	struct vdrv *d;
	int fd, nul;

	(void)state;
	snprintf(name, sizeof(name), "cvp%d", (int)getpid() % 100000);
	fd = tapdev_open(name, err, sizeof(err));
	if (fd < 0) {
		print_message("*** SKIPPED passed tap test: %s ***\n", err);
		skip();
	}
	snprintf(spec, sizeof(spec), "fd:%d", fd);
	assert_int_equal(tapdev_adopt(spec, "cvp-other", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not cvp-other"));
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_true(nul >= 0);
	snprintf(spec, sizeof(spec), "fd:%d", nul);
	assert_int_equal(tapdev_adopt(spec, name, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a tun/tap descriptor"));
	close(nul);
	snprintf(spec, sizeof(spec), "fd:%d", fd);
	d = vdrv_new();
	assert_int_equal(virtio_net_create(&d->vm, &cfg, 0), 0);
	assert_non_null(d->vm.devices);
	vdrv_free(d);
	close(fd); /* the device held a duplicate */
}

#define N(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		N(test_config_mac_and_link),
		cmocka_unit_test(test_derived_mac_stable),
		N(test_tx),
		N(test_rx),
		N(test_rx_waits_for_buffers),
		N(test_tx_short_header_breaks_device),
		cmocka_unit_test(test_tap_bad_name),
		cmocka_unit_test(test_real_tap),
		cmocka_unit_test(test_passed_tap),
	};

	return cmocka_run_group_tests_name("virtio-net", tests, NULL, NULL);
}
