/* qcow2_meta.c: qcow2 metadata in memory: the table cache (L2 tables and
 * refcount blocks keyed by index), refcounts of any width, cluster
 * allocation (reusing free clusters, else appending), refcount table growth,
 * deferred frees, and the ordered flush that keeps the image consistent. */
#include "qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_MAX_ENTRIES 4096

void q2_cache_init(struct q2_cache *c, uint64_t limit)
{
	memset(c, 0, sizeof(*c));
	c->limit = limit;
}

int q2_cache_resize(struct q2_cache *c, uint64_t nslots)
{
	uint32_t *s;

	if (nslots <= c->nslots)
		return 0;
	s = realloc(c->slot, nslots * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s + c->nslots, 0, (nslots - c->nslots) * sizeof(*s));
	c->slot = s;
	c->nslots = nslots;
	return 0;
}

void q2_cache_free(struct q2_cache *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		free(c->e[i].buf);
	free(c->e);
	free(c->slot);
	memset(c, 0, sizeof(*c));
}

static struct q2_entry *cache_find(struct q2_cache *c, uint64_t idx)
{
	uint32_t s = idx < c->nslots ? c->slot[idx] : 0;

	if (!s)
		return NULL;
	c->e[s - 1].lru = ++c->clock;
	return &c->e[s - 1];
}

static void cache_evict(struct q2_cache *c, uint64_t table_bytes)
{
	uint64_t max = MIN(c->limit / table_bytes, CACHE_MAX_ENTRIES);
	uint32_t victim = UINT32_MAX;

	if (c->n < max)
		return;
	for (uint32_t i = 0; i < c->n; i++)
		if (!c->e[i].dirty && (victim == UINT32_MAX || c->e[i].lru < c->e[victim].lru))
			victim = i;
	if (victim == UINT32_MAX)
		return; /* all dirty: the dirty bound (-EAGAIN) limits this */
	c->slot[c->e[victim].idx] = 0;
	free(c->e[victim].buf);
	c->e[victim] = c->e[--c->n];
	if (victim < c->n)
		c->slot[c->e[victim].idx] = victim + 1;
}

/* Insert a table (taking ownership of buf). */
static int cache_insert(struct q2_cache *c, uint64_t idx, uint64_t host_off, void *buf,
                        uint64_t table_bytes, bool dirty, struct q2_entry **out)
{
	if (idx >= c->nslots) {
		free(buf);
		return -EINVAL;
	}
	cache_evict(c, table_bytes);
	if (c->n == c->cap) {
		uint32_t cap = c->cap ? c->cap * 2 : 16;
		struct q2_entry *e = realloc(c->e, cap * sizeof(*e));

		if (!e) {
			free(buf);
			return -ENOMEM;
		}
		c->e = e;
		c->cap = cap;
	}
	c->e[c->n] = (struct q2_entry){
	    .idx = idx, .host_off = host_off, .buf = buf, .lru = ++c->clock, .dirty = dirty};
	c->slot[idx] = ++c->n;
	c->ndirty += dirty;
	*out = &c->e[c->n - 1];
	return 0;
}

static void entry_dirty(struct q2_cache *c, struct q2_entry *e)
{
	if (!e->dirty) {
		e->dirty = true;
		c->ndirty++;
	}
}

uint64_t q2_dirty_bytes(const struct qcow2 *q)
{
	return (q->l2c.ndirty + q->rcc.ndirty) << q->cluster_bits;
}

/* Validate a freshly read L2 table: offsets aligned and inside the file. */
static int l2_validate(struct qcow2 *q, const uint64_t *t, uint64_t l1i)
{
	uint64_t n = 1ull << q->l2_bits;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = t[i], off, len;

		if (e & L2E_COMPRESSED) {
			q2_compressed(q, e, &off, &len);
			if (e & L2E_COPIED || !off || off >= q->end)
				goto bad;
			continue;
		}
		off = e & L2E_OFFSET_MASK;
		if ((e & L2E_RESERVED) || (off && !q2_offset_ok(q, off)))
			goto bad;
		if (off && !q->overlap && q2_meta_has(q, off >> q->cluster_bits)) {
			/* readable, but no write may go there (or anywhere) */
			q->overlap = true;
			snprintf(q->overlap_why, sizeof(q->overlap_why),
			         "L2 entry %llu of table %llu points to metadata at %#llx",
			         (unsigned long long)i, (unsigned long long)l1i,
			         (unsigned long long)off);
		}
		continue;
	bad:
		q->broken = true;
		return disk_fail(q->d, -EINVAL,
		                 "L2 entry %llu of table %llu (%#llx) is invalid (reserved bits, "
		                 "unaligned or outside the file)",
		                 (unsigned long long)i, (unsigned long long)l1i,
		                 (unsigned long long)e);
	}
	return 0;
}

int q2_l2_get(struct qcow2 *q, uint64_t l1i, bool alloc, uint64_t **tbl)
{
	struct q2_entry *e = cache_find(&q->l2c, l1i);
	uint64_t off, cs = q->cluster_size;
	uint64_t *buf;
	bool fresh;
	int ret;

	if (e) {
		*tbl = e->buf;
		return 0;
	}
	*tbl = NULL;
	if (l1i >= q->l1_size)
		return alloc ? disk_fail(q->d, -EINVAL, "L1 index out of range") : 0;
	off = q->l1[l1i] & L1E_OFFSET_MASK;
	if (!off && !alloc)
		return 0;
	buf = malloc(cs);
	if (!buf)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	if (!off) {
		ret = q2_alloc(q, 1, &off, &fresh);
		if (ret) {
			free(buf);
			return ret;
		}
		memset(buf, 0, cs);
		q->l1[l1i] = off | L2E_COPIED;
		q->l1_dirty = true;
		ret = cache_insert(&q->l2c, l1i, off, buf, cs, true, &e);
	} else {
		ret = disk_pread_full(q->d->fd, buf, cs, off);
		if (ret) {
			free(buf);
			return disk_fail(q->d, ret, "reading L2 table %llu at %#llx: %s",
			                 (unsigned long long)l1i, (unsigned long long)off,
			                 strerror(-ret));
		}
		for (uint64_t i = 0; i < cs / 8; i++)
			buf[i] = be64_get(&buf[i]);
		ret = l2_validate(q, buf, l1i);
		if (ret) {
			free(buf);
			return ret;
		}
		ret = cache_insert(&q->l2c, l1i, off, buf, cs, false, &e);
	}
	if (ret)
		return disk_fail(q->d, ret, "caching an L2 table: %s", strerror(-ret));
	*tbl = e->buf;
	return 0;
}

void q2_l2_mark_dirty(struct qcow2 *q, uint64_t l1i)
{
	struct q2_entry *e = cache_find(&q->l2c, l1i);

	if (e)
		entry_dirty(&q->l2c, e);
}

/* --- refcounts --- */

static uint64_t rb_read(const struct qcow2 *q, const uint8_t *b, uint64_t i)
{
	switch (q->refcount_order) {
	case 3:
		return b[i];
	case 4:
		return be16_get(b + 2 * i);
	case 5:
		return be32_get(b + 4 * i);
	case 6:
		return be64_get(b + 8 * i);
	default: {
		unsigned w = 1u << q->refcount_order, per = 8 / w;

		return (b[i / per] >> ((i % per) * w)) & ((1u << w) - 1);
	}
	}
}

static void rb_write(const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t v)
{
	switch (q->refcount_order) {
	case 3:
		b[i] = (uint8_t)v;
		break;
	case 4:
		be16_put(b + 2 * i, (uint16_t)v);
		break;
	case 5:
		be32_put(b + 4 * i, (uint32_t)v);
		break;
	case 6:
		be64_put(b + 8 * i, v);
		break;
	default: {
		unsigned w = 1u << q->refcount_order, per = 8 / w, sh = (unsigned)(i % per) * w;
		uint8_t m = (uint8_t)(((1u << w) - 1) << sh);

		b[i / per] = (uint8_t)((b[i / per] & ~m) | ((v << sh) & m));
	}
	}
}

void q2_rb_put(const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t v)
{
	rb_write(q, b, i, v);
}

static int rb_load(struct qcow2 *q, uint64_t rbi, struct q2_entry **out)
{
	uint64_t off = q->rt[rbi], cs = q->cluster_size;
	uint8_t *buf;
	int ret;

	*out = cache_find(&q->rcc, rbi);
	if (*out || !off)
		return 0;
	buf = malloc(cs);
	if (!buf)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	ret = disk_pread_full(q->d->fd, buf, cs, off);
	if (ret) {
		free(buf);
		return disk_fail(q->d, ret, "reading refcount block at %#llx: %s",
		                 (unsigned long long)off, strerror(-ret));
	}
	ret = cache_insert(&q->rcc, rbi, off, buf, cs, false, out);
	return ret ? disk_fail(q->d, ret, "caching a refcount block: %s", strerror(-ret)) : 0;
}

int q2_rc_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc)
{
	uint64_t rbi = cluster >> q->rb_bits;
	struct q2_entry *e;
	int ret;

	*rc = 0;
	if (rbi >= q->rt_size)
		return 0;
	ret = rb_load(q, rbi, &e);
	if (!ret && e)
		*rc = rb_read(q, e->buf, cluster & ((1ull << q->rb_bits) - 1));
	return ret;
}

int q2_table_grow(struct qcow2 *q, uint64_t **table, uint64_t old, uint64_t entries,
                  struct q2_cache *c)
{
	uint64_t *t = realloc(*table, entries * 8);

	if (t)
		*table = t;
	if (!t || q2_cache_resize(c, entries))
		return disk_fail(q->d, -ENOMEM, "out of memory");
	memset(t + old, 0, (entries - old) * 8);
	return 0;
}

/* Grow the refcount table so that it has an entry rbi, placing the new
 * table at the end of the file. The old table is freed after the next
 * flush has made the header point to the new one. */
static int rt_grow(struct qcow2 *q, uint64_t rbi)
{
	uint64_t cs = q->cluster_size, n = MAX(q->rt_clusters * 2, 1), old_off = q->rt_off;
	uint64_t old_clusters = q->rt_clusters, off, entries;
	int ret;

	for (;; n++) {
		entries = (n << q->cluster_bits) / 8;
		off = q->end;
		if (entries > rbi + 1 &&
		    entries >= (((off + n * cs) >> q->cluster_bits) >> q->rb_bits) + 4)
			break;
	}
	if ((n << q->cluster_bits) > QCOW2_MAX_REFTABLE_BYTES)
		return disk_fail(q->d, -EFBIG, "the refcount table would exceed %llu MiB",
		                 (unsigned long long)(QCOW2_MAX_REFTABLE_BYTES >> 20));
	if ((ret = q2_table_grow(q, &q->rt, q->rt_size, entries, &q->rcc)))
		return ret;
	q->rt_size = entries;
	q->rt_off = off;
	q->rt_clusters = n;
	q->end += n * cs;
	q->rt_dirty = q->header_dirty = true;
	for (uint64_t i = 0; i < n; i++)
		if ((ret = q2_rc_set(q, (off >> q->cluster_bits) + i, 1)))
			return ret;
	for (uint64_t i = 0; i < old_clusters; i++)
		if ((ret = q2_free_later(q, old_off + i * cs)))
			return ret;
	return 0;
}

/* A new refcount block for index rbi, appended at the end of the file. */
static int rb_new(struct qcow2 *q, uint64_t rbi, struct q2_entry **out)
{
	uint64_t cs = q->cluster_size, off = q->end, self;
	uint8_t *buf = calloc(1, cs);
	int ret;

	if (!buf)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	q->end += cs;
	ret = cache_insert(&q->rcc, rbi, off, buf, cs, true, out);
	if (ret)
		return disk_fail(q->d, ret, "caching a refcount block: %s", strerror(-ret));
	q->rt[rbi] = off;
	q->rt_dirty = true;
	self = off >> q->cluster_bits;
	if ((self >> q->rb_bits) == rbi) { /* it covers itself */
		rb_write(q, (*out)->buf, self & ((1ull << q->rb_bits) - 1), 1);
		return 0;
	}
	ret = q2_rc_set(q, self, 1);
	/* The recursion may have moved cache entries: look ours up again. */
	*out = cache_find(&q->rcc, rbi);
	return ret;
}

int q2_rc_set(struct qcow2 *q, uint64_t cluster, uint64_t rc)
{
	uint64_t rbi = cluster >> q->rb_bits;
	struct q2_entry *e;
	int ret;

	if (rc > q->rc_max)
		return disk_fail(q->d, -ERANGE, "refcount overflow on cluster %llu",
		                 (unsigned long long)cluster);
	if (rbi >= q->rt_size && (ret = rt_grow(q, rbi)))
		return ret;
	ret = rb_load(q, rbi, &e);
	if (ret)
		return ret;
	if (!e) {
		if (!rc)
			return 0;
		ret = rb_new(q, rbi, &e);
		if (ret)
			return ret;
	}
	rb_write(q, e->buf, cluster & ((1ull << q->rb_bits) - 1), rc);
	entry_dirty(&q->rcc, e);
	return 0;
}

static int find_free(struct qcow2 *q, uint64_t *cluster)
{
	uint64_t limit = q->end >> q->cluster_bits, rc;
	int ret;

	for (uint64_t c = MAX(q->free_hint, 1); c < limit; c++) {
		uint64_t rbi = c >> q->rb_bits;

		if (q2_meta_has(q, c))
			continue; /* metadata at open, whatever its refcount says */
		if (rbi < q->rt_size && !q->rt[rbi]) {
			*cluster = c; /* no block: refcount 0 */
			return 1;
		}
		ret = q2_rc_get(q, c, &rc);
		if (ret)
			return ret;
		if (!rc) {
			*cluster = c;
			return 1;
		}
	}
	return 0;
}

int q2_alloc(struct qcow2 *q, uint64_t n, uint64_t *off, bool *fresh)
{
	uint64_t c = 0;
	int ret;

	if ((ret = q2_writable(q)))
		return ret;
	if (n == 1 && q->may_have_free) {
		ret = find_free(q, &c);
		if (ret < 0)
			return ret;
		if (ret) {
			q->free_hint = c + 1;
			ret = q2_rc_set(q, c, 1);
			if (ret)
				return ret;
			*off = c << q->cluster_bits;
			*fresh = false;
			return 0;
		}
		q->may_have_free = false;
		q->free_hint = q->end >> q->cluster_bits;
	}
	if (q->end + n * q->cluster_size > (1ull << 56))
		return disk_fail(q->d, -EFBIG, "the image file would exceed 2^56 bytes");
	*off = q->end;
	q->end += n * q->cluster_size;
	for (uint64_t i = 0; i < n; i++)
		if ((ret = q2_rc_set(q, (*off >> q->cluster_bits) + i, 1)))
			return ret;
	*fresh = true;
	return 0;
}

int q2_free_later(struct qcow2 *q, uint64_t off)
{
	if (q->npending == q->pending_cap) {
		size_t cap = q->pending_cap ? q->pending_cap * 2 : 64;
		uint64_t *p = realloc(q->pending, cap * sizeof(*p));

		if (!p)
			return disk_fail(q->d, -ENOMEM, "out of memory");
		q->pending = p;
		q->pending_cap = cap;
	}
	q->pending[q->npending++] = off >> q->cluster_bits;
	return 0;
}

int q2_free_compressed(struct qcow2 *q, uint64_t entry)
{
	uint64_t off, len;
	int ret = 0;

	q2_compressed(q, entry, &off, &len);
	for (uint64_t c = off >> q->cluster_bits; !ret && c <= (off + len - 1) >> q->cluster_bits;
	     c++)
		ret = q2_free_later(q, c << q->cluster_bits);
	return ret;
}

/* --- flush --- */

int q2_sync(struct qcow2 *q)
{
	if (q->d->open_flags & DISK_PRIV_NO_SYNC)
		return 0;
	if (fdatasync(q->d->fd) < 0)
		return disk_fail(q->d, -errno, "fdatasync: %s", strerror(errno));
	return 0;
}

/* QEMU's cheapest overlap checks: the header, the L1 and refcount tables. */
static bool hits_fixed_meta(const struct qcow2 *q, uint64_t off)
{
	uint64_t cs = q->cluster_size;

	return off < cs || (off >= q->l1_off && off < q->l1_off + ALIGN_UP(q->l1_size * 8, cs)) ||
	       (off >= q->rt_off && off < q->rt_off + q->rt_clusters * cs);
}

static int write_tables(struct qcow2 *q, struct q2_cache *c, bool l2)
{
	uint64_t cs = q->cluster_size;
	uint64_t *tmp = l2 ? malloc(cs) : NULL;
	int ret = 0;

	if (l2 && !tmp)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < c->n && !ret; i++) {
		struct q2_entry *e = &c->e[i];

		if (!e->dirty)
			continue;
		if (hits_fixed_meta(q, e->host_off)) {
			ret = disk_fail(q->d, -EIO,
			                "refusing to write %s over the header, L1 or refcount "
			                "table at %#llx (metadata overlap)",
			                l2 ? "an L2 table" : "a refcount block",
			                (unsigned long long)e->host_off);
			break;
		}
		if (l2)
			for (uint64_t k = 0; k < cs / 8; k++)
				be64_put(&tmp[k], ((uint64_t *)e->buf)[k]);
		ret = disk_pwrite_full(q->d->fd, l2 ? tmp : e->buf, cs, e->host_off);
		if (ret)
			ret = disk_fail(q->d, ret, "writing %s at %#llx: %s",
			                l2 ? "an L2 table" : "a refcount block",
			                (unsigned long long)e->host_off, strerror(-ret));
		else {
			e->dirty = false;
			c->ndirty--;
		}
	}
	free(tmp);
	return ret;
}

/* Write a host-endian u64 table as big-endian, padded to `bytes`. */
static int write_u64_table(struct qcow2 *q, const uint64_t *t, uint64_t n, uint64_t bytes,
                           uint64_t off, const char *what)
{
	uint64_t *tmp = calloc(1, bytes ? bytes : 8);
	int ret;

	if (!tmp)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < n; i++)
		be64_put(&tmp[i], t[i]);
	ret = disk_pwrite_full(q->d->fd, tmp, bytes, off);
	free(tmp);
	return ret ? disk_fail(q->d, ret, "writing the %s: %s", what, strerror(-ret)) : 0;
}

/* Drop the references of clusters freed by changes that are now synced;
 * clusters reaching zero get their space punched out and become reusable. */
static int apply_pending(struct qcow2 *q)
{
	int ret = 0;

	while (q->npending && !ret) {
		uint64_t c = q->pending[--q->npending], rc;

		ret = q2_rc_get(q, c, &rc);
		if (ret || !rc)
			continue;
		ret = q2_rc_set(q, c, rc - 1);
		if (ret || rc != 1)
			continue;
		q2_meta_drop(q, c);
		/* Punching is only an optimisation: errors are ignored. */
		if (fallocate(q->d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		              (off_t)(c << q->cluster_bits), (off_t)q->cluster_size) < 0) {
		}
		if (c < q->free_hint)
			q->free_hint = c;
		q->may_have_free = true;
	}
	if (ret)
		return ret;
	if ((ret = write_tables(q, &q->rcc, false)))
		return ret;
	return q2_sync(q);
}

int qcow2_flush(struct disk *d)
{
	struct qcow2 *q = Q(d);
	int ret;

	if (d->readonly)
		return 0;
	if (!q->rcc.ndirty && !q->rt_dirty && !q->l2c.ndirty && !q->l1_dirty && !q->header_dirty &&
	    !q->npending)
		return q2_sync(q);
	/* 1. refcounts (of the clusters new entries will point to) */
	if ((ret = write_tables(q, &q->rcc, false)))
		return ret;
	if (q->rt_dirty) {
		ret = write_u64_table(q, q->rt, q->rt_size, q->rt_clusters << q->cluster_bits,
		                      q->rt_off, "refcount table");
		if (ret)
			return ret;
		q->rt_dirty = false;
	}
	if ((ret = q2_sync(q)))
		return ret;
	/* 2. L2 tables, then (once they are durable) the L1 table and header */
	if ((ret = write_tables(q, &q->l2c, true)))
		return ret;
	if (q->l1_dirty || q->header_dirty) {
		if ((ret = q2_sync(q)))
			return ret;
		if (q->l1_dirty) {
			ret = write_u64_table(q, q->l1, q->l1_size, q->l1_size * 8, q->l1_off,
			                      "L1 table");
			if (ret)
				return ret;
			q->l1_dirty = false;
		}
		if (q->header_dirty && ((ret = q2_sync(q)) || (ret = q2_write_header(q))))
			return ret;
	}
	if ((ret = q2_sync(q)))
		return ret;
	/* 3. frees: the entries that dropped these clusters are durable now */
	return q->npending ? apply_pending(q) : 0;
}
