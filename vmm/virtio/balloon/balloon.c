/* balloon.c: virtio-balloon: inflate and deflate queues, the statistics
 * queue and free page reporting (see balloon.h for the design). */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <linux/falloc.h>
#include <linux/virtio_ids.h>

#include "conf/schema.h"
#include "devtype.h"
#include "log.h"
#include "mem_prefetch.h"
#include "virtio/balloon/balloon.h"
#include "vm.h"

extern const struct device_type devtype_virtio_balloon;

static const struct device_ops balloon_device_ops = VIRTIO_DEVICE_OPS("virtio-balloon");

#define BITS_PER_WORD (8 * sizeof(unsigned long))

static bool bit_test(const unsigned long *map, uint64_t i)
{
	return (map[i / BITS_PER_WORD] >> (i % BITS_PER_WORD)) & 1;
}

static void bit_set(unsigned long *map, uint64_t i, bool on)
{
	if (on)
		map[i / BITS_PER_WORD] |= 1UL << (i % BITS_PER_WORD);
	else
		map[i / BITS_PER_WORD] &= ~(1UL << (i % BITS_PER_WORD));
}

enum balloon_queue balloon_queue_role(const struct virtio_dev *vd, unsigned q)
{
	bool stats = virtio_dev_has(vd, VIRTIO_BALLOON_F_STATS_VQ);
	bool rep = virtio_dev_has(vd, VIRTIO_BALLOON_F_REPORTING);

	if (q == 0)
		return BQ_INFLATE;
	if (q == 1)
		return BQ_DEFLATE;
	if (q == 2)
		return stats ? BQ_STATS : rep ? BQ_REPORTING : BQ_NONE;
	if (q == 3)
		return stats && rep ? BQ_REPORTING : BQ_NONE;
	return BQ_NONE;
}

int balloon_discard(struct virtio_dev *vd, uint64_t off, uint64_t len)
{
	/* A hole in the memfd, or a restored VM's private copy dropped (the
	 * page reads as the state file's bytes again: the guest gave up its
	 * content); a restore's prefetch never fills it again. */
	return guest_mem_discard(&vd->vm->mem, off, len);
}

void balloon_config_update(struct balloon *b, bool notify)
{
	uint32_t v = htole32(b->target_pages);

	memcpy(b->vd.config + 0, &v, 4);
	v = htole32(b->actual_pages);
	memcpy(b->vd.config + 4, &v, 4);
	if (notify && (b->vd.status & VIRTIO_CONFIG_S_DRIVER_OK)) {
		b->vd.config_generation++;
		virtio_dev_notify_config(&b->vd);
	}
}

/* One log line per bad request, for the first BALLOON_WARN_MAX of them: a
 * driver that keeps sending bad requests cannot flood the log (they are
 * all counted in `ignored`). */
static bool balloon_may_warn(struct balloon *b)
{
	if (b->warned >= BALLOON_WARN_MAX)
		return false;
	if (++b->warned == BALLOON_WARN_MAX)
		log_warn("%s: further ignored requests are counted, not logged", b->vd.name);
	return true;
}

/* The host-mapping offset of guest frame pfn, or -1 when it is not RAM. */
static int64_t pfn_offset(const struct guest_mem *m, uint32_t pfn)
{
	uint8_t *p = guest_mem_ptr(m, (uint64_t)pfn << VIRTIO_BALLOON_PFN_SHIFT, BALLOON_PAGE_SIZE);

	return p ? (int64_t)(p - m->host) : -1;
}

/* Drop inflated pages from the host: a run of contiguous ones in one call
 * (a driver that inflates in order sends long runs; a page at a time cost
 * about 1 us each here). */
static void balloon_drop_run(struct balloon *b, uint64_t off, uint64_t len)
{
	int ret;

	if (!len)
		return;
	ret = balloon_discard(&b->vd, off, len);
	if (ret) {
		/* Still the guest's as far as it cares; the host just keeps
		 * the pages. */
		if (!b->discard_errors++)
			log_warn("%s: cannot drop a page from the host: %s", b->vd.name,
				 strerror(-ret));
	}
}

/* Inflate (give the pages to the host) or deflate (take them back). */
static void balloon_pages(struct balloon *b, bool inflate)
{
	const struct virtq_chain *c = b->chain;
	const struct guest_mem *m = &b->vd.vm->mem;
	size_t trailing, n;
	bool truncated;
	uint64_t bad = 0, twice = 0, done = 0;
	uint64_t run_off = 0, run_len = 0; /* contiguous pages to drop in one call */

	n = balloon_parse_pfns(c->iov, c->nr_out, b->pfns, BALLOON_PFNS_MAX, &trailing,
			       &truncated);
	for (size_t i = 0; i < n; i++) {
		int64_t off = pfn_offset(m, b->pfns[i]);
		uint64_t pg;

		if (off < 0) {
			bad++;
			continue;
		}
		pg = (uint64_t)off / BALLOON_PAGE_SIZE;
		if (bit_test(b->inflated, pg) == inflate) {
			twice++;
			continue;
		}
		if (inflate && run_len && (uint64_t)off == run_off + run_len) {
			run_len += BALLOON_PAGE_SIZE;
		} else if (inflate) {
			balloon_drop_run(b, run_off, run_len);
			run_off = (uint64_t)off;
			run_len = BALLOON_PAGE_SIZE;
		}
		bit_set(b->inflated, pg, inflate);
		done++;
	}
	balloon_drop_run(b, run_off, run_len);
	if (inflate) {
		b->inflated_pages += done;
		b->inflates += done;
	} else {
		b->inflated_pages -= done;
		b->deflates += done;
	}
	b->ignored += bad + twice + (truncated ? 1 : 0) + (trailing ? 1 : 0);
	if ((bad || twice || truncated || trailing || c->nr_in) && balloon_may_warn(b))
		log_warn("%s: %s request: ignored %llu PFNs outside RAM, %llu %s%s%s%s", b->vd.name,
			 inflate ? "inflate" : "deflate", (unsigned long long)bad,
			 (unsigned long long)twice,
			 inflate ? "already inflated" : "not inflated",
			 truncated ? ", PFNs past the limit" : "",
			 trailing ? ", a partial PFN" : "",
			 c->nr_in ? ", device-writable buffers" : "");
}

/* Free page reporting: each segment is a range of free guest pages. */
static void balloon_report(struct balloon *b)
{
	const struct virtq_chain *c = b->chain;
	const uint8_t *host = b->vd.vm->mem.host;
	uint64_t odd = 0;

	for (unsigned i = 0; i < c->nr_out + c->nr_in; i++) {
		uint64_t off = (uint64_t)((const uint8_t *)c->iov[i].iov_base - host), start, len;
		int ret;

		balloon_range_align(off, c->iov[i].iov_len, &start, &len);
		if (!len || start != off || len != c->iov[i].iov_len)
			odd++; /* Linux reports whole pages; use what is whole */
		if (!len)
			continue;
		ret = balloon_discard(&b->vd, start, len);
		if (ret) {
			if (!b->discard_errors++)
				log_warn("%s: cannot drop reported pages from the host: %s",
					 b->vd.name, strerror(-ret));
			continue;
		}
		b->reported_bytes += len;
	}
	b->reports++;
	b->ignored += odd;
	if (odd && balloon_may_warn(b))
		log_warn("%s: free page report: %llu ranges not page aligned (only whole pages dropped)",
			 b->vd.name, (unsigned long long)odd);
}

static void balloon_stats_in(struct balloon *b)
{
	const struct virtq_chain *c = b->chain;

	balloon_parse_stats(c->iov, c->nr_out, &b->stats);
	b->stats_have = true;
	b->stats_updates++;
	b->stats_held = true;
	b->stats_head = c->head;
}

bool balloon_stats_request(struct balloon *b)
{
	unsigned q = 2;

	if (!b->stats_held || balloon_queue_role(&b->vd, q) != BQ_STATS ||
	    !virtio_dev_running(&b->vd, q))
		return false;
	b->stats_held = false;
	virtq_push(&b->vd.vqs[q], b->stats_head, 0);
	virtio_dev_maybe_notify(&b->vd, q);
	return true;
}

static void balloon_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct balloon *b = balloon_of(vd);
	enum balloon_queue role = balloon_queue_role(vd, q);
	struct virtq *vq = &vd->vqs[q];
	struct virtq_error err;
	bool pushed = false;
	int ret;

	if (role == BQ_NONE) {
		virtio_dev_fail(vd, "queue %u used but not negotiated", q);
		return;
	}
	while ((ret = virtq_pop(vq, b->chain, &err)) > 0) {
		switch (role) {
		case BQ_INFLATE:
		case BQ_DEFLATE:
			balloon_pages(b, role == BQ_INFLATE);
			break;
		case BQ_REPORTING:
			balloon_report(b);
			break;
		case BQ_STATS: {
			uint16_t old = b->stats_head;
			bool held = b->stats_held;

			balloon_stats_in(b);
			if (held) {
				/* One buffer at a time: the older one goes
				 * back empty so the driver cannot pin the ring. */
				b->ignored++;
				if (balloon_may_warn(b))
					log_warn("%s: a second statistics buffer; the first is returned",
						 vd->name);
				virtq_push(vq, old, 0);
				pushed = true;
			}
			continue; /* the new buffer is held, not returned */
		}
		case BQ_NONE:
			break;
		}
		virtq_push(vq, b->chain->head, 0);
		pushed = true;
	}
	virtio_dev_pop_done(vd, q, ret, &err, pushed);
}

static void balloon_config_write(struct virtio_dev *vd, uint32_t off, const uint8_t *data,
				 uint32_t len)
{
	struct balloon *b = balloon_of(vd);

	/* Only `actual` (bytes 4-7) is the driver's to write. */
	for (uint32_t i = 0; i < len; i++)
		if (off + i >= 4 && off + i < 8)
			vd->config[off + i] = data[i];
	memcpy(&b->actual_pages, vd->config + 4, 4);
	b->actual_pages = le32toh(b->actual_pages);
}

static void balloon_reset(struct virtio_dev *vd)
{
	struct balloon *b = balloon_of(vd);

	/* A reset driver owns all its memory again (pages read as zeros). */
	memset(b->inflated, 0, (b->npages + BITS_PER_WORD - 1) / BITS_PER_WORD * sizeof(long));
	b->inflated_pages = 0;
	b->actual_pages = 0;
	b->stats_held = false;
	balloon_config_update(b, false);
}

static void balloon_destroy(struct virtio_dev *vd)
{
	struct balloon *b = balloon_of(vd);

	free(b->chain);
	free(b->pfns);
	free(b->inflated);
}

static const struct virtio_dev_ops balloon_ops = {
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
	.config_write = balloon_config_write,
	.save = balloon_save,
	.load = balloon_load,
	.destroy = balloon_destroy,
};

static int balloon_create(struct vm *vm, unsigned index, const void *config)
{
	const struct balloon_config *cfg = config;
	struct balloon *b = calloc(1, sizeof(*b));
	uint64_t features = 0;
	int ret;

	if (!b) {
		log_err("virtio-balloon: out of memory");
		return -ENOMEM;
	}
	if (cfg->target_mib > vm->mem.size >> 20) {
		log_err("virtio-balloon: target_mib %llu exceeds the VM's memory (%llu MiB)",
			(unsigned long long)cfg->target_mib, (unsigned long long)(vm->mem.size >> 20));
		free(b);
		return -EINVAL;
	}
	if (cfg->stats)
		features |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (cfg->deflate_on_oom)
		features |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (cfg->free_page_reporting)
		features |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	ret = virtio_dev_init(&b->vd, &balloon_device_ops, &balloon_ops, "virtio-balloon",
			      VIRTIO_ID_BALLOON, features, devtype_virtio_balloon.nr_queues,
			      BALLOON_QUEUE_SIZE);
	b->npages = vm->mem.size / BALLOON_PAGE_SIZE;
	b->chain = malloc(sizeof(*b->chain));
	b->pfns = malloc(BALLOON_PFNS_MAX * sizeof(*b->pfns));
	b->inflated = calloc((b->npages + BITS_PER_WORD - 1) / BITS_PER_WORD, sizeof(long));
	if (ret || !b->chain || !b->pfns || !b->inflated) {
		ret = ret ? ret : -ENOMEM;
		log_err("virtio-balloon: cannot initialise: %s", strerror(-ret));
		virtio_dev_destroy(&b->vd.dev);
		return ret;
	}
	b->target_pages = (uint32_t)(cfg->target_mib << 20 >> 12);
	b->vd.config_len = sizeof(struct virtio_balloon_config);
	b->vd.config_volatile = true; /* balloon_load restores target and actual */
	balloon_config_update(b, false);
	snprintf(b->vd.dev.id, sizeof(b->vd.dev.id), "balloon0");
	return vm_add_device(vm, &b->vd.dev);
}

static const struct conf_key balloon_keys[] = {
	{ .name = "deflate_on_oom", .type = CONF_BOOL,
	  .offset = offsetof(struct balloon_config, deflate_on_oom),
	  .syntax = "deflate_on_oom=on|off" },
	{ .name = "free_page_reporting", .type = CONF_BOOL,
	  .offset = offsetof(struct balloon_config, free_page_reporting),
	  .syntax = "free_page_reporting=on|off" },
	{ .name = "stats", .type = CONF_BOOL, .offset = offsetof(struct balloon_config, stats),
	  .syntax = "stats=on|off" },
	{ .name = "target_mib", .type = CONF_UINT,
	  .offset = offsetof(struct balloon_config, target_mib),
	  .size = CONF_KEY_SIZE(struct balloon_config, target_mib), .min = 0, .max = 1ULL << 24,
	  .syntax = "target_mib=MIB" },
};

static const struct conf_schema balloon_schema = {
	.name = "virtio-balloon", .keys = balloon_keys, .nr_keys = ARRAY_SIZE(balloon_keys),
};

extern const struct devtype_command balloon_commands[];
json_t *balloon_status_json(struct vm *vm);

const struct device_type devtype_virtio_balloon = {
	.name = "virtio-balloon",
	.transport = DEVTYPE_VIRTIO_MMIO,
	.max_instances = 1,
	.nr_queues = BALLOON_NR_QUEUES,
	.gsis = 1,
	.mmio_windows = 1,
	.create = balloon_create,
	.config_schema = &balloon_schema,
	.config_size = sizeof(struct balloon_config),
	.commands = balloon_commands,
	.status_key = "balloon",
	.status = balloon_status_json,
};
