/* qcow2.c: the qcow2 header: probe, open (validation of every field and
 * table the image gives us), header extensions, rewriting the header,
 * close. Format reference: QEMU's docs/interop/qcow2.txt. */
#include "qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define HDR_V2_LEN 72
#define HDR_V3_LEN 104
#define HDR_OUT_LEN 112 /* what we write: with the compression type byte */
#define MAX_BACKING_NAME 1023

bool qcow2_probe(int fd)
{
	uint8_t m[4];

	return pread(fd, m, 4, 0) == 4 && be32_get(m) == QCOW2_MAGIC;
}

bool q2_offset_ok(const struct qcow2 *q, uint64_t off)
{
	return off && !(off & (q->cluster_size - 1)) && off < q->end;
}

struct feature_name {
	uint8_t type, bit;
	char name[47];
};

/* Names for incompatible bits we know of, used when the image carries no
 * feature name table. */
static const char *const known_incompat[] = { "dirty bit", "corrupt bit", "external data file",
					      "compression type", "extended L2 entries" };

static void incompat_names(uint64_t bits, const struct feature_name *fn, unsigned nfn, char *out,
			   size_t len)
{
	size_t n = 0;

	out[0] = 0;
	for (unsigned b = 0; b < 64 && n < len; b++) {
		const char *name = b < ARRAY_SIZE(known_incompat) ? known_incompat[b] : NULL;
		char unk[32];

		if (!(bits & (1ull << b)))
			continue;
		for (unsigned i = 0; i < nfn; i++)
			if (fn[i].type == 0 && fn[i].bit == b)
				name = fn[i].name;
		if (!name) {
			snprintf(unk, sizeof(unk), "unknown bit %u", b);
			name = unk;
		}
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "", name);
	}
}

/* Walk the header extensions in hdr[start, limit). */
static int parse_extensions(struct disk *d, struct qcow2 *q, const uint8_t *hdr, size_t start,
			    size_t limit, struct feature_name *fn, unsigned *nfn, char *err,
			    size_t errlen)
{
	size_t p = start;

	while (p + 8 <= limit) {
		uint32_t type = be32_get(hdr + p), len = be32_get(hdr + p + 4);
		const uint8_t *data = hdr + p + 8;

		if (type == QCOW2_EXT_END)
			return 0;
		if (len > limit - p - 8)
			return disk_errf(err, errlen, -EINVAL,
					 "header extension %#x overruns the header cluster", type);
		switch (type) {
		case QCOW2_EXT_BACKING_FMT: {
			char f[32];

			snprintf(f, sizeof(f), "%.*s", (int)MIN(len, 31u), (const char *)data);
			d->backing_fmt = !strcmp(f, "raw")     ? DISK_FMT_RAW
					 : !strcmp(f, "qcow2") ? DISK_FMT_QCOW2
							       : -2;
			if (d->backing_fmt == -2)
				return disk_errf(err, errlen, -ENOTSUP,
						 "backing file format '%s' is not supported", f);
			break;
		}
		case QCOW2_EXT_FEATURES:
			q->has_feature_table = true;
			for (uint32_t i = 0; i + 48 <= len && *nfn < 64; i += 48, (*nfn)++) {
				fn[*nfn].type = data[i];
				fn[*nfn].bit = data[i + 1];
				snprintf(fn[*nfn].name, sizeof(fn[*nfn].name), "%.46s",
					 (const char *)data + i + 2);
			}
			break;
		case QCOW2_EXT_BITMAPS:
			if (len >= 24) {
				q->nb_bitmaps = be32_get(data);
				q->bm_dir_size = be64_get(data + 8);
				q->bm_dir_off = be64_get(data + 16);
			}
			q->bitmaps = true; /* valid only with the autoclear bit: see open */
			goto keep;
		case QCOW2_EXT_DATA_FILE:
			return disk_errf(err, errlen, -ENOTSUP,
					 "images with an external data file are not supported");
		case QCOW2_EXT_CRYPTO:
			return disk_errf(err, errlen, -ENOTSUP, "encrypted images are not supported");
		default:
		keep: {
			/* Unknown (and bitmaps): kept verbatim for header rewrites. */
			size_t n = 8 + ALIGN_UP((size_t)len, 8);
			uint8_t *k;

			if (n > limit - p)
				n = limit - p;
			k = realloc(q->ext_keep, q->ext_keep_len + n);
			if (!k)
				return disk_errf(err, errlen, -ENOMEM, "out of memory");
			memcpy(k + q->ext_keep_len, hdr + p, n);
			q->ext_keep = k;
			q->ext_keep_len += n;
		}
		}
		p += 8 + ALIGN_UP((size_t)len, 8);
	}
	return 0;
}

static int parse_header(struct disk *d, struct qcow2 *q, const uint8_t *h, uint64_t file_size,
			char *err, size_t errlen)
{
	struct feature_name fn[64];
	unsigned nfn = 0;
	uint64_t bfo = be64_get(h + 8), l1_cover;
	uint32_t bfs = be32_get(h + 16), crypt = be32_get(h + 32);
	size_t ext_start;
	bool lenient;
	int ret;

	q->version = be32_get(h + 4);
	if (q->version != 2 && q->version != 3)
		return disk_errf(err, errlen, -ENOTSUP, "qcow2 version %u is not supported",
				 q->version);
	q->cluster_bits = be32_get(h + 20);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return disk_errf(err, errlen, -EINVAL, "invalid cluster_bits %u (9..21)",
				 q->cluster_bits);
	q->cluster_size = 1ull << q->cluster_bits;
	q->l2_bits = q->cluster_bits - 3;
	d->size = be64_get(h + 24);
	if (crypt)
		return disk_errf(err, errlen, -ENOTSUP, "encrypted images are not supported");
	q->l1_size = be32_get(h + 36);
	q->l1_off = be64_get(h + 40);
	q->rt_off = be64_get(h + 48);
	q->rt_clusters = be32_get(h + 56);
	q->nb_snapshots = be32_get(h + 60);
	q->snapshots_off = be64_get(h + 64);
	q->refcount_order = 4;
	q->header_len = HDR_V2_LEN;
	if (q->version == 3) {
		q->incompat = be64_get(h + 72);
		q->compat = be64_get(h + 80);
		q->autoclear = be64_get(h + 88);
		q->refcount_order = be32_get(h + 96);
		q->header_len = be32_get(h + 100);
		if (q->header_len < HDR_V3_LEN || q->header_len > q->cluster_size ||
		    (q->header_len & 7))
			return disk_errf(err, errlen, -EINVAL, "invalid header length %u",
					 q->header_len);
		if (q->header_len > HDR_V3_LEN)
			q->compression_type = h[104];
	}
	if (q->refcount_order > 6)
		return disk_errf(err, errlen, -EINVAL, "invalid refcount order %u",
				 q->refcount_order);
	q->rb_bits = q->cluster_bits + 3 - q->refcount_order;
	q->rc_max = q->refcount_order == 6 ? UINT64_MAX : (1ull << (1u << q->refcount_order)) - 1;
	if (bfo) {
		if (bfs == 0 || bfs > MAX_BACKING_NAME || bfs > q->cluster_size ||
		    bfo > q->cluster_size - bfs ||
		    bfo < q->header_len)
			return disk_errf(err, errlen, -EINVAL, "invalid backing file name location");
		d->backing_name = strndup((const char *)h + bfo, bfs);
		if (!d->backing_name)
			return disk_errf(err, errlen, -ENOMEM, "out of memory");
		if (strlen(d->backing_name) != bfs)
			return disk_errf(err, errlen, -EINVAL, "backing file name contains NUL");
	}
	ext_start = q->header_len;
	ret = parse_extensions(d, q, h, ext_start, bfo ? (size_t)bfo : (size_t)q->cluster_size,
			       fn, &nfn, err, errlen);
	if (ret)
		return ret;
	if (q->incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)) {
		char names[256];

		incompat_names(q->incompat & ~(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT), fn,
			       nfn, names, sizeof(names));
		return disk_errf(err, errlen, -ENOTSUP, "unsupported incompatible features: %s",
				 names);
	}
	if (q->compression_type)
		return disk_errf(err, errlen, -ENOTSUP, "compression type %u is not supported",
				 q->compression_type);
	/* Tables: sizes, alignment, inside the file. */
	if (q->l1_size > QCOW2_MAX_L1_BYTES / 8)
		return disk_errf(err, errlen, -EINVAL, "L1 table too large (%llu entries)",
				 (unsigned long long)q->l1_size);
	l1_cover = q->l1_size << (q->l2_bits + q->cluster_bits);
	if (d->size > l1_cover || d->size > (1ull << 62))
		return disk_errf(err, errlen, -EINVAL,
				 "virtual size %llu exceeds what the L1 table maps",
				 (unsigned long long)d->size);
	lenient = d->open_flags & DISK_CHECK;
	if (q->l1_size && (q->l1_off & (q->cluster_size - 1) || !q->l1_off))
		return disk_errf(err, errlen, -EINVAL, "L1 table offset %#llx is invalid",
				 (unsigned long long)q->l1_off);
	if (q->l1_size && (q->l1_off > file_size || q->l1_size * 8 > file_size - q->l1_off)) {
		if (!lenient)
			return disk_errf(err, errlen, -EINVAL, "L1 table offset %#llx is invalid",
					 (unsigned long long)q->l1_off);
		q->bad_l1 = 1; /* as qemu-img check: a corruption to report */
		snprintf(q->bad_why, sizeof(q->bad_why), "the L1 table (at %#llx) is past the end "
			 "of the file", (unsigned long long)q->l1_off);
	}
	if (!q->rt_clusters || q->rt_clusters > QCOW2_MAX_REFTABLE_BYTES >> q->cluster_bits)
		return disk_errf(err, errlen, -EINVAL, "invalid refcount table size (%llu clusters)",
				 (unsigned long long)q->rt_clusters);
	if (q->rt_off & (q->cluster_size - 1))
		return disk_errf(err, errlen, -EINVAL, "refcount table offset %#llx is invalid",
				 (unsigned long long)q->rt_off);
	if (!q->rt_off || q->rt_off > file_size ||
	    (q->rt_clusters << q->cluster_bits) > file_size - q->rt_off) {
		if (!lenient)
			return disk_errf(err, errlen, -EINVAL,
					 "refcount table offset %#llx is invalid",
					 (unsigned long long)q->rt_off);
		q->bad_rt = true; /* check rebuilds the refcount structure */
		snprintf(q->bad_why, sizeof(q->bad_why), "refcount table offset %#llx is invalid",
			 (unsigned long long)q->rt_off);
	}
	q->rt_size = (q->rt_clusters << q->cluster_bits) / 8;
	if (q->nb_snapshots && (q->snapshots_off & (q->cluster_size - 1) || !q->snapshots_off))
		return disk_errf(err, errlen, -EINVAL, "invalid snapshot table offset");
	return 0;
}

static int load_tables(struct disk *d, struct qcow2 *q, char *err, size_t errlen)
{
	size_t l1_bytes = (size_t)q->l1_size * 8, rt_bytes = (size_t)q->rt_size * 8;
	bool lenient = d->open_flags & DISK_CHECK;
	int ret;

	q->l1 = calloc(q->l1_size ? q->l1_size : 1, 8);
	q->rt = calloc(q->rt_size, 8);
	if (!q->l1 || !q->rt)
		return disk_errf(err, errlen, -ENOMEM, "out of memory for the L1/refcount tables");
	if (l1_bytes && !q->bad_l1 &&
	    (ret = disk_pread_full(d->fd, q->l1, l1_bytes, q->l1_off)))
		return disk_errf(err, errlen, ret, "cannot read the L1 table: %s", strerror(-ret));
	if (!q->bad_rt && (ret = disk_pread_full(d->fd, q->rt, rt_bytes, q->rt_off)))
		return disk_errf(err, errlen, ret, "cannot read the refcount table: %s",
				 strerror(-ret));
	for (uint64_t i = 0; i < q->l1_size; i++) {
		uint64_t e = q->l1[i] = be64_get(&q->l1[i]), o = e & L1E_OFFSET_MASK;

		if (((e & L1E_RESERVED) || (o && !q2_offset_ok(q, o))) && lenient) {
			if (!q->bad_l1++)
				snprintf(q->bad_why, sizeof(q->bad_why),
					 "L1 entry %llu (%#llx) is invalid (reserved bits, "
					 "unaligned or outside the file)",
					 (unsigned long long)i, (unsigned long long)e);
			q->l1[i] = 0;
			continue;
		}
		if ((e & L1E_RESERVED) || (o && !q2_offset_ok(q, o)))
			return disk_errf(err, errlen, -EINVAL,
					 "L1 entry %llu (%#llx) is invalid (reserved bits, unaligned or "
					 "outside the file)",
					 (unsigned long long)i, (unsigned long long)e);
		if (!o && e)
			return disk_errf(err, errlen, -EINVAL, "L1 entry %llu has flags but no table",
					 (unsigned long long)i);
	}
	for (uint64_t i = 0; i < q->rt_size; i++) {
		uint64_t e = q->rt[i] = be64_get(&q->rt[i]);

		if (((e & ~RTE_OFFSET_MASK) || (e && !q2_offset_ok(q, e))) && lenient) {
			if (!q->bad_rt)
				snprintf(q->bad_why, sizeof(q->bad_why),
					 "refcount table entry %llu (%#llx) is invalid",
					 (unsigned long long)i, (unsigned long long)e);
			q->bad_rt = true;
			q->rt[i] = 0;
			continue;
		}
		if ((e & ~RTE_OFFSET_MASK) || (e && !q2_offset_ok(q, e)))
			return disk_errf(err, errlen, -EINVAL,
					 "refcount table entry %llu (%#llx) is invalid",
					 (unsigned long long)i, (unsigned long long)e);
	}
	if ((ret = q2_cache_resize(&q->l2c, q->l1_size)) ||
	    (ret = q2_cache_resize(&q->rcc, q->rt_size)))
		return disk_errf(err, errlen, ret, "out of memory");
	return 0;
}

static int check_writable(struct disk *d, struct qcow2 *q, char *err, size_t errlen)
{
	if (q->version < 3)
		return disk_errf(err, errlen, -ENOTSUP,
				 "qcow2 version 2 images are read-only here; upgrade with "
				 "'qemu-img amend -o compat=1.1'");
	if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
		return disk_errf(err, errlen, -EROFS,
				 "the image is marked corrupt; open it read-only or repair it "
				 "('qemu-img check -r all')");
	if (q->nb_snapshots)
		return disk_errf(err, errlen, -ENOTSUP,
				 "images with internal snapshots can only be opened read-only");
	return 0;
}

static void qcow2_close(struct disk *d)
{
	struct qcow2 *q = Q(d);

	if (!q)
		return;
	q2_cache_free(&q->l2c);
	q2_cache_free(&q->rcc);
	free(q->l1);
	free(q->rt);
	free(q->pending);
	free(q->ext_keep);
	free(q->meta);
	free(q->zc_buf);
	free(q->zc_in);
	free(q);
	d->priv = NULL;
}

int qcow2_open(struct disk *d, char *err, size_t errlen)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	uint8_t *h = NULL;
	struct stat st;
	size_t hlen, hcap;
	int ret;

	if (!q)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	d->priv = q;
	q->d = d;
	q2_cache_init(&q->l2c, QCOW2_L2_CACHE_BYTES);
	q2_cache_init(&q->rcc, QCOW2_RC_CACHE_BYTES);
	if (fstat(d->fd, &st) < 0)
		return disk_errf(err, errlen, -errno, "cannot stat: %s", strerror(errno));
	if ((uint64_t)st.st_size < HDR_V2_LEN)
		return disk_errf(err, errlen, -EINVAL, "truncated qcow2 header (%lld bytes)",
				 (long long)st.st_size);
	/* The header, its extensions and the backing name fit in cluster 0:
	 * a buffer of the cluster size (cluster_bits clamped here, validated
	 * by parse_header), not of the largest one, which every open would
	 * have to clear. */
	{
		uint8_t cb[4];
		unsigned bits = QCOW2_MAX_CLUSTER_BITS;

		if (pread(d->fd, cb, 4, 20) == 4)
			bits = MAX(MIN(be32_get(cb), QCOW2_MAX_CLUSTER_BITS),
				   QCOW2_MIN_CLUSTER_BITS);
		hcap = MAX((size_t)1 << bits, (size_t)HDR_OUT_LEN);
	}
	hlen = (size_t)MIN((uint64_t)st.st_size, hcap);
	h = calloc(1, hcap);
	if (!h)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	ret = disk_pread_full(d->fd, h, hlen, 0);
	if (ret) {
		free(h);
		return disk_errf(err, errlen, ret, "cannot read the header: %s", strerror(-ret));
	}
	if (be32_get(h) != QCOW2_MAGIC) {
		free(h);
		return disk_errf(err, errlen, -EINVAL, "not a qcow2 image");
	}
	if (be32_get(h + 4) == 3 && hlen < HDR_V3_LEN) {
		free(h);
		return disk_errf(err, errlen, -EINVAL, "truncated qcow2 header");
	}
	q->end = ALIGN_UP((uint64_t)st.st_size, 1ull << MIN(be32_get(h + 20), 21u));
	ret = parse_header(d, q, h, (uint64_t)st.st_size, err, errlen);
	free(h);
	if (ret)
		return ret;
	q->end = ALIGN_UP((uint64_t)st.st_size, q->cluster_size);
	q->free_hint = 0;
	q->may_have_free = true;
	ret = load_tables(d, q, err, errlen);
	if (ret)
		return ret;
	/* The bitmaps extension counts only while its autoclear bit is set. */
	q->bitmaps = q->bitmaps && (q->autoclear & QCOW2_AUTOCLEAR_BITMAPS);
	if ((ret = q2_meta_build(q)))
		return disk_errf(err, errlen, ret, "%s", d->err);
	if (d->readonly)
		return 0;
	ret = check_writable(d, q, err, errlen);
	if (ret)
		return ret;
	if (q->incompat & QCOW2_INCOMPAT_DIRTY) {
		/* Lazy refcounts left unsaved: rebuild them from the L1/L2 tables. */
		log_info("%s: the image was not closed cleanly (dirty bit): rebuilding refcounts",
			 d->path ? d->path : "qcow2 image");
		ret = qcow2_rebuild_refcounts(q);
		if (ret)
			return disk_errf(err, errlen, ret, "rebuilding refcounts: %s", d->err);
		q->incompat &= ~QCOW2_INCOMPAT_DIRTY;
		q->header_dirty = true;
	}
	if (q->bitmaps) {
		/* Guest writes would leave the bitmaps stale and clearing the bit
		 * would destroy them: only repairs (which write no guest data)
		 * may open such an image read-write. */
		if (!(d->open_flags & DISK_REPAIR))
			return disk_errf(err, errlen, -ENOTSUP,
			                 "the image has %u persistent dirty bitmap(s), which cella "
			                 "does not keep up to date: open it read-only, or remove "
			                 "them first ('qemu-img bitmap --remove')",
			                 q->nb_bitmaps);
		q->keep_bitmaps = true;
	}
	if (q->autoclear & ~(q->keep_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0)) {
		/* We keep no other autoclear feature up to date. */
		q->autoclear &= q->keep_bitmaps ? QCOW2_AUTOCLEAR_BITMAPS : 0;
		q->header_dirty = true;
	}
	if (q->header_dirty) {
		ret = qcow2_flush(d);
		if (ret)
			return disk_errf(err, errlen, ret, "%s", d->err);
	}
	return 0;
}

static void put_ext(uint8_t *h, size_t *p, uint32_t type, const void *data, uint32_t len)
{
	be32_put(h + *p, type);
	be32_put(h + *p + 4, len);
	memcpy(h + *p + 8, data, len);
	memset(h + *p + 8 + len, 0, ALIGN_UP(len, 8u) - len);
	*p += 8 + ALIGN_UP(len, 8u);
}

static size_t feature_table(uint8_t *t)
{
	static const struct { uint8_t type, bit; const char *name; } f[] = {
		{ 0, 0, "dirty bit" },		 { 0, 1, "corrupt bit" },
		{ 0, 2, "external data file" }, { 0, 3, "compression type" },
		{ 0, 4, "extended L2 entries" }, { 1, 0, "lazy refcounts" },
		{ 2, 0, "bitmaps" },		 { 2, 1, "raw external data" },
	};

	memset(t, 0, ARRAY_SIZE(f) * 48);
	for (size_t i = 0; i < ARRAY_SIZE(f); i++) {
		t[i * 48] = f[i].type;
		t[i * 48 + 1] = f[i].bit;
		memcpy(t + i * 48 + 2, f[i].name, strlen(f[i].name));
	}
	return ARRAY_SIZE(f) * 48;
}

/* Build the header cluster for q (with d's backing name and format). */
int q2_build_header(struct qcow2 *q, uint8_t *h, size_t cap)
{
	struct disk *d = q->d;
	uint8_t ft[8 * 48];
	size_t p = HDR_OUT_LEN, ftlen = feature_table(ft);
	size_t blen = d->backing_name ? strlen(d->backing_name) : 0;
	const char *bfmt = d->backing_fmt >= 0 ? disk_format_name(d->backing_fmt) : NULL;
	size_t need = HDR_OUT_LEN + q->ext_keep_len + 8 + blen +
		      (bfmt && blen ? 8 + ALIGN_UP(strlen(bfmt), 8) : 0);

	if (need > cap)
		return -ENOSPC;
	memset(h, 0, cap);
	be32_put(h, QCOW2_MAGIC);
	be32_put(h + 4, 3);
	be32_put(h + 16, (uint32_t)blen);
	be32_put(h + 20, q->cluster_bits);
	be64_put(h + 24, d->size);
	be32_put(h + 36, (uint32_t)q->l1_size);
	be64_put(h + 40, q->l1_off);
	be64_put(h + 48, q->rt_off);
	be32_put(h + 56, (uint32_t)q->rt_clusters);
	be32_put(h + 60, q->nb_snapshots);
	be64_put(h + 64, q->snapshots_off);
	be64_put(h + 72, q->incompat);
	be64_put(h + 80, q->compat);
	be64_put(h + 88, q->autoclear);
	be32_put(h + 96, q->refcount_order);
	be32_put(h + 100, HDR_OUT_LEN);
	h[104] = q->compression_type;
	if (bfmt && blen)
		put_ext(h, &p, QCOW2_EXT_BACKING_FMT, bfmt, (uint32_t)strlen(bfmt));
	if (need + 8 + ftlen <= cap)
		put_ext(h, &p, QCOW2_EXT_FEATURES, ft, (uint32_t)ftlen);
	if (q->ext_keep_len)
		memcpy(h + p, q->ext_keep, q->ext_keep_len);
	p += q->ext_keep_len;
	p += 8; /* end marker: zeroes */
	if (blen) {
		be64_put(h + 8, p);
		memcpy(h + p, d->backing_name, blen);
	}
	return 0;
}

int q2_write_header(struct qcow2 *q)
{
	size_t cs = (size_t)q->cluster_size;
	uint8_t *h = malloc(cs);
	int ret;

	if (!h)
		return disk_fail(q->d, -ENOMEM, "out of memory");
	ret = q2_build_header(q, h, cs);
	if (ret == -ENOSPC)
		ret = disk_fail(q->d, -ENOSPC, "the header does not fit in one cluster");
	else if ((ret = disk_pwrite_full(q->d->fd, h, cs, 0)))
		ret = disk_fail(q->d, ret, "writing the header: %s", strerror(-ret));
	free(h);
	if (!ret)
		q->header_dirty = false;
	return ret;
}

static int qcow2_set_backing(struct disk *d, const char *name, enum disk_format fmt)
{
	struct qcow2 *q = Q(d);
	char *old = d->backing_name, *nn = NULL;
	int old_fmt = d->backing_fmt, ret;

	if (name && *name && strlen(name) > MAX_BACKING_NAME)
		return disk_fail(d, -EINVAL, "backing file name too long");
	if (name && *name && !(nn = strdup(name)))
		return disk_fail(d, -ENOMEM, "out of memory");
	d->backing_name = nn;
	d->backing_fmt = nn ? (int)fmt : -1;
	ret = qcow2_flush(d);
	if (!ret && !(ret = q2_write_header(q)))
		ret = q2_sync(q);
	if (ret) {
		d->backing_name = old;
		d->backing_fmt = old_fmt;
		free(nn);
		return ret;
	}
	free(old);
	return 0;
}

const struct disk_ops qcow2_ops = {
	.map = qcow2_map,
	.read_slow = qcow2_read_slow,
	.flush = qcow2_flush,
	.discard = qcow2_discard,
	.write_zeroes = qcow2_write_zeroes,
	.resize = qcow2_resize,
	.info = qcow2_info,
	.check = qcow2_check,
	.set_backing = qcow2_set_backing,
	.close = qcow2_close,
};
