/* test_fdchain.c: disk_open_fds, a backing chain opened from descriptors
 * (cellad opens and checks each file beneath its storage location; the
 * worker gets the descriptors): nothing opened by name, each link's name
 * compared with the one checked, the chain's length too, access modes and
 * kinds checked, every descriptor owned by the library. */
#include <sys/stat.h>

#include "dtest.h"

#define MiB(x) ((uint64_t)(x) << 20)

/* base.raw <- mid.qcow2 <- top.qcow2, each layer with its own data. */
static void mk_chain(struct tdir *t, char base[128], char mid[128], char top[128])
{
	struct disk *d;

	mk_raw(tpath(t, "base.raw", base, 128), MiB(2));
	d = open_ok(base, 0);
	write_pat(d, 0, MiB(2), 1);
	disk_close(d);
	mk_qcow2(tpath(t, "mid.qcow2", mid, 128), 0, 16, "base.raw");
	d = open_ok(mid, 0);
	write_pat(d, 65536, 4096, 2);
	disk_close(d);
	mk_qcow2(tpath(t, "top.qcow2", top, 128), 0, 16, "mid.qcow2");
	d = open_ok(top, 0);
	write_pat(d, 0, 512, 3);
	disk_close(d);
}

static void chain_fds(struct disk_fd_chain *c, const char *top, const char *mid, const char *base,
		      int top_flags)
{
	memset(c, 0, sizeof(*c));
	c->fd[0] = open(top, top_flags | O_CLOEXEC);
	c->fd[1] = open(mid, O_RDONLY | O_CLOEXEC);
	c->fd[2] = open(base, O_RDONLY | O_CLOEXEC);
	assert_true(c->fd[0] >= 0 && c->fd[1] >= 0 && c->fd[2] >= 0);
	c->nr = 3;
	c->name[0] = "top";
	c->name[1] = "mid.qcow2";
	c->name[2] = "base.raw";
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

static void test_fds_read_write(void **st)
{
	char base[128], mid[128], top[128], err[512];
	struct disk_fd_chain c;
	struct disk_info info;
	struct disk *d;
	struct tdir t;

	(void)st;
	tdir_init(&t);
	mk_chain(&t, base, mid, top);
	chain_fds(&c, top, mid, base, O_RDWR);
	/* Gone by name: only the descriptors can serve the chain. */
	assert_int_equal(unlink(base), 0);
	assert_int_equal(unlink(mid), 0);
	assert_int_equal(symlink("/etc/passwd", base), 0);
	if (disk_open_fds(&d, &c, -1, 0, err, sizeof(err)))
		fail_msg("open: %s", err);
	assert_int_equal(disk_get_info(d, &info), 0);
	assert_int_equal(info.chain_depth, 3);
	check_pat(d, 0, 512, 3);
	check_pat(d, 512, 65536 - 512, 1);
	check_pat(d, 65536, 4096, 2);
	check_pat(d, 65536 + 4096, MiB(2) - 65536 - 4096, 1);
	write_pat(d, 8192, 4096, 4);
	check_pat(d, 8192, 4096, 4);
	assert_int_equal(disk_close(d), 0);
	tdir_rm(&t);
}

static void test_fds_name_changed(void **st)
{
	char base[128], mid[128], top[128], err[512];
	struct disk_fd_chain c;
	struct disk *d;
	struct tdir t;

	(void)st;
	tdir_init(&t);
	mk_chain(&t, base, mid, top);
	/* mid.qcow2 names base.raw; the caller checked another name. */
	chain_fds(&c, top, mid, base, O_RDWR);
	c.name[2] = "other.raw";
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "names the backing file base.raw now, not other.raw"));
	for (unsigned i = 0; i < 3; i++)
		assert_true(fd_closed(c.fd[i]));
	/* NULL names are not compared (a chain from the command line). */
	chain_fds(&c, top, mid, base, O_RDWR);
	c.name[1] = c.name[2] = NULL;
	if (disk_open_fds(&d, &c, -1, 0, err, sizeof(err)))
		fail_msg("open: %s", err);
	disk_close(d);
	tdir_rm(&t);
}

static void test_fds_chain_length(void **st)
{
	char base[128], mid[128], top[128], err[512];
	struct disk_fd_chain c;
	struct disk *d;
	struct tdir t;
	int extra;

	(void)st;
	tdir_init(&t);
	mk_chain(&t, base, mid, top);
	/* The image grew a link since it was checked: no descriptor for it. */
	chain_fds(&c, top, mid, base, O_RDWR);
	close(c.fd[2]);
	c.nr = 2;
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "no descriptor was given for it"));
	assert_true(fd_closed(c.fd[0]) && fd_closed(c.fd[1]));
	/* It lost one: a descriptor is left over. */
	chain_fds(&c, top, mid, base, O_RDWR);
	extra = open(base, O_RDONLY | O_CLOEXEC);
	c.fd[3] = extra;
	c.name[3] = "x";
	c.nr = 4;
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "the image changed"));
	for (unsigned i = 0; i < 4; i++)
		assert_true(fd_closed(c.fd[i]));
	/* DISK_NO_BACKING opens the top alone. */
	c = (struct disk_fd_chain){ .nr = 1, .fd = { open(top, O_RDONLY | O_CLOEXEC) } };
	if (disk_open_fds(&d, &c, -1, DISK_RDONLY | DISK_NO_BACKING, err, sizeof(err)))
		fail_msg("open: %s", err);
	disk_close(d);
	c.nr = 0;
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -EINVAL);
	tdir_rm(&t);
}

static void test_fds_modes_and_kinds(void **st)
{
	char base[128], mid[128], top[128], err[512];
	struct disk_fd_chain c;
	struct disk *d;
	struct tdir t;

	(void)st;
	tdir_init(&t);
	mk_chain(&t, base, mid, top);
	/* A read-write open needs a read-write descriptor. */
	chain_fds(&c, top, mid, base, O_RDONLY);
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -EBADF);
	assert_non_null(strstr(err, "not open for reading and writing"));
	/* ...and a read-only one is fine with it. */
	chain_fds(&c, top, mid, base, O_RDONLY);
	if (disk_open_fds(&d, &c, -1, DISK_RDONLY, err, sizeof(err)))
		fail_msg("open: %s", err);
	assert_true(disk_readonly(d));
	disk_close(d);
	/* A directory is no image. */
	chain_fds(&c, top, mid, base, O_RDWR);
	close(c.fd[2]);
	c.fd[2] = open(t.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(disk_open_fds(&d, &c, -1, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "neither a file nor a block device"));
	assert_true(fd_closed(c.fd[2]));
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fds_read_write),
		cmocka_unit_test(test_fds_name_changed),
		cmocka_unit_test(test_fds_chain_length),
		cmocka_unit_test(test_fds_modes_and_kinds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
