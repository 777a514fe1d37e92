/* test_passt.c: passt's stream framing (vmm/backend/passt.c) over a real
 * socket pair: frames out and back with the vnet header skipped and zeroed,
 * a frame the socket takes in part finished in order (and the next one
 * refused meanwhile), runts skipped, a frame too big for the guest buffer
 * dropped, and the stream going down on an oversized length or a cut. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/passt.h"

#define HDR 12

struct pair {
	struct passt_stream tx, rx;
};

static void pair_open(struct pair *p)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(passt_stream_init(&p->tx, sv[0], "tx"), 0);
	assert_int_equal(passt_stream_init(&p->rx, sv[1], "rx"), 0);
}

static void pair_close(struct pair *p)
{
	passt_stream_destroy(&p->tx);
	passt_stream_destroy(&p->rx);
}

static ssize_t send_frame(struct passt_stream *ps, const uint8_t *frame, size_t len)
{
	uint8_t hdr[HDR];
	struct iovec iov[2] = { { hdr, HDR }, { (void *)frame, len } };

	memset(hdr, 0xee, sizeof(hdr)); /* whatever the guest wrote: not sent */
	return passt_writev(ps, iov, 2, HDR);
}

static ssize_t recv_frame(struct passt_stream *ps, uint8_t *buf, size_t room)
{
	struct iovec iov[2] = { { buf, 5 }, { buf + 5, room - 5 } }; /* header split */

	return passt_readv(ps, iov, 2, HDR);
}

static void test_round_trip(void **st)
{
	static uint8_t out[HDR + PASST_FRAME_MAX];
	uint8_t small[60];
	struct pair p;

	(void)st;
	pair_open(&p);
	for (size_t i = 0; i < sizeof(small); i++)
		small[i] = (uint8_t)i;
	assert_int_equal(send_frame(&p.tx, small, sizeof(small)), sizeof(small));
	memset(out, 0xaa, sizeof(out));
	assert_int_equal(recv_frame(&p.rx, out, sizeof(out)), HDR + sizeof(small));
	for (int i = 0; i < HDR; i++)
		assert_int_equal(out[i], 0); /* no offloads: a zero header */
	assert_memory_equal(out + HDR, small, sizeof(small));
	assert_int_equal(recv_frame(&p.rx, out, sizeof(out)), -1);
	assert_int_equal(errno, EAGAIN);
	/* Too short or too long for the protocol: refused, nothing sent. */
	assert_int_equal(send_frame(&p.tx, small, 13), -1);
	assert_int_equal(errno, EMSGSIZE);
	pair_close(&p);
}

/* A full socket: the frame goes out in part, the rest follows before any
 * other frame, and the reader sees every frame whole and in order. */
static void test_partial_write(void **st)
{
	static uint8_t frame[9000], out[HDR + PASST_FRAME_MAX];
	unsigned sent = 0, refused = 0, got = 0;
	int small = 4096;
	struct pair p;

	(void)st;
	pair_open(&p);
	setsockopt(p.tx.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(p.rx.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	for (unsigned n = 0; n < 200 && !p.tx.wlen; n++) {
		memset(frame, (int)n, sizeof(frame));
		assert_int_equal(send_frame(&p.tx, frame, sizeof(frame)), sizeof(frame));
		sent++;
	}
	assert_true(p.tx.wlen > 0); /* a frame is part way */
	memset(frame, 0xff, sizeof(frame));
	if (send_frame(&p.tx, frame, sizeof(frame)) < 0) {
		assert_int_equal(errno, EAGAIN);
		refused++;
	}
	/* Drain the reader, flushing the writer as room appears. */
	for (int rounds = 0; rounds < 100000 && got < sent; rounds++) {
		ssize_t n = recv_frame(&p.rx, out, sizeof(out));

		(void)passt_flush(&p.tx);
		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			continue;
		}
		assert_int_equal(n, HDR + sizeof(frame));
		assert_int_equal(out[HDR], (uint8_t)got);
		assert_int_equal(out[HDR + sizeof(frame) - 1], (uint8_t)got);
		got++;
	}
	assert_int_equal(got, sent);
	assert_int_equal(p.tx.wlen, 0);
	assert_int_equal(refused, 1);
	assert_false(p.tx.down || p.rx.down);
	pair_close(&p);
}

static void put_len(uint8_t *b, uint32_t len)
{
	b[0] = (uint8_t)(len >> 24);
	b[1] = (uint8_t)(len >> 16);
	b[2] = (uint8_t)(len >> 8);
	b[3] = (uint8_t)len;
}

/* Hand-written bytes into the rx side. */
static void raw_open(struct passt_stream *rx, int *raw)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(passt_stream_init(rx, sv[0], "rx"), 0);
	*raw = sv[1];
}

static void test_runt_and_too_big(void **st)
{
	uint8_t b[4 + 3 + 4 + 200 + 4 + 20], out[HDR + 100];
	struct passt_stream rx;
	size_t o = 0;
	int raw;

	(void)st;
	raw_open(&rx, &raw);
	put_len(b + o, 3), o += 4 + 3;     /* runt: skipped */
	put_len(b + o, 200), o += 4;       /* bigger than the guest buffer: dropped */
	memset(b + o, 1, 200), o += 200;
	put_len(b + o, 20), o += 4;        /* fits */
	memset(b + o, 2, 20), o += 20;
	assert_int_equal(write(raw, b, o), (ssize_t)o);
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_int_equal(rx.rx_dropped, 1);
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), HDR + 20);
	assert_int_equal(out[HDR + 19], 2);
	assert_false(rx.down);
	close(raw);
	passt_stream_destroy(&rx);
}

static int downs;
static void on_down(void *opaque)
{
	(void)opaque;
	downs++;
}

static void test_oversized_length(void **st)
{
	uint8_t b[4], out[HDR + 100];
	struct passt_stream rx;
	int raw;

	(void)st;
	raw_open(&rx, &raw);
	downs = 0;
	rx.on_down = on_down;
	put_len(b, PASST_FRAME_MAX + 1);
	assert_int_equal(write(raw, b, 4), 4);
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), -1);
	assert_int_equal(errno, EPIPE);
	assert_true(rx.down);
	assert_non_null(strstr(rx.down_reason, "over the maximum"));
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), -1); /* stays down, says it once */
	assert_int_equal(downs, 1);
	close(raw);
	passt_stream_destroy(&rx);
}

static void test_cut(void **st)
{
	uint8_t b[4 + 10], out[HDR + 100];
	struct passt_stream rx;
	int raw;

	(void)st;
	raw_open(&rx, &raw);
	put_len(b, 60);
	memset(b + 4, 3, 10);
	assert_int_equal(write(raw, b, sizeof(b)), (ssize_t)sizeof(b));
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), -1);
	assert_int_equal(errno, EAGAIN); /* part of a frame: wait */
	close(raw);
	assert_int_equal(recv_frame(&rx, out, sizeof(out)), -1);
	assert_int_equal(errno, EPIPE);
	assert_non_null(strstr(rx.down_reason, "cut inside a frame (10 of 60 bytes)"));
	/* And writing to a stream whose peer went away: down, no SIGPIPE. */
	assert_int_equal(send_frame(&rx, out, 60), -1);
	assert_int_equal(errno, EPIPE);
	passt_stream_destroy(&rx);
}

static void test_parse_fd(void **st)
{
	(void)st;
	assert_int_equal(passt_parse_fd("fd:7"), 7);
	assert_int_equal(passt_parse_fd("fd:"), -EINVAL);
	assert_int_equal(passt_parse_fd("fd:7x"), -EINVAL);
	assert_int_equal(passt_parse_fd("/run/passt.sock"), -EINVAL);
	assert_int_equal(passt_parse_fd("fd:-1"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_partial_write),
		cmocka_unit_test(test_runt_and_too_big),
		cmocka_unit_test(test_oversized_length),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_parse_fd),
	};

	return cmocka_run_group_tests_name("passt", tests, NULL, NULL);
}
