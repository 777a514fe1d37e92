/* netmq.c: multiqueue virtio-net: frames sent and received on every queue
 * pair, round-robin from one CPU (the guest's APs stay in ring 0).
 * ip=GUEST_IP peer=HOST_IP [port=7777] [pairs=0] [flows=8] [wait=120000]
 *
 * Negotiates MQ and CTRL_VQ, sets up the rx and tx queues of every pair
 * (pairs=0: as many as the device has; pairs=N: exactly N, failing with
 * fewer) and asks for them with VQ_PAIRS_SET (netdev_open_mq), prints
 * "netmq: ready pairs=P max=M", then serves until the peer says "quit"
 * (fails after `wait` ms without it):
 * - ARP requests for its address are answered on the pair they came on;
 * - a UDP datagram to its port goes back to its sender, on the pair it came
 *   on (the host's flows, which the host's kernel steers by flow hash);
 * - the datagram "go" starts its own flows: `flows` UDP flows from source
 *   ports FLOW_BASE + k to peer:port, flow k on pair k % P, each sent until
 *   the peer echoes it (3 tries), then "netmq: flows done echoed=E/F";
 * - "quit" ends it: "netmq: pair p tx=T rx=R served=S echoes=E" per pair.
 * Passes when every flow was echoed and every pair sent frames. */
#include "netutil.h"

TEST_PROGRAM("netmq");

#define FLOW_BASE 40000
#define MAX_FLOWS 64

struct mq {
	struct netdev nd;
	uint8_t peer[4], peer_mac[6];
	bool have_peer_mac, go, quit;
	uint16_t port;
	uint32_t flows;
	uint64_t echoed;	/* bitmap of flows whose echo came back */
	uint32_t served[NETDEV_MAX_PAIRS], echoes[NETDEV_MAX_PAIRS];
};

/* Ethernet, IPv4 and UDP headers (UDP checksum 0: none, allowed over
 * IPv4) around payload, on pair p. */
static void send_udp(struct mq *m, unsigned p, const uint8_t *dst_mac, const uint8_t *dst_ip,
		     uint16_t sport, uint16_t dport, const uint8_t *payload, size_t len)
{
	uint8_t f[14 + 20 + 8 + 256];

	if (len > 256)
		len = 256;
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, m->nd.mac, 6);
	put16(f + 12, ETH_IP);
	uint8_t *ip = f + 14, *udp = ip + 20;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + 8 + len));
	ip[6] = 0x40;		/* don't fragment */
	ip[8] = 64;
	ip[9] = 17;		/* UDP */
	memcpy(ip + 12, m->nd.ip, 4);
	memcpy(ip + 16, dst_ip, 4);
	put16(ip + 10, inet_csum(ip, 20));
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + len));
	put16(udp + 6, 0);
	memcpy(udp + 8, payload, len);
	netdev_send_on(&m->nd, p, f, 14 + 20 + 8 + len);
}

static void handle_udp(struct mq *m, const uint8_t *f, const uint8_t *ip, const uint8_t *udp,
		       size_t len)
{
	unsigned p = m->nd.rx_pair;
	uint16_t sport = be16(udp), dport = be16(udp + 2);
	const uint8_t *data = udp + 8;
	bool from_peer = !memcmp(ip + 12, m->peer, 4);

	if (from_peer && sport == m->port && dport >= FLOW_BASE && dport < FLOW_BASE + m->flows) {
		m->echoed |= 1ull << (dport - FLOW_BASE);	/* one of ours came back */
		m->echoes[p]++;
		return;
	}
	if (dport != m->port)
		return;
	if (from_peer && len == 2 && !memcmp(data, "go", 2)) {
		memcpy(m->peer_mac, f + 6, 6);
		m->have_peer_mac = m->go = true;
		return;
	}
	if (from_peer && len == 4 && !memcmp(data, "quit", 4)) {
		m->quit = true;
		return;
	}
	/* Anyone's datagram: back to its sender, on the pair it came on. */
	send_udp(m, p, f + 6, ip + 12, dport, sport, data, len);
	m->served[p]++;
}

static void handle_frame(void *ctx, const uint8_t *f, uint32_t len)
{
	struct mq *m = ctx;

	if (len < 14)
		return;
	uint16_t type = be16(f + 12);
	const uint8_t *p = f + 14;
	if (type == ETH_ARP && len >= 14 + 28 && be16(p) == 1 && be16(p + 2) == ETH_IP) {
		if (!memcmp(p + 14, m->peer, 4)) {
			memcpy(m->peer_mac, p + 8, 6);
			m->have_peer_mac = true;
		}
		if (be16(p + 6) == 1 && !memcmp(p + 24, m->nd.ip, 4))
			netdev_send_arp_on(&m->nd, m->nd.rx_pair, 2, p + 8, p + 14);
		return;
	}
	if (type != ETH_IP || len < 14 + 20 + 8 || (p[0] >> 4) != 4)
		return;
	unsigned ihl = (p[0] & 0xF) * 4u;
	size_t tot = be16(p + 2);
	if (ihl < 20 || tot > len - 14 || tot < ihl + 8 || p[9] != 17 || inet_csum(p, ihl) ||
	    memcmp(p + 16, m->nd.ip, 4) || (be16(p + 6) & 0x3FFF))
		return;		/* not a whole UDP datagram for us */
	const uint8_t *udp = p + ihl;
	size_t ulen = be16(udp + 4);
	if (ulen < 8 || ulen > tot - ihl)
		return;
	handle_udp(m, f, p, udp, ulen - 8);
}

static bool poll_until(struct mq *m, bool (*cond)(struct mq *, uint32_t), uint32_t arg,
		       uint32_t timeout_ms)
{
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (!cond(m, arg)) {
		if (tsc_expired(deadline))
			return false;
		netdev_rx(&m->nd, handle_frame, m);
	}
	return true;
}

static bool have_go(struct mq *m, uint32_t arg) { return m->go; }
static bool have_quit(struct mq *m, uint32_t arg) { return m->quit; }
static bool have_echo(struct mq *m, uint32_t k) { return m->echoed & (1ull << k); }

int main(int argc, char **argv)
{
	static struct mq m;
	const char *ip = param_str("ip", "192.168.100.2"), *peer = param_str("peer", "192.168.100.1");
	uint32_t want = (uint32_t)param_u64("pairs", 0), wait = (uint32_t)param_u64("wait", 120000);
	uint64_t port = param_u64("port", 7777);

	m.flows = (uint32_t)param_u64("flows", 8);
	if (!parse_ip4(ip, m.nd.ip) || !parse_ip4(peer, m.peer))
		fail("bad ip=%s or peer=%s", ip, peer);
	if (!port || port >= FLOW_BASE)
		fail("port=%lu out of range 1..%u", port, FLOW_BASE - 1);
	if (m.flows < 1 || m.flows > MAX_FLOWS)
		fail("flows=%u out of range 1..%u", m.flows, MAX_FLOWS);
	if (want > NETDEV_MAX_PAIRS)
		fail("pairs=%u: this driver sets up at most %u", want, NETDEV_MAX_PAIRS);
	m.port = (uint16_t)port;
	netdev_open_mq(&m.nd, "netmq", (const uint8_t[6]){ 0x52, 0x54, 0x00, 0xce, 0x11, 0xa2 },
		       want);
	if (want && m.nd.pairs != want)
		fail("the device has %u queue pairs (max_virtqueue_pairs), pairs=%u wanted",
		     m.nd.max_pairs, want);
	printf("netmq: mac %02x:%02x:%02x:%02x:%02x:%02x features 0x%lx\n", m.nd.mac[0],
	       m.nd.mac[1], m.nd.mac[2], m.nd.mac[3], m.nd.mac[4], m.nd.mac[5], m.nd.dev.features);
	if (m.flows < m.nd.pairs)
		fail("flows=%u: fewer flows than the %u pairs to send them on", m.flows, m.nd.pairs);
	printf("netmq: ready pairs=%u max=%u ip %s port %u\n", m.nd.pairs, m.nd.max_pairs, ip,
	       m.port);

	if (!report(poll_until(&m, have_go, 0, wait), "\"go\" from %s", peer))
		return report_summary();
	unsigned got = 0;
	for (uint32_t k = 0; k < m.flows; k++) {
		uint8_t msg[32];
		int n = snprintf((char *)msg, sizeof(msg), "netmq flow %u pair %u", k,
				 k % m.nd.pairs);
		for (int attempt = 0; attempt < 3 && !have_echo(&m, k); attempt++) {
			send_udp(&m, k % m.nd.pairs, m.peer_mac, m.peer, (uint16_t)(FLOW_BASE + k),
				 m.port, msg, (size_t)n);
			poll_until(&m, have_echo, k, 2000);
		}
		got += have_echo(&m, k);
	}
	printf("netmq: flows done echoed=%u/%u\n", got, m.flows);
	report(got == m.flows, "%u of %u flows echoed by %s", got, m.flows, peer);

	report(poll_until(&m, have_quit, 0, wait), "\"quit\" from %s", peer);
	for (unsigned p = 0; p < m.nd.pairs; p++) {
		struct netpair *np = &m.nd.pair[p];

		printf("netmq: pair %u tx=%u rx=%u served=%u echoes=%u\n", p, np->tx_frames,
		       np->rx_frames, m.served[p], m.echoes[p]);
		report(np->tx_frames > 0, "pair %u sent %u frames", p, np->tx_frames);
	}
	return report_summary();
}
