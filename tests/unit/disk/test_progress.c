/* test_progress.c: disk_set_progress (cellad's image jobs): disk_convert,
 * cbt_backup_full and cbt_backup_incremental report bytes done of the
 * total, never going back, the last report at most the total; a hook that
 * asks to stop ends them with -ECANCELED (the caller removes the target). */
#include "dtest.h"

#include "cbt.h"

struct seen {
	uint64_t calls, last, total;
	bool backwards;
	uint64_t stop_after; /* 0: never */
};

static int hook(void *arg, uint64_t done, uint64_t total)
{
	struct seen *s = arg;

	if (s->calls && done < s->last)
		s->backwards = true;
	s->calls++;
	s->last = done;
	s->total = total;
	return s->stop_after && s->calls >= s->stop_after;
}

static void test_convert(void **st)
{
	struct disk_create_opts o = { .fmt = DISK_FMT_RAW };
	struct seen s = { 0 };
	struct disk *d;
	struct tdir t;
	char p[128], q[128], r[128], err[256];

	(void)st;
	tdir_init(&t);
	mk_qcow2(tpath(&t, "a.qcow2", p, sizeof(p)), MiB(64), 16, NULL);
	d = open_ok(p, 0);
	for (uint64_t off = 0; off < MiB(64); off += MiB(4))
		write_pat(d, off, 65536, 1); /* many separate extents */
	assert_int_equal(disk_close(d), 0);
	d = open_ok(p, DISK_RDONLY);
	disk_set_progress(d, hook, &s);
	assert_int_equal(disk_convert(d, tpath(&t, "b.raw", q, sizeof(q)), &o, err, sizeof(err)), 0);
	assert_true(s.calls >= 1);
	assert_false(s.backwards);
	assert_int_equal(s.total, MiB(64));
	assert_true(s.last <= s.total);
	/* Asked to stop: -ECANCELED. */
	s = (struct seen){ .stop_after = 1 };
	assert_int_equal(disk_convert(d, tpath(&t, "c.raw", r, sizeof(r)), &o, err, sizeof(err)),
			 -ECANCELED);
	assert_non_null(strstr(err, "cancelled"));
	disk_set_progress(d, NULL, NULL);
	assert_int_equal(disk_close(d), 0);
	tdir_rm(&t);
}

static void test_backup(void **st)
{
	struct seen s = { 0 };
	struct disk *d;
	struct cbt *c;
	struct tdir t;
	uint64_t bytes;
	char p[128], q[128], err[256];
	int fd;

	(void)st;
	tdir_init(&t);
	mk_raw(tpath(&t, "a.raw", p, sizeof(p)), MiB(8));
	d = open_ok(p, DISK_RDONLY);
	assert_int_equal(cbt_open(&c, p, disk_size(d), err, sizeof(err)), 0);
	fd = open(tpath(&t, "full.raw", q, sizeof(q)), O_RDWR | O_CREAT, 0600);
	assert_true(fd >= 0);
	disk_set_progress(d, hook, &s);
	assert_int_equal(cbt_backup_full(d, c, "p1", fd, &bytes, err, sizeof(err)), 0);
	assert_true(s.calls >= 8); /* one per 1 MiB chunk */
	assert_false(s.backwards);
	assert_int_equal(s.total, MiB(8));
	cbt_mark(c, 0, MiB(3));
	s = (struct seen){ 0 };
	assert_int_equal(cbt_backup_incremental(d, c, "p1", "p2", fd, &bytes, err, sizeof(err)), 0);
	assert_true(s.calls >= 3);
	assert_int_equal(s.total, MiB(3));
	assert_true(s.last < s.total);
	cbt_mark(c, 0, MiB(3));
	s = (struct seen){ .stop_after = 2 };
	assert_int_equal(cbt_backup_incremental(d, c, "p2", "p3", fd, &bytes, err, sizeof(err)),
			 -ECANCELED);
	close(fd);
	cbt_close(c, true);
	assert_int_equal(disk_close(d), 0);
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_backup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
