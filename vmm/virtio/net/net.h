/* net.h: virtio-net device state and a constructor over any packet fd,
 * shared by net.c, its helpers (net_be.c, net_hdr.c, net_rx.c, net_ctrl.c)
 * and its unit tests. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <linux/virtio_net.h>

#include "compiler.h"
#include "virtio/mmio.h"

#define NET_QUEUE_SIZE 1024
/* Queue pairs (one tap queue each, VIRTIO_NET_F_MQ): rx 2p, tx 2p + 1,
 * then the control queue; within the transport's VIRTIO_MAX_QUEUES. */
#define NET_MAX_PAIRS 3
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_CTRLQ 2 /* without MQ (or with one pair); with MQ it is 2 * pairs */
#define NET_NR_QUEUES (2 * NET_MAX_PAIRS + 1)
/* Frames handled per wake-up of one direction, so rx and tx share the loop. */
#define NET_BURST 64
/* Frames sent per wake-up of a tx queue before other work gets a turn. */
#define NET_TX_BUDGET 256
/* Used entries returned before the driver is shown them (one store of
 * the used index per batch). */
#define NET_USED_BATCH 16
/* rx interrupt moderation on the back end's side: a wake-up that took at
 * least NET_RX_COALESCE_MIN frames and emptied the back end waits
 * NET_RX_COALESCE_US on a timer before it looks again, instead of waking
 * for the next frame (net_rx_coalesce.c). */
#define NET_RX_COALESCE_MIN 8
#define NET_RX_COALESCE_US 50
/* Receive chains one frame may span with VIRTIO_NET_F_MRG_RXBUF. */
#define NET_MRG_CHAINS 48
/* Guest segments one frame may span: with the header and the spill
 * buffer, within readv's IOV_MAX (1024). */
#define NET_RX_SEGS 1020
#define NET_HDR_LEN sizeof(struct virtio_net_hdr_v1)
#define NET_ETH_HLEN 14
#define NET_VLAN_HLEN 4
/* Largest frame with segmentation offloads (an IP datagram of 64 KiB, its
 * Ethernet header and one 802.1Q tag). */
#define NET_GSO_MAX (65535 + NET_ETH_HLEN + NET_VLAN_HLEN)
#define NET_MTU_DEFAULT 1500
#define NET_MTU_MIN 68
#define NET_MTU_MAX 65535

/* TUN_F_* offload bits (linux/if_tun.h) a back end can take. */
#define NET_BE_TUN_CSUM 0x01
#define NET_BE_TUN_TSO4 0x02
#define NET_BE_TUN_TSO6 0x04
#define NET_BE_TUN_ECN  0x08
#define NET_BE_TUN_UFO  0x10

struct net_config;
struct passt_stream;

/* Why a frame was dropped: counted per reason, logged once per reason. */
enum net_drop {
	NET_DROP_TX_SHORT,      /* guest frame shorter than an Ethernet header */
	NET_DROP_TX_LONG,       /* guest frame past the MTU (or 64 KiB with GSO) */
	NET_DROP_TX_HDR,        /* malformed vnet header (flags, gso, csum offsets) */
	NET_DROP_TX_IO,         /* the back end refused it (full, or invalid) */
	NET_DROP_TX_VLAN,       /* access port: the guest sent a tagged frame */
	NET_DROP_RX_SHORT,      /* runt from the back end */
	NET_DROP_RX_TRUNC,      /* frame larger than the buffers the guest posted */
	NET_DROP_RX_VLAN,       /* access port: untagged or another VLAN */
	NET_DROP_RX_HDR,        /* back end header we cannot pass on */
	NET_DROP_CTRL,          /* malformed control-queue request */
	NET_DROP_MAX
};

/* The back end: where frames, each prefixed with a 12-byte
 * virtio_net_hdr_v1, are read and written. Today a tap (IFF_VNET_HDR) or,
 * in tests and fuzzing, a SOCK_SEQPACKET socket; other frame back ends hook
 * in at net_be_readv / net_be_writev (net_be.c). */
struct net_be {
	int fd;
	bool is_tap;        /* TUNSETOFFLOAD applies */
	unsigned offloads;  /* NET_BE_TUN_* it can take; 0: no offload features offered */
	unsigned applied;   /* TUN_F_* last set on it */
	struct passt_stream *passt; /* non-NULL: fd speaks passt's framing (net_passt.c) */
};

struct net_dev;

/* One queue pair and its back-end queue (a tap queue fd). */
struct net_queue {
	struct net_dev *net;
	unsigned pair;
	struct net_be be;
	bool fd_watched;      /* rx: the fd is in the I/O loop */
	bool detached;        /* tap queue detached (pair not in use) */
	struct virtq_chain *chain;         /* tx */
	struct virtq_chain *rxc;           /* NET_MRG_CHAINS receive chains */
	struct iovec *rx_iov;              /* gathered rx segments (NET_RX_SEGS) */
	struct iovec *rx_io;               /* what readv gets (NET_RX_SEGS + 2) */
	uint8_t *rx_spill;                 /* tail of a frame larger than the posted buffers */
	int rx_timer_fd;      /* net_rx_coalesce.c's timerfd (-1 none) */
	bool rx_timer_watched; /* rx_timer_fd is in the I/O loop */
	bool rx_waiting;      /* the timer is armed: the fd is not watched meanwhile */
	uint64_t rx_coalesced; /* turns that waited for the timer */
};

struct net_dev {
	struct virtio_dev vd; /* first: the transport frees the whole object */
	struct net_queue q[NET_MAX_PAIRS];
	unsigned nr_pairs;    /* back-end queues, max_virtqueue_pairs */
	unsigned active_pairs; /* VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (1 until then) */
	bool offloads_set;    /* the back end's rx offloads match the driver's features */
	uint16_t vlan;        /* 1..4094: access VLAN (tag on tx, strip and filter on rx); 0 none */
	bool vlan_trunk;      /* tags pass untouched (for documentation: same as vlan 0) */
	uint16_t mtu;
	uint8_t mac[6];
	uint64_t rx_frames, tx_frames, dropped;
	uint64_t drops[NET_DROP_MAX];
	uint32_t drops_logged; /* bit per enum net_drop */
	uint64_t announces;
	uint8_t guest_ip4[4]; /* learnt from the guest's ARP, for gratuitous ARP */
	bool has_ip4;
	uint8_t guest_ip6[16]; /* learnt from its NA or DAD NS, for an unsolicited NA */
	bool has_ip6;
	struct virtq_chain *ctrl_chain;
};

_Static_assert(offsetof(struct net_dev, vd) == 0, "transport frees the device through vd");

/* virtio-net on an already open, non-blocking fd that carries one frame,
 * prefixed with a 12-byte virtio_net_hdr_v1, per read/write (a tap with
 * IFF_VNET_HDR, or a SOCK_SEQPACKET socket in tests). Takes ownership of
 * fd, also on failure. A tap's offloads are probed; other fds get none.
 * Returns 0 or -errno. */
int virtio_net_create_fd(struct vm *vm, const struct net_config *cfg, unsigned index,
			 int fd) __must_check;
/* The same over nr fds (one per queue pair, nr <= NET_MAX_PAIRS; more
 * than one offers VIRTIO_NET_F_MQ) with the back end's offloads given
 * (NET_BE_TUN_*), for tests and fuzzing over sockets that pass headers
 * untouched; is_tap: the fds are queues of one tap. Takes ownership of the
 * fds, also on failure. */
int virtio_net_create_be(struct vm *vm, const struct net_config *cfg, unsigned index,
			 const int *fds, unsigned nr, unsigned offloads, bool is_tap) __must_check;

/* net_passt.c: a NIC on passt's stream (cfg->passt_fd): one queue pair, no
 * offloads; and the stream's teardown (net_destroy). */
int virtio_net_create_passt(struct vm *vm, const struct net_config *cfg,
			    unsigned index) __must_check;
void net_passt_destroy(struct net_queue *nq);

/* net_be.c: the back end boundary. Both return bytes moved (header
 * included) or -errno; non-blocking. */
ssize_t net_be_readv(struct net_be *be, const struct iovec *iov, unsigned nr);
ssize_t net_be_writev(struct net_be *be, const struct iovec *iov, unsigned nr);
/* Tell the back end which offloads it may deliver (TUN_F_* from the
 * driver's GUEST_* features). Returns 0 or -errno. */
int net_be_set_offload(struct net_be *be, unsigned tun_flags) __must_check;
/* What a tap fd can take: NET_BE_TUN_* (0 for other fds). */
unsigned net_be_probe(int fd, bool *is_tap);
/* Attach or detach a tap queue (TUNSETQUEUE), so the kernel steers
 * frames only to the pairs the driver uses. 0 or -errno; no-op for other
 * back ends. */
int net_be_set_queue(struct net_be *be, bool attach) __must_check;

/* net_hdr.c: frame and header checks, VLAN tags (pure functions). */
/* Check a tx header the guest wrote (already copied out of guest memory)
 * for a frame of frame_len bytes against the negotiated features; on
 * success the header is normalised for the back end (num_buffers 0).
 * Returns NULL when fine, else a static reason. */
const char *net_hdr_check_tx(struct virtio_net_hdr_v1 *h, size_t frame_len,
			     uint64_t features);
/* Shift a header's offsets by delta bytes (a tag inserted: +4, removed:
 * -4). Returns false when an offset would leave the frame. */
bool net_hdr_shift(struct virtio_net_hdr_v1 *h, int delta);
/* TUN_F_* for the driver's GUEST_* features. */
unsigned net_tun_flags(uint64_t features);
/* Feature bits to offer for a back end's NET_BE_TUN_* set. */
uint64_t net_offload_features(unsigned be_offloads);
/* Largest frame (no vnet header) the guest may send / may be sent. */
size_t net_frame_max_tx(const struct net_dev *net);
size_t net_frame_max_rx(const struct net_dev *net);

/* Count a dropped frame; log the first of each reason (lock held). */
void net_drop(struct net_dev *net, enum net_drop why, const char *detail);

/* Watch a pair's back-end fd for rx while the guest has buffers (net.c). */
void net_watch_fd(struct net_queue *nq, bool on);
/* Use pairs [0, n) (VQ_PAIRS_SET, reset, load); lock held. */
void net_set_pairs(struct net_dev *net, unsigned n);

/* net_rx.c: move frames from a pair's back end into its rx queue (lock held). */
void net_rx(struct net_queue *nq);

/* net_rx_coalesce.c. net_rx took `frames` and emptied the back end: arm the
 * timer and return true when the next look should wait for it (the caller
 * then stops watching the fd); false to watch the fd as usual. */
bool net_rx_coalesce(struct net_queue *nq, unsigned frames);
/* The timer, made at creation (the sandbox allows no timerfd_create
 * later); 0 or -errno. And its removal. */
int net_rx_coalesce_init(struct net_queue *nq) __must_check;
void net_rx_coalesce_free(struct net_queue *nq);
/* net_ctrl.c: process the control queue, virtqueue q (lock held). */
void net_ctrl(struct net_dev *net, unsigned q);
/* Announce the guest after a migration: S_ANNOUNCE and a config interrupt
 * for a driver with GUEST_ANNOUNCE, else a RARP from its MAC on the back
 * end (lock held). */
void net_announce(struct net_dev *net);
/* Learn the guest's IPv4 address (its ARP) and IPv6 address (its
 * neighbour advertisements and duplicate address detection) from a tx
 * frame: iov[0..nr) holds the vnet header, then frame_len bytes. */
void net_learn_addr(struct net_dev *net, const struct iovec *iov, unsigned nr, size_t frame_len);
/* Build the RARP frame (60 bytes, QEMU's layout) from mac into buf. */
size_t net_rarp_frame(const uint8_t mac[6], uint8_t *buf, size_t len);
