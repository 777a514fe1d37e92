/* balloon_parse.c: parsing of virtio-balloon requests (balloon_parse.h). */
#include <endian.h>
#include <string.h>

#include "virtio/balloon/balloon_parse.h"
#include "virtio/virtq.h"

static const char *const stat_names[VIRTIO_BALLOON_S_NR] = {
	"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory",
	"total_memory", "available_memory", "disk_caches", "hugetlb_allocations",
	"hugetlb_failures",
};

const char *balloon_stat_name(unsigned tag)
{
	return tag < VIRTIO_BALLOON_S_NR ? stat_names[tag] : NULL;
}

size_t balloon_parse_pfns(const struct iovec *iov, unsigned nr, uint32_t *pfns, size_t max,
			  size_t *trailing, bool *truncated)
{
	size_t total = 0, n = 0, off = 0;

	for (unsigned i = 0; i < nr; i++)
		total += iov[i].iov_len;
	*truncated = total / 4 > max;
	*trailing = total % 4;
	/* PFNs may straddle segments: copy each through iov_to_buf. */
	while (n < max && off + 4 <= total) {
		uint32_t v;

		if (iov_to_buf(iov, nr, off, &v, 4) != 4)
			break;
		pfns[n++] = le32toh(v);
		off += 4;
	}
	return n;
}

size_t balloon_parse_stats(const struct iovec *iov, unsigned nr, struct balloon_stats *st)
{
	size_t total = 0, off = 0, n = 0;

	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < nr; i++)
		total += iov[i].iov_len;
	while (off + 10 <= total) {
		uint8_t e[10];
		uint16_t tag;
		uint64_t val;

		if (iov_to_buf(iov, nr, off, e, sizeof(e)) != sizeof(e))
			break;
		memcpy(&tag, e, 2);
		memcpy(&val, e + 2, 8);
		tag = le16toh(tag);
		if (tag < VIRTIO_BALLOON_S_NR) {
			st->val[tag] = le64toh(val);
			st->valid |= 1u << tag;
		} else {
			st->unknown++;
		}
		off += sizeof(e);
		n++;
	}
	return n;
}

void balloon_range_align(uint64_t off, uint64_t len, uint64_t *start, uint64_t *plen)
{
	uint64_t s, e;

	if (off > UINT64_MAX - BALLOON_PAGE_SIZE) {
		*start = off;
		*plen = 0;
		return;
	}
	s = (off + BALLOON_PAGE_SIZE - 1) & ~(BALLOON_PAGE_SIZE - 1);
	e = len > UINT64_MAX - off ? UINT64_MAX : off + len;
	e &= ~(BALLOON_PAGE_SIZE - 1);
	*start = s;
	*plen = e > s ? e - s : 0;
}
