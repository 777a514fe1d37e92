/* tap.c: a tap interface with a virtio-net header (lib/tapdev.c), opened by
 * name or passed in, and its guest MAC. */
#include "backend/tap.h"

#include "log.h"
#include "tapdev.h"

int tap_open(const char *who, const char *name, const char *fd_spec)
{
	char err[256];
	int fd = fd_spec ? tapdev_adopt(fd_spec, name, err, sizeof(err))
			 : tapdev_open(name, err, sizeof(err));

	if (fd < 0)
		log_err("%s: %s", who, err);
	return fd;
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
