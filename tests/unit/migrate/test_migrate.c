/* test_migrate.c: live-migration pieces that need no KVM: the VMM-side
 * dirty marks (guest_mem_mark_dirty, and virtq_push marking the buffers a
 * device wrote and the used ring), and the stream parser applying and
 * refusing records. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mem.h"
#include "migrate/migstream.h"
#include "virtio/virtq.h"

#define MEM (8u << 20)
#define BITS (8 * sizeof(unsigned long))

static bool page_marked(const unsigned long *bm, uint64_t gpa)
{
	uint64_t pg = gpa / 4096;

	return bm[pg / BITS] & (1UL << (pg % BITS));
}

static unsigned count_marked(const unsigned long *bm)
{
	unsigned n = 0;

	for (size_t i = 0; i < MEM / 4096 / BITS; i++)
		n += (unsigned)__builtin_popcountl(bm[i]);
	return n;
}

static void test_mark_dirty(void **state)
{
	struct guest_mem m;
	unsigned long bm[MEM / 4096 / BITS] = { 0 };

	(void)state;
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	guest_mem_mark_dirty(&m, 0x1000, 8); /* off: nothing recorded */
	assert_int_equal(guest_mem_dirty_enable(&m, true), 0);
	guest_mem_mark_dirty(&m, 0x1ffc, 8);  /* straddles two pages */
	guest_mem_mark_dirty(&m, MEM - 4, 8);  /* not all RAM: ignored */
	guest_mem_mark_dirty_host(&m, m.host + 0x7000, 1);
	guest_mem_dirty_harvest(&m, bm);
	assert_true(page_marked(bm, 0x1000));
	assert_true(page_marked(bm, 0x2000));
	assert_true(page_marked(bm, 0x7000));
	assert_int_equal(count_marked(bm), 3);
	memset(bm, 0, sizeof(bm));
	guest_mem_dirty_harvest(&m, bm); /* harvest cleared them */
	assert_int_equal(count_marked(bm), 0);
	guest_mem_destroy(&m);
}

/* A 16-entry queue at 0x10000 (desc), 0x11000 (avail), 0x12000 (used); a
 * chain of one readable buffer, one writable at 0x40000 (2 pages) and an
 * indirect table whose writable entry is at 0x80000. */
static void test_virtq_push_marks(void **state)
{
	struct guest_mem m;
	struct virtq vq = { .num_max = 16 };
	struct virtq_chain *c = calloc(1, sizeof(*c));
	struct virtq_error err;
	unsigned long bm[MEM / 4096 / BITS] = { 0 };
	struct vring_desc *desc, *ind;
	struct vring_avail *avail;

	(void)state;
	assert_non_null(c);
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	virtq_reset(&vq);
	vq.desc_gpa = 0x10000;
	vq.avail_gpa = 0x11000;
	vq.used_gpa = 0x12000;
	vq.indirect = true;
	assert_int_equal(virtq_activate(&vq, &m, &err), 0);
	desc = guest_mem_ptr(&m, 0x10000, 16 * sizeof(*desc));
	ind = guest_mem_ptr(&m, 0x20000, 2 * sizeof(*ind));
	avail = guest_mem_ptr(&m, 0x11000, 4096);
	desc[0] = (struct vring_desc){ .addr = 0x30000, .len = 16, .flags = VRING_DESC_F_NEXT, .next = 1 };
	desc[1] = (struct vring_desc){ .addr = 0x40ff0, .len = 32,
				       .flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, .next = 2 };
	desc[2] = (struct vring_desc){ .addr = 0x20000, .len = 2 * sizeof(*ind),
				       .flags = VRING_DESC_F_INDIRECT };
	ind[0] = (struct vring_desc){ .addr = 0x80000, .len = 100,
				      .flags = VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, .next = 1 };
	ind[1] = (struct vring_desc){ .addr = 0x90000, .len = 4, .flags = VRING_DESC_F_WRITE };
	avail->ring[0] = 0;
	avail->idx = 1;
	assert_int_equal(virtq_pop(&vq, c, &err), 1);

	assert_int_equal(guest_mem_dirty_enable(&m, true), 0);
	virtq_push(&vq, c->head, 136);
	guest_mem_dirty_harvest(&m, bm);
	assert_true(page_marked(bm, 0x40000)); /* writable buffer, both pages */
	assert_true(page_marked(bm, 0x41000));
	assert_true(page_marked(bm, 0x80000)); /* through the indirect table */
	assert_true(page_marked(bm, 0x90000));
	assert_true(page_marked(bm, 0x12000)); /* used ring */
	assert_false(page_marked(bm, 0x30000)); /* readable: the device did not write it */
	assert_int_equal(count_marked(bm), 5);
	guest_mem_destroy(&m);
	free(c);
}

static size_t rec(uint8_t *out, uint16_t type, const void *p, uint32_t len)
{
	mig_hdr_put(out, type, len);
	memcpy(out + MIG_HDR_LEN, p, len);
	return MIG_HDR_LEN + len;
}

static size_t hello(uint8_t *out, uint64_t ram)
{
	struct mig_hello h = { .version = MIG_VERSION, .page_size = 4096, .ram_size = ram,
			       .low_size = ram, .nr_vcpus = 1 };
	uint8_t p[MIG_HELLO_LEN];

	mig_hello_put(p, &h);
	return rec(out, MIG_REC_HELLO, p, sizeof(p));
}

static void test_stream_apply(void **state)
{
	static uint8_t buf[3 * 8192 + 4096];
	uint8_t pages[8 + 16 + 2 * 4096], zero[16], round[16] = { 1 }, done[24] = { 0 };
	uint64_t gpa[2] = { 0x3000, 0x7ff000 };
	struct guest_mem m;
	struct mig_rx rx;
	size_t n = 0;

	(void)state;
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	memset(m.host + 0x5000, 0x77, 4096);
	n += hello(buf + n, MEM);
	memset(pages, 0, 8);
	pages[0] = 2;
	memcpy(pages + 8, gpa, 16);
	memset(pages + 24, 0xAB, 4096);
	memset(pages + 24 + 4096, 0xCD, 4096);
	n += rec(buf + n, MIG_REC_PAGES, pages, sizeof(pages));
	memset(zero, 0, 16);
	zero[0] = 1;
	zero[9] = 0x50; /* gpa 0x5000 */
	n += rec(buf + n, MIG_REC_ZERO, zero, sizeof(zero));
	n += rec(buf + n, MIG_REC_ROUND, round, sizeof(round));
	n += rec(buf + n, MIG_REC_STATE, "state", 5);
	n += rec(buf + n, MIG_REC_COMPLETE, done, sizeof(done));
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_int_equal(mig_rx_feed(&rx, buf, n), 1);
	assert_int_equal(m.host[0x3000], 0xAB);
	assert_int_equal(m.host[0x7fffff], 0xCD);
	assert_int_equal(m.host[0x5000], 0);
	assert_int_equal(rx.pages, 2);
	assert_int_equal(rx.zero_pages, 1);
	guest_mem_destroy(&m);
}

static void test_stream_refuses(void **state)
{
	static uint8_t buf[16384];
	uint8_t pages[8 + 8 + 4096];
	uint64_t gpa = MEM; /* one page past the end of RAM */
	struct guest_mem m;
	struct mig_rx rx;
	size_t n;

	(void)state;
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	/* RAM size mismatch */
	n = hello(buf, MEM * 2);
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_true(mig_rx_feed(&rx, buf, n) < 0);
	assert_non_null(strstr(rx.err, "MiB of RAM"));
	/* a page outside RAM: nothing written */
	n = hello(buf, MEM);
	memset(pages, 0, sizeof(pages));
	pages[0] = 1;
	memcpy(pages + 8, &gpa, 8);
	n += rec(buf + n, MIG_REC_PAGES, pages, sizeof(pages));
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_true(mig_rx_feed(&rx, buf, n) < 0);
	assert_non_null(strstr(rx.err, "not a whole page of guest RAM"));
	/* misaligned address */
	gpa = 0x1001;
	memcpy(pages + 8 + 0, &gpa, 8);
	n = hello(buf, MEM);
	n += rec(buf + n, MIG_REC_PAGES, pages, sizeof(pages));
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_true(mig_rx_feed(&rx, buf, n) < 0);
	/* a header claiming more than any record may hold, before HELLO */
	mig_hdr_put(buf, MIG_REC_STATE, 0xFFFFFFF0u);
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_true(mig_rx_feed(&rx, buf, 8) < 0);
	assert_non_null(strstr(rx.err, "STATE record"));
	/* COMPLETE without STATE */
	n = hello(buf, MEM);
	n += rec(buf + n, MIG_REC_COMPLETE, pages, 24);
	mig_rx_init(&rx, &m, NULL, NULL);
	assert_true(mig_rx_feed(&rx, buf, n) < 0);
	guest_mem_destroy(&m);
}

/* include_storage records, applied to an 8 KiB fake disk. */
struct fake_disk {
	uint8_t data[8192];
	unsigned calls;
};

static int fd_disks(void *opaque, uint32_t n, const uint64_t *sizes, char *why, size_t whylen)
{
	(void)opaque;
	if (n != 1 || sizes[0] != 8192) {
		snprintf(why, whylen, "size mismatch");
		return -EINVAL;
	}
	return 0;
}

static int fd_data(void *opaque, uint32_t disk, uint64_t off, const uint8_t *data, uint32_t len,
		   char *why, size_t whylen)
{
	struct fake_disk *f = opaque;

	(void)disk, (void)why, (void)whylen;
	assert_true(off + len <= sizeof(f->data)); /* the parser checked it */
	memcpy(f->data + off, data, len);
	f->calls++;
	return 0;
}

static int fd_zero(void *opaque, uint32_t disk, uint64_t off, uint64_t len, char *why,
		   size_t whylen)
{
	struct fake_disk *f = opaque;

	(void)disk, (void)why, (void)whylen;
	assert_true(off + len <= sizeof(f->data));
	memset(f->data + off, 0, len);
	f->calls++;
	return 0;
}

static const struct mig_rx_ops disk_ops = { .disk = fd_data, .disks = fd_disks,
					    .disk_zero = fd_zero };

static size_t hello_storage(uint8_t *out, uint32_t disks)
{
	struct mig_hello h = { .version = MIG_VERSION, .page_size = 4096, .ram_size = MEM,
			       .low_size = MEM, .nr_vcpus = 1, .nr_disks = disks,
			       .flags = MIG_FLAG_STORAGE };
	uint8_t p[MIG_HELLO_LEN];

	mig_hello_put(p, &h);
	return rec(out, MIG_REC_HELLO, p, sizeof(p));
}

static size_t disk_rec(uint8_t *out, uint16_t type, uint64_t off, uint64_t len)
{
	uint8_t p[16 + 1024] = { 0 };

	memcpy(p + 8, &off, 8);
	if (type == MIG_REC_DISK_ZERO) {
		memcpy(p + 16, &len, 8);
		return rec(out, type, p, 24);
	}
	memset(p + 16, 0x5A, (size_t)len);
	return rec(out, type, p, 16 + (uint32_t)len);
}

/* Feed buf[0, n) to a fresh receiver; returns its result. */
static int feed_disks(struct guest_mem *m, struct fake_disk *f, const uint8_t *buf, size_t n,
		      struct mig_rx *rx)
{
	mig_rx_init(rx, m, &disk_ops, f);
	return mig_rx_feed(rx, buf, n);
}

static void test_stream_disks(void **state)
{
	static uint8_t buf[16384];
	uint8_t list[16] = { 1 }, done[24] = { 0 }, list2[16] = { 1 };
	uint64_t size = 8192, big = 16384;
	struct fake_disk f;
	struct guest_mem m;
	struct mig_rx rx;
	size_t n, base;

	(void)state;
	assert_int_equal(guest_mem_init(&m, MEM), 0);
	memcpy(list + 8, &size, 8);
	memcpy(list2 + 8, &big, 8);
	memset(&f, 0xEE, sizeof(f));
	f.calls = 0;
	n = hello_storage(buf, 1);
	n += rec(buf + n, MIG_REC_DISKS, list, sizeof(list));
	base = n;
	n += disk_rec(buf + n, MIG_REC_DISK_DATA, 0, 1024);
	n += disk_rec(buf + n, MIG_REC_DISK_ZERO, 1024, 8192 - 1024);
	n += rec(buf + n, MIG_REC_STATE, "s", 1);
	n += rec(buf + n, MIG_REC_COMPLETE, done, sizeof(done));
	assert_int_equal(feed_disks(&m, &f, buf, n, &rx), 1);
	assert_int_equal(f.calls, 2);
	assert_int_equal(f.data[0], 0x5A);
	assert_int_equal(f.data[1023], 0x5A);
	assert_int_equal(f.data[1024], 0);
	assert_int_equal(f.data[8191], 0);
	assert_int_equal(rx.disk_bytes, 1024);
	assert_int_equal(rx.disk_zero_bytes, 8192 - 1024);

	/* a range past the end of the disk: refused, nothing written */
	f.calls = 0;
	n = base + disk_rec(buf + base, MIG_REC_DISK_DATA, 8192 - 512, 1024);
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	assert_non_null(strstr(rx.err, "invalid"));
	n = base + disk_rec(buf + base, MIG_REC_DISK_ZERO, 512, UINT64_MAX - 511);
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	n = base + disk_rec(buf + base, MIG_REC_DISK_ZERO, 512, 0);
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	n = base + disk_rec(buf + base, MIG_REC_DISK_DATA, 100, 512); /* misaligned */
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	assert_int_equal(f.calls, 0);
	/* disk data before the disk list */
	n = hello_storage(buf, 1);
	n += disk_rec(buf + n, MIG_REC_DISK_DATA, 0, 512);
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	assert_non_null(strstr(rx.err, "before the disk list"));
	/* the state before the disk list: the guest would run on empty disks */
	n = hello_storage(buf, 1);
	n += rec(buf + n, MIG_REC_STATE, "s", 1);
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	/* a list that does not match the HELLO, or this VM (the callback) */
	n = hello_storage(buf, 2);
	n += rec(buf + n, MIG_REC_DISKS, list, sizeof(list));
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	n = hello_storage(buf, 1);
	n += rec(buf + n, MIG_REC_DISKS, list2, sizeof(list2));
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	assert_non_null(strstr(rx.err, "size mismatch"));
	/* a disk list without the storage flag */
	n = hello(buf, MEM);
	n += rec(buf + n, MIG_REC_DISKS, list, sizeof(list));
	assert_true(feed_disks(&m, &f, buf, n, &rx) < 0);
	assert_int_equal(f.calls, 0);
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mark_dirty),
		cmocka_unit_test(test_virtq_push_marks),
		cmocka_unit_test(test_stream_apply),
		cmocka_unit_test(test_stream_refuses),
		cmocka_unit_test(test_stream_disks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
