/* vsock.h: virtio-vsock (device id 19) with a Unix-socket host side, as
 * Firecracker's "hybrid vsock". Shared by the device's files.
 *
 * Queues: rx 0 (device to guest), tx 1 (guest to device), event 2. The
 * config space holds the guest's CID (le64). Stream sockets only.
 *
 * Host side. A listening Unix socket (`uds`): a host client connects and
 * writes "CONNECT <port>\n"; the device sends the guest a REQUEST from a
 * host port it picks (1 << 30 and up) and, once the guest answers
 * RESPONSE, writes "OK <hostport>\n" back; from then on bytes flow both
 * ways. A guest RST, or no answer within VSOCK_CONNECT_TIMEOUT_MS, closes
 * the client's socket. A guest REQUEST to host port P is connected to the
 * Unix socket "<uds>_P" (by name when cella-vm runs by hand; through the
 * `connector` descriptor, answered by cellad, in the sandbox: see
 * docs/security.md), and answered RESPONSE, or RST when nobody listens.
 *
 * Flow control. Each connection advertises VSOCK_CONN_BUF bytes of buffer
 * to the guest and counts what it forwarded to the host socket (fwd_cnt);
 * a guest that sends more than that credit is reset. Towards the guest the
 * device sends no more than the guest's buf_alloc - (sent - fwd_cnt).
 *
 * Threading. Everything runs on the VM's I/O thread with vd->lock held.
 * A reset (driver Status 0, on a vCPU thread) may not wait for the loop,
 * so it only marks its connections dead and shuts their sockets down: the
 * shutdown wakes each socket's watch on the loop, which unregisters and
 * closes it (host clients see EOF at once either way).
 *
 * Save and restore. No connection survives: the stream holds the
 * transport's queues and the CID; the restored device sends the driver a
 * TRANSPORT_RESET event (as Firecracker does), and the host's clients of
 * the saved VM see their sockets closed when it exits.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "virtio/mmio.h"
#include "virtio/vsock/vsock_pkt.h"

#define VSOCK_QUEUE_SIZE     128
#define VSOCK_NR_QUEUES      3
#define VSOCK_RXQ            0
#define VSOCK_TXQ            1
#define VSOCK_EVQ            2
#define VSOCK_MAX_CONNS      64
#define VSOCK_CONN_BUF       (256u * 1024) /* buf_alloc we advertise per connection */
#define VSOCK_ORPHAN_MAX     128           /* RSTs owed (killed or unknown connections) */
#define VSOCK_CONNECT_TIMEOUT_MS 10000
#define VSOCK_CLOSE_TIMEOUT_MS   10000
#define VSOCK_LOCAL_PORT_BASE    (1u << 30)
#define VSOCK_LINE_MAX       32
#define VSOCK_WARN_MAX       32

struct vsock_config {
	uint64_t cid;
	char *uds;        /* PATH, or fd:N of a listening socket (cellad) */
	char *connector;  /* fd:N: cellad connects guest-initiated streams */
	uint64_t connect_timeout_ms; /* a host client's wait for the guest (0: the default) */
};

enum vconn_state {
	VC_FREE = 0,
	VC_HOST_HELLO,   /* host client connected; reading "CONNECT <port>" */
	VC_LOCAL_INIT,   /* REQUEST sent to the guest; waiting for RESPONSE */
	VC_ESTABLISHED,
	VC_DEAD,         /* reset: socket shut down; the loop closes it */
};

/* Control packets a connection owes the guest. */
#define VC_P_REQUEST  (1u << 0)
#define VC_P_RESPONSE (1u << 1)
#define VC_P_CREDIT   (1u << 2)
#define VC_P_SHUTDOWN (1u << 3) /* SHUTDOWN(SEND): the host client sent EOF */

struct vsock;

struct vconn {
	struct vsock *vs;
	enum vconn_state state;
	int fd;
	bool watched;
	bool readable, writable;   /* edge-triggered readiness not yet used up */
	bool guest_initiated;
	uint32_t local_port;       /* the host's side */
	uint32_t peer_port;        /* the guest's side */
	unsigned pending;          /* VC_P_* */

	/* Towards the guest. */
	uint32_t rx_cnt;           /* payload bytes sent to the guest */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
	bool host_eof;             /* the host client will send no more */
	bool shut_sent;            /* our SHUTDOWN(SEND) went out */
	/* From the guest. */
	uint32_t fwd_cnt;          /* guest bytes written to the host socket */
	uint32_t fwd_advertised;   /* fwd_cnt in the last packet we sent */
	bool peer_no_send, peer_no_rcv;
	bool host_wr_shut;
	uint8_t *txbuf;            /* VSOCK_CONN_BUF ring of guest data the socket did not take */
	uint32_t tx_head, tx_len;

	uint64_t deadline_ns;      /* LOCAL_INIT or closing: give up then (0: none) */
	char line[VSOCK_LINE_MAX];
	unsigned line_len;
};

struct vsock_counters {
	uint64_t bad[VSOCK_BAD_MAX]; /* malformed tx packets by reason */
	uint64_t bad_rx;             /* rx buffers too small or readable */
	uint64_t bad_event;          /* event buffers too small */
	uint64_t unknown;            /* packets for no connection (answered RST) */
	uint64_t host_connects, guest_connects, refused, timeouts, resets_sent;
	uint64_t rx_bytes, tx_bytes;
	uint64_t transport_resets;   /* events delivered */
	uint64_t dropped_rst;        /* orphan RSTs that found no room */
	uint64_t bad_hello;          /* host clients with a bad CONNECT line */
};

struct vsock {
	struct virtio_dev vd;        /* first: the transport frees it */
	uint64_t cid;
	char *uds_path;              /* NULL when given as fd:N */
	int listen_fd;
	int connector_fd;            /* -1: guest-initiated by name (uds_path) */
	uint32_t connector_seq;      /* the last request's number */
	int timer_fd;
	uint64_t connect_timeout_ns;
	bool listen_watched, timer_watched, timer_armed;
	struct virtq_chain *chain;
	struct vconn conns[VSOCK_MAX_CONNS];
	unsigned rr;                 /* round-robin start for rx */
	uint32_t next_local_port;
	struct { uint32_t src_port, dst_port; } orphans[VSOCK_ORPHAN_MAX];
	unsigned nr_orphans;
	bool reset_event_pending;    /* TRANSPORT_RESET owed to the driver */
	struct vsock_counters n;
	unsigned warned;
};

static inline struct vsock *vsock_of(struct virtio_dev *vd)
{
	return container_of(vd, struct vsock, vd);
}

/* vsock_conn.c: the connections (lock held, I/O thread unless said). */
/* Process one packet the guest transmitted (header checked). */
void vsock_handle_tx(struct vsock *vs, const struct vsock_hdr *h, const struct virtq_chain *c);
/* Fill rx buffers with what connections owe the guest. */
void vsock_rx_pump(struct vsock *vs);
/* A host client connected (listening socket readable). */
void vsock_accept(struct vsock *vs);
/* Deadlines (timer). */
void vsock_check_deadlines(struct vsock *vs);
/* A socket event of connection c (what its evloop watch does, lock held):
 * exported for the fuzzer, which runs no loop. */
void vsock_conn_event(struct vconn *c, uint32_t events);
/* Kill every connection without waiting for the loop (any thread). */
void vsock_reset_conns(struct vsock *vs);
/* Close every socket now (destroy: the loop is stopped). */
void vsock_close_all(struct vsock *vs);
/* One log line for the first VSOCK_WARN_MAX problems. */
bool vsock_may_warn(struct vsock *vs);
/* Live connections. */
unsigned vsock_nr_conns(const struct vsock *vs);

/* vsock_host.c: a connected, non-blocking socket to host port `port` for
 * the guest ("<uds>_<port>", or cellad's relay), or -errno. May wait up to
 * 2 s for cellad (I/O thread). */
int vsock_host_connect(struct vsock *vs, uint32_t port);

/* vsock_ctl.c: device section of the state, status. */
int vsock_save(struct virtio_dev *vd, struct state_writer *w);
int vsock_load(struct virtio_dev *vd, struct state_reader *r);
