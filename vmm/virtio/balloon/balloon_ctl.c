/* balloon_ctl.c: virtio-balloon's control-socket commands (balloon-set,
 * balloon-stats), its member of the worker's status, and its section of
 * the saved state. */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devtype.h"
#include "log.h"
#include "mem_prefetch.h"
#include "state/state.h"
#include "virtio/balloon/balloon.h"
#include "vm.h"

#define BALLOON_STATE_VERSION 1

static struct balloon *balloon_find(struct vm *vm)
{
	for (struct device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->ops->type, "virtio-balloon"))
			return balloon_of(virtio_dev_of(d));
	return NULL;
}

/* Status member; vd->lock held. */
static json_t *balloon_json(struct balloon *b)
{
	struct virtio_dev *vd = &b->vd;
	json_t *o, *stats = json_null();

	if (b->stats_have) {
		stats = json_object();
		for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
			if (b->stats.valid & (1u << t))
				json_object_set_new(stats, balloon_stat_name(t),
						    json_integer((json_int_t)b->stats.val[t]));
	}
	o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		      "target_mib", (json_int_t)((uint64_t)b->target_pages * BALLOON_PAGE_SIZE >> 20),
		      "target_pages", (json_int_t)b->target_pages,
		      "actual_pages", (json_int_t)b->actual_pages,
		      "inflated_pages", (json_int_t)b->inflated_pages,
		      "inflated_bytes", (json_int_t)(b->inflated_pages * BALLOON_PAGE_SIZE),
		      "reported_bytes", (json_int_t)b->reported_bytes,
		      "reports", (json_int_t)b->reports, "inflates", (json_int_t)b->inflates,
		      "deflates", (json_int_t)b->deflates, "ignored", (json_int_t)b->ignored,
		      "discard_errors", (json_int_t)b->discard_errors,
		      "stats_updates", (json_int_t)b->stats_updates);
	if (!o)
		return json_null();
	json_object_set_new(o, "stats", stats);
	json_object_set_new(o, "features",
			    json_pack("{s:b, s:b, s:b}", "stats",
				      virtio_dev_has(vd, VIRTIO_BALLOON_F_STATS_VQ),
				      "deflate_on_oom",
				      virtio_dev_has(vd, VIRTIO_BALLOON_F_DEFLATE_ON_OOM),
				      "free_page_reporting",
				      virtio_dev_has(vd, VIRTIO_BALLOON_F_REPORTING)));
	return o;
}

json_t *balloon_status_json(struct vm *vm);
json_t *balloon_status_json(struct vm *vm)
{
	struct balloon *b = balloon_find(vm);
	json_t *o;

	if (!b)
		return json_null();
	pthread_mutex_lock(&b->vd.lock);
	o = balloon_json(b);
	pthread_mutex_unlock(&b->vd.lock);
	return o;
}

/* {"cmd": "balloon-set", "target_mib": N}: the balloon size the host asks
 * for, 0 (deflate all) to the VM's memory. */
static json_t *cmd_balloon_set(struct vm *vm, json_t *req, int fd)
{
	struct balloon *b = balloon_find(vm);
	json_t *v = json_object_get(req, "target_mib"), *rep;
	uint64_t max = vm->mem.size >> 20;

	(void)fd;
	if (!b)
		return devtype_cmd_error("balloon-set: the VM has no virtio-balloon device");
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return devtype_cmd_error("balloon-set: target_mib: expected an integer from 0 to %llu (the VM's memory in MiB)",
				(unsigned long long)max);
	pthread_mutex_lock(&b->vd.lock);
	b->target_pages = (uint32_t)(((uint64_t)json_integer_value(v) << 20) / BALLOON_PAGE_SIZE);
	balloon_config_update(b, true);
	log_info("%s: target set to %lld MiB", b->vd.name, (long long)json_integer_value(v));
	rep = json_pack("{s:b, s:o}", "ok", 1, "balloon", balloon_json(b));
	pthread_mutex_unlock(&b->vd.lock);
	return rep;
}

/* {"cmd": "balloon-stats"}: ask the driver for fresh statistics (they
 * arrive asynchronously: stats_updates grows) and return the last ones. */
static json_t *cmd_balloon_stats(struct vm *vm, json_t *req, int fd)
{
	struct balloon *b = balloon_find(vm);
	json_t *rep;
	bool asked;

	(void)req;
	(void)fd;
	if (!b)
		return devtype_cmd_error("balloon-stats: the VM has no virtio-balloon device");
	pthread_mutex_lock(&b->vd.lock);
	asked = balloon_stats_request(b);
	rep = json_pack("{s:b, s:b, s:o}", "ok", 1, "requested", asked, "balloon",
			balloon_json(b));
	pthread_mutex_unlock(&b->vd.lock);
	return rep;
}

const struct devtype_command balloon_commands[] = {
	{ "balloon-set", cmd_balloon_set, 0 },
	{ "balloon-stats", cmd_balloon_stats, 0 },
	{ NULL, NULL, 0 },
};

static size_t bitmap_words(const struct balloon *b)
{
	return (size_t)((b->npages + 63) / 64);
}

int balloon_save(struct virtio_dev *vd, struct state_writer *w)
{
	struct balloon *b = balloon_of(vd);
	const uint8_t *map = (const uint8_t *)b->inflated;

	state_put_u32(w, BALLOON_STATE_VERSION);
	state_put_u32(w, b->target_pages);
	state_put_u32(w, b->actual_pages);
	state_put_u64(w, b->reported_bytes);
	state_put_u64(w, b->reports);
	state_put_u64(w, b->inflates);
	state_put_u64(w, b->deflates);
	state_put_u64(w, b->ignored);
	state_put_u64(w, b->discard_errors);
	state_put_u8(w, b->stats_have);
	state_put_u8(w, b->stats_held);
	state_put_u16(w, b->stats_head);
	state_put_u64(w, b->stats_updates);
	state_put_u32(w, b->stats.valid);
	state_put_u32(w, b->stats.unknown);
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		state_put_u64(w, b->stats.val[t]);
	/* The inflated pages: a bitmap of 64-bit little-endian words. */
	state_put_u64(w, b->npages);
	for (size_t i = 0; i < bitmap_words(b); i++) {
		uint64_t word = 0;

		for (unsigned j = 0; j < 8 && i * 8 + j < (b->npages + 7) / 8; j++)
			word |= (uint64_t)map[i * 8 + j] << (8 * j);
		state_put_u64(w, word);
	}
	return 0;
}

int balloon_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct balloon *b = balloon_of(vd);
	uint8_t *map = (uint8_t *)b->inflated;
	uint64_t npages, count = 0;
	uint32_t target;

	if (state_get_u32(r) != BALLOON_STATE_VERSION)
		return -EINVAL;
	target = state_get_u32(r);
	b->actual_pages = state_get_u32(r);
	b->reported_bytes = state_get_u64(r);
	b->reports = state_get_u64(r);
	b->inflates = state_get_u64(r);
	b->deflates = state_get_u64(r);
	b->ignored = state_get_u64(r);
	b->discard_errors = state_get_u64(r);
	b->stats_have = state_get_u8(r);
	b->stats_held = state_get_u8(r);
	b->stats_head = state_get_u16(r);
	b->stats_updates = state_get_u64(r);
	b->stats.valid = state_get_u32(r) & ((1u << VIRTIO_BALLOON_S_NR) - 1);
	b->stats.unknown = state_get_u32(r);
	for (unsigned t = 0; t < VIRTIO_BALLOON_S_NR; t++)
		b->stats.val[t] = state_get_u64(r);
	npages = state_get_u64(r);
	if (state_reader_error(r) || npages != b->npages || target > b->npages) {
		log_err("%s: saved balloon does not fit this VM's memory", vd->name);
		return -EINVAL;
	}
	if (b->stats_held && (balloon_queue_role(vd, 2) != BQ_STATS || !vd->vqs[2].ready ||
			      b->stats_head >= vd->vqs[2].num)) {
		log_err("%s: saved statistics buffer %u is not in the ring", vd->name,
			b->stats_head);
		return -EINVAL;
	}
	memset(map, 0, (b->npages + 8 * sizeof(long) - 1) / (8 * sizeof(long)) * sizeof(long));
	for (size_t i = 0; i < bitmap_words(b); i++) {
		uint64_t word = state_get_u64(r);

		if (i == bitmap_words(b) - 1 && b->npages % 64)
			word &= (1ULL << (b->npages % 64)) - 1;
		count += (uint64_t)__builtin_popcountll(word);
		for (unsigned j = 0; j < 8 && i * 8 + j < (b->npages + 7) / 8; j++)
			map[i * 8 + j] = (uint8_t)(word >> (8 * j));
	}
	if (state_reader_error(r))
		return -EINVAL;
	/* A restored VM's RAM is its state file, where an inflated page may
	 * read as data (saved from an earlier restore): give it back again,
	 * which also keeps the restore's prefetch off it (mem_prefetch.h). */
	for (uint64_t pg = 0; vd->vm->mem.file_fd >= 0 && pg < b->npages; pg++)
		if ((map[pg / 8] >> (pg % 8) & 1) &&
		    guest_mem_discard(&vd->vm->mem, pg * BALLOON_PAGE_SIZE, BALLOON_PAGE_SIZE))
			b->discard_errors++;
	b->target_pages = target;
	b->inflated_pages = count;
	balloon_config_update(b, false);
	return 0;
}
