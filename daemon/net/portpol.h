/* portpol.h: a virtual switch port's policy (docs/networking.md): VLAN,
 * MAC/IP/DHCP/router guards, ACLs, bandwidth, mirroring, counters, put on
 * the host with nftables (bridge family) and tc. The switch layer
 * (daemon/net/switch*.c) creates bridges and taps and calls these for each
 * port; this file knows no VM, no store and no HTTP.
 *
 * Interface fixed by the lead so the switch and the policy work can land
 * apart; portpol.c starts as a stub that accepts only {} and applies nothing. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>
#include "cerr.h"

struct port_policy; /* defined in portpol.c (opaque to the switch layer) */

/* Parse a NIC's "policy" object (NULL or {} = no policy). On error: NULL,
 * e filled with field "policy.<name>" and the reason. */
struct port_policy *portpol_parse(const json_t *j, struct cerr *e);
/* The policy as JSON (a new reference), as portpol_parse reads it back. */
json_t *portpol_json(const struct port_policy *p);
void portpol_free(struct port_policy *p);

/* The port being configured: the switch's bridge, the port's interface (a
 * tap; a veth in tests), the VM's MAC ("aa:bb:..."), and the uplink (the
 * external switch's physical interface; "" for internal/private switches). */
struct portpol_port {
	const char *sw;      /* switch name */
	const char *bridge;  /* its Linux bridge */
	const char *ifname;  /* the port's interface */
	const char *mac;
	const char *uplink;  /* "" when none */
};

/* Put p on the port, replacing whatever this port had (idempotent; works on
 * a running VM's port). On failure nothing of this port's new policy stays
 * and the old one is restored or removed; returns -1 with e filled. */
int portpol_apply(const struct portpol_port *port, const struct port_policy *p, struct cerr *e);
/* Remove every rule, qdisc and class this port had; safe when none. */
void portpol_remove(const struct portpol_port *port);
/* The port's counters ({"rx_packets":..,"tx_bytes":..,"drops":{"mac_spoof":..}}),
 * a new reference, or NULL when the port has none. */
json_t *portpol_counters(const struct portpol_port *port);

/* Whether this host's kernel can track bridged flows itself
 * (nf_conntrack_bridge: `ct state` in nftables' bridge family), probed with
 * a dry-run transaction that leaves nothing. Reported with the switches
 * (docs/networking.md, "Stateful ACLs"); stateful ACLs use the port's own
 * flow sets either way. */
bool portpol_conntrack_bridge(void);
/* Whether p's ACLs are stateful (its "stateful", or false). */
bool portpol_stateful(const struct port_policy *p);

/* What the worker's port does with 802.1Q tags (docs/networking.md, "VLANs"):
 * -1 nothing (no VLAN), 0 a trunk (tags pass through), N: access VLAN N (the
 * worker tags the guest's frames with N and untags N toward it; nftables on
 * the host enforces the same). */
int portpol_worker_vlan(const struct port_policy *p);
