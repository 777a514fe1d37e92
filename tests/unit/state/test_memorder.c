/* test_memorder.c: the "mem-order" record (vmm/state/memorder.c): built
 * from ranks and parsed back, every malformed payload refused with its
 * reason; the record through a state file (statefile_save with a sample,
 * statefile_mem_order, and older files without it); and the restore
 * prefetch (vmm/core/mem_prefetch.c) on a KVM-less VM whose RAM is the
 * file: contents identical, pages given back never filled again, a stop in
 * the middle; and the same through userfaultfd (vmm/core/mem_uffd.c). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hw/legacy.h"
#include "mem_prefetch.h"
#include "mem_uffd.h"
#include "state/memorder.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

#define MEM   MiB(8)
#define PAGES (MEM / 4096)

/* The payload of the section mem_order_write made (after its header). */
static size_t payload_of(struct state_writer *w, const uint8_t **p)
{
	struct state_reader r;
	struct state_section sec = { .id = "" };
	char err[200];

	state_reader_init(&r, w->buf, w->len);
	assert_int_equal(state_section_next(&r, &sec, err, sizeof(err)), 1);
	assert_string_equal(sec.id, MEM_ORDER_SECTION);
	assert_int_equal(sec.version, MEM_ORDER_VERSION);
	*p = sec.data;
	return sec.len;
}

static void test_build_and_parse(void **st)
{
	uint8_t *rank = calloc(PAGES, 1);
	struct state_writer w;
	struct mem_order o;
	const uint8_t *p;
	char err[200];
	size_t len;

	(void)st;
	/* Rank 2: pages 10-12 and 40; rank 1: pages 100-101 and 2047. */
	rank[10] = rank[11] = rank[12] = rank[40] = 2;
	rank[100] = rank[101] = rank[PAGES - 1] = 1;
	state_writer_init(&w);
	mem_order_write(&w, rank, PAGES);
	assert_int_equal(state_writer_error(&w), 0);
	len = payload_of(&w, &p);
	assert_int_equal(len, 16 + 4 * 16);
	assert_int_equal(mem_order_parse(p, len, MEM, &o, err, sizeof(err)), 0);
	assert_int_equal(o.nr_runs, 4);
	assert_int_equal(o.pages, 7);
	/* Rank order, then address order. */
	assert_int_equal(o.runs[0].first, 100);
	assert_int_equal(o.runs[0].count, 2);
	assert_int_equal(o.runs[1].first, PAGES - 1);
	assert_int_equal(o.runs[2].first, 10);
	assert_int_equal(o.runs[2].count, 3);
	assert_int_equal(o.runs[3].first, 40);
	for (size_t i = 0; i < o.nr_runs; i++)
		assert_int_equal(o.runs[i].flags, MEM_ORDER_WRITTEN);
	mem_order_free(&o);
	state_writer_free(&w);

	/* Nothing ranked: no section at all. */
	memset(rank, 0, PAGES);
	state_writer_init(&w);
	mem_order_write(&w, rank, PAGES);
	assert_int_equal(w.len, 0);
	state_writer_free(&w);
	free(rank);
}

/* A payload of n runs given as (first, count, flags) triples. */
static size_t make(uint8_t *buf, uint32_t shift, uint32_t rsvd, uint64_t nr, const uint64_t *runs,
		   size_t n)
{
	struct state_writer w;
	size_t len;

	state_writer_init(&w);
	state_put_u32(&w, shift);
	state_put_u32(&w, rsvd);
	state_put_u64(&w, nr);
	for (size_t i = 0; i < n; i++) {
		state_put_u64(&w, runs[3 * i]);
		state_put_u32(&w, (uint32_t)runs[3 * i + 1]);
		state_put_u32(&w, (uint32_t)runs[3 * i + 2]);
	}
	len = w.len;
	memcpy(buf, w.buf, len);
	state_writer_free(&w);
	return len;
}

static void refused(const uint8_t *buf, size_t len, const char *why)
{
	struct mem_order o;
	char err[200] = "";

	assert_int_equal(mem_order_parse(buf, len, MEM, &o, err, sizeof(err)), -EINVAL);
	if (!strstr(err, why))
		fail_msg("error '%s' does not say '%s'", err, why);
	assert_null(o.runs);
	assert_int_equal(o.nr_runs, 0);
}

static void test_bad_payloads(void **st)
{
	uint8_t buf[512];
	const uint64_t ok[] = { 0, 4, 1, 8, 1, 0 };
	const uint64_t past_end[] = { PAGES - 1, 2, 1 };
	const uint64_t at_end[] = { PAGES, 1, 1 };
	const uint64_t empty[] = { 3, 0, 1 };
	const uint64_t flags[] = { 3, 1, 0x2 };
	const uint64_t overlap[] = { 0, 4, 1, 3, 2, 1 };
	const uint64_t huge[] = { 1, 0xffffffffULL, 1 };
	struct mem_order o;
	char err[200];
	size_t len;

	(void)st;
	len = make(buf, 12, 0, 2, ok, 2);
	assert_int_equal(mem_order_parse(buf, len, MEM, &o, err, sizeof(err)), 0);
	assert_int_equal(o.pages, 5);
	mem_order_free(&o);
	/* An empty record is valid. */
	len = make(buf, 12, 0, 0, NULL, 0);
	assert_int_equal(mem_order_parse(buf, len, MEM, &o, err, sizeof(err)), 0);
	assert_int_equal(o.nr_runs, 0);

	refused(buf, 7, "truncated header");
	refused(buf, make(buf, 13, 0, 0, NULL, 0), "page shift 13");
	refused(buf, make(buf, 12, 1, 0, NULL, 0), "reserved field");
	refused(buf, make(buf, 12, 0, 3, ok, 2), "3 runs need 64 bytes");
	refused(buf, make(buf, 12, 0, 1, ok, 2), "1 runs need 32 bytes");
	refused(buf, make(buf, 12, 0, (uint64_t)MEM_ORDER_MAX_RUNS + 1, NULL, 0), "runs (at most");
	refused(buf, make(buf, 12, 0, UINT64_MAX, NULL, 0), "runs (at most");
	refused(buf, make(buf, 12, 0, 1, past_end, 1), "outside");
	refused(buf, make(buf, 12, 0, 1, at_end, 1), "outside");
	refused(buf, make(buf, 12, 0, 1, empty, 1), "outside");
	refused(buf, make(buf, 12, 0, 1, huge, 1), "outside");
	refused(buf, make(buf, 12, 0, 1, flags, 1), "unknown flags 0x2");
	refused(buf, make(buf, 12, 0, 2, overlap, 2), "run 1 overlaps an earlier run (page 3)");
	/* Truncated at every length: refused, never read past the end. */
	len = make(buf, 12, 0, 2, ok, 2);
	for (size_t l = 0; l < len; l++) {
		uint8_t *copy = malloc(l ? l : 1);

		memcpy(copy, buf, l);
		assert_int_equal(mem_order_parse(copy, l, MEM, &o, err, sizeof(err)), -EINVAL);
		free(copy);
	}
}

static int tmpfile_fd(void)
{
	char path[] = "/tmp/cella-memorder-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void make_vm(struct vm *vm)
{
	assert_int_equal(vm_create_test(vm, MEM), 0);
	assert_int_equal(i8042_create(vm), 0);
	assert_int_equal(platform_ports_create(vm), 0);
}

/* Guest RAM: a pattern on every other 64 KiB, so the file has holes. */
static void fill(struct vm *vm)
{
	for (uint64_t off = 0; off < MEM; off += 4096)
		if ((off >> 16) % 2 == 0)
			for (unsigned i = 0; i < 4096; i += 8)
				memcpy(vm->mem.host + off + i, &(uint64_t){ off + i + 1 }, 8);
}

/* Save vm with a record ranking pages 16-31 (rank 1) and 0-3 (rank 2);
 * returns the opened state file. */
static void save_and_open(struct vm *vm, struct statefile *sf, unsigned version, bool order)
{
	uint8_t *rank = calloc(PAGES, 1);
	struct statefile_save_opts o = { .version = version, .no_sync = true };
	char err[256] = "";
	uint64_t bytes;
	int fd = tmpfile_fd();

	for (unsigned p = 16; p < 32; p++)
		rank[p] = 1;
	for (unsigned p = 0; p < 4; p++)
		rank[p] = 2;
	if (order)
		o.order_rank = rank;
	if (statefile_save(vm, fd, &o, &bytes, err, sizeof(err)))
		fail_msg("save: %s", err);
	free(rank);
	if (statefile_open(sf, dup(fd), err, sizeof(err)))
		fail_msg("open: %s", err);
	close(fd);
}

/* A private copy of the page is mapped (pagemap: present, not a file
 * page; mincore would report the file's page cache, and a read of a
 * neighbour may map the file's page read-only, which costs nothing). */
static bool present(const struct guest_mem *m, uint64_t off)
{
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &ent, 8, (off_t)((uintptr_t)(m->host + off) / 4096 * 8)), 8);
	close(fd);
	return (ent >> 63) && !(ent >> 61 & 1);
}

static void wait_finished(const struct guest_mem *m)
{
	for (int i = 0; i < 20000 && !guest_mem_prefetch_finished(m); i++)
		usleep(1000); /* polls the thread's state, with a deadline */
	assert_true(guest_mem_prefetch_finished(m));
}

static void test_file_and_prefetch(void **st)
{
	struct vm vm, vm2;
	struct statefile sf;
	struct mem_order o;
	json_t *j;
	char err[256];

	(void)st;
	make_vm(&vm);
	fill(&vm);
	save_and_open(&vm, &sf, 0, true);
	assert_int_equal(statefile_mem_order(&sf, &o, err, sizeof(err)), 0);
	assert_int_equal(o.nr_runs, 2);
	assert_int_equal(o.runs[0].first, 16);
	assert_int_equal(o.runs[0].count, 16);
	assert_int_equal(o.runs[1].first, 0);
	assert_int_equal(o.pages, 20);

	/* A VM restored from it loads (the section is known) and prefetches. */
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	assert_int_equal(guest_mem_init_file(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off),
			 0);
	assert_int_equal(statefile_load(&vm2, &sf), 0);
	/* Give back two pages with data before it starts (as the balloon's
	 * load does, after prepare): never filled. */
	assert_int_equal(guest_mem_prefetch_prepare(&vm2.mem), 0);
	assert_int_equal(guest_mem_discard(&vm2.mem, 0x20000, 0x2000), 0);
	assert_int_equal(guest_mem_prefetch_start(&vm2.mem, &o, NULL), 0);
	assert_int_equal(o.nr_runs, 0); /* taken */
	/* And one while it may be running. */
	assert_int_equal(guest_mem_discard(&vm2.mem, 0x40000, 0x1000), 0);
	wait_finished(&vm2.mem);
	j = guest_mem_prefetch_json(&vm2.mem);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
	assert_int_equal(json_integer_value(json_object_get(j, "recorded_pages")), 20);
	assert_true(json_integer_value(json_object_get(j, "written_pages")) >= (int)(PAGES / 2 - 3));
	json_decref(j);
	for (uint64_t off = 0; off < MEM; off += 4096) {
		bool gone = (off >= 0x20000 && off < 0x22000) || off == 0x40000;

		if (gone) {
			/* (0x40000 may have been filled before the discard, then dropped.) */
			if (present(&vm2.mem, off))
				fail_msg("page at 0x%llx was given back and is filled again",
					 (unsigned long long)off);
			continue;
		}
		if ((off >> 16) % 2 == 0 && !present(&vm2.mem, off)) /* data: filled */
			fail_msg("page at 0x%llx holds data and was not filled",
				 (unsigned long long)off);
		if (memcmp(vm2.mem.host + off, vm.mem.host + off, 4096))
			fail_msg("page at 0x%llx differs after the prefetch", (unsigned long long)off);
	}
	vm_destroy(&vm2);
	statefile_close(&sf);
	vm_destroy(&vm);
}

static void test_old_files_and_stop(void **st)
{
	struct vm vm, vm2;
	struct statefile sf;
	struct mem_order o;
	char err[256];

	(void)st;
	make_vm(&vm);
	fill(&vm);
	/* Version 1 and a version 2 save without a sample: no record. */
	save_and_open(&vm, &sf, 1, true);
	assert_int_equal(statefile_mem_order(&sf, &o, err, sizeof(err)), 0);
	assert_int_equal(o.nr_runs, 0);
	statefile_close(&sf);
	save_and_open(&vm, &sf, 0, false);
	assert_int_equal(statefile_mem_order(&sf, &o, err, sizeof(err)), 0);
	assert_int_equal(o.nr_runs, 0);
	/* Without a record the prefetch fills the file's data all the same;
	 * stopped at once, then torn down with the VM (no use after unmap). */
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	assert_int_equal(guest_mem_init_file(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off),
			 0);
	assert_int_equal(guest_mem_prefetch_start(&vm2.mem, NULL, NULL), 0);
	guest_mem_prefetch_stop(&vm2.mem);
	guest_mem_prefetch_stop(&vm2.mem); /* idempotent */
	assert_true(guest_mem_prefetch_finished(&vm2.mem));
	vm_destroy(&vm2);
	/* Started and destroyed without a stop: guest_mem_destroy joins it. */
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	assert_int_equal(guest_mem_init_file(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off),
			 0);
	assert_int_equal(guest_mem_prefetch_start(&vm2.mem, NULL, NULL), 0);
	vm_destroy(&vm2);
	/* memfd RAM is not a restore: nothing starts. */
	assert_int_equal(guest_mem_prefetch_start(&vm.mem, NULL, NULL), 0);
	assert_null(vm.mem.prefetch);
	assert_null(guest_mem_prefetch_json(&vm.mem));
	statefile_close(&sf);
	vm_destroy(&vm);
}

/* Every page of vm2 is vm's, but those given back, which read as zeros. */
static void expect_restored(struct vm *vm2, struct vm *vm, const uint64_t *gone, size_t ngone)
{
	static const uint8_t zero[4096];

	for (uint64_t off = 0; off < MEM; off += 4096) {
		bool g = false;

		for (size_t i = 0; i < ngone; i++)
			g = g || off == gone[i];
		if (memcmp(vm2->mem.host + off, g ? zero : vm->mem.host + off, 4096))
			fail_msg("page at 0x%llx %s", (unsigned long long)off,
				 g ? "was given back and does not read as zeros"
				   : "differs from the saved one");
	}
}

/* RAM filled through userfaultfd: faults answered from the start (a
 * device's load reading RAM, before the fill thread), the saved bytes
 * everywhere, pages given back (before their block is filled, and after)
 * reading as zeros, faults still answered after a stop (a migration), and
 * teardown while it runs. Needs a userfaultfd that takes the kernel's
 * faults (root here); skipped, loudly, without one. */
static void test_uffd_fill(void **st)
{
	static const uint64_t gone[] = { 0x20000, 0x21000, 0x400000 };
	struct vm vm, vm2;
	struct statefile sf;
	struct mem_order o;
	char err[256];
	json_t *j;
	int ret;

	(void)st;
	make_vm(&vm);
	fill(&vm);
	save_and_open(&vm, &sf, 0, true);
	assert_int_equal(statefile_mem_order(&sf, &o, err, sizeof(err)), 0);
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	ret = guest_mem_init_uffd(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off, -1);
	if (ret == -EPERM || ret == -EACCES || ret == -ENOSYS) {
		fprintf(stderr, "SKIP test_uffd_fill: no userfaultfd here (%s)\n", strerror(-ret));
		mem_order_free(&o);
		vm_destroy(&vm2);
		statefile_close(&sf);
		vm_destroy(&vm);
		skip();
	}
	assert_int_equal(ret, 0);
	assert_non_null(vm2.mem.uffd);
	/* Setup phase: this thread's own reads fault and are answered. */
	assert_memory_equal(vm2.mem.host + 0x10000 * 2, vm.mem.host + 0x10000 * 2, 4096);
	assert_int_equal(statefile_load(&vm2, &sf), 0);
	/* Block 0 is in place now: these two read as zeros from here on;
	 * block 2 is not: it is filled without its given-back page. */
	assert_int_equal(guest_mem_discard(&vm2.mem, 0x20000, 0x2000), 0);
	assert_int_equal(guest_mem_discard(&vm2.mem, 0x400000, 0x1000), 0);
	guest_mem_prefetch_setup_end(&vm2.mem);
	assert_int_equal(guest_mem_prefetch_start(&vm2.mem, &o, NULL), 0);
	wait_finished(&vm2.mem);
	j = guest_mem_prefetch_json(&vm2.mem);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "done");
	assert_string_equal(json_string_value(json_object_get(j, "method")), "userfaultfd");
	assert_int_equal(json_integer_value(json_object_get(j, "errors")), 0);
	json_decref(j);
	expect_restored(&vm2, &vm, gone, 3);
	vm_destroy(&vm2);

	/* Stopped at once (what a migration does): reads are still answered,
	 * all of RAM comes back right; then torn down while registered. */
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	assert_int_equal(guest_mem_init_uffd(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off, -1),
			 0);
	guest_mem_prefetch_setup_end(&vm2.mem);
	assert_int_equal(guest_mem_prefetch_start(&vm2.mem, NULL, NULL), 0);
	guest_mem_prefetch_stop(&vm2.mem);
	expect_restored(&vm2, &vm, NULL, 0);
	vm_destroy(&vm2);
	/* Torn down in the setup phase, nothing read. */
	make_vm(&vm2);
	guest_mem_destroy(&vm2.mem);
	assert_int_equal(guest_mem_init_uffd(&vm2.mem, sf.info.mem_size, sf.fd, sf.info.mem_off, -1),
			 0);
	vm_destroy(&vm2);
	statefile_close(&sf);
	vm_destroy(&vm);
}

/* A bad record in a file: statefile_check_buffer (what the fuzzer runs)
 * and statefile_mem_order both refuse it, naming the section. */
static void test_bad_record_in_file(void **st)
{
	struct vm vm;
	struct statefile sf;
	struct mem_order o;
	uint8_t *img;
	char err[256] = "";
	off_t size;
	size_t len;

	(void)st;
	make_vm(&vm);
	fill(&vm);
	save_and_open(&vm, &sf, 0, true);
	size = lseek(sf.fd, 0, SEEK_END);
	len = (size_t)sf.info.mem_off;
	img = malloc(len);
	assert_int_equal(pread(sf.fd, img, len, 0), (ssize_t)len);
	assert_int_equal(statefile_check_buffer(img, len, (uint64_t)size, err, sizeof(err)), 0);
	/* Make run 1 overlap run 0 (pages 16-31, then 0-3 -> 20-23) and fix the CRC. */
	{
		uint8_t *s = img + sf.info.sections_off, *end = s + sf.info.sections_len;

		while (s < end && strcmp((char *)s, MEM_ORDER_SECTION)) {
			uint64_t l;

			memcpy(&l, s + STATE_SECTION_ID_LEN + 8, 8);
			s += STATE_SECTION_HDR_SIZE + l;
		}
		assert_true(s < end);
		{
			uint8_t *pl = s + STATE_SECTION_HDR_SIZE;
			uint64_t first = 20, l;
			uint32_t crc;

			memcpy(pl + 16 + 16, &first, 8);
			memcpy(&l, s + STATE_SECTION_ID_LEN + 8, 8);
			crc = state_crc32(0, s, STATE_SECTION_ID_LEN + 4);
			crc = state_crc32(crc, s + STATE_SECTION_ID_LEN + 8, 8);
			crc = state_crc32(crc, pl, l);
			memcpy(s + STATE_SECTION_ID_LEN + 4, &crc, 4);
			memcpy(sf.sections + (s - img - sf.info.sections_off), s,
			       STATE_SECTION_HDR_SIZE + l);
		}
	}
	assert_int_equal(statefile_check_buffer(img, len, (uint64_t)size, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "section 'mem-order': mem-order: run 1 overlaps"));
	assert_int_equal(statefile_mem_order(&sf, &o, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "state: section 'mem-order': mem-order: run 1 overlaps"));
	free(img);
	statefile_close(&sf);
	vm_destroy(&vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_and_parse),
		cmocka_unit_test(test_bad_payloads),
		cmocka_unit_test(test_file_and_prefetch),
		cmocka_unit_test(test_old_files_and_stop),
		cmocka_unit_test(test_uffd_fill),
		cmocka_unit_test(test_bad_record_in_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
