/* tcpecho.c: a DHCP client, ARP and a one-connection TCP echo over the
 * first virtio-net device, for user-mode networking (passt answers DHCP and
 * ARP itself). port=N [lines=N] [wait=MS]: gets an address by DHCP, ARPs the
 * gateway, then accepts one TCP connection on port N and echoes each line it
 * gets (prefixed "echo: ") until `lines` lines (default 1) went back; passes
 * once the peer's data is all acknowledged. */
#include "netutil.h"

TEST_PROGRAM("tcpecho");


struct te {
	struct netdev nd;
	uint8_t gw[4], gw_mac[6], server[4], offered[4];
	bool have_gw_mac, have_offer, have_ack;
	uint32_t xid;
	/* TCP: one connection */
	uint16_t port, peer_port;
	uint8_t peer_ip[4], peer_mac[6];
	int tcp_state; /* 0 listen, 1 syn received, 2 established, 3 closed */
	uint32_t snd_nxt, snd_una, rcv_nxt, iss;
	char line[256];
	unsigned line_len, lines_echoed;
	uint8_t unacked[300];
	unsigned unacked_len;
	uint32_t unacked_seq;
	uint8_t unacked_flags;
	uint64_t rto_deadline;
};

/* An IPv4 frame: Ethernet + IP header around payload (proto's header and
 * data), addressed to dst_mac/dst_ip. */
static void send_ip(struct te *n, const uint8_t *dst_mac, const uint8_t *src_ip,
		    const uint8_t *dst_ip, uint8_t proto, const uint8_t *payload, size_t len)
{
	uint8_t f[14 + 20 + 600];

	if (len > 600)
		return;
	memcpy(f, dst_mac, 6);
	memcpy(f + 6, n->nd.mac, 6);
	put16(f + 12, ETH_IP);
	uint8_t *ip = f + 14;
	memset(ip, 0, 20);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + len));
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, src_ip, 4);
	memcpy(ip + 16, dst_ip, 4);
	put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	memcpy(ip + 20, payload, len);
	netdev_send(&n->nd, f, 14 + 20 + len);
}

/* DHCPDISCOVER (type 1) or DHCPREQUEST (type 3), broadcast. */
static void send_dhcp(struct te *n, uint8_t type)
{
	static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t any[4] = { 0, 0, 0, 0 }, all[4] = { 255, 255, 255, 255 };
	uint8_t u[8 + 240 + 32];
	uint8_t *d = u + 8, *o = d + 240;

	memset(u, 0, sizeof(u));
	put16(u, 68);
	put16(u + 2, 67);
	put16(u + 4, (uint16_t)sizeof(u));
	d[0] = 1; /* BOOTREQUEST */
	d[1] = 1;
	d[2] = 6;
	put32(d + 4, n->xid);
	put16(d + 10, 0x8000); /* broadcast the reply */
	memcpy(d + 28, n->nd.mac, 6);
	put32(d + 236, 0x63825363);
	*o++ = 53, *o++ = 1, *o++ = type;
	if (type == 3) {
		*o++ = 50, *o++ = 4;
		memcpy(o, n->offered, 4), o += 4;
		*o++ = 54, *o++ = 4;
		memcpy(o, n->server, 4), o += 4;
	}
	*o++ = 55, *o++ = 2, *o++ = 1, *o++ = 3; /* want netmask, router */
	*o = 255;
	/* UDP checksum 0: none (allowed over IPv4). */
	send_ip(n, bcast_mac, any, all, 17, u, sizeof(u));
}

static void handle_dhcp(struct te *n, const uint8_t *d, size_t len)
{
	uint8_t type = 0, server[4] = { 0 }, router[4] = { 0 };

	if (len < 240 || d[0] != 2 || be32(d + 4) != n->xid || be32(d + 236) != 0x63825363)
		return;
	for (size_t i = 240; i < len && d[i] != 255;) {
		uint8_t opt = d[i];
		if (opt == 0) {
			i++;
			continue;
		}
		if (i + 2 > len || i + 2 + d[i + 1] > len)
			break;
		uint8_t ol = d[i + 1];
		const uint8_t *v = d + i + 2;
		if (opt == 53 && ol >= 1)
			type = v[0];
		else if (opt == 54 && ol >= 4)
			memcpy(server, v, 4);
		else if (opt == 3 && ol >= 4)
			memcpy(router, v, 4);
		i += 2 + ol;
	}
	if (type == 2 && !n->have_offer) {
		memcpy(n->offered, d + 16, 4);
		memcpy(n->server, server, 4);
		memcpy(n->gw, router, 4);
		n->have_offer = true;
	} else if (type == 5 && n->have_offer) {
		memcpy(n->nd.ip, d + 16, 4);
		if (router[0] || router[1] || router[2] || router[3])
			memcpy(n->gw, router, 4);
		n->have_ack = true;
	}
}

static void tcp_send(struct te *n, uint8_t flags, uint32_t seq, const uint8_t *data, size_t len)
{
	uint8_t t[24 + 300], pseudo[12];
	size_t hl = (flags & 0x02) ? 24 : 20;

	if (len > 300)
		return;
	memset(t, 0, hl);
	put16(t, n->port);
	put16(t + 2, n->peer_port);
	put32(t + 4, seq);
	put32(t + 8, n->rcv_nxt);
	t[12] = (uint8_t)((hl / 4) << 4);
	t[13] = flags;
	put16(t + 14, 8192);
	if (hl == 24) {
		t[20] = 2, t[21] = 4; /* MSS 1460 */
		put16(t + 22, 1460);
	}
	memcpy(t + hl, data, len);
	memcpy(pseudo, n->nd.ip, 4);
	memcpy(pseudo + 4, n->peer_ip, 4);
	pseudo[8] = 0;
	pseudo[9] = 6;
	put16(pseudo + 10, (uint16_t)(hl + len));
	put16(t + 16, csum_fold(csum_add(csum_add(0, pseudo, 12), t, hl + len)));
	send_ip(n, n->peer_mac, n->nd.ip, n->peer_ip, 6, t, hl + len);
}

/* Send (and keep until acknowledged) a segment with SYN, FIN or data. */
static void tcp_send_reliable(struct te *n, uint8_t flags, const uint8_t *data, size_t len)
{
	n->unacked_seq = n->snd_nxt;
	n->unacked_flags = flags;
	n->unacked_len = (unsigned)len;
	memcpy(n->unacked, data, len);
	tcp_send(n, flags, n->snd_nxt, data, len);
	n->snd_nxt += (uint32_t)len + ((flags & 0x03) ? 1 : 0);
	n->rto_deadline = tsc_deadline_ms(500);
}

static void handle_tcp(struct te *n, const uint8_t *ipsrc, const uint8_t *smac, const uint8_t *t,
		       size_t len)
{
	if (len < 20 || be16(t + 2) != n->port)
		return;
	size_t hl = (size_t)(t[12] >> 4) * 4;
	if (hl < 20 || hl > len)
		return;
	uint8_t flags = t[13];
	uint32_t seq = be32(t + 4), ack = be32(t + 8);
	const uint8_t *data = t + hl;
	size_t dlen = len - hl;

	if (n->tcp_state == 0) {
		if (!(flags & 0x02) || (flags & 0x10))
			return;
		memcpy(n->peer_ip, ipsrc, 4);
		memcpy(n->peer_mac, smac, 6);
		n->peer_port = be16(t);
		n->rcv_nxt = seq + 1;
		n->iss = (uint32_t)rdtsc();
		n->snd_nxt = n->snd_una = n->iss;
		n->tcp_state = 1;
		printf("tcpecho: SYN from %u.%u.%u.%u:%u\n", ipsrc[0], ipsrc[1], ipsrc[2], ipsrc[3],
		       n->peer_port);
		tcp_send_reliable(n, 0x12, NULL, 0);
		return;
	}
	if (be16(t) != n->peer_port || memcmp(ipsrc, n->peer_ip, 4))
		return;
	if (flags & 0x04) {
		printf("tcpecho: reset by the peer\n");
		n->tcp_state = 3;
		return;
	}
	if ((flags & 0x10) && (int32_t)(ack - n->snd_una) > 0 && (int32_t)(ack - n->snd_nxt) <= 0) {
		n->snd_una = ack;
		if (n->snd_una == n->snd_nxt)
			n->unacked_len = 0, n->unacked_flags = 0;
		if (n->tcp_state == 1)
			n->tcp_state = 2;
	}
	if (n->tcp_state < 2)
		return;
	if (seq != n->rcv_nxt) {
		if (dlen || (flags & 0x01))
			tcp_send(n, 0x10, n->snd_nxt, NULL, 0); /* dup ACK */
		return;
	}
	bool ack_now = false;
	for (size_t i = 0; i < dlen; i++) {
		char c = (char)data[i];
		n->rcv_nxt++;
		ack_now = true;
		if (n->line_len < sizeof(n->line) - 1)
			n->line[n->line_len++] = c;
		if (c == '\n') {
			char out[300];
			size_t k = n->line_len + 6;
			memcpy(out, "echo: ", 6);
			memcpy(out + 6, n->line, n->line_len);
			n->line_len = 0;
			if (n->unacked_flags) {
				printf("tcpecho: a line while the last is unacknowledged: dropped\n");
				continue;
			}
			tcp_send_reliable(n, 0x18, (const uint8_t *)out, k);
			n->lines_echoed++;
			ack_now = false;
		}
	}
	if (flags & 0x01) {
		n->rcv_nxt++;
		if (!n->unacked_flags) {
			tcp_send_reliable(n, 0x11, NULL, 0);
			ack_now = false;
		} else {
			ack_now = true;
		}
		n->tcp_state = 3;
	}
	if (ack_now)
		tcp_send(n, 0x10, n->snd_nxt, NULL, 0);
}

static void handle_frame(void *ctx, const uint8_t *f, uint32_t len)
{
	struct te *n = ctx;

	if (len < 14)
		return;
	uint16_t type = be16(f + 12);
	const uint8_t *p = f + 14;
	if (type == ETH_ARP && len >= 14 + 28 && be16(p) == 1 && be16(p + 2) == ETH_IP) {
		uint16_t op = be16(p + 6);
		if (op == 2 && n->have_ack && !memcmp(p + 14, n->gw, 4)) {
			memcpy(n->gw_mac, p + 8, 6);
			n->have_gw_mac = true;
		} else if (op == 1 && n->have_ack && !memcmp(p + 24, n->nd.ip, 4)) {
			netdev_send_arp(&n->nd, 2, p + 8, p + 14);
		}
		return;
	}
	if (type != ETH_IP || len < 14 + 20 || (p[0] >> 4) != 4)
		return;
	unsigned ihl = (p[0] & 0xF) * 4u;
	size_t tot = be16(p + 2);
	if (ihl < 20 || tot < ihl || tot > len - 14 || csum_fold(csum_add(0, p, ihl)))
		return;
	if (p[9] == 17 && tot >= ihl + 8 && be16(p + ihl + 2) == 68)
		handle_dhcp(n, p + ihl + 8, tot - ihl - 8);
	else if (p[9] == 6 && n->have_ack && !memcmp(p + 16, n->nd.ip, 4))
		handle_tcp(n, p + 12, f + 6, p + ihl, tot - ihl);
}

static void net_poll(struct te *n)
{
	netdev_rx(&n->nd, handle_frame, n);
	if (n->unacked_flags && tsc_expired(n->rto_deadline)) {
		tcp_send(n, n->unacked_flags, n->unacked_seq, n->unacked, n->unacked_len);
		n->rto_deadline = tsc_deadline_ms(500);
	}
}

static bool poll_until(struct te *n, bool (*cond)(struct te *), uint32_t timeout_ms)
{
	uint64_t deadline = tsc_deadline_ms(timeout_ms);
	while (!cond(n)) {
		if (tsc_expired(deadline))
			return false;
		net_poll(n);
	}
	return true;
}

static bool got_offer(struct te *n) { return n->have_offer; }
static bool got_ack(struct te *n) { return n->have_ack; }
static bool got_gw_mac(struct te *n) { return n->have_gw_mac; }
static uint32_t want_lines;
static bool echoed_all(struct te *n)
{
	return (n->lines_echoed >= want_lines && !n->unacked_flags) || n->tcp_state == 3;
}

int main(int argc, char **argv)
{
	static struct te n;
	uint32_t wait = (uint32_t)param_u64("wait", 120000);

	n.port = (uint16_t)param_u64("port", 7);
	want_lines = (uint32_t)param_u64("lines", 1);
	netdev_open(&n.nd, "tcpecho", (const uint8_t[6]){ 0x52, 0x54, 0x00, 0xce, 0x11, 0xa1 });
	n.xid = (uint32_t)(rdtsc() >> 3);
	printf("tcpecho: mac %02x:%02x:%02x:%02x:%02x:%02x\n", n.nd.mac[0], n.nd.mac[1], n.nd.mac[2],
	       n.nd.mac[3], n.nd.mac[4], n.nd.mac[5]);

	bool ok = false;
	for (int attempt = 0; attempt < 5 && !ok; attempt++) {
		send_dhcp(&n, 1);
		ok = poll_until(&n, got_offer, 2000);
	}
	if (!report(ok, "DHCP offer"))
		return report_summary();
	ok = false;
	for (int attempt = 0; attempt < 5 && !ok; attempt++) {
		send_dhcp(&n, 3);
		ok = poll_until(&n, got_ack, 2000);
	}
	if (!report(ok, "DHCP ack: address %u.%u.%u.%u gateway %u.%u.%u.%u", n.nd.ip[0], n.nd.ip[1],
		    n.nd.ip[2], n.nd.ip[3], n.gw[0], n.gw[1], n.gw[2], n.gw[3]))
		return report_summary();
	ok = false;
	for (int attempt = 0; attempt < 5 && !ok; attempt++) {
		netdev_send_arp(&n.nd, 1, NULL, n.gw);
		ok = poll_until(&n, got_gw_mac, 1000);
	}
	report(ok, "ARP reply from the gateway: %02x:%02x:%02x:%02x:%02x:%02x", n.gw_mac[0],
	       n.gw_mac[1], n.gw_mac[2], n.gw_mac[3], n.gw_mac[4], n.gw_mac[5]);
	printf("tcpecho: listening on port %u\n", n.port);
	ok = poll_until(&n, echoed_all, wait);
	report(ok && n.lines_echoed >= want_lines, "echoed %u line(s) over TCP port %u",
	       n.lines_echoed, n.port);
	/* Let the last ACK/FIN settle so the peer reads the echo. */
	uint64_t linger = tsc_deadline_ms(300);
	while (!tsc_expired(linger))
		net_poll(&n);
	return report_summary();
}
