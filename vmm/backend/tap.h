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

/* The nr (> 1) queues of one multi-queue tap into fds: fd_spec NULL, each
 * attached by name (tapdev_open_queue); else fd_spec lists nr queues
 * somebody else attached, "fd:N+fd:M+..." (cellad's, queue 0 first), each
 * adopted as tap_open does. 0, or -errno with the reason logged and
 * nothing left open. */
int tap_open_queues(const char *who, const char *name, const char *fd_spec, int *fds,
		    unsigned nr) __must_check;
/* Close every descriptor a tap_fd spec names ("fd:N" or "fd:N+fd:M+...",
 * those above 2): the passed originals, once their users hold duplicates. */
void tap_fd_close_passed(const char *fd_spec);
/* How many "fd:N" parts a tap_fd spec has ("fd:5+fd:6": 2); 0 when a part
 * is not fd:N. */
unsigned tap_fd_count(const char *fd_spec);

/* A locally administered unicast MAC derived from the tap name, the same
 * for the same name across runs. */
void tap_derive_mac(const char *name, uint8_t mac[6]);
