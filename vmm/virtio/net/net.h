/* net.h: virtio-net device state and a constructor over any packet fd,
 * shared by net.c and its unit tests. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "virtio/mmio.h"

#define NET_QUEUE_SIZE 256
#define NET_RXQ 0
#define NET_TXQ 1
/* Frames handled per wake-up of one direction, so rx and tx share the loop. */
#define NET_BURST 64

struct net_config;
struct passt_stream;

struct net_dev {
	struct virtio_dev vd; /* first: the transport frees the whole object */
	int fd;               /* tap (or, in tests, a SOCK_SEQPACKET socket) */
	bool fd_watched;      /* rx: the fd is in the I/O loop */
	uint64_t rx_frames, tx_frames, dropped;
	struct virtq_chain *chain;
	struct passt_stream *passt; /* non-NULL: fd speaks passt's framing (net_passt.c) */
};

_Static_assert(offsetof(struct net_dev, vd) == 0, "transport frees the device through vd");

/* virtio-net on an already open, non-blocking fd that carries one frame,
 * prefixed with a 12-byte virtio_net_hdr_v1, per read/write (a tap with
 * IFF_VNET_HDR, or a SOCK_SEQPACKET socket in tests). Takes ownership of
 * fd, also on failure. Returns 0 or -errno. */
int virtio_net_create_fd(struct vm *vm, const struct net_config *cfg, unsigned index,
			 int fd) __must_check;

/* The same over a back end that is not a tap: passt non-NULL, fd its
 * socket (both owned from now on, also on failure). */
int virtio_net_create_be(struct vm *vm, const struct net_config *cfg, unsigned index, int fd,
			 struct passt_stream *passt) __must_check;
/* net_passt.c: a NIC on passt's stream (cfg->passt_fd), and its teardown. */
int virtio_net_create_passt(struct vm *vm, const struct net_config *cfg,
			    unsigned index) __must_check;
void net_passt_bind(struct net_dev *net);
void net_passt_destroy(struct net_dev *net);
