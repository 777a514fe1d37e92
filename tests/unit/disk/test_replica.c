/* test_replica.c: a replica disk's recovery points (disk/replica.h): points
 * made from change sets in the CELLAINC format hold the content of their
 * instant; a bad, out-of-order or too large change set leaves nothing
 * behind; retention merges keep every later point's content and survive a
 * crash; failover drops later points; one process at a time; sets
 * compressed with zstd go in like plain ones, bounded. */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <zlib.h>

#include "cbt.h"
#include "dtest.h"
#include "replica.h"

#define NR_BLOCKS 64
#define SIZE      ((uint64_t)NR_BLOCKS * CBT_BLOCK)

struct rt {
	struct tdir t;
	char dir[128];
	uint8_t *v[6]; /* disk content at each version */
};

static int setup(void **state)
{
	struct rt *r = calloc(1, sizeof(*r));

	tdir_init(&r->t);
	snprintf(r->dir, sizeof(r->dir), "%s/rep", r->t.path);
	for (unsigned i = 0; i < 6; i++) {
		r->v[i] = malloc(SIZE);
		if (!i) {
			for (uint64_t o = 0; o < SIZE; o++)
				r->v[0][o] = pat(o, 1);
			/* Some blocks all zero, as an unallocated disk's would be. */
			memset(r->v[0] + 5 * CBT_BLOCK, 0, 3 * CBT_BLOCK);
		} else {
			memcpy(r->v[i], r->v[i - 1], SIZE);
			/* Version i changes blocks i, 10+i and 40+2i. */
			memset(r->v[i] + i * CBT_BLOCK, 0x10 + i, CBT_BLOCK);
			memset(r->v[i] + (10 + i) * CBT_BLOCK + 100, 0x20 + i, 5000);
			memset(r->v[i] + (40 + 2 * i) * CBT_BLOCK, 0, CBT_BLOCK);
		}
	}
	*state = r;
	return 0;
}

static int teardown(void **state)
{
	struct rt *r = *state;

	for (unsigned i = 0; i < 6; i++)
		free(r->v[i]);
	tdir_rm(&r->t);
	free(r);
	return 0;
}

/* A change set of version `ver` named point (since "" = full: every block). */
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

static void add_ok(struct replica *rep, int fd, const char *name)
{
	struct replica_point p;
	char err[512];
	int ret = replica_add(rep, fd, &p, err, sizeof(err));

	if (ret)
		fail_msg("add %s: %s (%d)", name, err, ret);
	assert_string_equal(p.name, name);
	close(fd);
}

static void check_point(struct rt *r, struct replica *rep, const char *name, unsigned ver)
{
	char path[512], err[256];
	uint8_t *b = malloc(SIZE);
	struct disk *d;

	assert_int_equal(replica_point_path(rep, name, path, sizeof(path), err, sizeof(err)), 0);
	d = open_ok(path, DISK_RDONLY);
	assert_int_equal(disk_size(d), SIZE);
	assert_int_equal(disk_pread(d, b, SIZE, 0), 0);
	for (unsigned blk = 0; blk < NR_BLOCKS; blk++)
		if (memcmp(b + blk * CBT_BLOCK, r->v[ver] + blk * CBT_BLOCK, CBT_BLOCK))
			fail_msg("point %s, block %u: not version %u's", name, blk, ver);
	check_clean(d);
	disk_close(d);
	free(b);
}

static void expect_points(struct replica *rep, const char *const *names, unsigned n)
{
	struct replica_point pts[16];
	unsigned nr;
	char err[256];

	assert_int_equal(replica_points(rep, pts, 16, &nr, err, sizeof(err)), 0);
	if (nr != n)
		fail_msg("%u points, want %u", nr, n);
	for (unsigned i = 0; i < n; i++) {
		assert_string_equal(pts[i].name, names[i]);
		assert_true(pts[i].file_bytes > 0);
		if (i)
			assert_true(pts[i].seq > pts[i - 1].seq);
	}
}

/* Nothing but the store's own files: no temporary layer left. */
static void no_tmp(struct rt *r)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -q '^\\.tmp-'", r->dir);
	assert_int_not_equal(system(cmd), 0);
}

static struct replica *open_rep(struct rt *r)
{
	struct replica *rep;
	char err[512];
	int ret = replica_open(&rep, r->dir, true, err, sizeof(err));

	if (ret)
		fail_msg("open: %s", err);
	return rep;
}

/* Four points up to r4: each holds its version. */
static struct replica *four(struct rt *r)
{
	struct replica *rep = open_rep(r);

	add_ok(rep, stream(r, 1, "r1", ""), "r1");
	add_ok(rep, stream(r, 2, "r2", "r1"), "r2");
	add_ok(rep, stream(r, 3, "r3", "r2"), "r3");
	add_ok(rep, stream(r, 4, "r4", "r3"), "r4");
	return rep;
}

static void t_points(void **state)
{
	struct rt *r = *state;
	struct replica *rep = four(r);
	static const char *const names[] = { "r1", "r2", "r3", "r4" };

	expect_points(rep, names, 4);
	for (unsigned i = 0; i < 4; i++)
		check_point(r, rep, names[i], i + 1);
	no_tmp(r);
	replica_close(rep);
}

static void refuse(struct replica *rep, int fd, int want, const char *text)
{
	char err[512] = "";
	int ret = replica_add(rep, fd, NULL, err, sizeof(err));

	close(fd);
	if (ret != want || !strstr(err, text))
		fail_msg("got %d '%s', want %d '%s'", ret, err, want, text);
}

static void t_refused(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r);
	static const char *const one[] = { "r1" };
	int fd;
	uint8_t c;

	refuse(rep, stream(r, 2, "r2", "r1"), -ESTALE, "needs a full copy first");
	add_ok(rep, stream(r, 1, "r1", ""), "r1");
	refuse(rep, stream(r, 2, "r1", ""), -EEXIST, "already there");
	refuse(rep, stream(r, 2, "r2", ""), -EEXIST, "needs an empty replica");
	refuse(rep, stream(r, 3, "r3", "r2"), -ESTALE, "latest point here is r1");
	refuse(rep, stream(r, 2, "../x", "r1"), -EINVAL, "not a valid replica point name");
	/* A flipped data byte: the checksum. */
	fd = stream(r, 2, "r2", "r1");
	assert_int_equal(pread(fd, &c, 1, 5000), 1);
	c ^= 0x40;
	assert_int_equal(pwrite(fd, &c, 1, 5000), 1);
	refuse(rep, fd, -EINVAL, "checksum");
	/* Cut short, as a broken transfer leaves it. */
	fd = stream(r, 2, "r2", "r1");
	assert_int_equal(ftruncate(fd, 100000), 0);
	refuse(rep, fd, -EINVAL, "");
	/* Not a change set at all. */
	fd = stream(r, 2, "r2", "r1");
	assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
	refuse(rep, fd, -EINVAL, "bad magic");
	expect_points(rep, one, 1);
	check_point(r, rep, "r1", 1);
	no_tmp(r);
	/* And the right one still goes in. */
	add_ok(rep, stream(r, 2, "r2", "r1"), "r2");
	check_point(r, rep, "r2", 2);
	replica_close(rep);
}

/* A full file system while the layer is written (RLIMIT_FSIZE: EFBIG). */
static void t_full_fs(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r);
	static const char *const one[] = { "r1" };
	struct rlimit old, lim;
	char err[512];
	int fd, ret;

	add_ok(rep, stream(r, 1, "r1", ""), "r1");
	fd = stream(r, 2, "r2", "r1");
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_IGN);
	lim = old;
	lim.rlim_cur = 400 * 1024; /* the layer's metadata fits, its data does not */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ret = replica_add(rep, fd, NULL, err, sizeof(err));
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	if (!ret)
		fail_msg("a point made past the file size limit");
	expect_points(rep, one, 1);
	no_tmp(r);
	add_ok(rep, fd, "r2");
	check_point(r, rep, "r2", 2);
	replica_close(rep);
}

static void t_merge(void **state)
{
	struct rt *r = *state;
	struct replica *rep = four(r);
	static const char *const after1[] = { "r2", "r3", "r4" }, *const after2[] = { "r3", "r4" };
	char err[512], cmd[512];

	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), 0);
	expect_points(rep, after1, 3);
	for (unsigned i = 0; i < 3; i++)
		check_point(r, rep, after1[i], i + 2);
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), 0);
	expect_points(rep, after2, 2);
	check_point(r, rep, "r3", 3);
	check_point(r, rep, "r4", 4);
	/* Another writer's view of the chain: qemu-img, where installed. */
	if (!system("command -v qemu-img >/dev/null")) {
		snprintf(cmd, sizeof(cmd), "cd '%s' && for f in *.qcow2; do qemu-img check -q \"$f\" "
			 "|| exit 1; done", r->dir);
		assert_int_equal(system(cmd), 0);
	}
	/* Merging on: down to the base alone. */
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), 0);
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), -ENOENT);
	check_point(r, rep, "r4", 4);
	add_ok(rep, stream(r, 5, "r5", "r4"), "r5");
	check_point(r, rep, "r5", 5);
	replica_close(rep);
}

/* A merge interrupted at each step is finished by the next open. */
static void t_merge_recovered(void **state)
{
	struct rt *r = *state;
	struct replica *rep = four(r);
	static const char *const after[] = { "r2", "r3", "r4" };
	char path[256];
	int fd;

	/* Crashed right after writing its intent. */
	snprintf(path, sizeof(path), "%s/merge.intent", r->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "p000001-r2.qcow2", 16), 16);
	close(fd);
	replica_close(rep);
	rep = open_rep(r);
	expect_points(rep, after, 3);
	for (unsigned i = 0; i < 3; i++)
		check_point(r, rep, after[i], i + 2);
	assert_int_not_equal(access(path, F_OK), 0);
	replica_close(rep);
}

/* While a VM reads the base, retention waits (and leaves nothing to replay). */
static void t_merge_busy(void **state)
{
	struct rt *r = *state;
	struct replica *rep = four(r);
	static const char *const names[] = { "r1", "r2", "r3", "r4" };
	char path[512], err[512];
	struct disk *vm;

	assert_int_equal(replica_point_path(rep, "r2", path, sizeof(path), err, sizeof(err)), 0);
	vm = open_ok(path, DISK_RDONLY);
	assert_int_equal(replica_merge_oldest(rep, err, sizeof(err)), -EBUSY);
	disk_close(vm);
	replica_close(rep);
	rep = open_rep(r);
	expect_points(rep, names, 4);
	check_point(r, rep, "r1", 1);
	replica_close(rep);
}

static void t_drop_after(void **state)
{
	struct rt *r = *state;
	struct replica *rep = four(r);
	static const char *const two[] = { "r1", "r2" };
	char err[256];

	assert_int_equal(replica_drop_after(rep, "r9", err, sizeof(err)), -ENOENT);
	assert_int_equal(replica_drop_after(rep, "r2", err, sizeof(err)), 0);
	expect_points(rep, two, 2);
	check_point(r, rep, "r2", 2);
	/* Replication goes on from there. */
	add_ok(rep, stream(r, 3, "r3", "r2"), "r3");
	check_point(r, rep, "r3", 3);
	replica_close(rep);
}

/* Sets compressed with zstd (as replication sends them): made points like
 * plain ones; a corrupt or truncated stream, or one that decompresses past
 * the bound, is refused and leaves nothing. */
static void t_compressed(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r);
	static const char *const two[] = { "r1", "r2" };
	struct replica_point p;
	char err[512] = "", path[256];
	uint64_t n, plain_len;
	int plain, z;
	uint8_t c;

	/* The full set, compressed. */
	plain = stream(r, 1, "r1", "");
	plain_len = (uint64_t)lseek(plain, 0, SEEK_END);
	snprintf(path, sizeof(path), "%s/z-XXXXXX", r->t.path);
	z = mkstemp(path);
	assert_int_equal(replica_set_compress(plain, z, 3, &n, err, sizeof(err)), 0);
	assert_true(n > 0 && n < plain_len);
	assert_true(replica_set_compressed(z));
	assert_false(replica_set_compressed(plain));
	close(plain);
	/* Bounded: one byte less than the set is refused. */
	assert_int_equal(replica_add_any(rep, z, plain_len - 1, NULL, err, sizeof(err)), -EFBIG);
	assert_int_equal(replica_add_any(rep, z, plain_len, &p, err, sizeof(err)), 0);
	assert_string_equal(p.name, "r1");
	close(z);
	/* The next one: a flipped byte in the frame, then cut short, then whole. */
	plain = stream(r, 2, "r2", "r1");
	snprintf(path, sizeof(path), "%s/z-XXXXXX", r->t.path);
	z = mkstemp(path);
	assert_int_equal(replica_set_compress(plain, z, 1, &n, err, sizeof(err)), 0);
	assert_int_equal(pread(z, &c, 1, n / 2), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(z, &c, 1, n / 2), 1);
	assert_int_equal(replica_add_any(rep, z, UINT64_MAX, NULL, err, sizeof(err)), -EINVAL);
	c ^= 0x5a;
	assert_int_equal(pwrite(z, &c, 1, n / 2), 1);
	assert_int_equal(ftruncate(z, (off_t)(n - 9)), 0);
	assert_int_equal(replica_add_any(rep, z, UINT64_MAX, NULL, err, sizeof(err)), -EINVAL);
	close(z);
	snprintf(path, sizeof(path), "%s/z-XXXXXX", r->t.path);
	z = mkstemp(path);
	assert_int_equal(replica_set_compress(plain, z, 1, &n, err, sizeof(err)), 0);
	assert_int_equal(replica_add_any(rep, z, UINT64_MAX, &p, err, sizeof(err)), 0);
	close(z);
	close(plain);
	expect_points(rep, two, 2);
	check_point(r, rep, "r1", 1);
	check_point(r, rep, "r2", 2);
	no_tmp(r);
	replica_close(rep);
}

static void t_one_owner(void **state)
{
	struct rt *r = *state;
	struct replica *rep = open_rep(r), *again;
	char err[256];

	assert_int_equal(replica_open(&again, r->dir, true, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use"));
	replica_close(rep);
	assert_false(replica_name_ok(""));
	assert_false(replica_name_ok(".hidden"));
	assert_false(replica_name_ok("a/b"));
	assert_false(replica_name_ok("0123456789012345678901234567890123"));
	assert_true(replica_name_ok("r-2026.12.05_1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(t_points, setup, teardown),
		cmocka_unit_test_setup_teardown(t_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(t_full_fs, setup, teardown),
		cmocka_unit_test_setup_teardown(t_merge, setup, teardown),
		cmocka_unit_test_setup_teardown(t_merge_recovered, setup, teardown),
		cmocka_unit_test_setup_teardown(t_merge_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(t_drop_after, setup, teardown),
		cmocka_unit_test_setup_teardown(t_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(t_one_owner, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
