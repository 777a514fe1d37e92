/* statefile_io.c: writing a paused VM to a state file (sparse memory, no
 * zero page written) and opening one for restore (header and sections read
 * and checked; memory left in the file for a copy-on-write mapping). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "state/memorder.h"
#include "state/state.h"
#include "state/statefile.h"
#include "vm.h"

#define PAGE_4K     4096u
#define CHUNK_PAGES 512u /* 2 MiB of guest RAM per populated-page query */

static int io_fail(char *err, size_t errlen, int ret, const char *fmt, ...) __printf(4, 5);
static int io_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, MIN(len, (size_t)1 << 30), (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static bool page_zero(const uint8_t *p)
{
	return p[0] == 0 && !memcmp(p, p + 1, PAGE_4K - 1);
}

/* Write RAM's non-zero pages at mem_off; the rest stay holes. Only pages
 * that may hold data are read (guest_mem_populated), so a mostly idle
 * guest of any size saves in proportion to what it touched. */
static int save_memory(struct guest_mem *m, int fd, uint64_t mem_off, uint64_t *bytes)
{
	uint8_t vec[CHUNK_PAGES];

	for (uint64_t off = 0; off < m->size; off += (uint64_t)CHUNK_PAGES * PAGE_4K) {
		size_t n = (size_t)MIN((uint64_t)CHUNK_PAGES, (m->size - off) / PAGE_4K);
		size_t run = 0, start = 0;
		int ret = guest_mem_populated(m, off, n, vec);

		if (ret)
			return ret;
		for (size_t i = 0; i <= n; i++) {
			bool data = i < n && vec[i] && !page_zero(m->host + off + i * PAGE_4K);

			if (data) {
				if (!run++)
					start = i;
				continue;
			}
			if (!run)
				continue;
			ret = pwrite_all(fd, m->host + off + start * PAGE_4K, run * PAGE_4K,
					 mem_off + off + start * PAGE_4K);
			if (ret)
				return ret;
			*bytes += run * PAGE_4K;
			run = 0;
		}
	}
	return 0;
}

static void fill_info(struct vm *vm, struct statefile_info *info, unsigned version, size_t slen)
{
	struct timespec ts;
	struct utsname u;

	memset(info, 0, sizeof(*info));
	info->version = version;
	info->flags = STATEFILE_FLAG_SPARSE;
	clock_gettime(CLOCK_REALTIME, &ts);
	info->created_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (uname(&u) < 0)
		strcpy(u.nodename, "?");
	snprintf(info->creator, sizeof(info->creator), "cella-vm 0.1.0 on %.28s", u.nodename);
	info->nr_vcpus = vm->nr_vcpus;
	info->mem_size = vm->mem.size;
	info->sections_off = version == 1 ? STATEFILE_V1_HEADER_SIZE : STATEFILE_HEADER_SIZE;
	info->sections_len = slen;
	info->mem_off = ALIGN_UP(info->sections_off + slen, (uint64_t)STATEFILE_MEM_ALIGN);
}

static int write_file(struct vm *vm, int fd, const struct statefile_save_opts *opts,
		      const struct state_writer *w, uint64_t *bytes, char *err, size_t errlen)
{
	unsigned version = opts && opts->version ? opts->version : STATEFILE_VERSION;
	uint8_t hdr[STATEFILE_HEADER_SIZE];
	struct statefile_info info;
	size_t hlen;
	uint64_t pad_len;
	int ret;

	fill_info(vm, &info, version, w->len);
	hlen = statefile_build_header(&info, hdr);
	pad_len = info.mem_off - info.sections_off - w->len;
	if (ftruncate(fd, 0) < 0)
		return io_fail(err, errlen, -errno, "state: cannot truncate: %s", strerror(errno));
	if ((ret = pwrite_all(fd, hdr, hlen, 0)) ||
	    (ret = pwrite_all(fd, w->buf, w->len, info.sections_off)))
		return io_fail(err, errlen, ret, "state: cannot write: %s", strerror(-ret));
	*bytes = hlen + w->len + pad_len;
	/* The padding and the memory region's holes read as zeros. */
	if (ftruncate(fd, (off_t)(info.mem_off + info.mem_size)) < 0)
		return io_fail(err, errlen, -errno, "state: cannot size the file: %s",
			       strerror(errno));
	ret = save_memory(&vm->mem, fd, info.mem_off, bytes);
	if (ret)
		return io_fail(err, errlen, ret, "state: cannot write guest memory: %s",
			       strerror(-ret));
	if (!(opts && opts->no_sync) && fsync(fd) < 0)
		return io_fail(err, errlen, -errno, "state: fsync: %s", strerror(errno));
	return 0;
}

int statefile_save(struct vm *vm, int fd, const struct statefile_save_opts *opts,
		   uint64_t *bytes, char *err, size_t errlen)
{
	unsigned version = opts && opts->version ? opts->version : STATEFILE_VERSION;
	struct state_writer w;
	struct stat st;
	int ret;

	*bytes = 0;
	if (version < STATEFILE_VERSION_MIN || version > STATEFILE_VERSION)
		return io_fail(err, errlen, -EINVAL, "state: cannot write format version %u",
			       version);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return io_fail(err, errlen, -EINVAL, "state: the target must be a regular file");
	/* A VM restored from this file maps it (shared lock): truncating it
	 * would pull the memory from under that VM. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0)
		return io_fail(err, errlen, -EBUSY,
			       "state: the file is in use (a VM runs from it, or a save is "
			       "writing it)");
	state_writer_init(&w);
	ret = vm_state_save_format(vm, &w, version);
	/* The restore's prefetch hint: last, and only in files. */
	if (!ret && version >= 2 && opts && opts->order_rank) {
		mem_order_write(&w, opts->order_rank, vm->mem.size / PAGE_4K);
		ret = state_writer_error(&w);
	}
	if (ret)
		io_fail(err, errlen, ret, "state: cannot save the VM's state: %s", strerror(-ret));
	else
		ret = write_file(vm, fd, opts, &w, bytes, err, errlen);
	state_writer_free(&w);
	flock(fd, LOCK_UN);
	return ret;
}

/* Walk every section once: framing and checksums, before any is used. */
static int check_sections(const struct statefile *sf, char *err, size_t errlen)
{
	struct state_section sec = { .id = "" };
	struct state_reader r;
	int ret;

	state_reader_init(&r, sf->sections, (size_t)sf->info.sections_len);
	while ((ret = state_section_next(&r, &sec, err, errlen)) == 1)
		;
	return ret;
}

int statefile_open(struct statefile *sf, int fd, char *err, size_t errlen)
{
	uint8_t hdr[STATEFILE_HEADER_SIZE];
	struct stat st;
	ssize_t n;
	int ret;

	memset(sf, 0, sizeof(*sf));
	sf->fd = fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = io_fail(err, errlen, -EINVAL, "state: not a regular file");
		goto fail;
	}
	n = pread(fd, hdr, sizeof(hdr), 0);
	if (n < 0) {
		ret = io_fail(err, errlen, -errno, "state: cannot read: %s", strerror(errno));
		goto fail;
	}
	ret = statefile_parse_header(hdr, (size_t)n, (uint64_t)st.st_size, &sf->info, err, errlen);
	if (ret)
		goto fail;
	sf->sections = malloc(sf->info.sections_len ? (size_t)sf->info.sections_len : 1);
	if (!sf->sections) {
		ret = io_fail(err, errlen, -ENOMEM, "state: out of memory");
		goto fail;
	}
	ret = pread_all(fd, sf->sections, (size_t)sf->info.sections_len, sf->info.sections_off);
	if (ret) {
		io_fail(err, errlen, ret, "state: cannot read the sections: %s", strerror(-ret));
		goto fail;
	}
	ret = check_sections(sf, err, errlen);
	if (ret)
		goto fail;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
		ret = io_fail(err, errlen, -EBUSY, "state: the file is being written by a save");
		goto fail;
	}
	return 0;
fail:
	statefile_close(sf);
	return ret;
}

void statefile_close(struct statefile *sf)
{
	if (sf->fd >= 0)
		close(sf->fd);
	free(sf->sections);
	memset(sf, 0, sizeof(*sf));
	sf->fd = -1;
}

int statefile_mem_order(const struct statefile *sf, struct mem_order *out, char *err,
			size_t errlen)
{
	struct state_section sec = { .id = "" };
	struct state_reader r;
	char why[200];
	int ret;

	memset(out, 0, sizeof(*out));
	if (sf->info.version < 2)
		return 0;
	state_reader_init(&r, sf->sections, (size_t)sf->info.sections_len);
	while ((ret = state_section_next(&r, &sec, err, errlen)) == 1) {
		if (strcmp(sec.id, MEM_ORDER_SECTION))
			continue;
		ret = mem_order_parse(sec.data, sec.len, sf->info.mem_size, out, why, sizeof(why));
		if (ret)
			io_fail(err, errlen, ret, "state: section '%s': %s", sec.id, why);
		return ret;
	}
	return ret;
}

int statefile_load(struct vm *vm, struct statefile *sf)
{
	struct state_reader r;

	state_reader_init(&r, sf->sections, (size_t)sf->info.sections_len);
	return vm_state_load(vm, &r, sf->info.version);
}
