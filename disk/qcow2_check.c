/* qcow2_check.c: consistency check of qcow2 refcounts against the
 * metadata that references clusters (like qemu-img check), repair, and the
 * refcount rebuild of images left dirty by lazy refcounts. */
#include "qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_MAX_CLUSTERS (1ull << 28)

struct check {
	struct qcow2 *q;
	uint16_t *ref;      /* references counted, saturating */
	uint64_t n;         /* clusters in ref[] */
	struct disk_check_result *res;
	int repair;         /* 0, 1 leaks, 2 all */
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

static void count(struct check *c, uint64_t off, uint64_t len, const char *what)
{
	uint64_t first = off >> c->q->cluster_bits, last = (off + len - 1) >> c->q->cluster_bits;

	if (!len)
		return;
	if (last >= c->n) {
		c->res->corruptions++;
		problem(c, "%s at %#llx is past the end of the file", what,
			(unsigned long long)off);
		return;
	}
	for (uint64_t i = first; i <= last; i++)
		if (c->ref[i] < UINT16_MAX)
			c->ref[i]++;
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
			count(c, off, len, "compressed cluster");
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
			count(c, off, q->cluster_size, "data cluster");
	}
	return 0;
}

static int count_all(struct check *c, uint64_t *buf)
{
	struct qcow2 *q = c->q;
	uint64_t cs = q->cluster_size;
	int ret;

	count(c, 0, cs, "header");
	count(c, q->l1_off, q->l1_size * 8, "L1 table");
	count(c, q->rt_off, q->rt_clusters * cs, "refcount table");
	for (uint64_t i = 0; i < q->rt_size; i++)
		if (q->rt[i])
			count(c, q->rt[i], cs, "refcount block");
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t off = q->l1[i] & L1E_OFFSET_MASK;

		if (!off)
			continue;
		count(c, off, cs, "L2 table");
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

static int check_run(struct qcow2 *q, int repair, struct disk_check_result *res)
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
	buf = malloc(q->cluster_size);
	if (!c.ref || !buf) {
		free(c.ref);
		free(buf);
		return disk_fail(q->d, -ENOMEM, "out of memory");
	}
	ret = count_all(&c, buf);
	if (!ret)
		ret = compare(&c);
	if (!ret)
		ret = check_copied(&c, buf);
	free(c.ref);
	free(buf);
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
