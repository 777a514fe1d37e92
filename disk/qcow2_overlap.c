/* qcow2_overlap.c: which clusters hold metadata (QEMU's "overlap check"): the
 * set built at open that allocation never hands out and data may not point
 * into, the persistent bitmaps extension's clusters, and the gate every
 * write path passes (broken or overlapping metadata, bitmaps kept). */
#include "qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct meta_list {
	struct qcow2 *q;
	uint64_t *v;
	size_t n, cap;
	int err;
};

static void meta_add(void *ctx, uint64_t off, uint64_t len, const char *what)
{
	struct meta_list *m = ctx;
	struct qcow2 *q = m->q;
	uint64_t first = off >> q->cluster_bits, last;

	(void)what;
	if (!len || m->err || off >= q->end || len > q->end - off)
		return; /* outside the file: the check reports it */
	last = (off + len - 1) >> q->cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		if (m->n == m->cap) {
			size_t cap = m->cap ? m->cap * 2 : 256;
			uint64_t *v = realloc(m->v, cap * sizeof(*v));

			if (!v) {
				m->err = -ENOMEM;
				return;
			}
			m->v = v;
			m->cap = cap;
		}
		m->v[m->n++] = c;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int q2_meta_build(struct qcow2 *q)
{
	struct meta_list m = {.q = q};
	uint64_t cs = q->cluster_size;
	int ret;

	meta_add(&m, 0, cs, "header");
	meta_add(&m, q->l1_off, q->l1_size * 8, "L1 table");
	meta_add(&m, q->rt_off, q->rt_clusters * cs, "refcount table");
	for (uint64_t i = 0; i < q->rt_size; i++)
		if (q->rt[i])
			meta_add(&m, q->rt[i], cs, "refcount block");
	for (uint64_t i = 0; i < q->l1_size; i++)
		if (q->l1[i] & L1E_OFFSET_MASK)
			meta_add(&m, q->l1[i] & L1E_OFFSET_MASK, cs, "L2 table");
	if (q->bitmaps && (ret = q2_bitmap_ranges(q, meta_add, &m)))
		m.err = m.err ?: ret;
	if (m.err) {
		free(m.v);
		return disk_fail(q->d, m.err, "out of memory");
	}
	qsort(m.v, m.n, sizeof(*m.v), cmp_u64);
	q->overlap = false;
	for (size_t i = 1; i < m.n; i++)
		if (m.v[i] == m.v[i - 1]) {
			q->overlap = true;
			snprintf(q->overlap_why, sizeof(q->overlap_why),
			         "cluster %llu holds two metadata structures",
			         (unsigned long long)m.v[i]);
			break;
		}
	free(q->meta);
	q->meta = m.v;
	q->nmeta = m.n;
	return 0;
}

static size_t meta_find(const struct qcow2 *q, uint64_t cluster)
{
	size_t lo = 0, hi = q->nmeta;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (q->meta[mid] < cluster)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool q2_meta_has(const struct qcow2 *q, uint64_t cluster)
{
	size_t i = meta_find(q, cluster);

	return i < q->nmeta && q->meta[i] == cluster;
}

void q2_meta_drop(struct qcow2 *q, uint64_t cluster)
{
	size_t i = meta_find(q, cluster), j = i;

	while (j < q->nmeta && q->meta[j] == cluster)
		j++;
	if (j == i)
		return;
	memmove(q->meta + i, q->meta + j, (q->nmeta - j) * sizeof(*q->meta));
	q->nmeta -= j - i;
}

int q2_writable(struct qcow2 *q)
{
	if (q->broken)
		return disk_fail(q->d, -EIO, "the image has invalid metadata: no more writes");
	if (q->bad_l1 || q->bad_rt)
		return disk_fail(q->d, -EIO, "%s: no writes; check the image", q->bad_why);
	if (q->overlap)
		return disk_fail(q->d, -EIO,
		                 "metadata overlap (%s): no writes; repair it with "
		                 "'cella disk check -r all'",
		                 q->overlap_why);
	if (q->keep_bitmaps)
		return disk_fail(q->d, -EROFS,
		                 "the image has persistent dirty bitmaps, which cella does not "
		                 "update: opened for repair only");
	return 0;
}

int q2_bitmap_ranges(struct qcow2 *q,
                     void (*fn)(void *ctx, uint64_t off, uint64_t len, const char *what), void *ctx)
{
	uint64_t cs = q->cluster_size, size = q->bm_dir_size;
	uint8_t *dir;
	int ret = 0;

	if (!q->bitmaps || !size)
		return 0;
	fn(ctx, q->bm_dir_off, size, "bitmap directory");
	if (size > QCOW2_MAX_BITMAP_DIR || q->bm_dir_off >= q->end || size > q->end - q->bm_dir_off)
		return 0;
	dir = malloc(size);
	if (!dir)
		return -ENOMEM;
	if ((ret = disk_pread_full(q->d->fd, dir, size, q->bm_dir_off))) {
		free(dir);
		return disk_fail(q->d, ret, "reading the bitmap directory: %s", strerror(-ret));
	}
	for (uint64_t p = 0, k = 0; !ret && k < q->nb_bitmaps && p + 24 <= size; k++) {
		uint64_t toff = be64_get(dir + p), tsize = be32_get(dir + p + 8);
		uint64_t elen =
		    ALIGN_UP(24ull + be32_get(dir + p + 20) + be16_get(dir + p + 16), 8);
		uint64_t *t;

		p += elen;
		if (!toff || !tsize)
			continue;
		fn(ctx, toff, tsize * 8, "bitmap table");
		if (toff & (cs - 1) || toff >= q->end || tsize * 8 > q->end - toff ||
		    tsize * 8 > QCOW2_MAX_BITMAP_DIR)
			continue;
		if (!(t = malloc(tsize * 8))) {
			ret = -ENOMEM;
			break;
		}
		if ((ret = disk_pread_full(q->d->fd, t, tsize * 8, toff)))
			ret = disk_fail(q->d, ret, "reading a bitmap table: %s", strerror(-ret));
		for (uint64_t i = 0; !ret && i < tsize; i++) {
			uint64_t e = be64_get(&t[i]) & BME_OFFSET_MASK;

			if (e)
				fn(ctx, e, cs, "bitmap data");
		}
		free(t);
	}
	free(dir);
	return ret;
}
