/* test_bootfs.c: an image's own kernel found and read (disk/bootfs.h) on
 * real images made by mkfs.ext4 -d: grub.cfg, BLS entries and Debian's
 * links; raw, qcow2 and a qcow2 chain; whole disk, MBR and GPT (a separate
 * /boot partition); and the refusals: no /boot, no kernel, a broken
 * grub.cfg, xfs and vfat, a path escaping the file system, a symlink loop,
 * a kernel over the size limit. Skips (77) when mkfs.ext4 or qemu-img is
 * missing; the xfs and vfat cases skip loudly without their mkfs. */
#include <sys/stat.h>
#include <zlib.h>

#include "bootfs.h"
#include "dtest.h"

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	if (rc)
		fail_msg("%s: status %d", cmd, rc);
}

static void put(struct tdir *t, const char *name, const char *text)
{
	char p[256];
	FILE *f;

	tpath(t, name, p, sizeof(p));
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A staging tree: stage/boot/vmlinuz-a (the "kernel": 300 KiB of a
 * pattern) and initrd.img-a. */
static void stage(struct tdir *t)
{
	sh("rm -rf %s/stage && mkdir -p %s/stage/boot %s/stage/etc", t->path, t->path, t->path);
	sh("head -c 307200 /dev/urandom > %s/stage/boot/vmlinuz-a && printf INITRD-A > "
	   "%s/stage/boot/initrd.img-a && printf B > %s/stage/boot/vmlinuz-b", t->path, t->path,
	   t->path);
}

static void mkfs(struct tdir *t, const char *img, const char *extra)
{
	sh("rm -f %s/%s && mkfs.ext4 -q -F %s -d %s/stage %s/%s 32M >/dev/null", t->path, img,
	   extra ? extra : "", t->path, t->path, img);
}

static int boot(struct tdir *t, const char *img, uint64_t max_kernel, struct bootfs_result *r,
		char *err, size_t errlen)
{
	char p[256];
	struct disk *d = open_ok(tpath(t, img, p, sizeof(p)), DISK_RDONLY);
	int ret;

	err[0] = '\0';
	ret = bootfs_read(d, max_kernel, 0, r, err, errlen);
	assert_int_equal(disk_close(d), 0);
	return ret;
}

/* The kernel read is the staged file, byte for byte. */
static void same_kernel(struct tdir *t, const struct bootfs_result *r, const char *name)
{
	char p[256];
	uint8_t *b = malloc(400000);
	FILE *f;
	size_t n;

	snprintf(p, sizeof(p), "%s/stage/boot/%s", t->path, name);
	f = fopen(p, "rb");
	assert_non_null(f);
	n = fread(b, 1, 400000, f);
	fclose(f);
	assert_int_equal(r->kernel_len, n);
	assert_memory_equal(r->kernel, b, n);
	free(b);
}

static const char grub_cfg[] =
	"if [ \"${next_entry}\" ] ; then\n   set default=\"${next_entry}\"\nelse\n"
	"   set default=\"0\"\nfi\n"
	"menuentry 'Test Linux' --class os $menuentry_id_option 'test-a' {\n"
	"\tinsmod ext2\n\tset root='hd0'\n"
	"\tlinux\t/boot/vmlinuz-a root=/dev/vda rw console=ttyS0\n"
	"\tinitrd\t/boot/initrd.img-a\n}\n"
	"menuentry 'Other' {\n\tlinux /boot/vmlinuz-b\n}\n";

static void test_grub_raw_qcow2_chain(void **st)
{
	struct bootfs_result r;
	struct tdir t;
	char err[512];

	(void)st;
	tdir_init(&t);
	stage(&t);
	sh("mkdir -p %s/stage/boot/grub", t.path);
	put(&t, "stage/boot/grub/grub.cfg", grub_cfg);
	mkfs(&t, "a.raw", NULL);
	assert_int_equal(boot(&t, "a.raw", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_int_equal(r.initrd_len, 8);
	assert_memory_equal(r.initrd, "INITRD-A", 8);
	assert_string_equal(r.cmdline, "BOOT_IMAGE=/boot/vmlinuz-a root=/dev/vda rw console=ttyS0");
	assert_string_equal(r.from, "the disk (ext4): /boot/grub/grub.cfg, entry \"Test Linux\": "
			    "/boot/vmlinuz-a");
	bootfs_result_free(&r);
	/* The same through qcow2, and through an overlay over it. */
	sh("qemu-img convert -f raw -O qcow2 %s/a.raw %s/a.qcow2 && qemu-img create -q -f qcow2 "
	   "-b a.qcow2 -F qcow2 %s/top.qcow2", t.path, t.path, t.path);
	assert_int_equal(boot(&t, "a.qcow2", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	bootfs_result_free(&r);
	assert_int_equal(boot(&t, "top.qcow2", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_string_equal(r.cmdline, "BOOT_IMAGE=/boot/vmlinuz-a root=/dev/vda rw console=ttyS0");
	bootfs_result_free(&r);
	/* grubenv's next_entry picks the other entry. */
	put(&t, "stage/boot/grub/grubenv", "# GRUB Environment Block\nnext_entry=1\n");
	mkfs(&t, "env.raw", NULL);
	assert_int_equal(boot(&t, "env.raw", 0, &r, err, sizeof(err)), 0);
	assert_int_equal(r.kernel_len, 1);
	assert_null(r.initrd);
	assert_string_equal(r.cmdline, "BOOT_IMAGE=/boot/vmlinuz-b");
	bootfs_result_free(&r);
	/* A kernel over the limit is refused, and a broken grub.cfg. */
	assert_int_equal(boot(&t, "a.raw", 4096, &r, err, sizeof(err)), -EFBIG);
	assert_string_equal(err, "kernel /boot/vmlinuz-a: 307200 bytes, more than the limit of 0 MiB");
	put(&t, "stage/boot/grub/grub.cfg", "menuentry 'Test {\n linux /boot/vmlinuz-a\n}\n");
	mkfs(&t, "broken.raw", NULL);
	assert_int_equal(boot(&t, "broken.raw", 0, &r, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "/boot/grub/grub.cfg line 1: unterminated quote (')");
	/* An entry naming a kernel that is not there. */
	put(&t, "stage/boot/grub/grub.cfg", "menuentry T {\n linux /boot/vmlinuz-9\n}\n");
	mkfs(&t, "nokernel.raw", NULL);
	assert_int_equal(boot(&t, "nokernel.raw", 0, &r, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "no kernel: /boot/vmlinuz-9 (from /boot/grub/grub.cfg, entry \"T\") "
			    "not found");
	tdir_rm(&t);
}

static void test_bls_and_links(void **st)
{
	struct bootfs_result r;
	struct tdir t;
	char err[512];

	(void)st;
	tdir_init(&t);
	stage(&t);
	sh("mkdir -p %s/stage/boot/loader/entries", t.path);
	put(&t, "stage/boot/loader/entries/m-6.1.conf", "title Old\nlinux /boot/vmlinuz-b\n");
	put(&t, "stage/boot/loader/entries/m-6.10.conf", "title New\nversion 6.10\n"
	    "linux /boot/vmlinuz-a\ninitrd /boot/initrd.img-a\noptions root=/dev/vda\n"
	    "options console=ttyS0\n");
	mkfs(&t, "bls.raw", NULL);
	assert_int_equal(boot(&t, "bls.raw", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_string_equal(r.cmdline, "root=/dev/vda console=ttyS0");
	assert_string_equal(r.from, "the disk (ext4): /boot/loader/entries/m-6.10.conf, entry "
			    "\"New\": /boot/vmlinuz-a");
	bootfs_result_free(&r);
	/* Debian's links, relative, at the root. */
	sh("rm -rf %s/stage/boot/loader && ln -s boot/vmlinuz-a %s/stage/vmlinuz && "
	   "ln -s boot/initrd.img-a %s/stage/initrd.img", t.path, t.path, t.path);
	mkfs(&t, "links.raw", NULL);
	assert_int_equal(boot(&t, "links.raw", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_int_equal(r.initrd_len, 8);
	assert_string_equal(r.cmdline, "");
	bootfs_result_free(&r);
	/* A link out of the file system, and a loop. */
	sh("rm %s/stage/vmlinuz && ln -s ../../../../../etc/passwd %s/stage/vmlinuz", t.path, t.path);
	mkfs(&t, "escape.raw", NULL);
	assert_int_equal(boot(&t, "escape.raw", 0, &r, err, sizeof(err)), -EXDEV);
	assert_string_equal(err, "/vmlinuz escapes the file system (\"..\" above its root)");
	sh("rm %s/stage/vmlinuz && ln -s loop2 %s/stage/vmlinuz && ln -s vmlinuz %s/stage/loop2",
	   t.path, t.path, t.path);
	mkfs(&t, "loop.raw", NULL);
	assert_int_equal(boot(&t, "loop.raw", 0, &r, err, sizeof(err)), -ELOOP);
	assert_string_equal(err, "/vmlinuz: more than 40 symbolic links");
	/* No boot files in /boot; no /boot at all. */
	sh("rm %s/stage/vmlinuz %s/stage/initrd.img %s/stage/loop2", t.path, t.path, t.path);
	mkfs(&t, "empty.raw", NULL);
	assert_int_equal(boot(&t, "empty.raw", 0, &r, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "no kernel: /boot has no loader/entries, grub/grub.cfg, "
			    "grub2/grub.cfg or vmlinuz");
	sh("rm -rf %s/stage/boot", t.path);
	mkfs(&t, "noboot.raw", NULL);
	assert_int_equal(boot(&t, "noboot.raw", 0, &r, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "no /boot (and no boot loader files at the root)");
	tdir_rm(&t);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void pwrite_at(struct tdir *t, const char *img, const void *buf, size_t len, off_t off)
{
	char p[256];
	int fd = open(tpath(t, img, p, sizeof(p)), O_WRONLY);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* Partitioned: an MBR with an empty partition 1 and the root file system
 * in partition 3; a GPT whose partition 2 is a separate /boot. */
static void test_partitions(void **st)
{
	struct bootfs_result r;
	uint8_t s[512] = { 0 }, h[92] = { 0 }, ent[4 * 128] = { 0 };
	struct tdir t;
	char err[512];

	(void)st;
	tdir_init(&t);
	stage(&t);
	sh("mkdir -p %s/stage/boot/grub", t.path);
	put(&t, "stage/boot/grub/grub.cfg", grub_cfg);
	sh("truncate -s 40M %s/mbr.raw && mkfs.ext4 -q -F -E offset=4194304 -d %s/stage %s/mbr.raw "
	   "32M >/dev/null", t.path, t.path, t.path);
	s[510] = 0x55;
	s[511] = 0xaa;
	s[446 + 4] = 0x83; /* 1: no file system */
	put32(s + 446 + 8, 2048);
	put32(s + 446 + 12, 4096);
	s[478 + 4] = 0x83; /* 3: the root */
	put32(s + 478 + 8, 8192);
	put32(s + 478 + 12, 65536);
	pwrite_at(&t, "mbr.raw", s, sizeof(s), 0);
	assert_int_equal(boot(&t, "mbr.raw", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_string_equal(r.from, "partition 3 (ext4): /boot/grub/grub.cfg, entry \"Test Linux\": "
			    "/boot/vmlinuz-a");
	bootfs_result_free(&r);
	/* Nothing bootable in any partition: each one said. */
	sh("mkfs.ext4 -q -F -E offset=4194304 %s/mbr.raw 32M >/dev/null", t.path);
	assert_int_equal(boot(&t, "mbr.raw", 0, &r, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "nothing to boot in the mbr partition table: partition 1 (?): no "
			    "file system recognised; partition 3 (ext4): no /boot (and no boot loader "
			    "files at the root)");
	/* GPT, a separate /boot partition: paths relative to its root. */
	sh("rm -rf %s/bootp && mkdir -p %s/bootp/grub && cp %s/stage/boot/vmlinuz-a %s/bootp/",
	   t.path, t.path, t.path, t.path);
	put(&t, "bootp/grub/grub.cfg", "menuentry 'Sep' {\n linux /vmlinuz-a root=/dev/vda3\n}\n");
	sh("truncate -s 40M %s/gpt.raw && mkfs.ext4 -q -F -E offset=2097152 -d %s/bootp %s/gpt.raw "
	   "16M >/dev/null", t.path, t.path, t.path);
	memset(s, 0, sizeof(s));
	s[510] = 0x55;
	s[511] = 0xaa;
	s[446 + 4] = 0xee;
	put32(s + 446 + 8, 1);
	put32(s + 446 + 12, 81919);
	memcpy(h, "EFI PART", 8);
	put32(h + 12, 92);
	put32(h + 72, 2);
	put32(h + 80, 4);
	put32(h + 84, 128);
	memset(ent + 128, 0xaf, 16);
	put32(ent + 128 + 32, 4096);
	put32(ent + 128 + 40, 4096 + 32767);
	put32(h + 88, (uint32_t)crc32(0, ent, sizeof(ent)));
	put32(h + 16, (uint32_t)crc32(0, h, sizeof(h)));
	pwrite_at(&t, "gpt.raw", s, sizeof(s), 0);
	pwrite_at(&t, "gpt.raw", h, sizeof(h), 512);
	pwrite_at(&t, "gpt.raw", ent, sizeof(ent), 1024);
	assert_int_equal(boot(&t, "gpt.raw", 0, &r, err, sizeof(err)), 0);
	same_kernel(&t, &r, "vmlinuz-a");
	assert_string_equal(r.cmdline, "BOOT_IMAGE=/vmlinuz-a root=/dev/vda3");
	assert_string_equal(r.from, "partition 2 (ext4): /grub/grub.cfg, entry \"Sep\": /vmlinuz-a");
	bootfs_result_free(&r);
	/* Neither a table nor a file system. */
	sh("head -c 1048576 /dev/urandom > %s/noise.raw", t.path);
	assert_int_equal(boot(&t, "noise.raw", 0, &r, err, sizeof(err)), -ENOENT);
	assert_string_equal(err, "no partition table and no file system cella recognises on the disk");
	tdir_rm(&t);
}

static void test_other_fs(void **st)
{
	struct bootfs_result r;
	struct tdir t;
	char err[512];

	(void)st;
	tdir_init(&t);
	if (system("command -v mkfs.xfs >/dev/null") == 0) {
		sh("truncate -s 320M %s/x.raw && mkfs.xfs -q %s/x.raw", t.path, t.path);
		assert_int_equal(boot(&t, "x.raw", 0, &r, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "unsupported filesystem: xfs (cella reads the kernel from "
				    "ext2, ext3 or ext4)");
	} else {
		fprintf(stderr, "SKIP: mkfs.xfs missing (xfsprogs): the xfs refusal is not tested\n");
	}
	if (system("command -v mkfs.vfat >/dev/null") == 0) {
		sh("truncate -s 32M %s/v.raw && mkfs.vfat %s/v.raw >/dev/null", t.path, t.path);
		assert_int_equal(boot(&t, "v.raw", 0, &r, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "unsupported filesystem: vfat (cella reads the kernel from "
				    "ext2, ext3 or ext4)");
	} else {
		fprintf(stderr, "SKIP: mkfs.vfat missing (dosfstools): the vfat refusal is not tested\n");
	}
	tdir_rm(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grub_raw_qcow2_chain),
		cmocka_unit_test(test_bls_and_links),
		cmocka_unit_test(test_partitions),
		cmocka_unit_test(test_other_fs),
	};

	if (system("command -v mkfs.ext4 >/dev/null && command -v qemu-img >/dev/null")) {
		fprintf(stderr, "SKIP: mkfs.ext4 or qemu-img missing\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
