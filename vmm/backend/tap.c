/* tap.c: a tap interface with a virtio-net header (lib/tapdev.c), opened by
 * name or passed in, and its guest MAC. */
#include "backend/tap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fdspec.h"

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

unsigned tap_fd_count(const char *fd_spec)
{
	unsigned n = 0;

	for (const char *p = fd_spec; p && *p; n++) {
		size_t len = strcspn(p, "+");
		char part[24];
		int fd;

		if (len >= sizeof(part))
			return 0;
		memcpy(part, p, len);
		part[len] = 0;
		if (!fdspec_is_fd(part, &fd) || fd < 0)
			return 0;
		p += len;
		if (*p == '+' && !*++p)
			return 0;
	}
	return n;
}

void tap_fd_close_passed(const char *fd_spec)
{
	for (const char *p = fd_spec; p && *p;) {
		size_t len = strcspn(p, "+");
		char part[24];
		int fd;

		snprintf(part, sizeof(part), "%.*s", (int)(len < sizeof(part) ? len : 0), p);
		if (fdspec_is_fd(part, &fd) && fd > 2)
			close(fd);
		p += len + (p[len] == '+');
	}
}

int tap_open_queues(const char *who, const char *name, const char *fd_spec, int *fds,
		    unsigned nr)
{
	const char *p = fd_spec;
	char err[256];

	if (fd_spec && tap_fd_count(fd_spec) != nr) {
		log_err("%s: tap_fd %s: expected %u descriptors fd:N+fd:M..., one per queue", who,
			fd_spec, nr);
		return -EINVAL;
	}
	for (unsigned q = 0; q < nr; q++) {
		if (p) {
			char part[24];
			size_t len = strcspn(p, "+");

			snprintf(part, sizeof(part), "%.*s", (int)len, p);
			p += len + (p[len] == '+');
			fds[q] = tapdev_adopt(part, name, err, sizeof(err));
		} else {
			fds[q] = tapdev_open_queue(name, err, sizeof(err));
		}
		if (fds[q] < 0) {
			int ret = fds[q];

			log_err("%s: %s", who, err);
			while (q--)
				close(fds[q]);
			return ret;
		}
	}
	return 0;
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
