/* net_be.c: virtio-net's back end boundary: frames in and out (each with
 * its 12-byte vnet header) and the offloads the back end may deliver. A
 * frame back end that is not a tap (e.g. a stream socket with a length
 * prefix) hooks in here and reports no offloads. */
#include <errno.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "backend/passt.h"
#include "virtio/net/net.h"

/* The system calls themselves, not libc's readv/writev: those are
 * cancellation points, and their cancellation bookkeeping costs about a
 * tenth of the I/O thread's time per small frame; this thread is never
 * cancelled. */
static ssize_t fd_readv(int fd, const struct iovec *iov, unsigned nr)
{
	return syscall(SYS_readv, fd, iov, nr);
}

static ssize_t fd_writev(int fd, const struct iovec *iov, unsigned nr)
{
	return syscall(SYS_writev, fd, iov, nr);
}

ssize_t net_be_readv(struct net_be *be, const struct iovec *iov, unsigned nr)
{
	ssize_t n = be->passt ? passt_readv(be->passt, iov, nr, sizeof(struct virtio_net_hdr_v1))
			      : fd_readv(be->fd, iov, nr);

	return n < 0 ? -errno : n;
}

ssize_t net_be_writev(struct net_be *be, const struct iovec *iov, unsigned nr)
{
	ssize_t n = be->passt ? passt_writev(be->passt, iov, nr, sizeof(struct virtio_net_hdr_v1))
			      : fd_writev(be->fd, iov, nr);

	return n < 0 ? -errno : n;
}

int net_be_set_offload(struct net_be *be, unsigned tun_flags)
{
	tun_flags &= be->offloads;
	if (!be->is_tap || tun_flags == be->applied)
		return 0;
	/* The worker's seccomp allows TUNSETOFFLOAD by exact number: it
	 * changes only what this tap may hand us (docs/security.md). */
	if (ioctl(be->fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0)
		return -errno;
	be->applied = tun_flags;
	return 0;
}

unsigned net_be_probe(int fd, bool *is_tap)
{
	static const unsigned tries[] = {
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO,
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN,
		TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
		TUN_F_CSUM,
	};
	struct ifreq ifr = { 0 };
	unsigned got = 0;

	*is_tap = ioctl(fd, TUNGETIFF, &ifr) == 0;
	if (!*is_tap)
		return 0;
	/* Newer kernels refuse UFO (or anything they lack) with EINVAL: keep
	 * the largest set the tap takes, then leave it with none until the
	 * driver negotiates. */
	for (unsigned i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
			got = tries[i];
			break;
		}
	}
	if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0)
		return 0;
	return got;
}

int net_be_set_queue(struct net_be *be, bool attach)
{
	struct ifreq ifr = { .ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };

	if (!be->is_tap)
		return 0;
	/* Allowed by exact number in the worker's seccomp list, like
	 * TUNSETOFFLOAD: it changes only which of this tap's queues get
	 * frames. */
	return ioctl(be->fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}
