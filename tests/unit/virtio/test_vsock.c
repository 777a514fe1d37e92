/* test_vsock.c: virtio-vsock without KVM, created through its type and
 * schema as cella-vm does, with a real Unix-socket host side: a host
 * client's CONNECT handshake and data both ways, guest-initiated
 * connections to "<uds>_P" (and a RST when nobody listens), credit-based
 * flow control in both directions, every malformed header field dropped
 * and counted (the device never breaks), the connection state machine's
 * refusals (unknown connections, fwd_cnt lies, bad CONNECT lines), and
 * save/load: connections reset, host sockets closed, the driver told with
 * a TRANSPORT_RESET event, and a new connection working after it. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "conf/schema.h"
#include "devtype.h"
#include "state/state.h"
#include "unixsock.h"
#include "vdrv.h"
#include "virtio/vsock/vsock.h"

#define F_V1   (1ULL << VIRTIO_F_VERSION_1)
#define CID    3
#define RXBUF  4096

struct fixture {
	struct vdrv *d;
	void *cfg;
	char dir[64];
	char uds[128];
	uint16_t rx_seen;     /* rx used entries consumed */
	uint64_t rx_gpa[256]; /* buffer of each rx head */
};

static json_t *status(struct fixture *f)
{
	return devtype_find("virtio-vsock")->status(&f->d->vm);
}

static long long stat_int(struct fixture *f, const char *key)
{
	json_t *s = status(f);
	long long v = json_integer_value(json_object_get(s, key));

	json_decref(s);
	return v;
}

static long long bad_count(struct fixture *f, const char *field)
{
	json_t *s = status(f);
	long long v = json_integer_value(json_object_get(json_object_get(s, "malformed_by_field"),
							 field));

	json_decref(s);
	return v;
}

static void post_rx(struct fixture *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct vdrv_seg s = { vdrv_alloc(f->d, RXBUF), RXBUF, true };
		uint16_t head = vdrv_add(f->d, VSOCK_RXQ, &s, 1, false);

		f->rx_gpa[head] = s.gpa;
	}
	vdrv_kick(f->d, VSOCK_RXQ);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const struct device_type *t = devtype_find("virtio-vsock");
	struct conf_err e;
	char spec[256];

	strcpy(f->dir, "/tmp/cella-vsock-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
	assert_non_null(t);
	f->cfg = calloc(1, t->config_size);
	snprintf(spec, sizeof(spec), "cid=%d,uds=%s", CID, f->uds);
	assert_int_equal(conf_from_string(t->config_schema, f->cfg, spec, &e), 0);
	f->d = vdrv_new();
	assert_int_equal(t->create(&f->d->vm, 0, f->cfg), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	post_rx(f, 32);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	vdrv_free(f->d);
	conf_free(devtype_find("virtio-vsock")->config_schema, f->cfg);
	free(f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* The next packet the device put in an rx buffer (waits for it); data, when
 * given, receives the payload. The buffer is posted again. */
static struct vsock_hdr rx_next(struct fixture *f, void *data, size_t max)
{
	struct vring_used_elem e;
	struct vsock_hdr h;
	uint8_t *p;

	assert_true(vdrv_wait_used(f->d, VSOCK_RXQ, (uint16_t)(f->rx_seen + 1)));
	e = vdrv_used_elem(f->d, VSOCK_RXQ, f->rx_seen++);
	assert_true(e.len >= VSOCK_HDR_LEN);
	p = vdrv_ptr(f->d, f->rx_gpa[e.id], RXBUF);
	vsock_hdr_decode(p, &h);
	assert_int_equal(e.len, VSOCK_HDR_LEN + h.len);
	if (data)
		memcpy(data, p + VSOCK_HDR_LEN, h.len < max ? h.len : max);
	post_rx(f, 1);
	return h;
}

/* True when no rx packet arrives within ms (used only to check silence). */
static bool rx_quiet(struct fixture *f, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (vdrv_used_idx(f->d, VSOCK_RXQ) != f->rx_seen)
			return false;
		usleep(10000);
	}
	return true;
}

/* Transmit one packet: the header in one descriptor, the payload in a
 * second (when there is one). Waits until the device took it. */
static void tx_raw(struct fixture *f, const struct vsock_hdr *h, const void *data, uint32_t len)
{
	struct vdrv_seg s[2];
	uint16_t used = vdrv_used_idx(f->d, VSOCK_TXQ);
	unsigned n = 1;

	s[0] = (struct vdrv_seg){ vdrv_alloc(f->d, VSOCK_HDR_LEN), VSOCK_HDR_LEN, false };
	vsock_hdr_encode(h, vdrv_ptr(f->d, s[0].gpa, VSOCK_HDR_LEN));
	if (len) {
		s[1] = (struct vdrv_seg){ vdrv_alloc(f->d, len), len, false };
		memcpy(vdrv_ptr(f->d, s[1].gpa, len), data, len);
		n = 2;
	}
	vdrv_add(f->d, VSOCK_TXQ, s, n, false);
	vdrv_kick(f->d, VSOCK_TXQ);
	assert_true(vdrv_wait_used(f->d, VSOCK_TXQ, (uint16_t)(used + 1)));
}

static struct vsock_hdr ghdr(uint32_t gport, uint32_t hport, uint16_t op, uint32_t len)
{
	return (struct vsock_hdr){ .src_cid = CID, .dst_cid = VSOCK_HOST_CID, .src_port = gport,
				   .dst_port = hport, .len = len, .type = VSOCK_TYPE_STREAM,
				   .op = op, .buf_alloc = 65536 };
}

static void tx(struct fixture *f, uint32_t gport, uint32_t hport, uint16_t op, const void *data,
	       uint32_t len)
{
	struct vsock_hdr h = ghdr(gport, hport, op, len);

	tx_raw(f, &h, data, len);
}

/* Read exactly n bytes from a host socket (with a deadline). */
static void host_read(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		assert_int_equal(poll(&p, 1, 20000), 1);
		r = read(fd, (char *)buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

static bool host_eof(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char c;

	if (poll(&p, 1, 20000) != 1)
		return false;
	return read(fd, &c, 1) <= 0; /* EOF, or ECONNRESET when unread bytes were dropped */
}

/* A host client through CONNECT; returns its socket, *hport the device's
 * side, after the guest (port gport) accepted. */
static int host_connect(struct fixture *f, uint32_t gport, uint32_t *hport)
{
	int fd = unix_connect(f->uds);
	char line[64] = { 0 }, want[64];
	struct vsock_hdr h;
	size_t i = 0;

	assert_true(fd >= 0);
	dprintf(fd, "CONNECT %u\n", gport);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_int_equal(h.src_cid, VSOCK_HOST_CID);
	assert_int_equal(h.dst_cid, CID);
	assert_int_equal(h.dst_port, gport);
	assert_true(h.src_port >= VSOCK_LOCAL_PORT_BASE);
	assert_int_equal(h.type, VSOCK_TYPE_STREAM);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_BUF);
	*hport = h.src_port;
	tx(f, gport, h.src_port, VSOCK_OP_RESPONSE, NULL, 0);
	while (i < sizeof(line) - 1) {
		host_read(fd, line + i, 1);
		if (line[i++] == '\n')
			break;
	}
	snprintf(want, sizeof(want), "OK %u\n", *hport);
	assert_string_equal(line, want);
	return fd;
}

static void test_config(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(vdrv_read(f->d, VIRTIO_MMIO_DEVICE_ID), 19);
	assert_int_equal(vdrv_config8(f->d, 0), CID);
	for (unsigned i = 1; i < 8; i++)
		assert_int_equal(vdrv_config8(f->d, i), 0);
	assert_int_equal(stat_int(f, "cid"), CID);
}

static void test_host_to_guest(void **state)
{
	struct fixture *f = *state;
	uint32_t hport;
	int fd = host_connect(f, 1234, &hport);
	char buf[64];
	struct vsock_hdr h;

	assert_int_equal(stat_int(f, "connections"), 1);
	assert_int_equal(write(fd, "hello", 5), 5);
	h = rx_next(f, buf, sizeof(buf));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 5);
	assert_memory_equal(buf, "hello", 5);
	tx(f, 1234, hport, VSOCK_OP_RW, "world", 5);
	host_read(fd, buf, 5);
	assert_memory_equal(buf, "world", 5);
	/* The client half-closes: the guest gets SHUTDOWN(SEND) and may
	 * still send; then the guest closes and gets its RST. */
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
	assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
	tx(f, 1234, hport, VSOCK_OP_RW, "bye", 3);
	host_read(fd, buf, 3);
	assert_memory_equal(buf, "bye", 3);
	{
		struct vsock_hdr s = ghdr(1234, hport, VSOCK_OP_SHUTDOWN, 0);

		s.flags = VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RCV;
		tx_raw(f, &s, NULL, 0);
	}
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 1234);
	assert_true(host_eof(fd));
	close(fd);
	assert_int_equal(stat_int(f, "connections"), 0);
	assert_int_equal(stat_int(f, "host_connects"), 1);
	assert_int_equal(stat_int(f, "malformed"), 0);
}

static void test_guest_to_host(void **state)
{
	struct fixture *f = *state;
	char path[160], buf[16];
	struct vsock_hdr h;
	int lfd, cfd;

	snprintf(path, sizeof(path), "%s_5000", f->uds);
	lfd = unix_listen(path, 4, 0600);
	assert_true(lfd >= 0);
	tx(f, 77, 5000, VSOCK_OP_REQUEST, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RESPONSE);
	assert_int_equal(h.src_port, 5000);
	assert_int_equal(h.dst_port, 77);
	cfd = accept(lfd, NULL, NULL);
	assert_true(cfd >= 0);
	tx(f, 77, 5000, VSOCK_OP_RW, "line\n", 5);
	host_read(cfd, buf, 5);
	assert_memory_equal(buf, "line\n", 5);
	assert_int_equal(write(cfd, "ack", 3), 3);
	h = rx_next(f, buf, sizeof(buf));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "ack", 3);
	/* Nobody listens on port 5001: RST. */
	tx(f, 78, 5001, VSOCK_OP_REQUEST, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 78);
	assert_int_equal(stat_int(f, "refused"), 1);
	/* The guest resets the first: the server sees EOF. */
	tx(f, 77, 5000, VSOCK_OP_RST, NULL, 0);
	assert_true(host_eof(cfd));
	close(cfd);
	close(lfd);
	assert_int_equal(stat_int(f, "guest_connects"), 1);
}

static void test_credit(void **state)
{
	struct fixture *f = *state;
	uint32_t hport;
	int fd = host_connect(f, 99, &hport);
	char big[100], buf[100];
	struct vsock_hdr h, c;

	memset(big, 'x', sizeof(big));
	/* The guest has room for 10 bytes only. */
	c = ghdr(99, hport, VSOCK_OP_CREDIT_UPDATE, 0);
	c.buf_alloc = 10;
	tx_raw(f, &c, NULL, 0);
	assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
	h = rx_next(f, buf, sizeof(buf));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_int_equal(h.len, 10);
	assert_true(rx_quiet(f, 300)); /* nothing past the credit */
	/* It consumed them: 10 more. */
	c.fwd_cnt = 10;
	tx_raw(f, &c, NULL, 0);
	h = rx_next(f, buf, sizeof(buf));
	assert_int_equal(h.len, 10);
	/* A CREDIT_REQUEST is answered with our counters. */
	h = c; /* the guest's counters only move forward */
	h.op = VSOCK_OP_RW;
	h.len = 50;
	tx_raw(f, &h, big, 50);
	host_read(fd, buf, 50);
	c.op = VSOCK_OP_CREDIT_REQUEST;
	tx_raw(f, &c, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
	assert_int_equal(h.fwd_cnt, 50);
	assert_int_equal(h.buf_alloc, VSOCK_CONN_BUF);
	/* fwd_cnt past what was sent (20) is a lie: reset. */
	c.op = VSOCK_OP_CREDIT_UPDATE;
	c.fwd_cnt = 21;
	tx_raw(f, &c, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_true(host_eof(fd));
	close(fd);
	assert_int_equal(bad_count(f, "credit"), 1);
}

static void test_malformed(void **state)
{
	struct fixture *f = *state;
	struct vsock_hdr h;
	uint32_t hport;
	int fd = host_connect(f, 7, &hport);
	char buf[8];

	h = ghdr(7, hport, VSOCK_OP_RW, 4);
	h.src_cid = 4;
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, VSOCK_OP_RW, 4);
	h.dst_cid = 1;
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, VSOCK_OP_RW, 4);
	h.type = 2; /* SEQPACKET: not offered */
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, 0, 0);
	tx_raw(f, &h, NULL, 0);
	h = ghdr(7, hport, 8, 0);
	tx_raw(f, &h, NULL, 0);
	h = ghdr(7, hport, VSOCK_OP_RW, 5); /* says 5, gives 4 */
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, VSOCK_OP_RW, 0xffffffff);
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, VSOCK_OP_CREDIT_UPDATE, 0); /* payload on a control op */
	tx_raw(f, &h, "abcd", 4);
	h = ghdr(7, hport, VSOCK_OP_SHUTDOWN, 0);
	h.flags = 4;
	tx_raw(f, &h, NULL, 0);
	h = ghdr(7, hport, VSOCK_OP_RW, 4);
	h.flags = 1;
	tx_raw(f, &h, "abcd", 4);
	{
		/* A header cut short, and a chain with a writable buffer. */
		struct vdrv_seg s = { vdrv_alloc(f->d, 20), 20, false };
		struct vdrv_seg w[2] = { { vdrv_alloc(f->d, 44), 44, false },
					 { vdrv_alloc(f->d, 44), 44, true } };
		uint16_t used = vdrv_used_idx(f->d, VSOCK_TXQ);

		vdrv_add(f->d, VSOCK_TXQ, &s, 1, false);
		h = ghdr(7, hport, VSOCK_OP_CREDIT_UPDATE, 0);
		vsock_hdr_encode(&h, vdrv_ptr(f->d, w[0].gpa, 44));
		vdrv_add(f->d, VSOCK_TXQ, w, 2, false);
		vdrv_kick(f->d, VSOCK_TXQ);
		assert_true(vdrv_wait_used(f->d, VSOCK_TXQ, (uint16_t)(used + 2)));
	}
	assert_int_equal(bad_count(f, "src_cid"), 1);
	assert_int_equal(bad_count(f, "dst_cid"), 1);
	assert_int_equal(bad_count(f, "type"), 1);
	assert_int_equal(bad_count(f, "op"), 2);
	assert_int_equal(bad_count(f, "len"), 3);
	assert_int_equal(bad_count(f, "flags"), 2);
	assert_int_equal(bad_count(f, "short"), 2);
	assert_int_equal(stat_int(f, "malformed"), 12);
	assert_false(vdrv_read(f->d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	/* None of it reached the client, and the connection still works. */
	tx(f, 7, hport, VSOCK_OP_RW, "ok", 2);
	host_read(fd, buf, 2);
	assert_memory_equal(buf, "ok", 2);
	/* A packet for no connection gets a RST, a RST for none nothing. */
	tx(f, 8, hport, VSOCK_OP_RW, "zz", 2);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 8);
	tx(f, 9, hport, VSOCK_OP_RST, NULL, 0);
	assert_true(rx_quiet(f, 200));
	assert_int_equal(stat_int(f, "unknown"), 1);
	close(fd);
}

/* Rx buffers the device cannot use are returned empty, not held: one with
 * room for a header only, one the device could not write. */
static void test_bad_rx(void **state)
{
	struct fixture *f = *state;
	struct vdrv_seg tiny = { vdrv_alloc(f->d, VSOCK_HDR_LEN), VSOCK_HDR_LEN, true };
	struct vdrv_seg ro = { vdrv_alloc(f->d, RXBUF), RXBUF, false };
	struct vsock_hdr h;
	uint32_t hport;
	char buf[8];
	int fd = host_connect(f, 11, &hport); /* uses one buffer, posts one */

	/* Buffers are used in ring order: 32 good ones, then these two, then
	 * a good one. */
	f->rx_gpa[vdrv_add(f->d, VSOCK_RXQ, &tiny, 1, false)] = tiny.gpa;
	f->rx_gpa[vdrv_add(f->d, VSOCK_RXQ, &ro, 1, false)] = ro.gpa;
	post_rx(f, 1);
	for (unsigned i = 0; i < 32; i++) { /* use up the good ones */
		tx(f, 11, hport, VSOCK_OP_CREDIT_REQUEST, NULL, 0);
		assert_true(vdrv_wait_used(f->d, VSOCK_RXQ, (uint16_t)(f->rx_seen + 1)));
		f->rx_seen++;
	}
	assert_int_equal(write(fd, "data", 4), 4);
	for (unsigned i = 0; i < 2; i++) {
		assert_true(vdrv_wait_used(f->d, VSOCK_RXQ, (uint16_t)(f->rx_seen + 1)));
		assert_int_equal(vdrv_used_elem(f->d, VSOCK_RXQ, f->rx_seen).len, 0);
		f->rx_seen++;
	}
	h = rx_next(f, buf, sizeof(buf));
	assert_int_equal(h.op, VSOCK_OP_RW);
	assert_memory_equal(buf, "data", 4);
	assert_int_equal(stat_int(f, "bad_rx_buffers"), 2);
	assert_false(vdrv_read(f->d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
	close(fd);
}

static void test_bad_hello(void **state)
{
	struct fixture *f = *state;
	const char *lines[] = { "CONNECT\n", "CONNECT x1\n", "connect 5\n", "CONNECT 99999999999\n",
				"CONNECT 1 2\n", "CONNECTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT 5\n" };

	for (unsigned i = 0; i < ARRAY_SIZE(lines); i++) {
		int fd = unix_connect(f->uds);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, lines[i], strlen(lines[i])), (ssize_t)strlen(lines[i]));
		assert_true(host_eof(fd));
		close(fd);
	}
	assert_int_equal(stat_int(f, "bad_hello"), (long long)ARRAY_SIZE(lines));
	assert_true(rx_quiet(f, 100));
	/* The guest refuses: the client's socket is closed. */
	{
		int fd = unix_connect(f->uds);
		struct vsock_hdr h;

		dprintf(fd, "CONNECT 4\n");
		h = rx_next(f, NULL, 0);
		assert_int_equal(h.op, VSOCK_OP_REQUEST);
		tx(f, 4, h.src_port, VSOCK_OP_RST, NULL, 0);
		assert_true(host_eof(fd));
		close(fd);
	}
	{
		struct vsock_parse_case {
			const char *s;
			bool ok;
			uint32_t port;
		} cases[] = { { "CONNECT 0", true, 0 }, { "CONNECT 4294967295", true, 4294967295u },
			      { "CONNECT 4294967296", false, 0 }, { "CONNECT ", false, 0 },
			      { "CONNECT -1", false, 0 }, { "CONNECT 00000000001", false, 0 } };

		for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
			uint32_t p = 12345;

			assert_int_equal(vsock_parse_connect(cases[i].s, strlen(cases[i].s), &p),
					 cases[i].ok);
			if (cases[i].ok)
				assert_int_equal(p, cases[i].port);
		}
	}
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *vd = f->d->vd;
	struct state_writer w;
	struct state_reader r;
	struct vsock_hdr h;
	uint32_t hport;
	int fd = host_connect(f, 42, &hport);
	uint64_t ev = vdrv_alloc(f->d, 8);
	struct vdrv_seg es = { ev, 8, true };
	char buf[8];

	vdrv_add(f->d, VSOCK_EVQ, &es, 1, false);
	vdrv_kick(f->d, VSOCK_EVQ);
	assert_true(rx_quiet(f, 100));
	assert_int_equal(vdrv_used_idx(f->d, VSOCK_EVQ), 0); /* no event yet */

	state_writer_init(&w);
	assert_int_equal(vd->dev.ops->save(&vd->dev, &w), 0);
	assert_int_equal(state_writer_error(&w), 0);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vd->dev.ops->load(&vd->dev, &r), 0);
	/* The host client sees its socket closed, the driver an event. */
	assert_true(host_eof(fd));
	close(fd);
	assert_true(vdrv_wait_used(f->d, VSOCK_EVQ, 1));
	assert_int_equal(vdrv_used_elem(f->d, VSOCK_EVQ, 0).len, 4);
	assert_int_equal(*(uint32_t *)vdrv_ptr(f->d, ev, 4), VSOCK_EVENT_TRANSPORT_RESET);
	assert_int_equal(stat_int(f, "transport_resets"), 1);
	/* The old connection is gone for the device too. */
	tx(f, 42, hport, VSOCK_OP_RW, "old", 3);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	/* A new connection works. */
	fd = host_connect(f, 43, &hport);
	tx(f, 43, hport, VSOCK_OP_RW, "new", 3);
	host_read(fd, buf, 3);
	assert_memory_equal(buf, "new", 3);
	close(fd);
	/* Another CID refuses the stream, and so does a cut one. */
	{
		uint8_t *bytes = malloc(w.len);

		memcpy(bytes, w.buf, w.len);
		bytes[w.len - 8] ^= 1; /* the CID's low byte */
		state_reader_init(&r, bytes, w.len);
		assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
		state_reader_init(&r, w.buf, w.len - 4);
		assert_int_not_equal(vd->dev.ops->load(&vd->dev, &r), 0);
		free(bytes);
	}
	state_writer_free(&w);
}

/* cellad's side of the connector, played by a thread: it answers a stale
 * request number first (the worker must drop it), then the real answer:
 * a connected socket for port 6000, a refusal for the others. */
struct relay_play {
	int fd;       /* our end of the connector */
	int peer;     /* the far end of the socket handed over for port 6000 */
	unsigned served;
};

static void relay_send(int fd, uint32_t seq, int32_t status, int pass)
{
	int32_t rep[2] = { (int32_t)seq, status };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { rep, sizeof(rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (pass >= 0) {
		struct cmsghdr *cm;

		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pass, sizeof(int));
	}
	assert_true(sendmsg(fd, &msg, 0) == sizeof(rep));
}

static void *relay_thread(void *arg)
{
	struct relay_play *r = arg;
	uint32_t req[2];

	while (recv(r->fd, req, sizeof(req), 0) == sizeof(req)) {
		int sv[2];

		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		relay_send(r->fd, req[0] - 1, 0, sv[0]); /* stale: dropped */
		close(sv[0]);
		close(sv[1]);
		if (req[1] == 6000) {
			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
			/* Before the reply: the test reads it once the guest
			 * has its RESPONSE, which the reply lets through. */
			__atomic_store_n(&r->peer, sv[1], __ATOMIC_RELEASE);
			relay_send(r->fd, req[0], 0, sv[0]);
			close(sv[0]);
		} else {
			relay_send(r->fd, req[0], -ECONNREFUSED, -1);
		}
		r->served++;
	}
	return NULL;
}

static void test_connector(void **state)
{
	const struct device_type *t = devtype_find("virtio-vsock");
	struct fixture *f = calloc(1, sizeof(*f));
	struct relay_play r = { .peer = -1 };
	struct vsock_config cfg = { .cid = CID };
	char uds[32], con[32], buf[8];
	struct vsock_hdr h;
	pthread_t th;
	int sv[2], lfd;

	(void)state;
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		/* An abstract listening socket, given as fd:N as cellad does. */
		snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "cella-vsock-test-%d", getpid());
		assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(listen(lfd, 4), 0);
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	r.fd = sv[0];
	snprintf(uds, sizeof(uds), "fd:%d", lfd);
	snprintf(con, sizeof(con), "fd:%d", sv[1]);
	cfg.uds = uds;
	cfg.connector = con;
	f->d = vdrv_new();
	assert_int_equal(t->create(&f->d->vm, 0, &cfg), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	post_rx(f, 8);
	assert_int_equal(pthread_create(&th, NULL, relay_thread, &r), 0);

	tx(f, 90, 6000, VSOCK_OP_REQUEST, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RESPONSE);
	tx(f, 90, 6000, VSOCK_OP_RW, "via", 3);
	host_read(__atomic_load_n(&r.peer, __ATOMIC_ACQUIRE), buf, 3);
	assert_memory_equal(buf, "via", 3);
	tx(f, 91, 6001, VSOCK_OP_REQUEST, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 91);
	assert_int_equal(stat_int(f, "guest_connects"), 1);
	assert_int_equal(stat_int(f, "refused"), 1);

	vdrv_free(f->d); /* closes the worker's end: the thread ends */
	pthread_join(th, NULL);
	assert_int_equal(r.served, 2);
	close(r.peer);
	close(sv[0]);
	free(f);
}

/* A guest that never answers a host client's REQUEST: the client's socket
 * is closed after connect_timeout_ms and the guest gets a RST. */
static void test_connect_timeout(void **state)
{
	const struct device_type *t = devtype_find("virtio-vsock");
	struct fixture *f = calloc(1, sizeof(*f));
	struct conf_err e;
	struct vsock_hdr h;
	char spec[256];
	int fd;

	(void)state;
	strcpy(f->dir, "/tmp/cella-vsock-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->uds, sizeof(f->uds), "%s/v.sock", f->dir);
	f->cfg = calloc(1, t->config_size);
	snprintf(spec, sizeof(spec), "cid=%d,uds=%s,connect_timeout_ms=200", CID, f->uds);
	assert_int_equal(conf_from_string(t->config_schema, f->cfg, spec, &e), 0);
	f->d = vdrv_new();
	assert_int_equal(t->create(&f->d->vm, 0, f->cfg), 0);
	vdrv_bind(f->d);
	vdrv_start_loop(f->d);
	assert_true(vdrv_init(f->d, F_V1) & VIRTIO_CONFIG_S_DRIVER_OK);
	post_rx(f, 8);
	fd = unix_connect(f->uds);
	assert_true(fd >= 0);
	dprintf(fd, "CONNECT 77\n");
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_REQUEST);
	assert_true(host_eof(fd)); /* within host_eof's 20 s guard */
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	assert_int_equal(h.dst_port, 77);
	assert_int_equal(stat_int(f, "timeouts"), 1);
	/* The guest's late answer finds no connection: RST again. */
	tx(f, 77, h.src_port, VSOCK_OP_RESPONSE, NULL, 0);
	h = rx_next(f, NULL, 0);
	assert_int_equal(h.op, VSOCK_OP_RST);
	close(fd);
	*state = f;
	teardown(state);
}

/* The pure parts: header coding round trip, each check, the credit sum
 * across counter wrap-around. */
static void test_pkt(void **state)
{
	struct vsock_hdr h = { .src_cid = CID, .dst_cid = 2, .src_port = 0xdeadbeef,
			       .dst_port = 5, .len = 3, .type = 1, .op = VSOCK_OP_RW,
			       .buf_alloc = 1000, .fwd_cnt = 7 }, back;
	uint8_t raw[VSOCK_HDR_LEN], raw2[VSOCK_HDR_LEN];

	(void)state;
	vsock_hdr_encode(&h, raw);
	assert_int_equal(raw[0], CID);
	assert_int_equal(raw[16], 0xef); /* little-endian */
	vsock_hdr_decode(raw, &back);
	assert_int_equal(back.src_port, 0xdeadbeef);
	assert_int_equal(back.fwd_cnt, 7);
	vsock_hdr_encode(&back, raw2);
	assert_memory_equal(raw, raw2, VSOCK_HDR_LEN);
	assert_int_equal(vsock_hdr_check(&h, CID, 3), VSOCK_OK);
	assert_int_equal(vsock_hdr_check(&h, CID, 4), VSOCK_BAD_LEN);
	assert_int_equal(vsock_hdr_check(&h, CID + 1, 3), VSOCK_BAD_SRC_CID);
	h.len = VSOCK_MAX_PAYLOAD + 1;
	assert_int_equal(vsock_hdr_check(&h, CID, VSOCK_MAX_PAYLOAD + 1), VSOCK_BAD_LEN);
	h.len = 0;
	h.op = VSOCK_OP_SHUTDOWN;
	h.flags = 3;
	assert_int_equal(vsock_hdr_check(&h, CID, 0), VSOCK_OK);
	h.flags = 0;
	assert_int_equal(vsock_hdr_check(&h, CID, 0), VSOCK_BAD_FLAGS);
	assert_int_equal(vsock_peer_free(1000, 0, 400), 600);
	assert_int_equal(vsock_peer_free(1000, 0, 1000), 0);
	assert_int_equal(vsock_peer_free(100, 0, 400), 0); /* buf_alloc shrunk */
	assert_int_equal(vsock_peer_free(1000, 0xfffffff0u, 0x10), 968); /* wrapped */
}

static void test_bad_config(void **state)
{
	const struct device_type *t = devtype_find("virtio-vsock");
	struct vsock_config cfg = { .cid = 2, .uds = "/tmp/cella-vsock-nonexistent/x" };
	struct vdrv *d = vdrv_new();

	(void)state;
	assert_int_equal(t->create(&d->vm, 0, &cfg), -EINVAL); /* CID 2 is the host's */
	cfg.cid = 3;
	assert_true(t->create(&d->vm, 0, &cfg) < 0); /* no such directory */
	cfg.uds = "fd:0";
	assert_int_equal(t->create(&d->vm, 0, &cfg), -ENOTSOCK);
	vdrv_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_to_guest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_to_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_credit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_rx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test(test_pkt),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_connector),
		cmocka_unit_test(test_connect_timeout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
