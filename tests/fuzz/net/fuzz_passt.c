/* fuzz_passt.c: passt's stream framing (vmm/backend/passt.c) on arbitrary
 * bytes, delivered in arbitrary pieces with EAGAIN between them, into
 * guest buffers of varying sizes; then a tx/rx round trip of a frame cut
 * from the input over a real socket pair. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend/passt.h"

struct feed {
	const uint8_t *data;
	size_t size, off;
	uint8_t step; /* piece size pattern */
	unsigned calls;
};

static ssize_t feed_read(void *opaque, void *buf, size_t len)
{
	struct feed *f = opaque;
	size_t piece;

	f->calls++;
	if (f->calls % 5 == 0) { /* a dry socket now and then */
		errno = EAGAIN;
		return -1;
	}
	if (f->off >= f->size)
		return 0; /* the stream ends */
	piece = 1 + (size_t)((f->step * f->calls) % 97) * 131;
	if (piece > len)
		piece = len;
	if (piece > f->size - f->off)
		piece = f->size - f->off;
	memcpy(buf, f->data + f->off, piece);
	f->off += piece;
	return (ssize_t)piece;
}

static void roundtrip(const uint8_t *data, size_t size)
{
	static uint8_t out[12 + PASST_FRAME_MAX];
	struct passt_stream tx, rx;
	struct iovec iov[2];
	int sv[2];
	ssize_t n;

	if (size < PASST_FRAME_MIN || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return;
	if (size > 4000)
		size = 4000; /* within the socket's buffer: no partial write here */
	if (passt_stream_init(&tx, sv[0], "fuzz-tx")) {
		close(sv[1]);
		return;
	}
	if (passt_stream_init(&rx, sv[1], "fuzz-rx")) {
		passt_stream_destroy(&tx);
		return;
	}
	iov[0].iov_base = (void *)data;
	iov[0].iov_len = 12;
	iov[1].iov_base = (void *)(data + 12);
	iov[1].iov_len = size - 12;
	n = passt_writev(&tx, iov, 2, 12);
	if (size - 12 >= PASST_FRAME_MIN) {
		if (n != (ssize_t)(size - 12))
			abort();
		iov[0].iov_base = out;
		iov[0].iov_len = sizeof(out);
		n = passt_readv(&rx, iov, 1, 12);
		if (n != (ssize_t)size || memcmp(out + 12, data + 12, size - 12))
			abort();
	} else if (n != -1 || errno != EMSGSIZE) {
		abort();
	}
	passt_stream_destroy(&tx);
	passt_stream_destroy(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t small[1526], big[12 + PASST_FRAME_MAX];
	struct feed f = { .data = data + (size ? 1 : 0), .size = size ? size - 1 : 0,
			  .step = size ? data[0] : 1 };
	struct passt_stream ps;
	int sv[2];

	/* A real socket for init's checks; bytes come from the feed. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 0;
	close(sv[1]);
	if (passt_stream_init(&ps, sv[0], "fuzz"))
		return 0;
	ps.read = feed_read;
	ps.read_opaque = &f;
	for (unsigned i = 0; i < 100000; i++) {
		struct iovec iov[2];
		bool use_big = (i + f.step) % 3 == 0;
		size_t room;
		ssize_t n;

		iov[0].iov_base = use_big ? big : small;
		iov[0].iov_len = 12;
		iov[1].iov_base = (use_big ? big : small) + 12;
		iov[1].iov_len = (use_big ? sizeof(big) : sizeof(small)) - 12;
		room = iov[0].iov_len + iov[1].iov_len;
		n = passt_readv(&ps, iov, 2, 12);
		if (n >= 0 && ((size_t)n > room || n < 12 + PASST_FRAME_MIN))
			abort();
		if (n < 0 && errno == EPIPE)
			break;
		if (n < 0 && errno != EAGAIN && errno != EMSGSIZE)
			abort();
	}
	if (!ps.down)
		abort(); /* every input ends: the stream must be down by now */
	passt_stream_destroy(&ps);
	roundtrip(data, size);
	return 0;
}
