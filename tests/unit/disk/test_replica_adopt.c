/* test_replica_adopt.c: stores made from disks that hold a point already
 * (disk/replica_adopt.c, reverse replication): a disk image made the base
 * of an empty store without a copy (its content the base point; later sets
 * go on top; a retention merge leaves the image as it was), and a VM's
 * layer over a store's latest point moved in as the next point; refusals
 * leave the store as it was. */
#include <sys/stat.h>

#include <zlib.h>

#include "cbt.h"
#include "dtest.h"
#include "replica.h"

#define NR_BLOCKS 32
#define SIZE      ((uint64_t)NR_BLOCKS * CBT_BLOCK)

struct rt {
	struct tdir t;
	char dir[128];
	uint8_t *v[4]; /* disk content at each version */
};

static int setup(void **state)
{
	struct rt *r = calloc(1, sizeof(*r));

	tdir_init(&r->t);
	snprintf(r->dir, sizeof(r->dir), "%s/rep", r->t.path);
	for (unsigned i = 0; i < 4; i++) {
		r->v[i] = malloc(SIZE);
		if (!i) {
			for (uint64_t o = 0; o < SIZE; o++)
				r->v[0][o] = pat(o, 3);
		} else {
			memcpy(r->v[i], r->v[i - 1], SIZE);
			memset(r->v[i] + (2 * i) * CBT_BLOCK, 0x30 + i, CBT_BLOCK);
			memset(r->v[i] + (20 + i) * CBT_BLOCK + 512, 0x40 + i, 3000);
		}
	}
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rt *r = *state;

	for (unsigned i = 0; i < 4; i++)
		free(r->v[i]);
	tdir_rm(&r->t);
	free(r);
	return 0;
}

/* A change set of version ver since ver - 1 (or full, since ""). */
static int stream(struct rt *r, unsigned ver, const char *point, const char *since)
{
	uint8_t bits[NR_BLOCKS / 8] = { 0 }, *meta, t[8];
	size_t meta_len;
	uint64_t data;
	uLong crc = crc32(0, NULL, 0);
	char path[256];
	int fd;

	for (unsigned b = 0; b < NR_BLOCKS; b++)
		if (!since[0] || memcmp(r->v[ver] + b * CBT_BLOCK, r->v[ver - 1] + b * CBT_BLOCK,
					CBT_BLOCK))
			bits[b / 8] |= (uint8_t)(1u << (b % 8));
	assert_int_equal(cbt_incr_meta(bits, NR_BLOCKS, SIZE, point, since, &meta, &meta_len,
				       &data), 0);
	snprintf(path, sizeof(path), "%s/stream-XXXXXX", r->t.path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, meta, meta_len), (ssize_t)meta_len);
	crc = crc32(crc, meta, (uInt)meta_len);
	for (unsigned b = 0; b < NR_BLOCKS; b++) {
		if (!(bits[b / 8] & (1u << (b % 8))))
			continue;
		assert_int_equal(write(fd, r->v[ver] + b * CBT_BLOCK, CBT_BLOCK), CBT_BLOCK);
		crc = crc32(crc, r->v[ver] + b * CBT_BLOCK, CBT_BLOCK);
	}
	cbt_incr_trailer((uint32_t)crc, t);
	assert_int_equal(write(fd, t, 8), 8);
	free(meta);
	return fd;
}

static void add_ok(struct replica *rep, int fd)
{
	char err[512];
	int ret = replica_add(rep, fd, NULL, err, sizeof(err));

	if (ret)
		fail_msg("add: %s (%d)", err, ret);
	close(fd);
}

static void check_content(const char *path, const uint8_t *want)
{
	uint8_t *b = malloc(SIZE);
	struct disk *d = open_ok(path, DISK_RDONLY);

	assert_int_equal(disk_size(d), SIZE);
	assert_int_equal(disk_pread(d, b, SIZE, 0), 0);
	for (unsigned blk = 0; blk < NR_BLOCKS; blk++)
		if (memcmp(b + blk * CBT_BLOCK, want + blk * CBT_BLOCK, CBT_BLOCK))
			fail_msg("%s, block %u: not the content wanted", path, blk);
	disk_close(d);
	free(b);
}

static void check_point(struct replica *rep, const char *name, const uint8_t *want)
{
	char path[512], err[256];

	assert_int_equal(replica_point_path(rep, name, path, sizeof(path), err, sizeof(err)), 0);
	check_content(path, want);
}

static void expect_points(struct replica *rep, const char *const *names, unsigned n)
{
	struct replica_point pts[8];
	unsigned nr;
	char err[256];

	assert_int_equal(replica_points(rep, pts, 8, &nr, err, sizeof(err)), 0);
	if (nr != n)
		fail_msg("%u points, want %u", nr, n);
	for (unsigned i = 0; i < n; i++)
		assert_string_equal(pts[i].name, names[i]);
}

static struct replica *open_rep(struct rt *r)
{
	struct replica *rep;
	char err[512];

	if (replica_open(&rep, r->dir, true, err, sizeof(err)))
		fail_msg("open: %s", err);
	return rep;
}

/* An image holding version ver (raw). */
static void mk_image(struct rt *r, const char *path, unsigned ver)
{
	struct disk *d;

	mk_raw(path, SIZE);
	d = open_ok(path, 0);
	assert_int_equal(disk_pwrite(d, r->v[ver], SIZE, 0), 0);
	assert_int_equal(disk_close(d), 0);
}

static void t_adopt_base(void **state)
{
	struct rt *r = *state;
	char img[256], err[512];
	struct replica *rep;
	struct stat st;
	static const char *const one[] = { "p0" }, *const three[] = { "p0", "p1", "p2" };
	static const char *const merged[] = { "p1", "p2" };

	tpath(&r->t, "old.raw", img, sizeof(img));
	mk_image(r, img, 0);
	rep = open_rep(r);
	assert_int_equal(replica_adopt_base(rep, img, DISK_FMT_RAW, "bad/name", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(replica_adopt_base(rep, img, DISK_FMT_RAW, "p0", err, sizeof(err)), 0);
	expect_points(rep, one, 1);
	check_point(rep, "p0", r->v[0]);
	/* The base is a layer over the image, not a copy. */
	assert_int_equal(stat(r->dir, &st), 0);
	{
		char base[300];

		snprintf(base, sizeof(base), "%s/" REPLICA_BASE, r->dir);
		assert_int_equal(stat(base, &st), 0);
		assert_true((uint64_t)st.st_size < SIZE / 4);
	}
	/* Refused on a store with points: nothing changes. */
	assert_int_equal(replica_adopt_base(rep, img, DISK_FMT_RAW, "px", err, sizeof(err)),
			 -EEXIST);
	/* Incrementals since the adopted point go on top. */
	add_ok(rep, stream(r, 1, "p1", "p0"));
	add_ok(rep, stream(r, 2, "p2", "p1"));
	expect_points(rep, three, 3);
	check_point(rep, "p1", r->v[1]);
	check_point(rep, "p2", r->v[2]);
	/* Retention writes into the layer; the old image keeps its content. */
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), 0);
	expect_points(rep, merged, 2);
	check_point(rep, "p1", r->v[1]);
	check_point(rep, "p2", r->v[2]);
	check_content(img, r->v[0]);
	replica_close(rep);
}

static void t_adopt_layer(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r);
	char top[512], layer[256], err[512];
	struct disk *d;
	static const char *const names[] = { "r1", "r2", "r3" };

	add_ok(rep, stream(r, 1, "r1", ""));
	add_ok(rep, stream(r, 2, "r2", "r1"));
	/* A VM's layer over r2 (beside the store, as a failover makes it),
	 * written to version 3. */
	assert_int_equal(replica_point_path(rep, "r2", top, sizeof(top), err, sizeof(err)), 0);
	tpath(&r->t, "run-r2.qcow2", layer, sizeof(layer));
	mk_qcow2(layer, 0, 0, top);
	d = open_ok(layer, 0);
	assert_int_equal(disk_pwrite(d, r->v[3], SIZE, 0), 0);
	assert_int_equal(disk_close(d), 0);
	assert_int_equal(replica_adopt_layer(rep, layer, "r2", err, sizeof(err)), -EEXIST);
	assert_int_equal(replica_adopt_layer(rep, layer, "r3", err, sizeof(err)), 0);
	assert_int_not_equal(access(layer, F_OK), 0); /* moved, not copied */
	expect_points(rep, names, 3);
	check_point(rep, "r3", r->v[3]);
	check_point(rep, "r2", r->v[2]);
	/* Retention still works through the moved layer. */
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), 0);
	check_point(rep, "r3", r->v[3]);
	replica_close(rep);
}

static void t_adopt_layer_empty(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r);
	char layer[256], err[512];

	tpath(&r->t, "run.qcow2", layer, sizeof(layer));
	mk_qcow2(layer, SIZE, 0, NULL);
	assert_int_equal(replica_adopt_layer(rep, layer, "r1", err, sizeof(err)), -ENOENT);
	assert_int_equal(access(layer, F_OK), 0);
	replica_close(rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_adopt_base, setup, teardown),
		cmocka_unit_test_setup_teardown(t_adopt_layer, setup, teardown),
		cmocka_unit_test_setup_teardown(t_adopt_layer_empty, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
