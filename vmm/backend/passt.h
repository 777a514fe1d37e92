/* passt.h: a virtio-net back end over a connected SOCK_STREAM unix socket
 * speaking passt's qemu framing (each frame: a 4-byte big-endian length,
 * then the Ethernet frame). No vnet-header offloads: the 12-byte header
 * virtio-net expects is zero on rx and dropped on tx. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "compiler.h"

/* Largest frame either side may send: passt's own ceiling (65520-byte
 * MTU plus the Ethernet header) rounded up. A length above it ends the
 * stream: the peer is not speaking this protocol. */
#define PASST_FRAME_MAX 65536
/* Smallest: an Ethernet header. Shorter frames are dropped, not fatal. */
#define PASST_FRAME_MIN 14

struct evloop;

/* Where received bytes come from: read(2) on the socket, or a fuzzer. */
typedef ssize_t (*passt_read_fn)(void *opaque, void *buf, size_t len);

struct passt_stream {
	int fd;
	const char *who;          /* log prefix ("virtio-net0") */
	passt_read_fn read;       /* NULL: read(fd) */
	void *read_opaque;
	/* rx: a frame being assembled across partial reads */
	uint8_t hdr[4];
	size_t hdr_got;
	uint32_t frame_len;
	size_t frame_got;
	uint8_t *rbuf;            /* PASST_FRAME_MAX bytes */
	/* tx: the rest of a frame the socket took only part of */
	uint8_t *wbuf;            /* 4 + PASST_FRAME_MAX bytes */
	size_t wlen, woff;
	/* tx flush when the socket drains: a dup of fd watched for EPOLLOUT */
	struct evloop *loop;
	pthread_mutex_t *lock;
	int out_fd;
	bool out_watched;
	bool down;                /* stream cut or broken: the link stays down */
	void (*on_down)(void *opaque); /* called once, lock held, when it goes down */
	void *down_opaque;
	char down_reason[128];
	uint64_t rx_frames, tx_frames, rx_dropped, tx_dropped;
};

/* Set up over fd (owned from now on, also on failure). Returns 0 or -errno. */
int passt_stream_init(struct passt_stream *ps, int fd, const char *who) __must_check;
/* Parse "fd:N" (an inherited, connected socket). Returns the fd or -EINVAL. */
int passt_parse_fd(const char *spec);
/* Let a partly written frame finish when the socket drains, on loop, taking
 * lock (the device's) around the flush. Returns 0 or -errno. */
int passt_stream_attach(struct passt_stream *ps, struct evloop *loop,
			pthread_mutex_t *lock) __must_check;
void passt_stream_destroy(struct passt_stream *ps);

/* readv-like: one whole frame into iov, after `skip` zeroed bytes (the
 * vnet header). Returns skip + frame length; -1 with errno EAGAIN when no
 * whole frame is there yet, EMSGSIZE when the frame was longer than iov
 * (it is dropped and counted), EPIPE once the stream is down (a log line
 * says why, once). */
ssize_t passt_readv(struct passt_stream *ps, const struct iovec *iov, unsigned nr,
		    size_t skip);
/* writev-like: the frame in iov after `skip` bytes, with its length prefix.
 * A frame the socket takes in part is finished later (in order); while one
 * is pending a new frame is refused with EAGAIN (dropped, as a full NIC
 * would). Returns the frame length, or -1 with errno EAGAIN, EMSGSIZE
 * (outside PASST_FRAME_MIN..MAX) or EPIPE (down). */
ssize_t passt_writev(struct passt_stream *ps, const struct iovec *iov, unsigned nr,
		     size_t skip);
/* Write out a pending partial frame. Returns 0 when none is left, -EAGAIN,
 * or -EPIPE. */
int passt_flush(struct passt_stream *ps);
