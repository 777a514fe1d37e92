/* net.c: ARP and ICMP echo over the first virtio-net device.
 * ip=GUEST_IP peer=HOST_IP [count=N]: resolves the peer with ARP, then
 * sends N echo requests and passes when every reply arrived. Answers ARP
 * requests for its own address, since the peer may ask before replying.
 * ip=GUEST_IP serve=N [wait=MS]: a responder (another VM's peer): answers
 * ARP and N echo requests for its address, then passes (fails after MS,
 * default 120000, without them). */
#include "netutil.h"

TEST_PROGRAM("net");


struct net {
	struct netdev nd;
	uint8_t peer[4], peer_mac[6];
	bool have_peer_mac;
	uint16_t ping_id;
	uint32_t replies;	/* bitmap of answered sequence numbers */
	unsigned rx_frames, arp_requests_answered, echoes_answered;
};

static void eth_header(struct net *n, uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, n->nd.mac, 6);
	put16(f + 12, type);
}

static void send_ping(struct net *n, uint16_t seq)
{
	uint8_t f[14 + 20 + 8 + 56];
	eth_header(n, f, n->peer_mac, ETH_IP);
	uint8_t *ip = f + 14, *icmp = ip + 20;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, 20 + 8 + 56);
	put16(ip + 4, seq);
	ip[6] = 0x40;		/* don't fragment */
	ip[8] = 64;
	ip[9] = 1;		/* ICMP */
	memcpy(ip + 12, n->nd.ip, 4);
	memcpy(ip + 16, n->peer, 4);
	put16(ip + 10, inet_csum(ip, 20));
	icmp[0] = 8;
	icmp[1] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 4, n->ping_id);
	put16(icmp + 6, seq);
	for (int i = 0; i < 56; i++)
		icmp[8 + i] = (uint8_t)(i + seq);
	put16(icmp + 2, inet_csum(icmp, 8 + 56));
	netdev_send(&n->nd, f, sizeof(f));
}

/* Answer an echo request (the frame f, IPv4 header at p of ihl bytes). */
static void send_echo_reply(struct net *n, const uint8_t *f, const uint8_t *p, unsigned ihl)
{
	uint8_t r[14 + 60 + 8 + 256];
	size_t tot = be16(p + 2);

	if (tot < ihl + 8 || tot > sizeof(r) - 14)
		return;
	eth_header(n, r, f + 6, ETH_IP);
	memcpy(r + 14, p, tot);
	uint8_t *ip = r + 14, *icmp = ip + ihl;
	memcpy(ip + 12, n->nd.ip, 4);
	memcpy(ip + 16, p + 12, 4);
	ip[8] = 64;
	put16(ip + 10, 0);
	put16(ip + 10, inet_csum(ip, ihl));
	icmp[0] = 0;
	put16(icmp + 2, 0);
	put16(icmp + 2, inet_csum(icmp, tot - ihl));
	netdev_send(&n->nd, r, 14 + tot);
	n->echoes_answered++;
}

static void handle_frame(void *ctx, const uint8_t *f, uint32_t len)
{
	struct net *n = ctx;

	n->rx_frames++;
	if (len < 14)
		return;
	uint16_t type = be16(f + 12);
	const uint8_t *p = f + 14;
	if (type == ETH_ARP && len >= 14 + 28 && be16(p) == 1 && be16(p + 2) == ETH_IP) {
		uint16_t op = be16(p + 6);
		if (op == 2 && !memcmp(p + 14, n->peer, 4) && !memcmp(p + 24, n->nd.ip, 4)) {
			memcpy(n->peer_mac, p + 8, 6);
			n->have_peer_mac = true;
		} else if (op == 1 && !memcmp(p + 24, n->nd.ip, 4)) {
			netdev_send_arp(&n->nd, 2, p + 8, p + 14);
			n->arp_requests_answered++;
		}
	} else if (type == ETH_IP && len >= 14 + 20 + 8 && (p[0] >> 4) == 4) {
		unsigned ihl = (p[0] & 0xF) * 4u;
		if (p[9] == 1 && len >= 14 + ihl + 8 && ihl >= 20 && !memcmp(p + 16, n->nd.ip, 4) &&
		    p[ihl] == 8 && be16(p + 2) <= len - 14 && !inet_csum(p, ihl)) {
			send_echo_reply(n, f, p, ihl);
			return;
		}
		if (p[9] != 1 || len < 14 + ihl + 8 || memcmp(p + 12, n->peer, 4) ||
		    memcmp(p + 16, n->nd.ip, 4) || inet_csum(p, ihl))
			return;
		const uint8_t *icmp = p + ihl;
		size_t icmp_len = be16(p + 2) - ihl;
		if (icmp[0] == 0 && be16(icmp + 4) == n->ping_id && !inet_csum(icmp, icmp_len)) {
			uint16_t seq = be16(icmp + 6);
			if (seq < 32)
				n->replies |= 1u << seq;
		}
	}
}

static void net_poll(struct net *n)
{
	netdev_rx(&n->nd, handle_frame, n);
}

/* Polls until cond(n) holds or timeout_ms passes. */
static bool poll_until(struct net *n, bool (*cond)(struct net *, uint32_t), uint32_t arg,
		       uint32_t timeout_ms)
{
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (!cond(n, arg)) {
		if (tsc_expired(deadline))
			return false;
		net_poll(n);
	}
	return true;
}

static bool have_mac(struct net *n, uint32_t arg) { return n->have_peer_mac; }
static bool have_echoes(struct net *n, uint32_t want) { return n->echoes_answered >= want; }
static bool have_reply(struct net *n, uint32_t seq) { return n->replies & (1u << seq); }

int main(int argc, char **argv)
{
	static struct net n;
	const char *ip = param_str("ip", "192.168.100.2"), *peer = param_str("peer", "192.168.100.1");
	uint32_t count = (uint32_t)param_u64("count", 3);
	uint32_t serve = (uint32_t)param_u64("serve", 0), wait = (uint32_t)param_u64("wait", 120000);
	if (!parse_ip4(ip, n.nd.ip) || !parse_ip4(peer, n.peer))
		fail("bad ip=%s or peer=%s", ip, peer);
	if (!count || count > 31)
		fail("count=%u out of range 1..31", count);
	netdev_open(&n.nd, "net", (const uint8_t[6]){ 0x52, 0x54, 0x00, 0xce, 0x11, 0xa0 });
	n.ping_id = (uint16_t)(rdtsc() >> 4);
	printf("net: device at 0x%lx irq %u mac %02x:%02x:%02x:%02x:%02x:%02x ip %s peer %s\n",
	       n.nd.dev.base, n.nd.dev.irq, n.nd.mac[0], n.nd.mac[1], n.nd.mac[2], n.nd.mac[3],
	       n.nd.mac[4], n.nd.mac[5], ip, peer);

	if (serve) {
		printf("net: serving at %s\n", ip);
		report(poll_until(&n, have_echoes, serve, wait), "answered %u echo requests",
		       n.echoes_answered);
		return report_summary();
	}

	bool resolved = false;
	for (int attempt = 0; attempt < 5 && !resolved; attempt++) {
		netdev_send_arp(&n.nd, 1, NULL, n.peer);
		resolved = poll_until(&n, have_mac, 0, 1000);
	}
	if (!report(resolved, "ARP reply from %s", peer))
		return report_summary();
	printf("net: %s is at %02x:%02x:%02x:%02x:%02x:%02x\n", peer, n.peer_mac[0], n.peer_mac[1],
	       n.peer_mac[2], n.peer_mac[3], n.peer_mac[4], n.peer_mac[5]);

	for (uint32_t seq = 1; seq <= count; seq++) {
		bool got = false;
		for (int attempt = 0; attempt < 3 && !got; attempt++) {
			send_ping(&n, (uint16_t)seq);
			got = poll_until(&n, have_reply, seq, 2000);
		}
		report(got, "ICMP echo reply %u from %s", seq, peer);
	}
	printf("net: %u frames received, %u ARP requests answered\n", n.rx_frames,
	       n.arp_requests_answered);
	return report_summary();
}
