/* tap.h: host tap interfaces for virtio-net: open with the virtio-net
 * header, and a stable MAC address for a tap name. */
#pragma once
#include <stdint.h>

#include "compiler.h"
#include "tapdev.h"

/* Size of struct virtio_net_hdr_v1, which the tap prepends to every frame. */
#define TAP_VNET_HDR_LEN TAPDEV_VNET_HDR_LEN

/* fd_spec NULL: attach to (or create) tap interface `name` with IFF_TAP |
 * IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header. fd_spec "fd:N": a
 * tap somebody else attached (cellad), checked to be interface `name` with
 * those flags (tapdev_adopt). The fd is non-blocking. Returns the fd, or
 * -errno with the reason logged with `who` as prefix. */
int tap_open(const char *who, const char *name, const char *fd_spec) __must_check;

/* A locally administered unicast MAC derived from the tap name, the same
 * for the same name across runs. */
void tap_derive_mac(const char *name, uint8_t mac[6]);
