/* fuzz_qcow2_meta.c: metadata-only damage, then repair. A known qcow2 image
 * (512-byte clusters, 256 KiB, most of it data) is built once with the
 * library; each input is a list of mutations that land only in its metadata
 * clusters (header, L1 and refcount tables, refcount blocks, L2 tables),
 * most of them pointing an entry at another cluster of the file. The
 * damaged image is read (what is readable is remembered), checked with
 * repair as `cella disk check -r all` opens and checks it, and whenever that
 * ends clean (what would exit 0): every guest byte readable before reads the
 * same after, and one write to the repaired image changes no other guest
 * byte. A difference aborts: a repair or a write destroyed guest data. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"

#define CS       512u
#define VSIZE    (256u * 1024)
#define NCL      (VSIZE / CS)
#define MAX_META 256
#define MAX_MUT  8

static uint8_t *base;
static size_t base_len;
static uint64_t meta[MAX_META]; /* offsets of the base image's metadata clusters */
static unsigned nmeta;

static int memfd_path(int fd, char *path, size_t len)
{
	return snprintf(path, len, "/proc/self/fd/%d", fd) < (int)len ? 0 : -1;
}

static uint64_t be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void add_meta(uint64_t off)
{
	for (unsigned i = 0; i < nmeta; i++)
		if (meta[i] == off)
			return;
	if (nmeta < MAX_META && off && off + CS <= base_len)
		meta[nmeta++] = off;
}

/* The base image: data with a pattern, some zeroed and some discarded
 * clusters (free clusters inside the file), several L2 tables and refcount
 * blocks. */
static void build_base(void)
{
	struct disk_create_opts o = {.fmt = DISK_FMT_QCOW2, .size = VSIZE, .cluster_bits = 9};
	int fd = memfd_create("fuzz-qcow2-meta-base", MFD_CLOEXEC);
	char path[64], err[256];
	uint8_t buf[CS];
	struct disk *d;
	struct stat st;

	if (fd < 0 || memfd_path(fd, path, sizeof(path)) ||
	    disk_create(path, &o, err, sizeof(err)) ||
	    disk_open(&d, path, DISK_FMT_QCOW2, DISK_NO_BACKING, err, sizeof(err)))
		abort();
	for (unsigned i = 0; i < NCL; i++) {
		if (i % 7 == 3)
			continue; /* unallocated */
		for (unsigned k = 0; k < CS; k++)
			buf[k] = (uint8_t)(i * 37 + k * 11 + 1);
		if (disk_pwrite(d, buf, CS, (uint64_t)i * CS))
			abort();
	}
	for (unsigned i = 5; i < NCL; i += 41)
		if (disk_write_zeroes(d, (uint64_t)i * CS, CS, i & 1) ||
		    disk_discard(d, (uint64_t)(i + 1) * CS, CS))
			abort();
	if (disk_close(d) || fstat(fd, &st) || !(base = malloc((size_t)st.st_size)) ||
	    pread(fd, base, (size_t)st.st_size, 0) != st.st_size)
		abort();
	base_len = (size_t)st.st_size;
	close(fd);
	meta[nmeta++] = 0; /* the header */
	{
		uint64_t l1 = be64(base + 40), rt = be64(base + 48);
		uint64_t l1n = be64(base + 32) & 0xffffffffu, rtc = be64(base + 56) >> 32;

		for (uint64_t o2 = l1; o2 < l1 + l1n * 8; o2 += CS)
			add_meta(o2);
		for (uint64_t i = 0; i < l1n; i++)
			add_meta(be64(base + l1 + i * 8) & 0x00fffffffffffe00ull);
		for (uint64_t i = 0; i < rtc * CS / 8; i++) {
			if (rt + i * 8 + 8 > base_len)
				break;
			add_meta(be64(base + rt + i * 8));
		}
		for (uint64_t c = 0; c < rtc; c++)
			add_meta(rt + c * CS);
	}
}

static int image_fd(const uint8_t *img, size_t len)
{
	int fd = memfd_create("fuzz-qcow2-meta", MFD_CLOEXEC);

	if (fd >= 0 && write(fd, img, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Read every guest cluster; ok[i] tells which could be read. Returns the
 * virtual size, UINT64_MAX if the image does not open. */
static uint64_t read_all(int fd, uint8_t *out, bool *ok)
{
	char path[64], err[256];
	struct disk *d;
	uint64_t size;

	memset(ok, 0, NCL);
	if (memfd_path(fd, path, sizeof(path)) ||
	    disk_open(&d, path, DISK_FMT_QCOW2, DISK_RDONLY | DISK_NO_BACKING, err, sizeof(err)))
		return UINT64_MAX;
	size = disk_size(d);
	if (size >= VSIZE && !disk_pread(d, out, VSIZE, 0)) { /* the usual case: at once */
		memset(ok, 1, NCL);
		disk_close(d);
		return size;
	}
	for (unsigned i = 0; i < NCL && (uint64_t)(i + 1) * CS <= size; i++)
		ok[i] = !disk_pread(d, out + (size_t)i * CS, CS, (uint64_t)i * CS);
	disk_close(d);
	return size;
}

static void must_match(const uint8_t *a, const bool *oka, const uint8_t *b, const bool *okb,
                       int skip, const char *when)
{
	for (unsigned i = 0; i < NCL; i++) {
		if (!oka[i] || (int)i == skip)
			continue;
		if (!okb[i] || memcmp(a + (size_t)i * CS, b + (size_t)i * CS, CS)) {
			fprintf(stderr, "guest cluster %u %s %s\n", i,
			        okb[i] ? "changed" : "became unreadable", when);
			abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pre[VSIZE], post[VSIZE];
	static bool pre_ok[NCL], post_ok[NCL];
	struct disk_check_result r;
	char path[64], err[256];
	uint8_t *img, wbuf[CS];
	uint64_t presize, ncl_file;
	unsigned w;
	struct disk *d;
	int fd, ret;

	if (!base)
		build_base();
	if (size < 4 || !(img = malloc(base_len)))
		return 0;
	memcpy(img, base, base_len);
	ncl_file = base_len / CS;
	for (size_t m = 0; m + 4 <= size && m / 4 < MAX_MUT; m += 4) {
		unsigned pos = (unsigned)data[m] << 8 | data[m + 1], op = data[m + 2],
		         val = data[m + 3];
		uint8_t *e = img + meta[(pos >> 6) % nmeta] + (pos & 63) * 8;
		uint64_t old = be64(e), target = (val % ncl_file) * CS;

		switch (op % 4) {
		case 0: /* an entry to another cluster, flags kept */
			put_be64(e, (old & ~0x00fffffffffffe00ull) | target);
			break;
		case 1: /* the same, with the COPIED flag */
			put_be64(e, target | (1ull << 63));
			break;
		case 2: /* one bit */
			e[val & 7] ^= (uint8_t)(1u << (op >> 5));
			break;
		default: /* one 16-bit refcount */
			e[(val & 3) * 2] = 0;
			e[(val & 3) * 2 + 1] = (uint8_t)(op >> 2);
		}
	}
	w = (unsigned)(data[0] ^ data[size - 1]) % NCL;
	fd = image_fd(img, base_len);
	free(img);
	if (fd < 0)
		return 0;
	presize = read_all(fd, pre, pre_ok);
	/* as `cella disk check -r all` */
	if (memfd_path(fd, path, sizeof(path)) ||
	    disk_open(&d, path, DISK_FMT_QCOW2, DISK_NO_BACKING | DISK_REPAIR | DISK_CHECK, err,
	              sizeof(err))) {
		close(fd);
		return 0;
	}
	ret = disk_check_mode(d, 2, &r);
	ret = disk_close(d) ?: ret;
	if (ret || r.corruptions > r.corruptions_fixed || r.leaks > r.leaks_fixed) {
		close(fd);
		return 0;
	}
	if (read_all(fd, post, post_ok) != presize && presize != UINT64_MAX) {
		fprintf(stderr, "the virtual size changed in a repair\n");
		abort();
	}
	must_match(pre, pre_ok, post, post_ok, -1, "in a repair that reported a clean image");
	/* One write into the repaired image may change its own cluster only. */
	if (!disk_open(&d, path, DISK_FMT_QCOW2, DISK_NO_BACKING, err, sizeof(err))) {
		memset(wbuf, 0xee, sizeof(wbuf));
		ret = (uint64_t)(w + 1) * CS <= disk_size(d)
		          ? disk_pwrite(d, wbuf, CS, (uint64_t)w * CS)
		          : -1;
		ret = disk_close(d) ?: ret;
		if (!ret) {
			read_all(fd, post, post_ok);
			must_match(pre, pre_ok, post, post_ok, (int)w,
			           "in a write after the repair");
			if (!post_ok[w] || memcmp(post + (size_t)w * CS, wbuf, CS)) {
				fprintf(stderr, "guest cluster %u does not read what was written\n",
				        w);
				abort();
			}
		}
	}
	close(fd);
	return 0;
}
