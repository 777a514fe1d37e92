/* test_malformed.c: malformed qcow2 images are refused with an error and a
 * reason, never a crash or a huge allocation: truncated files, bad cluster
 * bits, oversized or misplaced tables, L1/L2 entries outside the file or
 * unaligned, reserved bits, unknown features, encryption, external data
 * files, the corrupt bit, refcount overflow, corrupt compressed data. */
#include "dtest.h"

#include "qcow2.h"

struct img {
	struct tdir t;
	char path[128];
	uint64_t l1_off, l2_off, rt_off, data_off;
};

static void put64(const char *path, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	int fd = open(path, O_WRONLY);

	be64_put(b, v);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, 8, (off_t)off), 8);
	close(fd);
}

static void put32(const char *path, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	int fd = open(path, O_WRONLY);

	be32_put(b, v);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, b, 4, (off_t)off), 4);
	close(fd);
}

static uint64_t get64(const char *path, uint64_t off)
{
	uint8_t b[8];
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, b, 8, (off_t)off), 8);
	close(fd);
	return be64_get(b);
}

/* A valid 64 KiB-cluster image with one data cluster at guest 0. */
static void img_make(struct img *m)
{
	struct disk *d;

	tdir_init(&m->t);
	mk_qcow2(tpath(&m->t, "m.qcow2", m->path, sizeof(m->path)), MiB(16), 16, NULL);
	d = open_ok(m->path, 0);
	write_pat(d, 0, 4096, 1);
	assert_int_equal(disk_close(d), 0);
	m->l1_off = get64(m->path, 40);
	m->rt_off = get64(m->path, 48);
	m->l2_off = get64(m->path, m->l1_off) & L1E_OFFSET_MASK;
	m->data_off = get64(m->path, m->l2_off) & L2E_OFFSET_MASK;
	assert_true(m->l2_off && m->data_off);
}

static void refused(struct img *m, unsigned flags, int want, const char *words)
{
	struct disk *d = NULL;
	char err[512] = "";
	int ret = disk_open(&d, m->path, -1, flags, err, sizeof(err));

	if (ret != want)
		fail_msg("open gave %d (%s), want %d", ret, err, want);
	assert_null(d);
	if (words && !strstr(err, words))
		fail_msg("reason '%s' lacks '%s'", err, words);
}

static void img_done(struct img *m)
{
	tdir_rm(&m->t);
}

static void test_truncated(void **st)
{
	struct img m;

	(void)st;
	img_make(&m);
	assert_int_equal(truncate(m.path, 50), 0);
	refused(&m, DISK_RDONLY, -EINVAL, "truncated");
	img_done(&m);
	img_make(&m);
	assert_int_equal(truncate(m.path, 100), 0);
	refused(&m, DISK_RDONLY, -EINVAL, "truncated");
	img_done(&m);
	img_make(&m);
	/* tables cut off: the L1 table lies past the end */
	assert_int_equal(truncate(m.path, (off_t)m.l1_off + 4), 0);
	refused(&m, DISK_RDONLY, -EINVAL, "L1");
	img_done(&m);
}

static void test_cluster_bits(void **st)
{
	static const uint32_t bad[] = { 0, 8, 22, 63, 0xffffffff };
	struct img m;

	(void)st;
	img_make(&m);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		put32(m.path, 20, bad[i]);
		refused(&m, DISK_RDONLY, -EINVAL, "cluster_bits");
	}
	img_done(&m);
}

static void test_tables(void **st)
{
	struct img m;

	(void)st;
	img_make(&m);
	put32(m.path, 36, 0x10000000); /* 2 GiB of L1: refused, not allocated */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 table too large");
	img_done(&m);
	img_make(&m);
	put64(m.path, 24, 1ull << 61); /* more than the L1 table maps */
	refused(&m, DISK_RDONLY, -EINVAL, "exceeds");
	img_done(&m);
	img_make(&m);
	put64(m.path, 40, m.l1_off + 512); /* unaligned L1 */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 table offset");
	put64(m.path, 40, 1ull << 40); /* past the end */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 table offset");
	img_done(&m);
	img_make(&m);
	put64(m.path, 48, 1ull << 40);
	refused(&m, DISK_RDONLY, -EINVAL, "refcount table");
	put64(m.path, 48, m.rt_off);
	put32(m.path, 56, 0);
	refused(&m, DISK_RDONLY, -EINVAL, "refcount table");
	put32(m.path, 56, 0x7fffffff);
	refused(&m, DISK_RDONLY, -EINVAL, "refcount table");
	put32(m.path, 56, 1);
	put64(m.path, m.rt_off, 0x12345); /* unaligned refcount block */
	refused(&m, DISK_RDONLY, -EINVAL, "refcount table entry");
	img_done(&m);
	img_make(&m);
	put32(m.path, 96, 7); /* refcount order */
	refused(&m, DISK_RDONLY, -EINVAL, "refcount order");
	img_done(&m);
	img_make(&m);
	put64(m.path, 8, 65530); /* backing name past the header cluster */
	put32(m.path, 16, 100);
	refused(&m, DISK_RDONLY, -EINVAL, "backing file name");
	img_done(&m);
	img_make(&m);
	put32(m.path, 20, 9); /* 512-byte clusters, a name longer than one */
	put64(m.path, 8, 1ull << 32);
	put32(m.path, 16, 1000);
	refused(&m, DISK_RDONLY, -EINVAL, "backing file name");
	img_done(&m);
	img_make(&m);
	put32(m.path, 100, 12); /* header length */
	refused(&m, DISK_RDONLY, -EINVAL, "header length");
	img_done(&m);
}

static void test_l1_entries(void **st)
{
	struct img m;

	(void)st;
	img_make(&m);
	put64(m.path, m.l1_off, (1ull << 40) | L2E_COPIED); /* outside the file */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 entry 0");
	put64(m.path, m.l1_off, (m.l2_off + 512) | L2E_COPIED); /* unaligned */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 entry 0");
	put64(m.path, m.l1_off, m.l2_off | L2E_COPIED | 1); /* reserved bit */
	refused(&m, DISK_RDONLY, -EINVAL, "L1 entry 0");
	img_done(&m);
}

static void expect_read_fails(struct img *m, int want)
{
	struct disk_extent e;
	struct disk *d = open_ok(m->path, DISK_RDONLY);
	char buf[512];

	assert_int_equal(disk_pread(d, buf, sizeof(buf), 0), want);
	assert_int_equal(disk_map(d, 0, 512, false, &e, 1), want);
	assert_non_null(strstr(disk_error(d), "L2 entry"));
	disk_close(d);
	d = open_ok(m->path, 0);
	assert_true(disk_pwrite(d, buf, sizeof(buf), 0) < 0);
	assert_true(disk_pwrite(d, buf, sizeof(buf), MiB(8)) < 0); /* no more writes */
	disk_close(d);
}

static void test_l2_entries(void **st)
{
	struct img m;

	(void)st;
	img_make(&m);
	put64(m.path, m.l2_off, (1ull << 40) | L2E_COPIED); /* outside the file */
	expect_read_fails(&m, -EINVAL);
	put64(m.path, m.l2_off, (m.data_off + 512) | L2E_COPIED); /* unaligned */
	expect_read_fails(&m, -EINVAL);
	put64(m.path, m.l2_off, m.data_off | L2E_COPIED | 2); /* reserved bit */
	expect_read_fails(&m, -EINVAL);
	put64(m.path, m.l2_off, L2E_COMPRESSED | (1ull << 50)); /* compressed, outside */
	expect_read_fails(&m, -EINVAL);
	img_done(&m);
}

static void test_compressed_garbage(void **st)
{
	struct disk *d;
	struct img m;
	char buf[4096];

	(void)st;
	img_make(&m);
	/* the data cluster (pattern bytes) read as a deflate stream */
	put64(m.path, m.l2_off, L2E_COMPRESSED | m.data_off | (3ull << 54));
	d = open_ok(m.path, DISK_RDONLY);
	assert_int_equal(disk_pread(d, buf, sizeof(buf), 0), -EIO);
	assert_non_null(strstr(disk_error(d), "compressed"));
	disk_close(d);
	img_done(&m);
}

static void test_features(void **st)
{
	struct disk *d;
	struct img m;

	(void)st;
	img_make(&m);
	put64(m.path, 72, 1ull << 40);
	refused(&m, DISK_RDONLY, -ENOTSUP, "unknown bit 40");
	put64(m.path, 72, 1ull << 4);
	refused(&m, DISK_RDONLY, -ENOTSUP, "extended L2");
	put64(m.path, 72, 1ull << 2);
	refused(&m, DISK_RDONLY, -ENOTSUP, "external data file");
	put64(m.path, 72, QCOW2_INCOMPAT_CORRUPT);
	refused(&m, 0, -EROFS, "corrupt");
	d = open_ok(m.path, DISK_RDONLY); /* reading a corrupt image is allowed */
	check_pat(d, 0, 4096, 1);
	disk_close(d);
	put64(m.path, 72, 0);
	put32(m.path, 32, 1); /* AES */
	refused(&m, DISK_RDONLY, -ENOTSUP, "encrypted");
	put32(m.path, 32, 0);
	put32(m.path, 4, 4); /* version */
	refused(&m, DISK_RDONLY, -ENOTSUP, "version");
	img_done(&m);
}

static void test_refcount_overflow(void **st)
{
	struct disk *d;
	struct img m;

	(void)st;
	img_make(&m);
	d = open_ok(m.path, 0);
	assert_int_equal(q2_rc_set(d->priv, 10, 65536), -ERANGE);
	assert_non_null(strstr(disk_error(d), "overflow"));
	assert_int_equal(q2_rc_set(d->priv, 10, 65535), 0);
	assert_int_equal(q2_rc_set(d->priv, 10, 0), 0);
	check_clean(d);
	disk_close(d);
	img_done(&m);
}

static void test_not_qcow2(void **st)
{
	struct disk *d;
	struct tdir t;
	char p[128], err[256];
	int fd;

	(void)st;
	tdir_init(&t);
	fd = open(tpath(&t, "x", p, sizeof(p)), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "QFI\xfb", 4), 4);
	close(fd);
	/* probed as qcow2, too short */
	assert_int_equal(disk_open(&d, p, -1, DISK_RDONLY, err, sizeof(err)), -EINVAL);
	/* forced raw: fine */
	assert_int_equal(disk_open(&d, p, DISK_FMT_RAW, DISK_RDONLY, err, sizeof(err)), 0);
	disk_close(d);
	/* a directory */
	assert_true(disk_open(&d, t.path, -1, DISK_RDONLY, err, sizeof(err)) < 0);
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_cluster_bits),
		cmocka_unit_test(test_tables),
		cmocka_unit_test(test_l1_entries),
		cmocka_unit_test(test_l2_entries),
		cmocka_unit_test(test_compressed_garbage),
		cmocka_unit_test(test_features),
		cmocka_unit_test(test_refcount_overflow),
		cmocka_unit_test(test_not_qcow2),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
