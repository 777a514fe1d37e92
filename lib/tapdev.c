/* tapdev.c: attaching to a tap interface with a virtio-net header (tapdev.h). */
#include "tapdev.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fdspec.h"

#define TAPDEV_FLAGS (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

static int tapdev_finish(int fd, const char *name, char *err, size_t errlen)
{
	int hdr_len = TAPDEV_VNET_HDR_LEN;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		snprintf(err, errlen, "tap %s: %s", name, strerror(errno));
		return -errno;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		snprintf(err, errlen, "cannot set the vnet header size on tap %s: %s", name,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

static int tapdev_attach(const char *name, short extra, char *err, size_t errlen);

int tapdev_open(const char *name, char *err, size_t errlen)
{
	return tapdev_attach(name, 0, err, errlen);
}

int tapdev_open_queue(const char *name, char *err, size_t errlen)
{
	return tapdev_attach(name, IFF_MULTI_QUEUE, err, errlen);
}

static int tapdev_attach(const char *name, short extra, char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd, ret;

	if (!name || !*name || strlen(name) >= IFNAMSIZ) {
		snprintf(err, errlen, "tap name \"%s\" is empty or longer than %d characters",
			 name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(-ret));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = TAPDEV_FLAGS | extra;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot attach to tap %s: %s%s", name, strerror(-ret),
			 ret == -EPERM ? " (needs CAP_NET_ADMIN or a tap owned by this user)" :
			 ret == -EBUSY ? " (already in use)" :
			 ret == -EINVAL && extra ? " (created without multi_queue? several queues "
						   "need ip tuntap add ... multi_queue)" : "");
		goto fail;
	}
	ret = tapdev_finish(fd, name, err, errlen);
	if (ret)
		goto fail;
	return fd;
fail:
	close(fd);
	return ret;
}

int tapdev_adopt(const char *spec, const char *name, char *err, size_t errlen)
{
	struct ifreq ifr;
	int fd, ret;

	if (!fdspec_is_fd(spec, &fd) || fd < 0) {
		snprintf(err, errlen, "%s: expected fd:N, N a descriptor number", spec);
		return -EINVAL;
	}
	memset(&ifr, 0, sizeof(ifr));
	if (ioctl(fd, TUNGETIFF, &ifr) < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: not a tun/tap descriptor (TUNGETIFF: %s)", spec,
			 strerror(-ret));
		return ret == -EBADF ? ret : -EINVAL;
	}
	ifr.ifr_name[IFNAMSIZ - 1] = 0;
	if ((ifr.ifr_flags & TAPDEV_FLAGS) != TAPDEV_FLAGS || (ifr.ifr_flags & IFF_TUN)) {
		snprintf(err, errlen, "%s: attached to %s without IFF_TAP | IFF_NO_PI | "
			 "IFF_VNET_HDR (flags 0x%x)", spec, ifr.ifr_name, (unsigned)ifr.ifr_flags);
		return -EINVAL;
	}
	if (name && strcmp(ifr.ifr_name, name)) {
		snprintf(err, errlen, "%s: attached to tap %s, not %s", spec, ifr.ifr_name, name);
		return -EINVAL;
	}
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", spec, strerror(-ret));
		return ret;
	}
	ret = tapdev_finish(fd, ifr.ifr_name, err, errlen);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}
