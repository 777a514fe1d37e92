/* test_disk.c: unit tests of the disk library: raw and qcow2 images, every
 * cluster size, zero clusters and discard, backing chains, refcount table
 * growth, the dirty-metadata bound, crash consistency, and the tools
 * (resize, convert, commit, rebase, check). */
#include "dtest.h"

#include <sys/wait.h>

static void test_raw(void **st)
{
	struct disk_extent e[4];
	struct disk *d, *d2;
	struct tdir t;
	char p[128], err[256];

	(void)st;
	tdir_init(&t);
	mk_raw(tpath(&t, "a.raw", p, sizeof(p)), MiB(4));
	d = open_ok(p, 0);
	assert_int_equal(disk_format_of(d), DISK_FMT_RAW);
	assert_int_equal(disk_size(d), MiB(4));
	write_pat(d, 1000, 70000, 1);
	check_pat(d, 1000, 70000, 1);
	assert_int_equal(disk_map(d, 4096, 8192, true, e, 4), 1);
	assert_int_equal(e[0].kind, DISK_EXT_DATA);
	assert_int_equal(e[0].host_off, 4096);
	assert_int_equal(e[0].fd, disk_fd(d));
	assert_int_equal(disk_map(d, MiB(4) - 1, 2, false, e, 4), -EINVAL);
	assert_int_equal(disk_discard(d, 0, 65536), 0);
	check_pat(d, 0, 65536, 0);
	check_pat(d, 65536, 1000 + 70000 - 65536, 1);
	assert_int_equal(disk_write_zeroes(d, 66000, 100, false), 0);
	check_pat(d, 66000, 100, 0);
	/* a second read-write open is refused: the image is in use */
	assert_int_equal(disk_open(&d2, p, -1, 0, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use by another process"));
	assert_int_equal(disk_open(&d2, p, -1, DISK_RDONLY, err, sizeof(err)), -EBUSY);
	d2 = open_ok(p, DISK_RDONLY | DISK_NO_LOCK);
	assert_int_equal(disk_close(d2), 0);
	assert_int_equal(disk_close(d), 0);
	/* two readers share */
	d = open_ok(p, DISK_RDONLY);
	d2 = open_ok(p, DISK_RDONLY);
	assert_int_equal(disk_pwrite(d, "x", 1, 0), -EROFS);
	disk_close(d2);
	disk_close(d);
	tdir_rm(&t);
}

static void test_qcow2_cluster_sizes(void **st)
{
	(void)st;
	for (unsigned cb = 9; cb <= 21; cb++) {
		uint64_t cs = 1ull << cb, size = MAX(MiB(8), 8 * cs);
		struct disk_info info;
		struct disk *d;
		struct tdir t;
		char p[128];

		tdir_init(&t);
		mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), size, cb, NULL);
		d = open_ok(p, 0);
		assert_int_equal(disk_size(d), size);
		check_pat(d, 0, (size_t)MIN(size, MiB(1)), 0);
		write_pat(d, cs / 2, (size_t)(2 * cs), 3);     /* unaligned, 3 clusters */
		write_pat(d, size - 1000, 1000, 4);           /* last bytes */
		write_pat(d, 5 * cs + 17, 100, 5);            /* partial cluster */
		check_pat(d, 0, (size_t)(cs / 2), 0);
		check_pat(d, cs / 2, (size_t)(2 * cs), 3);
		check_pat(d, 5 * cs, 17, 0);
		check_pat(d, 5 * cs + 17, 100, 5);
		assert_int_equal(disk_close(d), 0);
		d = open_ok(p, DISK_RDONLY);
		check_pat(d, cs / 2, (size_t)(2 * cs), 3);
		check_pat(d, size - 1000, 1000, 4);
		assert_int_equal(disk_get_info(d, &info), 0);
		assert_int_equal(info.cluster_bits, cb);
		assert_int_equal(info.allocated,
				 (4 + ((size - 1) >> cb) - ((size - 1000) >> cb) + 1) * cs);
		check_clean(d);
		disk_close(d);
		tdir_rm(&t);
	}
}

static void test_qcow2_map_merge(void **st)
{
	struct disk_extent e[8];
	struct disk *d;
	struct tdir t;
	char p[128];
	int n;

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(64), 16, NULL);
	d = open_ok(p, 0);
	/* unallocated, no backing: one zero extent */
	n = disk_map(d, 0, MiB(64), false, e, 8);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].kind, DISK_EXT_ZERO);
	assert_int_equal(e[0].len, MiB(64));
	/* a sequential write allocates contiguous clusters: one extent */
	n = disk_map(d, MiB(1), KiB(256), true, e, 8);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].len, KiB(256));
	assert_int_equal(e[0].kind, DISK_EXT_DATA);
	n = disk_map(d, MiB(1) - 4096, KiB(264), false, e, 8);
	assert_int_equal(n, 3);
	assert_int_equal(e[0].kind, DISK_EXT_ZERO);
	assert_int_equal(e[1].kind, DISK_EXT_DATA);
	assert_int_equal(e[1].len, KiB(256));
	assert_int_equal(e[2].kind, DISK_EXT_ZERO);
	/* max reached: fewer extents, the caller asks again */
	n = disk_map(d, MiB(1) - 4096, KiB(264), false, e, 1);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].len, 4096);
	assert_int_equal(disk_flush(d), 0);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

static void test_qcow2_zero_discard(void **st)
{
	struct disk_info info;
	struct disk *d;
	struct tdir t;
	char p[128];

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(8), 12, NULL);
	d = open_ok(p, 0);
	write_pat(d, 0, MiB(1), 1);
	assert_int_equal(disk_discard(d, 4096, 8192), 0);         /* whole clusters */
	assert_int_equal(disk_discard(d, 20000, 100), 0);         /* partial: zeroed */
	assert_int_equal(disk_write_zeroes(d, 65536, 65536, false), 0); /* keeps allocation */
	assert_int_equal(disk_write_zeroes(d, 200000, 70000, true), 0);
	check_pat(d, 0, 4096, 1);
	check_pat(d, 4096, 8192, 0);
	check_pat(d, 12288, 20000 - 12288, 1);
	check_pat(d, 20000, 100, 0);
	check_pat(d, 65536, 65536, 0);
	check_pat(d, 200000, 70000, 0);
	check_pat(d, 270000, MiB(1) - 270000, 1);
	/* writing into a zero cluster with its allocation kept */
	write_pat(d, 65536 + 100, 10, 2);
	check_pat(d, 65536, 100, 0);
	check_pat(d, 65536 + 100, 10, 2);
	check_pat(d, 65536 + 110, 4096 - 110, 0);
	assert_int_equal(disk_flush(d), 0);
	check_clean(d);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_int_equal(disk_close(d), 0);
	/* freed clusters are reused after the flush */
	d = open_ok(p, 0);
	write_pat(d, MiB(4), KiB(64), 3);
	assert_int_equal(disk_close(d), 0);
	d = open_ok(p, DISK_RDONLY);
	check_pat(d, MiB(4), KiB(64), 3);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

/* base (raw) <- mid (qcow2) <- top (qcow2) <- top2: reads fall through,
 * writes copy the rest of the cluster from below, discard marks zero. */
static void test_chain(void **st)
{
	char base[128], mid[128], top[128], top2[128];
	struct disk_extent e[8];
	struct disk_info info;
	struct disk *d;
	struct tdir t;
	int n;

	(void)st;
	tdir_init(&t);
	mk_raw(tpath(&t, "base.raw", base, sizeof(base)), MiB(2));
	d = open_ok(base, 0);
	write_pat(d, 0, MiB(2), 1);
	disk_close(d);
	mk_qcow2(tpath(&t, "mid.qcow2", mid, sizeof(mid)), 0, 16, "base.raw");
	d = open_ok(mid, 0);
	assert_int_equal(disk_size(d), MiB(2));
	write_pat(d, 100000, 5000, 2);
	disk_close(d);
	mk_qcow2(tpath(&t, "top.qcow2", top, sizeof(top)), MiB(4), 9, "mid.qcow2");
	mk_qcow2(tpath(&t, "top2.qcow2", top2, sizeof(top2)), 0, 12, "top.qcow2");
	d = open_ok(top, 0);
	write_pat(d, 300, 10, 3);
	assert_int_equal(disk_discard(d, 4096, 4096), 0);
	disk_close(d);
	d = open_ok(top2, 0);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_int_equal(info.chain_depth, 4);
	assert_string_equal(info.backing, "top.qcow2");
	check_pat(d, 0, 300, 1);
	check_pat(d, 300, 10, 3);
	check_pat(d, 310, 4096 - 310, 1);
	check_pat(d, 4096, 4096, 0);
	check_pat(d, 8192, 100000 - 8192, 1);
	check_pat(d, 100000, 5000, 2);
	check_pat(d, 105000, MiB(2) - 105000, 1);
	check_pat(d, MiB(2), MiB(2), 0); /* past the base's end */
	/* reads of lower layers map to their own files */
	n = disk_map(d, 0, MiB(4), false, e, 8);
	assert_true(n >= 4);
	assert_int_equal(e[0].kind, DISK_EXT_DATA);
	assert_int_not_equal(e[0].fd, disk_fd(d));
	/* a partial write copies the rest of the cluster up */
	write_pat(d, 100000 + 10, 10, 4);
	check_pat(d, 100000, 10, 2);
	check_pat(d, 100010, 10, 4);
	check_pat(d, 100020, 4980, 2);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

static void test_chain_errors(void **st)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .size = MiB(1),
				      .backing_fmt = DISK_FMT_QCOW2, .backing_fmt_explicit = true };
	char a[128], b[128], name[32], err[512];
	struct disk *d;
	struct tdir t;

	(void)st;
	tdir_init(&t);
	/* a -> b -> a */
	o.backing = "b.qcow2";
	assert_int_equal(disk_create(tpath(&t, "a.qcow2", a, sizeof(a)), &o, err, sizeof(err)), 0);
	o.backing = "a.qcow2";
	assert_int_equal(disk_create(tpath(&t, "b.qcow2", b, sizeof(b)), &o, err, sizeof(err)), 0);
	assert_int_equal(disk_open(&d, a, -1, DISK_RDONLY, err, sizeof(err)), -ELOOP);
	assert_non_null(strstr(err, "loop"));
	/* a chain deeper than DISK_MAX_CHAIN */
	mk_qcow2(tpath(&t, "l0.qcow2", a, sizeof(a)), MiB(1), 16, NULL);
	for (int i = 1; i <= DISK_MAX_CHAIN + 1; i++) {
		snprintf(name, sizeof(name), "l%d.qcow2", i - 1);
		o.backing = name;
		snprintf(b, sizeof(b), "%s/l%d.qcow2", t.path, i);
		assert_int_equal(disk_create(b, &o, err, sizeof(err)), 0);
	}
	assert_int_equal(disk_open(&d, b, -1, DISK_RDONLY, err, sizeof(err)), -ELOOP);
	/* a missing backing file */
	o.backing = "nothere.qcow2";
	assert_int_equal(disk_create(tpath(&t, "m.qcow2", a, sizeof(a)), &o, err, sizeof(err)), 0);
	assert_int_equal(disk_open(&d, a, -1, DISK_RDONLY, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nothere.qcow2"));
	d = open_ok(a, DISK_RDONLY | DISK_NO_BACKING);
	disk_close(d);
	tdir_rm(&t);
}

/* 512-byte clusters: a refcount block covers 256 clusters and the first
 * refcount table 64 blocks, so 40000 allocations grow the table. */
static void test_refcount_growth(void **st)
{
	struct disk *d;
	struct tdir t;
	char p[128];

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(64), 9, NULL);
	d = open_ok(p, 0);
	for (uint64_t off = 0; off < MiB(20); off += MiB(1))
		write_pat(d, off, KiB(512), (unsigned)(off >> 20) + 1);
	check_clean(d);
	assert_int_equal(disk_close(d), 0);
	d = open_ok(p, DISK_RDONLY);
	for (uint64_t off = 0; off < MiB(20); off += MiB(1)) {
		check_pat(d, off, KiB(512), (unsigned)(off >> 20) + 1);
		check_pat(d, off + KiB(512), KiB(512), 0);
	}
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

/* disk_map(write) returns -EAGAIN past the dirty-metadata bound; a flush
 * makes room again. */
static void test_dirty_bound(void **st)
{
	struct disk_extent e;
	struct disk *d;
	struct tdir t;
	char p[128];
	uint64_t off;
	int n = 0;

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), GiB(600), 16, NULL);
	d = open_ok(p, 0);
	/* one write per L2 table (512 MiB each): each dirties a new table */
	for (off = 0; off < GiB(600); off += MiB(512), n++) {
		int ret = disk_map(d, off, 4096, true, &e, 1);

		if (ret == -EAGAIN)
			break;
		assert_int_equal(ret, 1);
	}
	assert_true(off < GiB(600));
	assert_true(n >= 400);
	assert_int_equal(disk_flush(d), 0);
	assert_int_equal(disk_map(d, off, 4096, true, &e, 1), 1);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

/* Killed after writes: what was flushed survives; no corruption, at most
 * leaks. */
static void test_crash(void **st)
{
	struct disk_check_result r;
	struct disk *d;
	struct tdir t;
	char p[128];
	pid_t pid;
	int status;

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(64), 16, NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		d = open_ok(p, 0);
		write_pat(d, 0, MiB(2), 1);
		if (disk_flush(d))
			_exit(1);
		write_pat(d, MiB(8), MiB(2), 2);   /* never flushed */
		assert_int_equal(disk_discard(d, 0, MiB(1)), 0);
		_exit(0);                          /* no close: a crash */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(status, 0);
	d = open_ok(p, 0);
	check_pat(d, MiB(1), MiB(1), 1);
	assert_int_equal(disk_check(d, false, &r), 0);
	assert_int_equal(r.corruptions, 0);
	assert_int_equal(disk_check_mode(d, 1, &r), 0);
	assert_int_equal(r.leaks, r.leaks_fixed);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

static void test_resize(void **st)
{
	struct disk *d;
	struct tdir t;
	char p[128];

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(1), 9, NULL);
	d = open_ok(p, 0);
	write_pat(d, 0, 4096, 1);
	assert_int_equal(disk_resize(d, MiB(100), false), 0); /* L1 grows */
	write_pat(d, MiB(100) - 4096, 4096, 2);
	assert_int_equal(disk_resize(d, MiB(1), false), -EINVAL);
	assert_int_equal(disk_resize(d, MiB(1), true), -ENOTSUP); /* data in the tail */
	assert_int_equal(disk_discard(d, MiB(100) - 4096, 4096), 0);
	assert_int_equal(disk_resize(d, MiB(1), true), 0);
	assert_int_equal(disk_close(d), 0);
	d = open_ok(p, 0);
	assert_int_equal(disk_size(d), MiB(1));
	check_pat(d, 0, 4096, 1);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

static void test_convert_commit_rebase(void **st)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_QCOW2, .cluster_bits = 12 };
	char base[128], top[128], flat[128], raw[128], err[256];
	struct disk_info info;
	struct disk *d, *s;
	struct tdir t;

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "base.qcow2", base, sizeof(base)), MiB(4), 16, NULL);
	d = open_ok(base, 0);
	write_pat(d, 0, MiB(1), 1);
	disk_close(d);
	mk_qcow2(tpath(&t, "top.qcow2", top, sizeof(top)), 0, 16, "base.qcow2");
	d = open_ok(top, 0);
	write_pat(d, MiB(2), KiB(100), 2);
	assert_int_equal(disk_discard(d, 0, KiB(64)), 0);
	disk_close(d);
	/* convert flattens; zeroes stay holes */
	s = open_ok(top, DISK_RDONLY);
	assert_int_equal(disk_convert(s, tpath(&t, "flat.qcow2", flat, sizeof(flat)), &o, err,
				      sizeof(err)), 0);
	o.fmt = DISK_FMT_RAW;
	o.cluster_bits = 0;
	assert_int_equal(disk_convert(s, tpath(&t, "flat.raw", raw, sizeof(raw)), &o, err,
				      sizeof(err)), 0);
	disk_close(s);
	d = open_ok(flat, DISK_RDONLY);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_string_equal(info.backing, "");
	assert_int_equal(info.allocated, MiB(1) - KiB(64) + KiB(100));
	check_pat(d, 0, KiB(64), 0);
	check_pat(d, KiB(64), MiB(1) - KiB(64), 1);
	check_pat(d, MiB(2), KiB(100), 2);
	disk_close(d);
	d = open_ok(raw, DISK_RDONLY);
	check_pat(d, KiB(64), MiB(1) - KiB(64), 1);
	disk_close(d);
	/* safe rebase onto nothing: the top holds it all */
	d = open_ok(top, 0);
	assert_int_equal(disk_rebase(d, NULL, DISK_FMT_RAW, false), 0);
	disk_close(d);
	d = open_ok(top, DISK_RDONLY);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_int_equal(info.chain_depth, 1);
	check_pat(d, 0, KiB(64), 0);
	check_pat(d, KiB(64), MiB(1) - KiB(64), 1);
	check_clean(d);
	disk_close(d);
	/* back onto the base (unsafe), then commit into it */
	d = open_ok(top, DISK_NO_BACKING);
	assert_int_equal(disk_rebase(d, "base.qcow2", DISK_FMT_QCOW2, true), 0);
	disk_close(d);
	d = open_ok(top, 0);
	assert_int_equal(disk_commit(d), 0);
	check_clean(d);
	disk_close(d);
	d = open_ok(base, DISK_RDONLY);
	check_pat(d, 0, KiB(64), 0);
	check_pat(d, MiB(2), KiB(100), 2);
	check_clean(d);
	disk_close(d);
	tdir_rm(&t);
}

static void test_overlay_fd(void **st)
{
	char base[128], over[128], err[256];
	struct disk *b, *d;
	struct tdir t;
	int fd;

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "base.qcow2", base, sizeof(base)), MiB(4), 16, NULL);
	b = open_ok(base, 0);
	write_pat(b, 0, MiB(1), 1);
	mk_qcow2(tpath(&t, "over.qcow2", over, sizeof(over)), MiB(4), 16, "base.qcow2");
	fd = open(over, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(disk_open_overlay_fd(&d, fd, b, err, sizeof(err)), 0);
	check_pat(d, 0, MiB(1), 1); /* unflushed base data reached the file */
	write_pat(d, 4096, 4096, 2);
	assert_true(disk_readonly(b));
	assert_int_equal(disk_close(d), 0);
	d = open_ok(base, DISK_RDONLY);
	check_pat(d, 4096, 4096, 1);
	disk_close(d);
	d = open_ok(over, DISK_RDONLY);
	check_pat(d, 4096, 4096, 2);
	disk_close(d);
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_qcow2_cluster_sizes),
		cmocka_unit_test(test_qcow2_map_merge),
		cmocka_unit_test(test_qcow2_zero_discard),
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_chain_errors),
		cmocka_unit_test(test_refcount_growth),
		cmocka_unit_test(test_dirty_bound),
		cmocka_unit_test(test_crash),
		cmocka_unit_test(test_resize),
		cmocka_unit_test(test_convert_commit_rebase),
		cmocka_unit_test(test_overlay_fd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
