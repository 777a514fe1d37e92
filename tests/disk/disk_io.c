/* disk_io.c: a tiny qemu-io for the disk library, used by the disk tool
 * tests: disk-io IMAGE CMD... where CMD is one of
 *   write OFF LEN BYTE | zero OFF LEN | discard OFF LEN | verify OFF LEN BYTE |
 *   flush | resize SIZE | map (print the extents of the whole disk) |
 *   bench read|write BS COUNT (sequential, wrapping at the end of the disk:
 *   prints requests/s and the time spent in disk_map per request)
 * Numbers are decimal or 0x hex. Exit status 0, or 1 with the reason. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "disk.h"

static uint64_t num(const char *s)
{
	return strtoull(s, NULL, 0);
}

static int cmd_map(struct disk *d)
{
	struct disk_extent e[64];
	uint64_t off = 0;

	while (off < disk_size(d)) {
		int n = disk_map(d, off, disk_size(d) - off, false, e, 64);

		if (n <= 0)
			return n ? n : -1;
		for (int i = 0; i < n; i++) {
			printf("%#llx+%#llx %s\n", (unsigned long long)e[i].off,
			       (unsigned long long)e[i].len,
			       e[i].kind == DISK_EXT_DATA ? "data" :
			       e[i].kind == DISK_EXT_ZERO ? "zero" : "slow");
			off += e[i].len;
		}
	}
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The VM's path: resolve with disk_map, then move the data on the fd. */
static int cmd_bench(struct disk *d, bool write, size_t bs, long count)
{
	struct disk_extent e[8];
	char *buf = calloc(1, bs);
	double t0 = now(), tmap = 0;
	uint64_t off = 0;

	for (long i = 0; i < count; i++) {
		double a = now();
		int n = disk_map(d, off, bs, write, e, 8);

		tmap += now() - a;
		if (n == -EAGAIN) {
			if (disk_flush(d))
				return -1;
			i--;
			continue;
		}
		if (n <= 0)
			return -1;
		for (int k = 0; k < n; k++) {
			ssize_t r = e[k].kind != DISK_EXT_DATA ? (ssize_t)e[k].len :
				    write ? pwrite(e[k].fd, buf, e[k].len, (off_t)e[k].host_off) :
					    pread(e[k].fd, buf, e[k].len, (off_t)e[k].host_off);

			if (e[k].kind == DISK_EXT_SLOW)
				r = disk_pread(d, buf, e[k].len, e[k].off) ? -1 : (ssize_t)e[k].len;
			if (r < 0)
				return -1;
		}
		off += bs;
		if (off + bs > disk_size(d))
			off = 0;
	}
	if (write && disk_flush(d))
		return -1;
	double t = now() - t0;
	printf("%.0f req/s %.1f MiB/s map %.0f ns/req\n", count / t, count * (double)bs / t / 1048576,
	       tmap / count * 1e9);
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	struct disk *d;
	char err[512];
	int ret = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: disk-io IMAGE CMD...\n");
		return 2;
	}
	if (disk_open(&d, argv[1], -1, 0, err, sizeof(err))) {
		fprintf(stderr, "disk-io: %s\n", err);
		return 1;
	}
	for (int i = 2; i < argc && !ret; i++) {
		const char *c = argv[i];
		int left = argc - i - 1;

		if (!strcmp(c, "write") && left >= 3) {
			size_t len = num(argv[i + 2]);
			char *b = malloc(len);

			memset(b, (int)num(argv[i + 3]), len);
			ret = disk_pwrite(d, b, len, num(argv[i + 1]));
			free(b);
			i += 3;
		} else if (!strcmp(c, "verify") && left >= 3) {
			size_t len = num(argv[i + 2]);
			unsigned char *b = malloc(len);

			ret = disk_pread(d, b, len, num(argv[i + 1]));
			for (size_t k = 0; !ret && k < len; k++)
				if (b[k] != (unsigned char)num(argv[i + 3])) {
					fprintf(stderr, "disk-io: byte %zu is %#x\n", k, b[k]);
					ret = -1;
				}
			free(b);
			i += 3;
		} else if (!strcmp(c, "zero") && left >= 2) {
			ret = disk_write_zeroes(d, num(argv[i + 1]), num(argv[i + 2]), false);
			i += 2;
		} else if (!strcmp(c, "discard") && left >= 2) {
			ret = disk_discard(d, num(argv[i + 1]), num(argv[i + 2]));
			i += 2;
		} else if (!strcmp(c, "flush")) {
			ret = disk_flush(d);
		} else if (!strcmp(c, "resize") && left >= 1) {
			ret = disk_resize(d, num(argv[i + 1]), true);
			i += 1;
		} else if (!strcmp(c, "bench") && left >= 3) {
			ret = cmd_bench(d, !strcmp(argv[i + 1], "write"), num(argv[i + 2]),
					(long)num(argv[i + 3]));
			i += 3;
		} else if (!strcmp(c, "map")) {
			ret = cmd_map(d);
		} else {
			fprintf(stderr, "disk-io: bad command '%s'\n", c);
			ret = -1;
		}
		if (ret)
			fprintf(stderr, "disk-io: %s failed: %s\n", c, disk_error(d));
	}
	if (disk_close(d) && !ret) {
		fprintf(stderr, "disk-io: close: %s\n", disk_error(d));
		ret = -1;
	}
	return ret ? 1 : 0;
}
