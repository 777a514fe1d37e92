/* tap.c: opening a tap interface with a virtio-net header, and deriving its guest MAC. */
#include "backend/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"

int tap_open(const char *who, const char *name)
{
	struct ifreq ifr;
	int hdr_len = TAP_VNET_HDR_LEN;
	int fd, ret;

	if (!name || !*name || strlen(name) >= IFNAMSIZ) {
		log_err("%s: tap name \"%s\" is empty or longer than %d characters", who,
			name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err("%s: cannot open /dev/net/tun: %s", who, strerror(-ret));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	memcpy(ifr.ifr_name, name, strlen(name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		log_err("%s: cannot attach to tap %s: %s%s", who, name, strerror(-ret),
			ret == -EPERM ? " (needs CAP_NET_ADMIN or a tap owned by this user)" :
			ret == -EBUSY ? " (already in use)" : "");
		goto fail;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		ret = -errno;
		log_err("%s: cannot set the vnet header size on tap %s: %s", who, name,
			strerror(-ret));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return ret;
}

void tap_derive_mac(const char *name, uint8_t mac[6])
{
	/* FNV-1a over the name: stable across runs and hosts. */
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const char *p = name ? name : ""; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 0x100000001b3ULL;
	}
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * i));
	mac[0] = (uint8_t)((mac[0] & 0xfe) | 0x02); /* unicast, locally administered */
}
