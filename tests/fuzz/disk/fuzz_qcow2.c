/* fuzz_qcow2.c: the qcow2 driver on arbitrary image files. The input is
 * written to a memfd and opened read-only (map, read, info, check), then a
 * copy read-write (writes, discard, zeroes, flush, check with repair).
 * Backing files are not followed (DISK_NO_BACKING). Work per input is
 * bounded: a few requests over the first MiBs of the disk. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "disk.h"

static int to_memfd(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct disk *open_fd(int fd, unsigned flags)
{
	char path[64], err[256];
	struct disk *d = NULL;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (disk_open(&d, path, DISK_FMT_QCOW2, flags | DISK_NO_BACKING, err, sizeof(err)))
		return NULL;
	return d;
}

static void exercise_read(struct disk *d, uint8_t *buf, size_t blen)
{
	struct disk_extent e[16];
	struct disk_check_result r;
	struct disk_info info;
	uint64_t off = 0, size = disk_size(d);

	for (int i = 0; i < 32 && off < size; i++) {
		int n = disk_map(d, off, size - off, false, e, 16);

		if (n <= 0)
			break;
		for (int k = 0; k < n; k++)
			off += e[k].len;
	}
	for (uint64_t o = 0; o < MIN(size, MiB(2)); o += blen)
		if (disk_pread(d, buf, (size_t)MIN(blen, size - o), o))
			break;
	if (size > blen && disk_pread(d, buf, blen, size - blen)) {
	}
	if (disk_get_info(d, &info)) {
	}
	if (disk_check(d, false, &r)) {
	}
}

static void exercise_write(struct disk *d, uint8_t *buf, size_t blen, uint32_t seed)
{
	struct disk_check_result r;
	uint64_t size = disk_size(d), span = MIN(size, MiB(4));

	if (!span)
		return;
	memset(buf, 0xa5, blen);
	for (int i = 0; i < 6; i++) {
		uint64_t off = (seed * 2654435761u + (uint64_t)i * 40503u * 4096) % span;
		size_t len = (size_t)MIN(blen - (off & 511), size - off);

		seed = seed * 1103515245u + 12345u;
		switch (seed % 4) {
		case 0: case 1:
			if (disk_pwrite(d, buf, len, off))
				return;
			break;
		case 2:
			if (disk_discard(d, off, len))
				return;
			break;
		default:
			if (disk_write_zeroes(d, off, len, seed & 8))
				return;
		}
		if (disk_pread(d, buf, len, off))
			return;
	}
	if (disk_flush(d) || disk_check_mode(d, 2, &r)) {
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t blen = 65536;
	uint8_t *buf = malloc(blen);
	uint32_t seed = 0;
	struct disk *d;
	int fd;

	if (!buf)
		return 0;
	for (size_t i = 0; i < size && i < 64; i++)
		seed = seed * 31 + data[i];
	fd = to_memfd(data, size);
	if (fd >= 0) {
		if ((d = open_fd(fd, DISK_RDONLY))) {
			exercise_read(d, buf, blen);
			disk_close(d);
		}
		close(fd);
	}
	fd = to_memfd(data, size);
	if (fd >= 0) {
		if ((d = open_fd(fd, 0))) {
			exercise_write(d, buf, blen, seed);
			disk_close(d);
		}
		close(fd);
	}
	free(buf);
	return 0;
}
