/* switch.h: virtual switches on the host (docs/networking.md): a Linux
 * bridge per switch, made and checked over netlink (libnl-route-3), and the
 * switch ports (a persistent tap per VM NIC, attached to the bridge, with
 * the port's policy from portpol.h). This layer knows no VM registry, no
 * store and no HTTP: the core keeps the definitions and calls these. Every
 * create either finishes or leaves nothing behind on the host. */
#pragma once
#include <net/if.h>
#include <stdbool.h>
#include <jansson.h>

#include "cerr.h"
#include "portpol.h"

#define SW_NAME_MAX 32
#define SW_MAX      64 /* switches per host */

enum sw_type { SW_EXTERNAL, SW_INTERNAL, SW_PRIVATE };

struct sw_def {
	char name[SW_NAME_MAX + 1];
	enum sw_type type;
	char uplink[IFNAMSIZ];  /* external only */
	char address[64];       /* internal only: "A.B.C.D/N" or "" */
	char bridge[IFNAMSIZ];  /* the Linux bridge, from the name (sw_bridge_name) */
	bool stateful;          /* its ports' ACLs are stateful unless a policy says "stateful": false */
};

const char *sw_type_name(enum sw_type t);
/* A switch name: 1..SW_NAME_MAX of A-Z a-z 0-9 . _ -, starting with a
 * letter or digit. */
bool sw_name_valid(const char *s);
/* The bridge of switch name: "cbr-NAME" when it fits IFNAMSIZ, else
 * "cbr-" + the first 5 characters + "." + 5 hex digits of a hash. */
void sw_bridge_name(const char *name, char out[IFNAMSIZ]);
/* A switch from the API's body ({"name", "type", "uplink", "address"}) or
 * the store's record (which adds "bridge"): checked, -1 with e naming the
 * field otherwise. Host checks (the uplink exists) come with sw_host_create. */
int sw_def_parse(const json_t *j, struct sw_def *d, struct cerr *e);
json_t *sw_def_json(const struct sw_def *d);

/* Make d's bridge (with its uplink or address) on the host. Refuses an
 * existing bridge, a missing uplink, one already in a bridge or a bridge
 * itself. On failure nothing of it stays. */
int sw_host_create(const struct sw_def *d, struct cerr *e);
/* At cellad's start: make the bridge if it is gone (a host reboot), else
 * put back what is missing (up, uplink, address). On failure (-1, e: an
 * uplink that is gone...) the bridge is kept, up, without it. */
int sw_host_ensure(const struct sw_def *d, struct cerr *e);
/* Remove the bridge (its ports are released, the uplink stays). */
void sw_host_delete(const struct sw_def *d);
/* Whether br_netfilter sends bridged IPv4 frames through iptables here
 * (net.bridge.bridge-nf-call-iptables = 1): a DROP policy in FORWARD then
 * cuts VMs on one switch off from each other (docs/networking.md). */
bool sw_host_br_netfilter(void);
/* The bridge as the host sees it: {"present", "up", "ports":[..]}. */
json_t *sw_host_status(const struct sw_def *d);

/* Ports (port.c). tap: the port's interface name (chosen by the caller).
 * Creates the persistent tap (vnet header; IFF_MULTI_QUEUE when queues >
 * 1) if it is missing, attaches it to the bridge, brings it up, applies p
 * (portpol_apply: the policy is the tap device's, whatever its queues);
 * fds[0..queues-1] get an open descriptor per queue for the worker
 * (tapdev_open's, tapdev_open_queue's). A tap left from an earlier run in
 * the other queue mode is made anew. 0, or -1 with e filled and nothing
 * left on the host. queues: 0 or 1 for one. */
int port_open(const struct sw_def *sw, const char *tap, const char *mac,
	      const struct port_policy *p, unsigned queues, int *fds, struct cerr *e);
/* A port whose worker still runs (cellad restarted, or the bridge was
 * recreated): attach the existing tap again and re-apply p. */
int port_reattach(const struct sw_def *sw, const char *tap, const char *mac,
		  const struct port_policy *p, struct cerr *e);
/* Change a running port's policy. */
int port_set_policy(const struct sw_def *sw, const char *tap, const char *mac,
		    const struct port_policy *p, struct cerr *e);
/* Remove the port's policy and its tap; safe when either is gone. */
void port_remove(const struct sw_def *sw, const char *tap, const char *mac);
/* The tap's own counters (netlink link statistics) merged with
 * portpol_counters(): a new object, or NULL when the tap is gone. */
json_t *port_counters(const struct sw_def *sw, const char *tap, const char *mac);
