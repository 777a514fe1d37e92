/* vsock.c: a minimal virtio-vsock driver (stream sockets) in ring 3. It
 * listens on port `listen` (default 1234) and echoes whatever a peer sends
 * on a connection there; with connect=P it also connects to host port P
 * and sends one line ("hello from cid N"; "hello again from cid N" after a
 * transport reset). It runs until some connection sends "quit\n", then
 * reports. On a TRANSPORT_RESET event (the VM was restored) it drops every
 * connection, reads its CID again, prints "vsock: transport reset" and
 * goes on (connecting out again when asked). Prints
 * "vsock: ready cid N" once it listens, "vsock: accepted host port P",
 * "vsock: connected to host port P" and "vsock: closed ..." as things
 * happen, for the host side of the test to follow. */
#include "virtio.h"

TEST_PROGRAM("vsock");

#define VIRTIO_ID_VSOCK 19
#define HDR_LEN         44
#define RXBUF           4096
#define NRX             16
#define NEV             4
#define MAX_CONNS       16
#define BUF_ALLOC       65536
#define HOST_CID        2

enum { OP_REQUEST = 1, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE,
       OP_CREDIT_REQUEST };

struct hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct conn {
	bool used, connected, outgoing;
	uint32_t host_port, port;
	uint32_t fwd_cnt;        /* bytes consumed (echoed) */
	uint32_t tx_cnt;         /* bytes sent */
	uint32_t peer_buf_alloc, peer_fwd_cnt;
};

struct vsock {
	struct virtio_dev dev;
	struct virtq rx, tx, ev;
	uint64_t cid;
	uint8_t *txbuf;
	struct conn conns[MAX_CONNS];
	uint32_t next_port;
	uint64_t echoed, accepted, resets;
	bool quit;
};

static struct conn *conn_find(struct vsock *v, uint32_t host_port, uint32_t port)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (v->conns[i].used && v->conns[i].host_port == host_port &&
		    v->conns[i].port == port)
			return &v->conns[i];
	return 0;
}

static struct conn *conn_new(struct vsock *v)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (!v->conns[i].used) {
			memset(&v->conns[i], 0, sizeof(v->conns[i]));
			v->conns[i].used = true;
			return &v->conns[i];
		}
	return 0;
}

/* One packet out: header and payload in one readable buffer; waits. */
static void send_pkt(struct vsock *v, struct conn *c, uint32_t host_port, uint32_t port,
		     uint16_t op, uint32_t flags, const void *data, uint32_t len)
{
	struct hdr *h = (struct hdr *)v->txbuf;
	struct vq_buf b = { v->txbuf, HDR_LEN + len, false };
	uint32_t got;

	memset(h, 0, sizeof(*h));
	h->src_cid = v->cid;
	h->dst_cid = HOST_CID;
	h->src_port = port;
	h->dst_port = host_port;
	h->len = len;
	h->type = 1;
	h->op = op;
	h->flags = flags;
	h->buf_alloc = BUF_ALLOC;
	h->fwd_cnt = c ? c->fwd_cnt : 0;
	if (len)
		memcpy(v->txbuf + HDR_LEN, data, len);
	if (!virtq_add(&v->tx, &b, 1, v->txbuf))
		fail("vsock: cannot queue a tx buffer");
	virtq_kick(&v->tx);
	if (virtq_wait(&v->tx, &got, 20000) != v->txbuf)
		fail("vsock: the device completed another tx buffer");
	if (c && op == OP_RW)
		c->tx_cnt += len;
}

static void connect_out(struct vsock *v, uint32_t host_port)
{
	struct conn *c = conn_new(v);

	if (!c)
		fail("vsock: no free connection slot");
	c->outgoing = true;
	c->host_port = host_port;
	c->port = v->next_port++;
	send_pkt(v, c, c->host_port, c->port, OP_REQUEST, 0, 0, 0);
}

static void post_rx(struct vsock *v, void *buf)
{
	struct vq_buf b = { buf, RXBUF, true };

	if (!virtq_add(&v->rx, &b, 1, buf))
		fail("vsock: cannot queue an rx buffer");
	virtq_kick(&v->rx);
}

static void post_ev(struct vsock *v, void *buf)
{
	struct vq_buf b = { buf, 8, true };

	if (!virtq_add(&v->ev, &b, 1, buf))
		fail("vsock: cannot queue an event buffer");
	virtq_kick(&v->ev);
}

static void handle_pkt(struct vsock *v, const struct hdr *h, const uint8_t *data,
		       uint32_t listen_port)
{
	struct conn *c = conn_find(v, h->src_port, h->dst_port);
	char line[64];

	if (h->src_cid != HOST_CID || h->dst_cid != v->cid || h->type != 1)
		fail("vsock: a packet with cids %lu -> %lu type %u", (unsigned long)h->src_cid,
		     (unsigned long)h->dst_cid, h->type);
	if (c) {
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
	}
	switch (h->op) {
	case OP_REQUEST:
		if (c || h->dst_port != listen_port) {
			send_pkt(v, 0, h->src_port, h->dst_port, OP_RST, 0, 0, 0);
			return;
		}
		c = conn_new(v);
		if (!c) {
			send_pkt(v, 0, h->src_port, h->dst_port, OP_RST, 0, 0, 0);
			return;
		}
		c->host_port = h->src_port;
		c->port = h->dst_port;
		c->connected = true;
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
		send_pkt(v, c, c->host_port, c->port, OP_RESPONSE, 0, 0, 0);
		v->accepted++;
		printf("vsock: accepted host port %u\n", c->host_port);
		return;
	case OP_RESPONSE:
		if (!c || !c->outgoing || c->connected) {
			send_pkt(v, 0, h->src_port, h->dst_port, OP_RST, 0, 0, 0);
			return;
		}
		c->connected = true;
		printf("vsock: connected to host port %u\n", c->host_port);
		snprintf(line, sizeof(line), "hello %sfrom cid %lu\n", v->resets ? "again " : "",
			 (unsigned long)v->cid);
		send_pkt(v, c, c->host_port, c->port, OP_RW, 0, line, strlen(line));
		return;
	case OP_RST:
		if (c) {
			printf("vsock: closed host port %u (reset%s)\n", c->host_port,
			       c->connected ? "" : ", refused");
			c->used = false;
		}
		return;
	case OP_SHUTDOWN:
		if (c) {
			/* The peer is done: close our side too; the RST ends it. */
			send_pkt(v, c, c->host_port, c->port, OP_SHUTDOWN, 3, 0, 0);
		}
		return;
	case OP_RW:
		if (!c || !c->connected) {
			send_pkt(v, 0, h->src_port, h->dst_port, OP_RST, 0, 0, 0);
			return;
		}
		c->fwd_cnt += h->len;
		if (h->len == 5 && !memcmp(data, "quit\n", 5)) {
			v->quit = true;
			return;
		}
		if (c->outgoing)
			return; /* the host's answer on our connection: consumed */
		if (h->len > c->peer_buf_alloc - (c->tx_cnt - c->peer_fwd_cnt))
			fail("vsock: no credit to echo %u bytes", h->len);
		send_pkt(v, c, c->host_port, c->port, OP_RW, 0, data, h->len);
		v->echoed += h->len;
		return;
	case OP_CREDIT_REQUEST:
		if (c)
			send_pkt(v, c, c->host_port, c->port, OP_CREDIT_UPDATE, 0, 0, 0);
		return;
	default:
		return;
	}
}

int main(int argc, char **argv)
{
	struct vsock *v = mem_alloc(sizeof(*v), 64);
	uint32_t listen_port = (uint32_t)param_u64("listen", 1234);
	uint32_t connect_port = (uint32_t)param_u64("connect", 0);

	memset(v, 0, sizeof(*v));
	v->next_port = 50000;
	if (!virtio_find(VIRTIO_ID_VSOCK, 0, &v->dev))
		fail("no virtio-vsock device on the command line ('%s')", cmdline());
	printf("vsock: device at 0x%lx irq %u\n", v->dev.base, v->dev.irq);
	virtio_begin(&v->dev, 0);
	virtq_init(&v->rx, &v->dev, 0, 32);
	virtq_init(&v->tx, &v->dev, 1, 32);
	virtq_init(&v->ev, &v->dev, 2, 8);
	virtio_driver_ok(&v->dev);
	v->cid = virtio_cfg64(&v->dev, 0);
	report(v->cid >= 3, "guest CID %lu from the config space", (unsigned long)v->cid);
	v->txbuf = mem_alloc(HDR_LEN + RXBUF, 64);
	for (int i = 0; i < NRX; i++)
		post_rx(v, mem_alloc(RXBUF, 64));
	for (int i = 0; i < NEV; i++)
		post_ev(v, mem_alloc(8, 8));
	printf("vsock: ready cid %lu\n", (unsigned long)v->cid);
	if (connect_port)
		connect_out(v, connect_port);

	while (!v->quit) {
		uint32_t len;
		void *buf;
		bool idle = true;

		while (virtq_get(&v->rx, &len, &buf)) {
			const struct hdr *h = buf;

			idle = false;
			if (len < HDR_LEN || len != HDR_LEN + h->len)
				fail("vsock: rx packet of %u bytes (header says %u)", len,
				     len >= HDR_LEN ? h->len : 0);
			handle_pkt(v, h, (const uint8_t *)buf + HDR_LEN, listen_port);
			post_rx(v, buf);
		}
		while (virtq_get(&v->ev, &len, &buf)) {
			uint32_t id = *(volatile uint32_t *)buf;

			idle = false;
			if (len != 4 || id != 0)
				fail("vsock: event %u of %u bytes", id, len);
			memset(v->conns, 0, sizeof(v->conns));
			v->cid = virtio_cfg64(&v->dev, 0);
			v->resets++;
			printf("vsock: transport reset (cid %lu)\n", (unsigned long)v->cid);
			post_ev(v, buf);
			if (connect_port)
				connect_out(v, connect_port);
		}
		if (idle)
			cpu_relax();
	}
	report(v->accepted > 0, "accepted %lu connections", (unsigned long)v->accepted);
	report(v->echoed > 0, "echoed %lu bytes", (unsigned long)v->echoed);
	report(!(virtio_status(&v->dev) & VIRTIO_STATUS_NEEDS_RESET),
	       "device did not ask for a reset");
	return report_summary();
}
