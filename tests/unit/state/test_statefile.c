/* test_statefile.c: the state file format: round trip through a file (sparse
 * memory, copy-on-write restore, save of a restored VM), corruption at
 * every byte, truncation at every length, versions, device mismatches. Uses
 * KVM-less test VMs with the i8042 and the platform ports. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "hw/legacy.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

#define MEM MiB(8)

/* A KVM-less VM with the given devices ("k": i8042, "p": platform ports). */
static void make_vm(struct vm *vm, const char *devs)
{
	assert_int_equal(vm_create_test(vm, MEM), 0);
	for (const char *d = devs; *d; d++) {
		if (*d == 'k')
			assert_int_equal(i8042_create(vm), 0);
		else if (*d == 'p')
			assert_int_equal(platform_ports_create(vm), 0);
	}
}

/* Replace a test VM's RAM by the state file's (what vm_create_restore does). */
static void map_file_ram(struct vm *vm, struct statefile *sf)
{
	guest_mem_destroy(&vm->mem);
	assert_int_equal(guest_mem_init_file(&vm->mem, sf->info.mem_size, sf->fd,
					     sf->info.mem_off), 0);
}

static int tmpfile_fd(void)
{
	char path[] = "/tmp/cella-state-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void save_to(struct vm *vm, int fd, unsigned version)
{
	struct statefile_save_opts o = { .version = version, .no_sync = true };
	char err[256] = "";
	uint64_t bytes;

	if (statefile_save(vm, fd, &o, &bytes, err, sizeof(err)))
		fail_msg("save: %s", err);
}

/* Guest memory: a few pages with data, one written but zero. */
static void fill_guest(struct vm *vm)
{
	memset(vm->mem.host + 0x1000, 0xA5, 4096);
	memcpy(vm->mem.host + 0x200000, "hello", 5);
	memset(vm->mem.host + 0x300000, 0, 4096);
	memset(vm->mem.host + MEM - 4096, 0x5A, 4096);
}

static void test_roundtrip_sparse_cow(void **st)
{
	struct vm a, b;
	struct statefile sf;
	struct stat sb;
	char err[256] = "";
	uint8_t k = 0x60; /* i8042 command: write the controller configuration */
	uint64_t mem_off;
	int fd = tmpfile_fd(), fd2 = tmpfile_fd();

	(void)st;
	make_vm(&a, "kp");
	fill_guest(&a);
	assert_true(bus_dispatch(&a.pio, 0x64, &k, 1, true));
	save_to(&a, fd, 0);
	assert_int_equal(fstat(fd, &sb), 0);
	/* Sparse: three data pages, not 8 MiB. */
	assert_true((uint64_t)sb.st_blocks * 512 < MiB(1));

	assert_int_equal(statefile_open(&sf, dup(fd), err, sizeof(err)), 0);
	assert_int_equal(sf.info.version, STATEFILE_VERSION);
	assert_int_equal((uint64_t)sb.st_size, sf.info.mem_off + MEM);
	make_vm(&b, "kp");
	map_file_ram(&b, &sf);
	assert_int_equal(statefile_load(&b, &sf), 0);
	mem_off = sf.info.mem_off;
	statefile_close(&sf);
	assert_int_equal(memcmp(a.mem.host, b.mem.host, MEM), 0);
	{
		/* The i8042 still waits for the command byte: the pending command
		 * came through. */
		struct state_writer wa, wb;

		state_writer_init(&wa);
		state_writer_init(&wb);
		assert_int_equal(vm_state_save(&a, &wa), 0);
		assert_int_equal(vm_state_save(&b, &wb), 0);
		assert_int_equal(wa.len, wb.len);
		assert_int_equal(memcmp(wa.buf, wb.buf, wa.len), 0);
		state_writer_free(&wa);
		state_writer_free(&wb);
	}
	/* The restored VM writes (copy-on-write: the file is unchanged)... */
	memset(b.mem.host + 0x400000, 0x77, 4096);
	memset(b.mem.host + 0x1000, 0, 4096);
	{
		uint8_t page[4096];

		assert_int_equal(pread(fd, page, 4096, (off_t)(mem_off + 0x1000)), 4096);
		assert_int_equal(page[0], 0xA5);
	}
	/* ...and a save of it holds the file's pages and its own. */
	save_to(&b, fd2, 0);
	{
		struct vm c;

		assert_int_equal(statefile_open(&sf, dup(fd2), err, sizeof(err)), 0);
		make_vm(&c, "kp");
		map_file_ram(&c, &sf);
		assert_int_equal(statefile_load(&c, &sf), 0);
		statefile_close(&sf);
		assert_int_equal(memcmp(b.mem.host, c.mem.host, MEM), 0);
		assert_int_equal(c.mem.host[0x400000], 0x77);
		assert_int_equal(c.mem.host[0x1000], 0);
		assert_int_equal(c.mem.host[0x200000], 'h');
		vm_destroy(&c);
	}
	/* A file a VM runs from cannot be overwritten by a save. */
	{
		struct statefile busy;
		struct statefile_save_opts o = { .no_sync = true };
		uint64_t bytes;
		char path[64];
		int again;

		assert_int_equal(statefile_open(&busy, dup(fd2), err, sizeof(err)), 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd2);
		again = open(path, O_RDWR);
		assert_true(again >= 0);
		assert_int_equal(statefile_save(&a, again, &o, &bytes, err, sizeof(err)), -EBUSY);
		close(again);
		statefile_close(&busy);
	}
	vm_destroy(&a);
	vm_destroy(&b);
	close(fd);
	close(fd2);
}

/* The first mem_off bytes of a saved test VM, and the file's size. */
static uint8_t *image(unsigned version, size_t *len, uint64_t *file_size)
{
	struct vm a;
	struct stat sb;
	struct statefile_info info;
	char err[256];
	uint8_t hdr[STATEFILE_HEADER_SIZE];
	uint8_t *buf;
	int fd = tmpfile_fd();

	make_vm(&a, "kp");
	fill_guest(&a);
	save_to(&a, fd, version);
	vm_destroy(&a);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_true(pread(fd, hdr, sizeof(hdr), 0) >= STATEFILE_V1_HEADER_SIZE);
	assert_int_equal(statefile_parse_header(hdr, sizeof(hdr), (uint64_t)sb.st_size, &info,
						err, sizeof(err)), 0);
	*len = (size_t)info.mem_off;
	*file_size = (uint64_t)sb.st_size;
	buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, *len, 0), (ssize_t)*len);
	if (getenv("CELLA_STATEFILE_SEED")) { /* corpus seed for fuzz-statefile */
		FILE *f = fopen(getenv("CELLA_STATEFILE_SEED"), "wb");

		if (f) {
			fwrite(buf, 1, *len, f);
			fclose(f);
		}
	}
	close(fd);
	return buf;
}

/* Where the sections are and their ids, for the expected messages. */
struct sect_span {
	size_t start, end; /* in the image */
	char id[STATE_SECTION_ID_LEN];
};

static unsigned sections_of(const uint8_t *buf, size_t len, size_t off, struct sect_span *out,
			    unsigned max)
{
	struct state_reader r;
	struct state_section s = { .id = "" };
	char err[256];
	unsigned n = 0;

	state_reader_init(&r, buf + off, len - off);
	while (n < max) {
		size_t at = r.pos;
		int ret = state_section_next(&r, &s, err, sizeof(err));

		if (ret <= 0)
			break;
		out[n].start = off + at;
		out[n].end = off + r.pos;
		memcpy(out[n].id, s.id, sizeof(s.id));
		n++;
	}
	return n;
}

static void test_corrupt_every_byte(void **st)
{
	uint64_t fsize;
	size_t len;
	uint8_t *buf = image(0, &len, &fsize);
	struct sect_span sp[16];
	unsigned n;
	char err[256];

	(void)st;
	assert_int_equal(statefile_check_buffer(buf, len, fsize, err, sizeof(err)), 0);
	n = sections_of(buf, len, STATEFILE_HEADER_SIZE, sp, 16);
	assert_int_equal(n, 3); /* machine, dev:i8042, dev:platform */
	for (size_t i = 0; i < len; i++) {
		for (unsigned flip = 0x01; flip <= 0x80; flip <<= 7) {
			buf[i] ^= (uint8_t)flip;
			err[0] = 0;
			if (statefile_check_buffer(buf, len, fsize, err, sizeof(err)) == 0)
				fail_msg("corruption of byte %zu (^0x%x) not detected", i, flip);
			assert_non_null(strstr(err, "state: "));
			for (unsigned s = 0; s < n; s++) {
				char want[80];

				/* A corrupted id names what it became; the rest name
				 * the section. */
				if (i < sp[s].start + STATE_SECTION_ID_LEN || i >= sp[s].end)
					continue;
				snprintf(want, sizeof(want), "'%s'", sp[s].id);
				if (!strstr(err, want))
					fail_msg("byte %zu in section %s: message \"%s\"", i, sp[s].id,
						 err);
			}
			buf[i] ^= (uint8_t)flip;
		}
	}
	free(buf);
}

static void test_truncate_every_length(void **st)
{
	uint64_t fsize;
	size_t len;
	uint8_t *buf = image(0, &len, &fsize);
	struct sect_span sp[16];
	unsigned n = sections_of(buf, len, STATEFILE_HEADER_SIZE, sp, 16);
	char err[256];

	(void)st;
	/* The whole file shorter than its memory region. */
	for (uint64_t l = 0; l < fsize; l += (l < len + 8192 ? 1 : 4093)) {
		size_t have = (size_t)MIN((uint64_t)len, l);

		if (statefile_check_buffer(buf, have, l, err, sizeof(err)) == 0)
			fail_msg("file truncated to %llu bytes accepted", (unsigned long long)l);
	}
	/* The section stream cut at every length names the section cut. */
	for (size_t l = STATEFILE_HEADER_SIZE; l < sp[n - 1].end; l++) {
		struct state_reader r;
		struct state_section s = { .id = "" };
		int ret;

		state_reader_init(&r, buf + STATEFILE_HEADER_SIZE, l - STATEFILE_HEADER_SIZE);
		while ((ret = state_section_next(&r, &s, err, sizeof(err))) == 1)
			;
		for (unsigned i = 0; i < n; i++) {
			char want[80];

			if (l <= sp[i].start || l >= sp[i].end)
				continue;
			assert_int_equal(ret, -EINVAL);
			snprintf(want, sizeof(want), "truncated in section '%s'", sp[i].id);
			if (l >= sp[i].start + STATE_SECTION_ID_LEN && !strstr(err, want))
				fail_msg("cut at %zu: \"%s\", want \"%s\"", l, err, want);
			if (l < sp[i].start + STATE_SECTION_ID_LEN && !strstr(err, "truncated"))
				fail_msg("cut at %zu: \"%s\"", l, err);
		}
	}
	free(buf);
}

/* Patch a v2 header field and fix the header checksum. */
static void patch32(uint8_t *buf, size_t off, uint32_t v)
{
	uint32_t crc;

	memcpy(buf + off, &v, 4);
	crc = state_crc32(0, buf, 124);
	memcpy(buf + 124, &crc, 4);
}

static void test_versions(void **st)
{
	uint64_t fsize;
	size_t len;
	uint8_t *buf = image(0, &len, &fsize);
	char err[256];

	(void)st;
	patch32(buf, 8, 3);
	assert_int_equal(statefile_check_buffer(buf, len, fsize, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "format version 3 is not supported"));
	patch32(buf, 8, 0);
	assert_int_equal(statefile_check_buffer(buf, len, fsize, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "format version 0"));
	memcpy(buf, "CELLASTX", 8);
	assert_int_equal(statefile_check_buffer(buf, len, fsize, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bad magic"));
	free(buf);
}

/* A version 1 file (64-byte header, no header checksum or creation info,
 * no clock section) still loads. */
static void test_v1_loads(void **st)
{
	struct vm a, b;
	struct statefile sf;
	char err[256] = "";
	int fd = tmpfile_fd();
	uint64_t fsize;
	size_t len;
	uint8_t *buf;

	(void)st;
	make_vm(&a, "kp");
	fill_guest(&a);
	save_to(&a, fd, 1);
	assert_int_equal(statefile_open(&sf, dup(fd), err, sizeof(err)), 0);
	assert_int_equal(sf.info.version, 1);
	assert_int_equal(sf.info.sections_off, STATEFILE_V1_HEADER_SIZE);
	assert_string_equal(sf.info.creator, "");
	make_vm(&b, "kp");
	map_file_ram(&b, &sf);
	assert_int_equal(statefile_load(&b, &sf), 0);
	statefile_close(&sf);
	assert_int_equal(memcmp(a.mem.host, b.mem.host, MEM), 0);
	vm_destroy(&a);
	vm_destroy(&b);
	close(fd);
	buf = image(1, &len, &fsize);
	assert_int_equal(statefile_check_buffer(buf, len, fsize, err, sizeof(err)), 0);
	free(buf);
}

/* Load a state saved from a VM with devices `from` into one with `to`. */
static int load_across(const char *from, const char *to)
{
	struct vm a, b;
	struct state_writer w;
	struct state_reader r;
	int ret;

	make_vm(&a, from);
	make_vm(&b, to);
	state_writer_init(&w);
	assert_int_equal(vm_state_save(&a, &w), 0);
	state_reader_init(&r, w.buf, w.len);
	ret = vm_state_load(&b, &r, STATEFILE_VERSION);
	state_writer_free(&w);
	vm_destroy(&a);
	vm_destroy(&b);
	return ret;
}

static void test_device_mismatch(void **st)
{
	(void)st;
	assert_int_equal(load_across("kp", "kp"), 0);
	assert_int_equal(load_across("kp", "p"), -EINVAL);  /* a device missing here */
	assert_int_equal(load_across("p", "kp"), -EINVAL);  /* a device added here */
}

static void test_unknown_section_and_version(void **st)
{
	struct vm a;
	struct state_writer w;
	struct state_reader r;
	size_t m;

	(void)st;
	make_vm(&a, "p");
	state_writer_init(&w);
	assert_int_equal(vm_state_save(&a, &w), 0);
	m = state_section_begin(&w, "bogus", 1);
	state_put_u32(&w, 7);
	state_section_end(&w, m);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vm_state_load(&a, &r, STATEFILE_VERSION), -EINVAL);
	state_writer_free(&w);

	state_writer_init(&w);
	m = state_section_begin(&w, "machine", 9);
	state_section_end(&w, m);
	state_reader_init(&r, w.buf, w.len);
	assert_int_equal(vm_state_load(&a, &r, STATEFILE_VERSION), -EINVAL);
	state_writer_free(&w);

	/* Ids the writer refuses. */
	state_writer_init(&w);
	(void)state_section_begin(&w, "Bad Id", 1);
	assert_int_equal(state_writer_error(&w), -EINVAL);
	state_writer_free(&w);
	vm_destroy(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_sparse_cow),
		cmocka_unit_test(test_corrupt_every_byte),
		cmocka_unit_test(test_truncate_every_length),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_v1_loads),
		cmocka_unit_test(test_device_mismatch),
		cmocka_unit_test(test_unknown_section_and_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
