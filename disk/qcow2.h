/* qcow2.h: the qcow2 driver's private state, shared by qcow2*.c.
 *
 * Metadata lives in memory as host-endian tables: the L1 table and the
 * refcount table whole, L2 tables and refcount blocks in a cache keyed by
 * their index (qcow2_meta.c). Changes are made in memory and written by
 * qcow2_flush() in the order disk.h requires. */
#pragma once
#include "disk_priv.h"

#define QCOW2_MAGIC              0x514649fbu
#define QCOW2_MIN_CLUSTER_BITS   9
#define QCOW2_MAX_CLUSTER_BITS   21
#define QCOW2_MAX_L1_BYTES       MiB(32)
#define QCOW2_MAX_REFTABLE_BYTES MiB(8)
#define QCOW2_DIRTY_LIMIT        MiB(32) /* unflushed metadata before -EAGAIN */
#define QCOW2_L2_CACHE_BYTES     MiB(64) /* clean L2 tables kept */
#define QCOW2_RC_CACHE_BYTES     MiB(16)

#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_EXT_END         0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES    0x6803f857u
#define QCOW2_EXT_DATA_FILE   0x44415441u
#define QCOW2_EXT_CRYPTO      0x0537be77u
#define QCOW2_EXT_BITMAPS     0x23852875u
#define QCOW2_AUTOCLEAR_BITMAPS (1ull << 0)
#define QCOW2_MAX_BITMAP_DIR  MiB(64)
#define BME_OFFSET_MASK       0x00fffffffffffe00ull

#define L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define L1E_RESERVED    0x7f000000000001ffull
#define L2E_COPIED      (1ull << 63)
#define L2E_COMPRESSED  (1ull << 62)
#define L2E_ZERO        1ull
#define L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define L2E_RESERVED    0x3f000000000001feull
#define RTE_OFFSET_MASK 0xfffffffffffffe00ull

/* One cached table (L2 table or refcount block). */
struct q2_entry {
	uint64_t idx;      /* L1 index / refcount table index */
	uint64_t host_off; /* where it lives in the file */
	void *buf;         /* L2: host-endian u64s; refcount block: file bytes */
	uint64_t lru;
	bool dirty;
};

struct q2_cache {
	uint32_t *slot; /* by index: entry number + 1, 0 = not cached */
	uint64_t nslots;
	struct q2_entry *e;
	uint32_t n, cap;
	uint64_t clock;
	uint64_t limit; /* bytes of tables kept before clean ones are evicted */
	uint64_t ndirty;
};

struct qcow2 {
	struct disk *d;
	unsigned version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits;        /* log2 of entries per L2 table */
	unsigned refcount_order; /* refcount width: 1 << order bits */
	unsigned rb_bits;        /* log2 of entries per refcount block */
	uint64_t rc_max;
	uint64_t incompat, compat, autoclear;
	uint32_t header_len;
	uint32_t nb_snapshots;
	uint64_t snapshots_off;
	uint8_t compression_type;

	uint64_t *l1;
	uint64_t l1_size, l1_off;
	bool l1_dirty, header_dirty;

	uint64_t *rt; /* refcount table */
	uint64_t rt_size, rt_off, rt_clusters;
	bool rt_dirty;

	struct q2_cache l2c, rcc;
	uint64_t end;       /* first never-used cluster offset: appends go here */
	uint64_t free_hint; /* cluster index where the search for a free one starts */
	bool may_have_free;

	uint64_t *pending; /* clusters freed, decremented once the change is synced */
	size_t npending, pending_cap;

	/* unknown header extensions, kept verbatim when the header is rewritten */
	uint8_t *ext_keep;
	size_t ext_keep_len;
	bool has_feature_table;

	/* last decompressed cluster */
	uint64_t zc_entry;
	uint8_t *zc_buf, *zc_in;
	bool broken; /* metadata found invalid: no more writes */

	/* persistent dirty bitmaps (extension valid: autoclear bit set) */
	bool bitmaps;
	uint32_t nb_bitmaps;
	uint64_t bm_dir_off, bm_dir_size;
	bool keep_bitmaps; /* opened for repair: bitmaps kept, no guest writes */

	/* Clusters that held metadata at open (header, L1, refcount table and
	 * blocks, L2 tables, bitmaps), sorted: never reused by allocation even
	 * when their refcount says free, and a data cluster among them is an
	 * overlap. Clusters freed since are removed. */
	uint64_t *meta;
	size_t nmeta;
	bool overlap; /* a cluster is reachable in two roles: no more writes */
	/* DISK_CHECK opens: tables or entries outside the file, left out (zero)
	 * for check to report; no writes but the rebuild of the refcounts */
	uint64_t bad_l1;
	bool bad_rt;
	char bad_why[200];
	char overlap_why[200];
};

static inline struct qcow2 *Q(struct disk *d)
{
	return d->priv;
}

static inline uint64_t be64_get(const void *p)
{
	const uint8_t *b = p;
	return ((uint64_t)b[0] << 56) | ((uint64_t)b[1] << 48) | ((uint64_t)b[2] << 40) |
	       ((uint64_t)b[3] << 32) | ((uint64_t)b[4] << 24) | ((uint64_t)b[5] << 16) |
	       ((uint64_t)b[6] << 8) | b[7];
}
static inline uint32_t be32_get(const void *p)
{
	const uint8_t *b = p;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}
static inline uint16_t be16_get(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)((b[0] << 8) | b[1]);
}
static inline void be64_put(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}
static inline void be32_put(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 3; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}
static inline void be16_put(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

/* Compressed L2 entry: host offset and byte count of the deflate stream. */
static inline void q2_compressed(const struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
	unsigned x = 62 - (q->cluster_bits - 8);
	uint64_t sectors = ((e >> x) & ((1ull << (q->cluster_bits - 8)) - 1)) + 1;

	*off = e & ((1ull << x) - 1);
	*len = sectors * 512 - (*off & 511);
}

/* qcow2_meta.c: caches, refcounts, allocation, flush */
void q2_cache_init(struct q2_cache *c, uint64_t limit);
int q2_cache_resize(struct q2_cache *c, uint64_t nslots);
/* Grow an in-memory table of 8-byte entries (L1, refcount table) from old to
 * entries, zeroing the new ones, and its cache c to as many slots. On failure
 * *table stays valid (maybe reallocated) and holds the old entries. */
int q2_table_grow(struct qcow2 *q, uint64_t **table, uint64_t old, uint64_t entries,
                  struct q2_cache *c) __must_check;
void q2_cache_free(struct q2_cache *c);
/* The L2 table of L1 index i, loaded if needed; NULL if not allocated (and
 * !alloc). With alloc, a zeroed table is allocated. */
int q2_l2_get(struct qcow2 *q, uint64_t l1i, bool alloc, uint64_t **tbl) __must_check;
void q2_l2_mark_dirty(struct qcow2 *q, uint64_t l1i);
int q2_rc_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc) __must_check;
int q2_rc_set(struct qcow2 *q, uint64_t cluster, uint64_t rc) __must_check;
/* Store refcount v at index i of a refcount block's bytes. */
void q2_rb_put(const struct qcow2 *q, uint8_t *b, uint64_t i, uint64_t v);
/* Allocate n contiguous clusters (n > 1: always at the end of the file);
 * *fresh tells whether they were never used (read as zeroes). */
int q2_alloc(struct qcow2 *q, uint64_t n, uint64_t *off, bool *fresh) __must_check;
/* Drop one reference to the cluster at off once the current change is
 * synced (next flush). */
int q2_free_later(struct qcow2 *q, uint64_t off) __must_check;
int q2_free_compressed(struct qcow2 *q, uint64_t entry) __must_check;
uint64_t q2_dirty_bytes(const struct qcow2 *q);
int qcow2_flush(struct disk *d);
int q2_write_header(struct qcow2 *q) __must_check;
/* Build the header cluster (-ENOSPC if it does not fit in cap bytes). */
int q2_build_header(struct qcow2 *q, uint8_t *h, size_t cap) __must_check;
int q2_sync(struct qcow2 *q) __must_check;
/* Validate an L2/L1 data offset against the file. */
bool q2_offset_ok(const struct qcow2 *q, uint64_t off);

/* Build q->meta; sets q->overlap (and its reason) when two metadata
 * structures share a cluster. */
int q2_meta_build(struct qcow2 *q) __must_check;
bool q2_meta_has(const struct qcow2 *q, uint64_t cluster);
void q2_meta_drop(struct qcow2 *q, uint64_t cluster);
/* 0 when guest data and metadata may be written, else -EIO/-EROFS with a
 * reason in disk_error(). */
int q2_writable(struct qcow2 *q) __must_check;
/* Call fn for every range the bitmaps extension holds (directory, bitmap
 * tables, bitmap data clusters). Bad ranges are passed on, not refused. */
int q2_bitmap_ranges(struct qcow2 *q, void (*fn)(void *ctx, uint64_t off, uint64_t len,
                                                 const char *what),
                     void *ctx) __must_check;

/* qcow2_map.c */
int qcow2_map(struct disk *d, uint64_t off, uint64_t len, bool write, struct disk_extent *ext,
              struct disk **layer, unsigned max);
int qcow2_read_slow(struct disk *d, void *buf, size_t len, uint64_t off);
int qcow2_discard(struct disk *d, uint64_t off, uint64_t len);
int qcow2_write_zeroes(struct disk *d, uint64_t off, uint64_t len, bool may_unmap);

/* qcow2_check.c */
int qcow2_check(struct disk *d, bool repair, struct disk_check_result *res);
int qcow2_rebuild_refcounts(struct qcow2 *q) __must_check;

/* qcow2_create.c */
int qcow2_resize(struct disk *d, uint64_t size, bool allow_shrink);
int qcow2_info(struct disk *d, struct disk_info *info);
