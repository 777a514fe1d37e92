/* portpol_state.c: stateful ACLs without bridge conntrack (docs/networking.md,
 * "Stateful ACLs"). A port with "stateful" keeps the flows its ACLs let
 * through in nftables sets of its own, filled from the packet path (dynamic
 * sets with timeouts, as Cisco's reflexive ACLs): each flow is written
 * VM side first (VM address, remote address, protocol, VM port, remote
 * port; for ICMP echo the identifier), whichever direction opened it, and
 * a packet of a known flow passes in both directions before the ACL
 * entries are looked at. A new connection from outside matches no flow
 * and meets the ACL. Works with any kernel's nf_tables (this host has no
 * nf_conntrack_bridge, so `ct state` cannot be used in the bridge family);
 * portpol_conntrack_bridge() says whether the host has it, for reports. */
#include <stdio.h>
#include <string.h>
#include <nftables/libnftables.h>

#include "portpol_int.h"

/* Idle timeouts, refreshed by every packet of the flow (conntrack's TCP
 * established timeout is days; two hours is what most firewalls keep). */
#define PP_FLOW_TCP_S  7200
#define PP_FLOW_UDP_S  180
#define PP_FLOW_ICMP_S 30
#define PP_FLOWS_MAX   65536 /* per port and family: a full set records no more */

static const char *const sets[] = { "f4", "f6", "e4", "e6" };

/* The flow key written VM side first, for a packet going from the VM
 * (from_vm) or to it. */
static const char *flow_key(int fam, bool from_vm)
{
	if (fam == AF_INET)
		return from_vm ? "ip saddr . ip daddr . meta l4proto . th sport . th dport"
			       : "ip daddr . ip saddr . meta l4proto . th dport . th sport";
	return from_vm ? "ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport"
		       : "ip6 daddr . ip6 saddr . meta l4proto . th dport . th sport";
}

static const char *echo_key(int fam, bool from_vm)
{
	if (fam == AF_INET)
		return from_vm ? "ip saddr . ip daddr . icmp id" : "ip daddr . ip saddr . icmp id";
	return from_vm ? "ip6 saddr . ip6 daddr . icmpv6 id" : "ip6 daddr . ip6 saddr . icmpv6 id";
}

void pp_state_sets(FILE *f, const char *id, bool stateful)
{
	static const char *const types[] = {
		"ip saddr . ip daddr . meta l4proto . th sport . th dport",
		"ip6 saddr . ip6 daddr . meta l4proto . th sport . th dport",
		"ip saddr . ip daddr . icmp id",
		"ip6 saddr . ip6 daddr . icmpv6 id",
	};

	for (unsigned i = 0; i < 4; i++) {
		fprintf(f, "add set bridge cella %s_%s { typeof %s ; flags dynamic,timeout ; "
			"timeout %us ; size %u ; }\n", id, sets[i], types[i],
			i < 2 ? PP_FLOW_UDP_S : PP_FLOW_ICMP_S, PP_FLOWS_MAX);
		/* A policy change keeps the flows it had (as conntrack would);
		 * turning state off forgets them. */
		if (!stateful)
			fprintf(f, "flush set bridge cella %s_%s\n", id, sets[i]);
	}
}

void pp_state_replies(FILE *f, const char *chain, const char *id, bool from_vm)
{
	for (int fam = AF_INET; fam; fam = fam == AF_INET ? AF_INET6 : 0) {
		const char *ip = fam == AF_INET ? "ip" : "ip6", *v = fam == AF_INET ? "4" : "6";
		const char *k = flow_key(fam, from_vm), *ek = echo_key(fam, from_vm);

		fprintf(f, "add rule bridge cella %s meta protocol %s meta l4proto tcp %s @%s_f%s "
			"update @%s_f%s { %s timeout %us } accept\n", chain, ip, k, id, v, id, v, k,
			PP_FLOW_TCP_S);
		fprintf(f, "add rule bridge cella %s meta protocol %s meta l4proto udp %s @%s_f%s "
			"update @%s_f%s { %s timeout %us } accept\n", chain, ip, k, id, v, id, v, k,
			PP_FLOW_UDP_S);
		/* The answer to an echo request the other way. */
		fprintf(f, "add rule bridge cella %s meta protocol %s %s type echo-reply %s @%s_e%s "
			"accept\n", chain, ip, fam == AF_INET ? "icmp" : "icmpv6", ek, id, v);
	}
}

void pp_state_record(FILE *f, const char *chain, const char *id, bool from_vm, int fam,
		     const char *match, enum pp_proto proto, const char *verdict)
{
	const char *ip = fam == AF_INET ? "ip" : "ip6", *v = fam == AF_INET ? "4" : "6";
	const char *k = flow_key(fam, from_vm);

	if (proto == PP_ANY || proto == PP_TCP)
		fprintf(f, "add rule bridge cella %s meta protocol %s %smeta l4proto tcp update "
			"@%s_f%s { %s timeout %us }%s\n", chain, ip, match, id, v, k, PP_FLOW_TCP_S,
			verdict);
	if (proto == PP_ANY || proto == PP_UDP)
		fprintf(f, "add rule bridge cella %s meta protocol %s %smeta l4proto udp update "
			"@%s_f%s { %s timeout %us }%s\n", chain, ip, match, id, v, k, PP_FLOW_UDP_S,
			verdict);
	if (proto == PP_ANY || proto == PP_ICMP)
		fprintf(f, "add rule bridge cella %s meta protocol %s %s%s type echo-request update "
			"@%s_e%s { %s timeout %us }%s\n", chain, ip, match,
			fam == AF_INET ? "icmp" : "icmpv6", id, v, echo_key(fam, from_vm),
			PP_FLOW_ICMP_S, verdict);
}

void pp_state_remove(FILE *f, const char *id, const json_t *table)
{
	for (unsigned i = 0; i < 4; i++) {
		char name[80];
		size_t k;
		json_t *it;

		snprintf(name, sizeof(name), "%s_%s", id, sets[i]);
		/* Ports put on by an older cellad have none. */
		json_array_foreach(table, k, it) {
			const char *n = json_string_value(json_object_get(json_object_get(it, "set"),
									  "name"));

			if (n && !strcmp(n, name)) {
				fprintf(f, "delete set bridge cella %s\n", name);
				break;
			}
		}
	}
}

bool portpol_conntrack_bridge(void)
{
	/* A dry run: the kernel checks the rule (nft_ct asks for bridge
	 * conntrack, loading nf_conntrack_bridge where it is a module) and the
	 * transaction is aborted, so nothing stays on the host. */
	static const char probe[] = "add table bridge cella_ct_probe\n"
				    "add chain bridge cella_ct_probe c\n"
				    "add rule bridge cella_ct_probe c ct state established accept\n";
	struct nft_ctx *c = nft_ctx_new(NFT_CTX_DEFAULT);
	int r;

	if (!c)
		return false;
	nft_ctx_buffer_output(c);
	nft_ctx_buffer_error(c);
	nft_ctx_set_dry_run(c, true);
	r = nft_run_cmd_from_buffer(c, probe);
	nft_ctx_free(c);
	return r == 0;
}
