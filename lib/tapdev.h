/* tapdev.h: attaching to a host tap interface the way virtio-net wants it,
 * shared by cellad (which opens a VM's taps and passes them to its worker)
 * and cella-vm (which opens them itself when run by hand). */
#pragma once
#include <stddef.h>

#include "compiler.h"

/* Size of struct virtio_net_hdr_v1, which the tap prepends to every frame. */
#define TAPDEV_VNET_HDR_LEN 12

/* Attach to (or create) tap interface `name` with IFF_TAP | IFF_NO_PI |
 * IFF_VNET_HDR and a 12-byte vnet header; the fd is non-blocking and
 * close-on-exec. Returns the fd, or -errno with the reason in err ("cannot
 * attach to tap t0: Operation not permitted (needs CAP_NET_ADMIN or a tap
 * owned by this user)"). */
int tapdev_open(const char *name, char *err, size_t errlen) __must_check;

/* Take a descriptor somebody else attached ("fd:N" of cella-vm's --net
 * tap_fd=): check that it is a tap attached to interface `name` with
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, make it non-blocking and set the vnet
 * header size. Returns a close-on-exec duplicate, or -errno with the
 * reason in err ("fd:7: not a tun/tap descriptor"). */
/* One queue of multi-queue tap `name` (IFF_MULTI_QUEUE added to the
 * flags above); call once per queue. A tap that exists without
 * multi_queue is refused with a clear message. Returns the fd or -errno. */
int tapdev_open_queue(const char *name, char *err, size_t errlen) __must_check;
int tapdev_adopt(const char *spec, const char *name, char *err, size_t errlen) __must_check;
