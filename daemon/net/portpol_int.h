/* portpol_int.h: the port policy as parsed (portpol.c), shared by the
 * nftables (portpol_nft.c) and tc (portpol_tc.c) halves. Not for the
 * switch layer, which sees struct port_policy as opaque. */
#pragma once
#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include "portpol.h"

#define PP_MAX_IPS  256
#define PP_MAX_ACLS 256
#define PP_RATE_MAX 16000000000ULL /* bits/s: libnl's 32-bit byte rates */

enum pp_vlan { PP_VLAN_NONE, PP_VLAN_ACCESS, PP_VLAN_TRUNK };
enum pp_proto { PP_ANY = 0, PP_ICMP = 1, PP_TCP = 6, PP_UDP = 17 };

struct pp_cidr {
	int family;        /* AF_INET, AF_INET6; 0: any address */
	uint8_t addr[16];  /* host bits cleared */
	int plen;
};

struct pp_acl {
	bool out;          /* from the VM (remote = destination) */
	bool allow;
	struct pp_cidr remote;
	enum pp_proto proto;
	uint16_t port_lo, port_hi; /* destination port; 0,0 = any */
};

struct port_policy {
	enum pp_vlan vlan;
	uint16_t access;
	uint8_t trunk[4096 / 8];   /* allowed VIDs (bitmap) */
	bool mac_guard, dhcp_guard, router_guard;
	bool ip_guard;
	struct pp_cidr ips[PP_MAX_IPS];
	size_t nr_ips;
	struct pp_acl *acls;
	size_t nr_acls;
	/* bandwidth, bits/s (0: none); burst in bytes (0: default) */
	uint64_t max_in, max_out, min, link, burst;
	char mirror_to[IFNAMSIZ];
	bool stateful;             /* ACLs pass the flows they let through both ways */
};

static inline bool pp_trunk_has(const struct port_policy *p, unsigned vid)
{
	return vid < 4096 && (p->trunk[vid / 8] >> (vid % 8)) & 1;
}

/* "A.B.C.D/N" or "X::Y/N" (prefix optional): 0, or -1. */
int pp_cidr_parse(const char *s, struct pp_cidr *c);
void pp_cidr_format(const struct pp_cidr *c, char *out, size_t len);

/* The port's nftables objects, all in one transaction (portpol_nft.c). */
int pp_nft_apply(const struct portpol_port *port, const struct port_policy *p,
		 uint16_t tc_minor, struct cerr *e);
void pp_nft_remove(const struct portpol_port *port);
json_t *pp_nft_counters(const struct portpol_port *port);

/* Stateful ACLs with the port's flow sets (portpol_state.c), as text for
 * pp_nft_apply's transaction: the sets (flushed when !stateful); the rules
 * passing packets of known flows; the rules recording a flow that match
 * (an ACL entry's match text, "" for all) lets through, then verdict
 * (" accept" or ""); the sets' removal (those in table, `list table`). */
void pp_state_sets(FILE *f, const char *id, bool stateful);
void pp_state_replies(FILE *f, const char *chain, const char *id, bool from_vm);
void pp_state_record(FILE *f, const char *chain, const char *id, bool from_vm, int fam,
		     const char *match, enum pp_proto proto, const char *verdict);
void pp_state_remove(FILE *f, const char *id, const json_t *table);

/* The port's qdiscs, classes and filters (portpol_tc.c). tc_minor: the
 * port's class on the uplink's HTB (the nft rules mark frames with it). */
uint16_t pp_tc_minor(const char *ifname);
/* The IFB that shapes the port's max_out ("cif" + 8 hex digits). */
void pp_ifb_name(const char *ifname, char out[IFNAMSIZ]);
int pp_tc_apply(const struct portpol_port *port, const struct port_policy *p, struct cerr *e);
void pp_tc_remove(const struct portpol_port *port);
/* The lock serialising changes to cellad's shared table and qdiscs. */
int pp_lock(void);
void pp_unlock(int fd);
