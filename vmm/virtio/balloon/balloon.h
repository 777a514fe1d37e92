/* balloon.h: virtio-balloon (device id 5), shared by its files.
 *
 * Queues, in the order the driver numbers them: inflateq 0, deflateq 1,
 * then statsq when VIRTIO_BALLOON_F_STATS_VQ was negotiated, then
 * reporting_vq when VIRTIO_BALLOON_F_REPORTING was (so the reporting queue
 * is 3 or 2). FREE_PAGE_HINT and PAGE_POISON are not offered.
 *
 * Giving memory back. Inflated PFNs and reported ranges are dropped from
 * the host at once: a hole is punched in the memfd (FALLOC_FL_PUNCH_HOLE),
 * or, for RAM mapped copy-on-write from a state file after a restore, the
 * private copy is dropped (MADV_DONTNEED). A hole reads as zeros, so save
 * and live migration's first round skip it (guest_mem_populated).
 *
 * Hostile input. PFNs outside RAM, pages inflated twice or deflated while
 * not inflated, stats and reports of any shape are ignored and counted,
 * with one log line per chain; they never break the device. Only ring
 * rule violations (virtq_pop) set NEEDS_RESET.
 */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "virtio/balloon/balloon_parse.h"
#include "virtio/mmio.h"

#define BALLOON_QUEUE_SIZE 128
#define BALLOON_NR_QUEUES  4
#define BALLOON_WARN_MAX   32 /* bad requests logged; the rest only counted */

enum balloon_queue { BQ_INFLATE, BQ_DEFLATE, BQ_STATS, BQ_REPORTING, BQ_NONE };

struct balloon_config {
	bool deflate_on_oom;
	bool free_page_reporting;
	bool stats;
	uint64_t target_mib;      /* initial target (balloon size), MiB */
};

struct balloon {
	struct virtio_dev vd;     /* first: the transport frees it */
	struct virtq_chain *chain;
	uint32_t *pfns;           /* BALLOON_PFNS_MAX */
	uint64_t npages;          /* guest RAM pages (bits in `inflated`) */
	unsigned long *inflated;  /* one bit per RAM page (host offset / 4 KiB) */

	uint32_t target_pages;    /* config num_pages (what the host asks) */
	uint32_t actual_pages;    /* config actual (what the driver says) */
	uint64_t inflated_pages;  /* bits set in `inflated` */
	/* Counters since the worker started (kept by save/load). */
	uint64_t reported_bytes, reports;
	uint64_t inflates, deflates;
	uint64_t ignored;         /* PFNs or ranges refused (out of RAM, twice, ...) */
	uint64_t discard_errors;
	unsigned warned;          /* bad requests logged so far */

	struct balloon_stats stats;
	bool stats_have;          /* the driver sent statistics at least once */
	bool stats_held;          /* stats_head waits for the next request */
	uint16_t stats_head;
	uint64_t stats_updates;
};

static inline struct balloon *balloon_of(struct virtio_dev *vd)
{
	return container_of(vd, struct balloon, vd);
}

/* Which queue index q is, given the negotiated features. */
enum balloon_queue balloon_queue_role(const struct virtio_dev *vd, unsigned q);
/* Drop [off, off + len) of the host mapping (page aligned) from the host.
 * 0 or -errno. */
int balloon_discard(struct virtio_dev *vd, uint64_t off, uint64_t len) __must_check;
/* Write target/actual into the config space (lock held); notify: raise the
 * configuration change interrupt. */
void balloon_config_update(struct balloon *b, bool notify);
/* Ask the driver for fresh statistics (lock held): give back the held
 * buffer. Returns false when none is held. */
bool balloon_stats_request(struct balloon *b);

/* balloon_ctl.c: device section of the saved state. */
int balloon_save(struct virtio_dev *vd, struct state_writer *w);
int balloon_load(struct virtio_dev *vd, struct state_reader *r);
