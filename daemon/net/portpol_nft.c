/* portpol_nft.c: a port's policy in nftables (libnftables): cellad's table
 * `bridge cella` dispatches frames by port (maps from_port/to_port: ifname
 * -> jump to the port's chains), each port has its chains, address sets and
 * named counters; `netdev cella` holds the mirroring chains. A port's whole
 * change is one transaction (docs/networking.md "Port policies"). */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nftables/libnftables.h>

#include "portpol_int.h"

static const char *const reasons[] = { "mac_spoof", "ip_spoof", "dhcp_guard", "router_guard",
				       "acl", "vlan" };
#define NR_REASONS (sizeof(reasons) / sizeof(reasons[0]))

/* The port's object prefix: "p_" + the interface name, with characters nft
 * identifiers cannot hold written as _XX. */
static void port_id(const char *ifname, char out[64])
{
	size_t o = 0;

	o += (size_t)snprintf(out, 64, "p_");
	for (const char *s = ifname; *s && o < 60; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9'))
			out[o++] = *s;
		else
			o += (size_t)snprintf(out + o, 64 - o, "_%02x", (unsigned char)*s);
	}
	out[o] = 0;
}

static struct nft_ctx *ctx_new(bool json)
{
	struct nft_ctx *c = nft_ctx_new(NFT_CTX_DEFAULT);

	if (!c)
		return NULL;
	nft_ctx_buffer_output(c);
	nft_ctx_buffer_error(c);
	if (json)
		nft_ctx_output_set_flags(c, NFT_CTX_OUTPUT_JSON);
	return c;
}

/* Run cmd; 0, or -1 with the first line of nft's error in err. */
static int nft_run(const char *cmd, char *err, size_t len)
{
	struct nft_ctx *c = ctx_new(false);
	int r;

	if (!c) {
		snprintf(err, len, "libnftables: cannot start");
		return -1;
	}
	r = nft_run_cmd_from_buffer(c, cmd);
	if (r) {
		const char *m = nft_ctx_get_error_buffer(c);
		size_t o = 0;

		/* "Error: why", then the command it refused. */
		for (int line = 0; m && *m && line < 2 && o + 1 < len; line++) {
			size_t n = strcspn(m, "\n");

			o += (size_t)snprintf(err + o, len - o, "%s%.*s", line ? ": " : "", (int)n, m);
			m += n + (m[n] == '\n');
			while (*m == ' ')
				m++;
		}
		if (o >= len)
			err[len - 1] = 0;
	}
	nft_ctx_free(c);
	return r ? -1 : 0;
}

/* `list table FAMILY cella` as JSON's array of objects, or NULL (no table). */
static json_t *table_list(const char *family)
{
	struct nft_ctx *c = ctx_new(true);
	char cmd[64];
	json_t *j = NULL, *a;

	if (!c)
		return NULL;
	snprintf(cmd, sizeof(cmd), "list table %s cella", family);
	if (!nft_run_cmd_from_buffer(c, cmd))
		j = json_loads(nft_ctx_get_output_buffer(c), 0, NULL);
	nft_ctx_free(c);
	a = json_incref(json_object_get(j, "nftables"));
	json_decref(j);
	return a;
}

/* Whether this port's chain name is in table t; *others (when given) is
 * set when a chain of another port (p_* or m_*) is there. */
static bool table_has_chain(const json_t *t, const char *name, bool *others, const char *id)
{
	char mine[4][80];
	bool found = false;
	size_t i;
	json_t *it;

	snprintf(mine[0], sizeof(mine[0]), "%s_in", id);
	snprintf(mine[1], sizeof(mine[1]), "%s_out", id);
	snprintf(mine[2], sizeof(mine[2]), "m%s_in", id + 1);
	snprintf(mine[3], sizeof(mine[3]), "m%s_out", id + 1);
	json_array_foreach(t, i, it) {
		const char *n = json_string_value(json_object_get(json_object_get(it, "chain"), "name"));
		bool own = false;

		if (!n)
			continue;
		found |= !strcmp(n, name);
		for (int k = 0; k < 4; k++)
			own |= !strcmp(n, mine[k]);
		if (others && !own && (!strncmp(n, "p_", 2) || !strncmp(n, "m_", 2)))
			*others = true;
	}
	return found;
}

static void rule(FILE *f, const char *chain, const char *fmt, ...) __printf(3, 4);
static void rule(FILE *f, const char *chain, const char *fmt, ...)
{
	va_list ap;

	fprintf(f, "add rule bridge cella %s ", chain);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

static void vlan_rules(FILE *f, const char *chain, const char *id, const struct port_policy *p)
{
	if (p->vlan == PP_VLAN_NONE) {
		rule(f, chain, "ether type 8021q counter name %s_vlan drop", id);
		return;
	}
	rule(f, chain, "ether type != 8021q counter name %s_vlan drop", id);
	if (p->vlan == PP_VLAN_ACCESS) {
		rule(f, chain, "vlan id != %u counter name %s_vlan drop", p->access, id);
		return;
	}
	fprintf(f, "add rule bridge cella %s vlan id != { ", chain);
	for (unsigned v = 1, first = 1; v <= 4094; v++) {
		unsigned hi = v;

		if (!pp_trunk_has(p, v))
			continue;
		while (hi < 4094 && pp_trunk_has(p, hi + 1))
			hi++;
		fprintf(f, first ? "%u" : ", %u", v);
		if (hi > v)
			fprintf(f, "-%u", hi);
		first = 0, v = hi;
	}
	fprintf(f, " } counter name %s_vlan drop\n", id);
}

/* A neighbour advertisement's target (ND spoofing) must be allowed or
 * link-local. nft 1.0.6 has no "icmpv6 taddr": the target is @th,64,128,
 * matched against the allowed prefixes as 128-bit integer ranges. */
static void nd_target_rule(FILE *f, const char *chain, const char *id, const struct port_policy *p)
{
	bool first = true;

	fprintf(f, "add rule bridge cella %s meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type "
		"nd-neighbor-advert ", chain);
	for (size_t i = 0; i < p->nr_ips; i++) {
		const struct pp_cidr *c = &p->ips[i];

		if (c->family != AF_INET6)
			continue;
		fputs(first ? "@th,64,128 != { 0x" : ", 0x", f);
		for (int k = 0; k < 16; k++)
			fprintf(f, "%02x", c->addr[k]);
		fputs("-0x", f);
		for (int k = 0; k < 16; k++) {
			int keep = c->plen - k * 8;
			uint8_t host = keep >= 8 ? 0 : keep <= 0 ? 0xff : (uint8_t)(0xff >> keep);

			fprintf(f, "%02x", c->addr[k] | host);
		}
		first = false;
	}
	fprintf(f, "%s@th,64,10 != 0x3fa counter name %s_ip_spoof drop\n", first ? "" : " } ", id);
}

static void guard_rules(FILE *f, const char *chain, const char *id, const char *mac,
			const struct port_policy *p)
{
	if (p->mac_guard) {
		rule(f, chain, "ether saddr != %s counter name %s_mac_spoof drop", mac, id);
		rule(f, chain, "meta protocol arp arp saddr ether != %s counter name %s_mac_spoof drop",
		     mac, id);
	}
	if (p->ip_guard) {
		rule(f, chain, "meta protocol ip ip saddr != @%s_a4 ip saddr != 0.0.0.0 "
		     "counter name %s_ip_spoof drop", id, id);
		rule(f, chain, "meta protocol arp arp saddr ip != @%s_a4 arp saddr ip != 0.0.0.0 "
		     "counter name %s_ip_spoof drop", id, id);
		/* Link-local sources and the unspecified address (DAD) pass:
		 * IPv6 needs them before any address is configured. */
		rule(f, chain, "meta protocol ip6 ip6 saddr != @%s_a6 ip6 saddr != { ::, fe80::/10 } "
		     "counter name %s_ip_spoof drop", id, id);
		nd_target_rule(f, chain, id, p);
	}
	if (p->dhcp_guard) {
		rule(f, chain, "meta protocol ip meta l4proto udp udp sport 67 "
		     "counter name %s_dhcp_guard drop", id);
		rule(f, chain, "meta protocol ip6 meta l4proto udp udp sport 547 "
		     "counter name %s_dhcp_guard drop", id);
	}
	if (p->router_guard) {
		rule(f, chain, "meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type "
		     "{ nd-router-advert, nd-redirect } counter name %s_router_guard drop", id);
		rule(f, chain, "meta protocol ip meta l4proto icmp icmp type redirect "
		     "counter name %s_router_guard drop", id);
	}
}

static void acl_rule(FILE *f, const char *chain, const char *id, const struct pp_acl *a, int fam,
		     bool stateful)
{
	const char *ip = fam == AF_INET ? "ip" : "ip6";
	char cidr[96] = "", l4[64] = "";

	if (a->remote.family) {
		char c[56];

		pp_cidr_format(&a->remote, c, sizeof(c));
		snprintf(cidr, sizeof(cidr), "%s %s %s ", ip, a->out ? "daddr" : "saddr", c);
	}
	if (a->proto == PP_ICMP)
		snprintf(l4, sizeof(l4), "meta l4proto %s ", fam == AF_INET ? "icmp" : "ipv6-icmp");
	else if (a->proto && a->port_lo)
		/* tcp/udp dport, not th dport: nft 1.0.6 compares a th range
		 * without converting its byte order. */
		snprintf(l4, sizeof(l4), "meta l4proto %s %s dport %u-%u ", a->proto == PP_TCP ? "tcp" : "udp",
			 a->proto == PP_TCP ? "tcp" : "udp", a->port_lo, a->port_hi);
	else if (a->proto)
		snprintf(l4, sizeof(l4), "meta l4proto %s ", a->proto == PP_TCP ? "tcp" : "udp");
	/* A stateful allow records the flow (portpol_state.c) as it lets it by. */
	if (a->allow && stateful) {
		char match[200];

		snprintf(match, sizeof(match), "%s%s", cidr, l4);
		pp_state_record(f, chain, id, a->out, fam, match, a->proto, " accept");
	}
	if (a->allow)
		rule(f, chain, "meta protocol %s %s%saccept", ip, cidr, l4);
	else
		rule(f, chain, "meta protocol %s %s%scounter name %s_acl drop", ip, cidr, l4, id);
}

/* ACL entries for one direction: denies, allows, and (when some allow)
 * the IP traffic no entry allowed. ARP and neighbour discovery pass. */
static void acl_rules(FILE *f, const char *chain, const char *id, const struct port_policy *p,
		      bool out)
{
	bool any_allow = false, any = false;

	for (size_t i = 0; i < p->nr_acls; i++)
		any |= p->acls[i].out == out;
	/* Neighbour discovery always passes the ACLs, a deny of all IPv6
	 * included (as ARP does, being no IP): without it an address cannot
	 * be resolved. The guards ran before. */
	if (any)
		rule(f, chain, "meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, "
		     "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } return");
	/* Known flows pass first, in both directions, as `ct state
	 * established` would. */
	if (p->stateful)
		pp_state_replies(f, chain, id, out);
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < p->nr_acls; i++) {
			const struct pp_acl *a = &p->acls[i];

			if (a->out != out || a->allow != (pass == 1))
				continue;
			any_allow |= a->allow;
			if (a->remote.family != AF_INET6)
				acl_rule(f, chain, id, a, AF_INET, p->stateful);
			if (a->remote.family != AF_INET)
				acl_rule(f, chain, id, a, AF_INET6, p->stateful);
		}
	if (!any_allow) {
		/* No default drop this way: what passes opens flows too. */
		if (p->stateful) {
			pp_state_record(f, chain, id, out, AF_INET, "", PP_ANY, "");
			pp_state_record(f, chain, id, out, AF_INET6, "", PP_ANY, "");
		}
		return;
	}
	rule(f, chain, "meta protocol ip counter name %s_acl drop", id);
	rule(f, chain, "meta protocol ip6 meta l4proto != ipv6-icmp counter name %s_acl drop", id);
	rule(f, chain, "meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type != { nd-router-solicit, "
	     "nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } counter name %s_acl drop", id);
}

static void addr_elems(FILE *f, const char *set, const struct port_policy *p, int fam)
{
	bool first = true;

	for (size_t i = 0; i < p->nr_ips; i++) {
		char c[64];

		if (p->ips[i].family != fam)
			continue;
		pp_cidr_format(&p->ips[i], c, sizeof(c));
		fprintf(f, first ? "add element bridge cella %s { %s" : ", %s", first ? set : c, c);
		first = false;
	}
	if (!first)
		fputs(" }\n", f);
}

static void mirror_cmds(FILE *f, const char *id, const char *ifname, const struct port_policy *p,
			bool has_in, bool has_out, bool others)
{
	static const char *const dir[2] = { "in", "out" };
	static const char *const hook[2] = { "ingress", "egress" };
	bool has[2] = { has_in, has_out };

	for (int d = 0; d < 2; d++) {
		/* With max_out, tc's ingress redirect to the IFB takes the VM's
		 * frames before the netdev ingress hook (and the IFB's egress hook
		 * does not see them either): tc copies them (portpol_tc.c). */
		bool want = p->mirror_to[0] && !(d == 0 && p->max_out);

		if (want) {
			fprintf(f, "add table netdev cella\n");
			fprintf(f, "add chain netdev cella m%s_%s { type filter hook %s device \"%s\" "
				"priority 0 ; }\n", id + 1, dir[d], hook[d], ifname);
			fprintf(f, "flush chain netdev cella m%s_%s\n", id + 1, dir[d]);
			fprintf(f, "add rule netdev cella m%s_%s dup to \"%s\"\n", id + 1, dir[d], p->mirror_to);
		} else if (has[d] && (others || p->mirror_to[0])) {
			fprintf(f, "flush chain netdev cella m%s_%s\n", id + 1, dir[d]);
			fprintf(f, "delete chain netdev cella m%s_%s\n", id + 1, dir[d]);
		}
	}
	if (!p->mirror_to[0] && (has_in || has_out) && !others)
		fprintf(f, "delete table netdev cella\n");
}

int pp_nft_apply(const struct portpol_port *port, const struct port_policy *p,
		 uint16_t tc_minor, struct cerr *e)
{
	char id[64], in[80], out[80], err[768];
	json_t *nd = table_list("netdev");
	bool others = false, has_in, has_out;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int r;

	port_id(port->ifname, id);
	snprintf(in, sizeof(in), "m%s_in", id + 1);
	snprintf(out, sizeof(out), "m%s_out", id + 1);
	has_in = table_has_chain(nd, in, &others, id);
	has_out = table_has_chain(nd, out, NULL, id);
	json_decref(nd);
	snprintf(in, sizeof(in), "%s_in", id);
	snprintf(out, sizeof(out), "%s_out", id);
	f = open_memstream(&buf, &len);
	if (!f)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	fputs("add table bridge cella\n"
	      "add map bridge cella from_port { type ifname : verdict ; }\n"
	      "add map bridge cella to_port { type ifname : verdict ; }\n"
	      "add chain bridge cella pre { type filter hook prerouting priority -200 ; policy accept ; }\n"
	      "flush chain bridge cella pre\n"
	      "add rule bridge cella pre iifname vmap @from_port\n"
	      "add chain bridge cella post { type filter hook postrouting priority -200 ; policy accept ; }\n"
	      "flush chain bridge cella post\n"
	      "add rule bridge cella post oifname vmap @to_port\n", f);
	fprintf(f, "add chain bridge cella %s\nflush chain bridge cella %s\n", in, in);
	fprintf(f, "add chain bridge cella %s\nflush chain bridge cella %s\n", out, out);
	fprintf(f, "add counter bridge cella %s_rx\nadd counter bridge cella %s_tx\n", id, id);
	for (size_t i = 0; i < NR_REASONS; i++)
		fprintf(f, "add counter bridge cella %s_%s\n", id, reasons[i]);
	fprintf(f, "add set bridge cella %s_a4 { type ipv4_addr ; flags interval ; }\n"
		"flush set bridge cella %s_a4\n", id, id);
	fprintf(f, "add set bridge cella %s_a6 { type ipv6_addr ; flags interval ; }\n"
		"flush set bridge cella %s_a6\n", id, id);
	{
		char s4[80], s6[80];

		snprintf(s4, sizeof(s4), "%s_a4", id);
		snprintf(s6, sizeof(s6), "%s_a6", id);
		addr_elems(f, s4, p, AF_INET);
		addr_elems(f, s6, p, AF_INET6);
	}
	pp_state_sets(f, id, p->stateful);
	/* From the VM. */
	rule(f, in, "counter name %s_rx", id);
	vlan_rules(f, in, id, p);
	guard_rules(f, in, id, port->mac, p);
	if (tc_minor)
		rule(f, in, "meta priority set ce00:%x", tc_minor);
	acl_rules(f, in, id, p, true);
	/* To the VM. */
	rule(f, out, "counter name %s_tx", id);
	vlan_rules(f, out, id, p);
	acl_rules(f, out, id, p, false);
	fprintf(f, "add element bridge cella from_port { \"%s\" : jump %s }\n", port->ifname, in);
	fprintf(f, "add element bridge cella to_port { \"%s\" : jump %s }\n", port->ifname, out);
	mirror_cmds(f, id, port->ifname, p, has_in, has_out, others);
	if (fclose(f))
		return free(buf), cerr_set(e, CERR_INTERNAL, "", "out of memory");
	r = nft_run(buf, err, sizeof(err));
	free(buf);
	if (r && p->mirror_to[0] && (strstr(err, "Interface does not exist") || strstr(err, p->mirror_to)))
		return cerr_set(e, CERR_INVALID, "policy.mirror_to", "no interface %s on this host to "
				"mirror to (nftables: %s)", p->mirror_to, err);
	if (r)
		return cerr_set(e, CERR_INTERNAL, "policy", "nftables refused port %s's rules: %s",
				port->ifname, err);
	return 0;
}

void pp_nft_remove(const struct portpol_port *port)
{
	char id[64], name[80], err[320];
	json_t *t;
	bool others = false;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return;
	port_id(port->ifname, id);
	t = table_list("bridge");
	snprintf(name, sizeof(name), "%s_in", id);
	if (t && table_has_chain(t, name, &others, id)) {
		if (!others) {
			fputs("delete table bridge cella\n", f);
		} else {
			fprintf(f, "delete element bridge cella from_port { \"%s\" }\n", port->ifname);
			fprintf(f, "delete element bridge cella to_port { \"%s\" }\n", port->ifname);
			fprintf(f, "flush chain bridge cella %s_in\ndelete chain bridge cella %s_in\n", id, id);
			fprintf(f, "flush chain bridge cella %s_out\ndelete chain bridge cella %s_out\n", id, id);
			fprintf(f, "delete counter bridge cella %s_rx\ndelete counter bridge cella %s_tx\n", id, id);
			for (size_t i = 0; i < NR_REASONS; i++)
				fprintf(f, "delete counter bridge cella %s_%s\n", id, reasons[i]);
			fprintf(f, "delete set bridge cella %s_a4\ndelete set bridge cella %s_a6\n", id, id);
			pp_state_remove(f, id, t);
		}
	} else if (t && !others) {
		/* An empty table left by a failed first apply. */
		fputs("delete table bridge cella\n", f);
	}
	json_decref(t);
	t = table_list("netdev");
	if (t) {
		bool has_in, has_out;

		others = false;
		snprintf(name, sizeof(name), "m%s_in", id + 1);
		has_in = table_has_chain(t, name, &others, id);
		snprintf(name, sizeof(name), "m%s_out", id + 1);
		has_out = table_has_chain(t, name, NULL, id);
		if (!others)
			fputs("delete table netdev cella\n", f);
		else
			for (int d = 0; d < 2; d++)
				if (d ? has_out : has_in)
					fprintf(f, "delete chain netdev cella m%s_%s\n", id + 1, d ? "out" : "in");
		json_decref(t);
	}
	if (fclose(f) == 0 && len)
		(void)nft_run(buf, err, sizeof(err));
	free(buf);
}

json_t *pp_nft_counters(const struct portpol_port *port)
{
	struct nft_ctx *c = ctx_new(true);
	json_t *j = NULL, *o = NULL, *drops, *it;
	char id[64];
	size_t i, idl;

	if (!c)
		return NULL;
	port_id(port->ifname, id);
	idl = strlen(id);
	if (!nft_run_cmd_from_buffer(c, "list counters table bridge cella"))
		j = json_loads(nft_ctx_get_output_buffer(c), 0, NULL);
	nft_ctx_free(c);
	json_array_foreach(json_object_get(j, "nftables"), i, it) {
		json_t *cn = json_object_get(it, "counter");
		const char *n = json_string_value(json_object_get(cn, "name"));
		json_int_t pk = json_integer_value(json_object_get(cn, "packets"));
		json_int_t by = json_integer_value(json_object_get(cn, "bytes"));

		if (!n || strncmp(n, id, idl) || n[idl] != '_')
			continue;
		n += idl + 1;
		if (!o) {
			o = json_object();
			json_object_set_new(o, "drops", json_object());
		}
		if (!strcmp(n, "rx") || !strcmp(n, "tx")) {
			char k[16];

			snprintf(k, sizeof(k), "%s_packets", n);
			json_object_set_new(o, k, json_integer(pk));
			snprintf(k, sizeof(k), "%s_bytes", n);
			json_object_set_new(o, k, json_integer(by));
		} else {
			drops = json_object_get(o, "drops");
			json_object_set_new(drops, n, json_integer(pk));
		}
	}
	json_decref(j);
	return o;
}
