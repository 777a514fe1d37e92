/* balloon_parse.h: the virtio-balloon request formats, parsed from the
 * guest's buffers (untrusted: any length, any content) without touching
 * guest memory beyond the segments virtq_pop validated. Pure functions:
 * the fuzzer (tests/fuzz/virtio/fuzz_balloon.c) drives them directly. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/virtio_balloon.h>

#define BALLOON_PAGE_SIZE 4096ULL
/* Most PFNs one inflate/deflate chain may carry (Linux sends at most 256). */
#define BALLOON_PFNS_MAX  1024

/* The last statistics the driver sent. `valid` bit i set: tag i was seen. */
struct balloon_stats {
	uint64_t val[VIRTIO_BALLOON_S_NR];
	uint32_t valid;
	uint32_t unknown;   /* entries with tags this device does not know */
};

/* Parse the little-endian 32-bit PFNs of the driver-readable segments
 * iov[0, nr) into pfns[0, max). Bytes past the last whole PFN are ignored
 * and counted in *trailing. Returns the number of PFNs stored; a chain
 * with more than max is cut at max (*truncated set). */
size_t balloon_parse_pfns(const struct iovec *iov, unsigned nr, uint32_t *pfns, size_t max,
			  size_t *trailing, bool *truncated);

/* Parse struct virtio_balloon_stat entries (le16 tag, le64 value: 10 bytes,
 * packed) from iov[0, nr) into *st (cleared first). A trailing partial
 * entry is ignored. Returns the number of whole entries. */
size_t balloon_parse_stats(const struct iovec *iov, unsigned nr, struct balloon_stats *st);

/* The page-aligned part of a reported byte range [off, off + len) of guest
 * RAM (host-mapping offsets): *start and *plen (0 when no whole page). */
void balloon_range_align(uint64_t off, uint64_t len, uint64_t *start, uint64_t *plen);

/* JSON-friendly names of the statistics tags ("swap_in" ...), or NULL. */
const char *balloon_stat_name(unsigned tag);
