/* net.h: the NIC rules of a VM configuration (virtio-net), shared by
 * cella-vm's --net flag and JSON file and cellad's definitions, so both
 * accept and refuse the same tap names and MAC addresses. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "conf/limits.h"

/* What a NIC's MAC must be, for error messages. */
#define CONF_MAC_SYNTAX "a unicast aa:bb:cc:dd:ee:ff"
/* What a tap name must be, for error messages. */
#define CONF_TAP_SYNTAX "an interface name (1-15 of A-Z a-z 0-9 . _ -)"

/* s is exactly aa:bb:cc:dd:ee:ff (hex), a unicast address (the low bit of
 * the first byte clear: a multicast address cannot be a NIC's); its bytes in
 * mac when mac is not NULL. */
bool conf_mac_parse(const char *s, uint8_t mac[6]);
/* s names a host interface: 1..CONF_TAP_NAME_MAX of A-Z a-z 0-9 . _ -,
 * starting with a letter or digit. */
bool conf_tap_valid(const char *s);

/* What a NIC's VLAN and MTU must be, for error messages. */
#define CONF_VLAN_SYNTAX "a VLAN id 1-4094 or \"trunk\""
#define CONF_MTU_SYNTAX "an MTU of 68-65535"
/* s is a VLAN id 1..4094 (*vid) or "trunk" (*trunk set, *vid 0). */
bool conf_vlan_parse(const char *s, unsigned *vid, bool *trunk);
/* Queue pairs a NIC may have (virtio-net's NET_MAX_PAIRS). */
#define CONF_NET_MAX_QUEUES 3
#define CONF_QUEUES_SYNTAX "a queue pair count of 1-3"
/* s is a decimal queue pair count 1..CONF_NET_MAX_QUEUES. */
bool conf_queues_parse(const char *s, unsigned *n);
/* s is a decimal MTU 68..65535. */
bool conf_mtu_parse(const char *s, unsigned *mtu);
