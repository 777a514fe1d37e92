/* disk_io.c: a tiny qemu-io for the disk library, used by the disk tool
 * tests: disk-io IMAGE CMD... where CMD is one of
 *   write OFF LEN BYTE | zero OFF LEN | discard OFF LEN | verify OFF LEN BYTE |
 *   flush | resize SIZE | map (print the extents of the whole disk)
 * Numbers are decimal or 0x hex. Exit status 0, or 1 with the reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
