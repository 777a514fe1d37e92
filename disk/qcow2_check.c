/* qcow2_check.c: consistency check of qcow2 refcounts against the
 * metadata that references clusters (like qemu-img check), repair, and the
 * refcount rebuild of images left dirty by lazy refcounts. */
#include "qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_CLUSTERS (1ull << 28)

/* What a cluster was first counted as. Data clusters may be shared (and
 * compressed clusters share host clusters); a cluster reachable as metadata
 * and as anything else is an overlap. */
enum role { R_NONE, R_HEADER, R_L1, R_RT, R_RB, R_L2, R_BITMAP, R_DATA, R_COMPRESSED };

static const char *const role_name[] = {
	[R_NONE] = "nothing", [R_HEADER] = "header", [R_L1] = "L1 table",
	[R_RT] = "refcount table", [R_RB] = "refcount block", [R_L2] = "L2 table",
	[R_BITMAP] = "bitmap metadata", [R_DATA] = "data cluster",
	[R_COMPRESSED] = "compressed cluster",
};

struct check {
	struct qcow2 *q;
	uint16_t *ref;      /* references counted, saturating */
	uint8_t *role;      /* enum role of each cluster */
	uint64_t n;         /* clusters in ref[] */
	struct disk_check_result *res;
	int repair;         /* 0, 1 leaks, 2 all */
	bool skip_refstruct;     /* counting for a rebuild: the old refcount structure left out */
	bool rebuild;            /* the refcount structure overlaps something: rebuild it */
	uint64_t overlaps_other; /* overlaps a rebuild does not fix */
};

static void problem(struct check *c, const char *fmt, ...) __printf(2, 3);
static void problem(struct check *c, const char *fmt, ...)
{
	va_list ap;

	if (c->res->first_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(c->res->first_problem, sizeof(c->res->first_problem), fmt, ap);
	va_end(ap);
}

static void count(struct check *c, uint64_t off, uint64_t len, const char *what, enum role r)
{
	uint64_t first = off >> c->q->cluster_bits, last = (off + len - 1) >> c->q->cluster_bits;

	if (!len)
		return;
	if ((r == R_RT || r == R_RB) && c->skip_refstruct)
		return;
	if (last >= c->n) {
		c->res->corruptions++;
		problem(c, "%s at %#llx is past the end of the file", what,
			(unsigned long long)off);
		return;
	}
	for (uint64_t i = first; i <= last; i++) {
		enum role was = c->role[i];

		if (c->ref[i] < UINT16_MAX)
			c->ref[i]++;
		if (was == R_NONE) {
			c->role[i] = (uint8_t)r;
			continue;
		}
		if (was >= R_DATA && r >= R_DATA)
			continue; /* shared data: the refcount says how often */
		c->res->corruptions++;
		problem(c, "cluster %llu is used both as %s and as %s", (unsigned long long)i,
			role_name[was], role_name[r]);
		if (was == R_RT || was == R_RB || r == R_RT || r == R_RB)
			c->rebuild = true;
		else
			c->overlaps_other++;
	}
}

static void count_bitmap(void *ctx, uint64_t off, uint64_t len, const char *what)
{
	count(ctx, off, len, what, R_BITMAP);
}

/* An L2 table for checking: the cached copy if any, else read raw (not
 * validated: bad entries are counted, not refused). */
static int l2_fetch(struct qcow2 *q, uint64_t l1i, uint64_t off, uint64_t *buf)
{
	uint32_t s = l1i < q->l2c.nslots ? q->l2c.slot[l1i] : 0;
	int ret;

	if (s) {
		memcpy(buf, q->l2c.e[s - 1].buf, q->cluster_size);
		return 0;
	}
	ret = disk_pread_full(q->d->fd, buf, q->cluster_size, off);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < q->cluster_size / 8; i++)
		buf[i] = be64_get(&buf[i]);
	return 0;
}

static int count_l2(struct check *c, uint64_t l1i, const uint64_t *t)
{
	struct qcow2 *q = c->q;

	for (uint64_t i = 0; i < q->cluster_size / 8; i++) {
		uint64_t e = t[i], off, len;

		if (e & L2E_COMPRESSED) {
			q2_compressed(q, e, &off, &len);
			count(c, off, len, "compressed cluster", R_COMPRESSED);
			continue;
		}
		off = e & L2E_OFFSET_MASK;
		if ((e & L2E_RESERVED) || (off & (q->cluster_size - 1))) {
			c->res->corruptions++;
			problem(c, "L2 entry %llu of table %llu (%#llx) is invalid",
				(unsigned long long)i, (unsigned long long)l1i,
				(unsigned long long)e);
			continue;
		}
		if (off)
			count(c, off, q->cluster_size, "data cluster", R_DATA);
	}
	return 0;
}

static int count_all(struct check *c, uint64_t *buf)
{
	struct qcow2 *q = c->q;
	uint64_t cs = q->cluster_size;
	int ret;

	count(c, 0, cs, "header", R_HEADER);
	count(c, q->l1_off, q->l1_size * 8, "L1 table", R_L1);
	count(c, q->rt_off, q->rt_clusters * cs, "refcount table", R_RT);
	for (uint64_t i = 0; i < q->rt_size; i++)
		if (q->rt[i])
			count(c, q->rt[i], cs, "refcount block", R_RB);
	if ((ret = q2_bitmap_ranges(q, count_bitmap, c)))
		return ret;
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t off = q->l1[i] & L1E_OFFSET_MASK;

		if (!off)
			continue;
		count(c, off, cs, "L2 table", R_L2);
		if ((off >> q->cluster_bits) >= c->n)
			continue;
		if ((ret = l2_fetch(q, i, off, buf)))
			return disk_fail(q->d, ret, "reading L2 table %llu: %s",
					 (unsigned long long)i, strerror(-ret));
		count_l2(c, i, buf);
	}
	return 0;
}

/* Compare the counted references with the stored refcounts. */
static int compare(struct check *c)
{
	struct qcow2 *q = c->q;
	int ret;

	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t rc, exp = c->ref[i];
		bool leak;

		if ((ret = q2_rc_get(q, i, &rc)))
			return ret;
		if (rc == exp)
			continue;
		leak = rc > exp;
		if (leak)
			c->res->leaks++;
		else
			c->res->corruptions++;
		problem(c, "cluster %llu: refcount %llu, referenced %llu%s", (unsigned long long)i,
			(unsigned long long)rc, (unsigned long long)exp, leak ? " (leaked)" : "");
		if (c->repair >= (leak ? 1 : 2)) {
			if ((ret = q2_rc_set(q, i, exp)))
				return ret;
			if (leak)
				c->res->leaks_fixed++;
			else
				c->res->corruptions_fixed++;
		}
	}
	return 0;
}

/* The COPIED flag must be set exactly on entries whose cluster has refcount 1. */
static int check_copied(struct check *c, uint64_t *buf)
{
	struct qcow2 *q = c->q;
	uint64_t rc;
	int ret;

	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t off = q->l1[i] & L1E_OFFSET_MASK;
		bool fix_table = false;

		if (!off || (off >> q->cluster_bits) >= c->n)
			continue;
		if ((ret = q2_rc_get(q, off >> q->cluster_bits, &rc)))
			return ret;
		if ((rc == 1) != !!(q->l1[i] & L2E_COPIED)) {
			c->res->corruptions++;
			problem(c, "L1 entry %llu: COPIED flag does not match refcount %llu",
				(unsigned long long)i, (unsigned long long)rc);
			if (c->repair >= 2) {
				q->l1[i] = rc == 1 ? (q->l1[i] | L2E_COPIED) : (q->l1[i] & ~L2E_COPIED);
				q->l1_dirty = true;
				c->res->corruptions_fixed++;
			}
		}
		if ((ret = l2_fetch(q, i, off, buf)))
			return disk_fail(q->d, ret, "reading an L2 table: %s", strerror(-ret));
		for (uint64_t k = 0; k < q->cluster_size / 8; k++) {
			uint64_t e = buf[k], o = e & L2E_OFFSET_MASK;

			if ((e & L2E_COMPRESSED) || !o || (e & L2E_RESERVED) ||
			    (o >> q->cluster_bits) >= c->n)
				continue;
			if ((ret = q2_rc_get(q, o >> q->cluster_bits, &rc)))
				return ret;
			if ((rc == 1) == !!(e & L2E_COPIED))
				continue;
			c->res->corruptions++;
			problem(c, "L2 entry %llu of table %llu: COPIED flag does not match "
				"refcount %llu", (unsigned long long)k, (unsigned long long)i,
				(unsigned long long)rc);
			if (c->repair >= 2) {
				buf[k] = rc == 1 ? (e | L2E_COPIED) : (e & ~L2E_COPIED);
				fix_table = true;
				c->res->corruptions_fixed++;
			}
		}
		if (fix_table) {
			uint64_t *tbl;

			/* Through the cache, so the fix is written by the flush. */
			if ((ret = q2_l2_get(q, i, false, &tbl)))
				return ret;
			memcpy(tbl, buf, q->cluster_size);
			q2_l2_mark_dirty(q, i);
		}
	}
	return 0;
}

/* Write a new refcount structure past the end of the file (blocks, then
 * the table) holding c->ref, counted without the old structure, and switch
 * the header to it; like QEMU's rebuild_refcount_structure. The old table
 * and blocks are not written: whatever else uses their clusters keeps them,
 * and the rest is free. */
static int rebuild_refstruct(struct check *c)
{
	struct qcow2 *q = c->q;
	uint64_t cs = q->cluster_size, epb = 1ull << q->rb_bits, start = c->n;
	uint64_t nrb = 1, nrt = 1, total, *rt;
	uint8_t *buf;
	int ret = 0;

	for (;;) {
		uint64_t b, t;

		total = start + nrb + nrt;
		b = (total + epb - 1) / epb;
		t = (b * 8 + cs - 1) / cs;
		if (b <= nrb && t <= nrt)
			break;
		nrb = MAX(nrb, b);
		nrt = MAX(nrt, t);
	}
	if (nrt * cs > QCOW2_MAX_REFTABLE_BYTES)
		return disk_fail(q->d, -EFBIG, "the rebuilt refcount table would be too large");
	buf = malloc(cs);
	rt = calloc(nrt * cs / 8, 8);
	if (!buf || !rt) {
		free(buf);
		free(rt);
		return disk_fail(q->d, -ENOMEM, "out of memory");
	}
	for (uint64_t b = 0; !ret && b < nrb; b++) {
		memset(buf, 0, cs);
		for (uint64_t k = 0; k < epb && b * epb + k < total; k++) {
			uint64_t cl = b * epb + k;

			q2_rb_put(q, buf, k, cl < start ? MIN((uint64_t)c->ref[cl], q->rc_max) : 1);
		}
		rt[b] = (start + b) << q->cluster_bits;
		ret = disk_pwrite_full(q->d->fd, buf, cs, rt[b]);
	}
	for (uint64_t t = 0; !ret && t < nrt; t++) {
		for (uint64_t k = 0; k < cs / 8; k++)
			be64_put(buf + k * 8, rt[t * (cs / 8) + k]);
		ret = disk_pwrite_full(q->d->fd, buf, cs, (start + nrb + t) << q->cluster_bits);
	}
	free(buf);
	if (ret) {
		free(rt);
		return disk_fail(q->d, ret, "writing the new refcount structure: %s",
				 strerror(-ret));
	}
	if ((ret = q2_sync(q))) {
		free(rt);
		return ret;
	}
	free(q->rt);
	q->rt = rt;
	q->rt_size = nrt * cs / 8;
	q->rt_off = (start + nrb) << q->cluster_bits;
	q->rt_clusters = nrt;
	q->rt_dirty = false;
	q2_cache_free(&q->rcc);
	q2_cache_init(&q->rcc, QCOW2_RC_CACHE_BYTES);
	if (q2_cache_resize(&q->rcc, q->rt_size))
		return disk_fail(q->d, -ENOMEM, "out of memory");
	q->end = MAX(q->end, total << q->cluster_bits);
	q->bad_rt = false;
	q->npending = 0; /* the new refcounts are the references as they are */
	q->free_hint = 0;
	q->may_have_free = true;
	if ((ret = q2_write_header(q)) || (ret = q2_sync(q)))
		return ret;
	return q2_meta_build(q);
}

static int count_pass(struct check *c, uint64_t *buf, bool skip_refstruct)
{
	memset(c->ref, 0, c->n * sizeof(*c->ref));
	memset(c->role, 0, c->n);
	c->skip_refstruct = skip_refstruct;
	c->rebuild = false;
	c->overlaps_other = 0;
	return count_all(c, buf);
}

/* One check; *rebuilt (if not NULL) tells that the refcount structure was
 * rebuilt, after which the caller checks again. */
static int check_once(struct qcow2 *q, int repair, struct disk_check_result *res, bool *rebuilt)
{
	struct check c = { .q = q, .res = res, .repair = repair };
	uint64_t *buf;
	int ret;

	if (q->nb_snapshots)
		return disk_fail(q->d, -ENOTSUP,
				 "checking images with internal snapshots is not supported");
	c.n = q->end >> q->cluster_bits;
	if (c.n > CHECK_MAX_CLUSTERS)
		return disk_fail(q->d, -EFBIG, "image too large to check (%llu clusters)",
				 (unsigned long long)c.n);
	c.ref = calloc(c.n ? c.n : 1, sizeof(*c.ref));
	c.role = calloc(c.n ? c.n : 1, 1);
	buf = malloc(q->cluster_size);
	if (!c.ref || !c.role || !buf) {
		free(c.ref);
		free(c.role);
		free(buf);
		return disk_fail(q->d, -ENOMEM, "out of memory");
	}
	ret = count_pass(&c, buf, q->bad_rt);
	if (q->bad_l1) { /* L1 entries dropped at open: nothing to repair them with */
		res->corruptions += q->bad_l1;
		problem(&c, "%s", q->bad_why);
		c.overlaps_other++;
	}
	if (q->bad_rt) {
		res->corruptions++;
		problem(&c, "%s", q->bad_why);
		c.rebuild = true;
	}
	if (!ret && c.rebuild && repair >= 2 && !c.overlaps_other && rebuilt) {
		struct disk_check_result keep = *res;

		ret = count_pass(&c, buf, true);
		*res = keep;
		if (!ret && !c.overlaps_other && !(ret = rebuild_refstruct(&c)))
			*rebuilt = true;
		goto out;
	}
	/* Overlapping clusters: fixing refcounts or flags could write one
	 * structure over another. Report only. */
	if (c.rebuild || c.overlaps_other)
		c.repair = 0;
	if (!ret)
		ret = compare(&c);
	if (!ret)
		ret = check_copied(&c, buf);
out:
	free(c.ref);
	free(c.role);
	free(buf);
	return ret;
}

static int check_run(struct qcow2 *q, int repair, struct disk_check_result *res)
{
	struct disk_check_result before;
	bool rebuilt = false;
	int ret = check_once(q, repair, res, &rebuilt);

	if (ret || !rebuilt)
		return ret;
	/* Every problem found so far was in the refcounts, now rebuilt from
	 * the references; check again, as QEMU does. */
	before = *res;
	memset(res, 0, sizeof(*res));
	ret = check_once(q, repair, res, NULL);
	res->corruptions += before.corruptions;
	res->corruptions_fixed += before.corruptions;
	memcpy(res->first_problem, before.first_problem, sizeof(res->first_problem));
	return ret;
}

static int check_mode(struct disk *d, int repair, struct disk_check_result *res)
{
	struct qcow2 *q = Q(d);
	int ret;

	if (!d->readonly && (ret = qcow2_flush(d)))
		return ret;
	ret = check_run(q, repair, res);
	if (ret || !(res->leaks_fixed + res->corruptions_fixed))
		return ret;
	return qcow2_flush(d);
}

int qcow2_check(struct disk *d, bool repair, struct disk_check_result *res)
{
	return check_mode(d, repair ? 2 : 0, res);
}

int disk_check_mode(struct disk *d, int repair, struct disk_check_result *res)
{
	memset(res, 0, sizeof(*res));
	if (repair && d->readonly)
		return disk_fail(d, -EROFS, "repair needs a read-write open");
	if (d->fmt != DISK_FMT_QCOW2)
		return 0;
	return check_mode(d, repair, res);
}

int qcow2_rebuild_refcounts(struct qcow2 *q)
{
	struct disk_check_result res;

	memset(&res, 0, sizeof(res));
	return check_run(q, 2, &res);
}
