/* test_net_notify.c: how virtio-net and the virtqueue core keep exits and
 * wake-ups down without losing frames: used entries published in batches
 * (virtq_fill/virtq_flush), the driver's avail index read once per batch,
 * tx bursts longer than one turn of the I/O loop finishing on one kick, rx
 * asking for no kicks while it has buffers (and for kicks once it runs
 * dry), and a queue pair brought back into use served without a kick. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>

#include "mem.h"
#include "vdrv.h"
#include "virtio/net/net.h"
#include "virtio/virtio.h"

#define B(x)   (1ULL << (x))
#define F_BASE (B(VIRTIO_F_VERSION_1) | B(VIRTIO_NET_F_MAC) | B(VIRTIO_NET_F_CTRL_VQ))
#define HDR    sizeof(struct virtio_net_hdr_v1)
#define FRAME  60

/* --- the virtqueue core on a plain buffer, without a device --- */

#define RAM   0x10000
#define NUM   8
#define DESC  0x1000
#define AVAIL 0x2000
#define USED  0x3000
#define BUF   0x4000

struct ring {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_chain c;
};

static struct ring *ring_new(void)
{
	struct ring *r = calloc(1, sizeof(*r));
	struct virtq_error err;

	r->ram = calloc(1, RAM);
	r->mem = (struct guest_mem){ .memfd = -1, .host = r->ram, .size = RAM, .low_size = RAM };
	r->vq.num_max = VIRTQ_NUM_MAX;
	r->vq.num = NUM;
	r->vq.desc_gpa = DESC;
	r->vq.avail_gpa = AVAIL;
	r->vq.used_gpa = USED;
	assert_int_equal(virtq_activate(&r->vq, &r->mem, &err), 0);
	for (unsigned i = 0; i < NUM; i++) {
		struct vring_desc *d = (struct vring_desc *)(r->ram + DESC) + i;

		d->addr = BUF + 64 * i;
		d->len = 64;
		d->flags = VRING_DESC_F_WRITE;
	}
	return r;
}

static void ring_free(struct ring *r)
{
	free(r->ram);
	free(r);
}

/* Publish heads [from, to) as the driver would. */
static void publish(struct ring *r, uint16_t from, uint16_t to)
{
	struct vring_avail *a = (struct vring_avail *)(r->ram + AVAIL);

	for (uint16_t i = from; i != to; i++)
		a->ring[i % NUM] = i % NUM;
	a->idx = to;
}

static void test_virtq_flush_publishes_batch(void **state)
{
	struct ring *r = ring_new();
	struct vring_used *u = (struct vring_used *)(r->ram + USED);
	struct virtq_error err;

	(void)state;
	publish(r, 0, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
		virtq_fill(&r->vq, r->c.head, 10 + i);
	}
	/* Filled, not yet shown: the driver's used index has not moved. */
	assert_int_equal(u->idx, 0);
	assert_int_equal(u->ring[2].id, 2);
	assert_int_equal(u->ring[2].len, 12);
	virtq_flush(&r->vq);
	assert_int_equal(u->idx, 3);
	/* virtq_need_notify publishes what is filled before it decides. */
	publish(r, 3, 4);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	virtq_fill(&r->vq, r->c.head, 1);
	assert_true(virtq_need_notify(&r->vq));
	assert_int_equal(u->idx, 4);
	ring_free(r);
}

static void test_virtq_avail_read_once_per_batch(void **state)
{
	struct ring *r = ring_new();
	struct vring_avail *a = (struct vring_avail *)(r->ram + AVAIL);
	struct virtq_error err;

	(void)state;
	publish(r, 0, 4);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	/* The index is not read again until the four chains it showed are
	 * used: a bogus value written meanwhile is seen only then, and still
	 * refused. */
	a->idx = 200;
	for (int i = 1; i < 4; i++) {
		assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
		assert_int_equal(r->c.head, i);
	}
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), -EINVAL);
	assert_string_equal(err.what, "available index moved by more than the queue size");
	ring_free(r);
}

static void test_virtq_avail_window_follows_last_avail(void **state)
{
	struct ring *r = ring_new();
	struct virtq_error err;

	(void)state;
	publish(r, 0, 2);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	/* Given back, then taken again without a new read: still known. */
	virtq_unpop(&r->vq);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	assert_int_equal(r->c.head, 1);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 0);
	/* A loader (or a test) moving last_avail_idx outside the window the
	 * device read makes it read the index again: nothing is assumed. */
	r->vq.last_avail_idx = 40;
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), -EINVAL);
	r->vq.last_avail_idx = 2;
	publish(r, 2, 3);
	assert_int_equal(virtq_pop(&r->vq, &r->c, &err), 1);
	assert_int_equal(r->c.head, 2);
	ring_free(r);
}

static void test_virtq_set_kicks(void **state)
{
	struct ring *r = ring_new();
	struct vring_used *u = (struct vring_used *)(r->ram + USED);

	(void)state;
	virtq_set_kicks(&r->vq, false);
	assert_int_equal(u->flags, VRING_USED_F_NO_NOTIFY);
	virtq_set_kicks(&r->vq, true);
	assert_int_equal(u->flags, 0);
	/* With EVENT_IDX the driver follows avail_event, not the flag. */
	r->vq.event_idx = true;
	virtq_set_kicks(&r->vq, false);
	assert_int_equal(u->flags, 0);
	ring_free(r);
}

/* --- virtio-net over SOCK_SEQPACKET sockets (two queue pairs) --- */

struct fixture {
	struct vdrv *d;
	struct net_dev *net;
	int peer[2]; /* host side of pair 0 and pair 1 */
};

static int setup_features(void **state, uint64_t more)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct net_config cfg = { .tap = "tap-notify", .has_mac = true,
				  .mac = { 0x52, 0x54, 0, 1, 2, 3 } };
	int fds[2], big = 4 << 20;

	for (int p = 0; p < 2; p++) {
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
		for (int i = 0; i < 2; i++) {
			setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
			setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
		}
		fds[p] = sv[0];
		f->peer[p] = sv[1];
	}
	f->d = vdrv_new();
	assert_int_equal(virtio_net_create_be(&f->d->vm, &cfg, 0, fds, 2, 0, false), 0);
	vdrv_bind(f->d);
	f->net = container_of(f->d->vd, struct net_dev, vd);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_BASE | B(VIRTIO_NET_F_MQ) | more) &
		    VIRTIO_CONFIG_S_DRIVER_OK);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_features(state, 0);
}

/* As Linux's driver negotiates: suppression through avail_event. */
static int setup_event_idx(void **state)
{
	return setup_features(state, B(VIRTIO_RING_F_EVENT_IDX));
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vdrv_free(f->d);
	close(f->peer[0]);
	close(f->peer[1]);
	free(f);
	return 0;
}

static uint16_t used_flags(struct fixture *f, unsigned q)
{
	return __atomic_load_n(&vdrv_used(f->d, q)->flags, __ATOMIC_ACQUIRE);
}

/* Poll (the I/O loop runs in its own thread) until cond(f, q) or 10 s. */
static bool wait_for(bool (*cond)(struct fixture *, unsigned), struct fixture *f, unsigned q)
{
	struct timespec ts = { 0, 1000000 };

	for (int i = 0; i < 10000; i++) {
		if (cond(f, q))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

static bool kicks_off(struct fixture *f, unsigned q)
{
	return used_flags(f, q) & VRING_USED_F_NO_NOTIFY;
}

static void send_frame(int fd, uint8_t seed)
{
	uint8_t pkt[HDR + FRAME] = { 0 };

	memset(pkt + HDR, 0xff, 6);
	pkt[HDR + 12] = 0x88;
	pkt[HDR + 13] = 0xb5;
	pkt[HDR + 14] = seed;
	assert_int_equal(send(fd, pkt, sizeof(pkt), 0), (ssize_t)sizeof(pkt));
}

static void post_rx(struct fixture *f, unsigned q, unsigned n, bool kick)
{
	for (unsigned i = 0; i < n; i++) {
		struct vdrv_seg seg = { vdrv_alloc(f->d, 2048), 2048, true };

		vdrv_add(f->d, q, &seg, 1, false);
	}
	if (kick)
		vdrv_kick(f->d, q);
}

/* More frames than one turn of the I/O loop sends (NET_TX_BUDGET): all go
 * out, in order, on a single kick, and kicks are back on at the end. */
static void test_tx_burst_one_kick(void **state)
{
	struct fixture *f = *state;
	const unsigned n = 3 * NET_TX_BUDGET + 5;
	uint64_t bufs = vdrv_alloc(f->d, (uint64_t)n * (HDR + FRAME));
	uint8_t got[256];

	assert_true(n < f->d->q[NET_TXQ].num);
	for (unsigned i = 0; i < n; i++) {
		uint64_t b = bufs + (uint64_t)i * (HDR + FRAME);
		uint8_t *p = vdrv_ptr(f->d, b, HDR + FRAME);
		struct vdrv_seg seg = { b, HDR + FRAME, false };

		memset(p, 0, HDR + FRAME);
		memset(p + HDR, 0xff, 6);
		p[HDR + 12] = 0x88;
		p[HDR + 13] = 0xb5;
		p[HDR + 14] = (uint8_t)i;
		p[HDR + 15] = (uint8_t)(i >> 8);
		vdrv_add(f->d, NET_TXQ, &seg, 1, false);
	}
	vdrv_kick(f->d, NET_TXQ);
	assert_true(vdrv_wait_used(f->d, NET_TXQ, (uint16_t)n));
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(recv(f->peer[0], got, sizeof(got), MSG_DONTWAIT),
				 (ssize_t)(HDR + FRAME));
		assert_int_equal(got[HDR + 14] | got[HDR + 15] << 8, i);
	}
	assert_int_equal(recv(f->peer[0], got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(f->net->tx_frames, n);
	assert_int_equal(used_flags(f, NET_TXQ), 0);
}

static bool rx_used_is_4(struct fixture *f, unsigned q)
{
	return vdrv_used_idx(f->d, q) == 4;
}

/* While the device has rx buffers and watches the back end, buffers the
 * driver adds need no kick; once they run out, it asks for kicks. */
static void test_rx_kicks_only_when_dry(void **state)
{
	struct fixture *f = *state;

	post_rx(f, NET_RXQ, 4, true);
	send_frame(f->peer[0], 1);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 1));
	assert_true(wait_for(kicks_off, f, NET_RXQ));
	send_frame(f->peer[0], 2);
	send_frame(f->peer[0], 3);
	send_frame(f->peer[0], 4);
	assert_true(wait_for(rx_used_is_4, f, NET_RXQ));
	assert_int_equal(used_flags(f, NET_RXQ), 0); /* dry: kicks wanted */
	/* A frame that comes while the ring is dry waits for buffers and
	 * their kick. */
	send_frame(f->peer[0], 5);
	post_rx(f, NET_RXQ, 2, true);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 5));
	assert_true(wait_for(kicks_off, f, NET_RXQ));
	/* Buffers added without a kick while kicks are off are used. */
	post_rx(f, NET_RXQ, 1, false);
	send_frame(f->peer[0], 6);
	send_frame(f->peer[0], 7);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 7));
	assert_int_equal(f->net->rx_frames, 7);
}

static uint8_t ctrl_pairs(struct fixture *f, uint8_t pairs)
{
	const unsigned q = 4; /* the control queue after two pairs */
	const uint8_t req[] = { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, pairs, 0 };
	uint64_t r = vdrv_alloc(f->d, sizeof(req)), a = vdrv_alloc(f->d, 16);
	struct vdrv_seg segs[2] = { { r, sizeof(req), false }, { a, 1, true } };
	uint16_t idx = vdrv_used_idx(f->d, q);

	memcpy(vdrv_ptr(f->d, r, sizeof(req)), req, sizeof(req));
	vdrv_add(f->d, q, segs, 2, false);
	vdrv_kick(f->d, q);
	assert_true(vdrv_wait_used(f->d, q, (uint16_t)(idx + 1)));
	return *(uint8_t *)vdrv_ptr(f->d, a, 1);
}

/* Pair 1 stops being used while its rx ring asked for no kicks; when it is
 * used again, the device looks at its rings at once: buffers the driver
 * posted meanwhile (following the flag, without a kick) receive. */
static void test_pair_back_in_use_needs_no_kick(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(ctrl_pairs(f, 2), VIRTIO_NET_OK);
	post_rx(f, 2, 2, true);
	send_frame(f->peer[1], 1);
	assert_true(vdrv_wait_used(f->d, 2, 1));
	assert_true(wait_for(kicks_off, f, 2));
	assert_int_equal(ctrl_pairs(f, 1), VIRTIO_NET_OK);
	post_rx(f, 2, 1, false);
	send_frame(f->peer[1], 2);
	assert_int_equal(ctrl_pairs(f, 2), VIRTIO_NET_OK);
	assert_true(vdrv_wait_used(f->d, 2, 2));
	send_frame(f->peer[1], 3);
	assert_true(vdrv_wait_used(f->d, 2, 3));
}

static uint16_t avail_event_of(struct fixture *f, unsigned q)
{
	struct vring_used *u = vdrv_used(f->d, q);

	return __atomic_load_n((uint16_t *)&u->ring[f->d->q[q].num], __ATOMIC_ACQUIRE);
}

static bool rx_used_is_3(struct fixture *f, unsigned q)
{
	return vdrv_used_idx(f->d, q) == 3;
}

/* With EVENT_IDX the flag is never used: avail_event asks for a kick on
 * the next buffer only when the ring has run dry; frames and long tx
 * bursts flow as without it. */
static void test_event_idx(void **state)
{
	struct fixture *f = *state;

	post_rx(f, NET_RXQ, 3, true);
	send_frame(f->peer[0], 1);
	send_frame(f->peer[0], 2);
	send_frame(f->peer[0], 3);
	assert_true(wait_for(rx_used_is_3, f, NET_RXQ));
	assert_int_equal(used_flags(f, NET_RXQ), 0);
	/* Dry: a kick is wanted when avail reaches 3 + 1. */
	assert_int_equal(avail_event_of(f, NET_RXQ), 3);
	send_frame(f->peer[0], 4);
	post_rx(f, NET_RXQ, 1, true);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 4));
	test_tx_burst_one_kick(state);
	assert_int_equal(avail_event_of(f, NET_TXQ), 3 * NET_TX_BUDGET + 5);
}

static bool rx_timer_idle(struct fixture *f, unsigned q)
{
	return !__atomic_load_n(&f->net->q[q / 2].rx_waiting, __ATOMIC_ACQUIRE);
}

static bool rx_used_is_10(struct fixture *f, unsigned q)
{
	return vdrv_used_idx(f->d, q) == 10;
}

static bool rx_used_is_20(struct fixture *f, unsigned q)
{
	return vdrv_used_idx(f->d, q) == 20;
}

/* A turn that took NET_RX_COALESCE_MIN frames or more and emptied the back
 * end looks again on a timer, not on the next frame: frames sent while it
 * is armed are received, without a kick, and so is a lone frame once the
 * link is quiet again. */
static void test_rx_coalesce(void **state)
{
	struct fixture *f = *state;

	/* Frames queued before there are buffers: one turn takes them all. */
	for (unsigned i = 0; i < 10; i++)
		send_frame(f->peer[0], (uint8_t)i);
	assert_true(10 >= NET_RX_COALESCE_MIN);
	post_rx(f, NET_RXQ, 32, true);
	assert_true(wait_for(rx_used_is_10, f, NET_RXQ));
	assert_true(__atomic_load_n(&f->net->q[0].rx_coalesced, __ATOMIC_ACQUIRE) >= 1);
	for (unsigned i = 0; i < 10; i++)
		send_frame(f->peer[0], (uint8_t)(100 + i));
	assert_true(wait_for(rx_used_is_20, f, NET_RXQ));
	assert_true(kicks_off(f, NET_RXQ)); /* buffers left: no kick wanted */
	send_frame(f->peer[0], 200);
	assert_true(vdrv_wait_used(f->d, NET_RXQ, 21));
	assert_int_equal(f->net->rx_frames, 21);
	/* Quiet again: the timer is not left armed. */
	assert_true(wait_for(rx_timer_idle, f, NET_RXQ));
}

#define N(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_virtq_flush_publishes_batch),
		cmocka_unit_test(test_virtq_avail_read_once_per_batch),
		cmocka_unit_test(test_virtq_avail_window_follows_last_avail),
		cmocka_unit_test(test_virtq_set_kicks),
		N(test_tx_burst_one_kick),
		N(test_rx_kicks_only_when_dry),
		N(test_pair_back_in_use_needs_no_kick),
		N(test_rx_coalesce),
		cmocka_unit_test_setup_teardown(test_event_idx, setup_event_idx, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
