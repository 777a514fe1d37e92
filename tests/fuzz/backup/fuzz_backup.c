/* fuzz_backup.c: file-controlled input of change tracking: an incremental
 * backup applied to a 1 MiB image (byte 0 % 3 == 0), a .cbt sidecar opened
 * and used (1), or a change set received by a replica (disk/replica.h: made
 * the base of an empty store, then offered again and as the next point; its
 * header's disk size set to 1 MiB so that the layers stay small; or, when
 * it starts with zstd's magic, as replication sends it: decompressed,
 * bounded to 4 MiB, then made a point) (2). The incremental gets a correct checksum trailer
 * appended so the parser behind the checksum is what gets exercised. Files
 * live in /dev/shm: 20000 inputs must run in seconds. */
#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zlib.h>

#include "cbt.h"
#include "disk.h"
#include "replica.h"

#define IMG (1u << 20)

static int memfd_with(const char *name, const uint8_t *data, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd >= 0 && size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	return fd;
}

static void fuzz_restore(struct disk *d, const uint8_t *data, size_t size)
{
	char point[CBT_NAME_MAX], since[CBT_NAME_MAX], err[256];
	uint32_t crc = htole32((uint32_t)crc32(0, data, (uInt)size));
	int fd = memfd_with("incr", data, size);

	if (fd < 0)
		return;
	if (write(fd, &crc, 4) == 4 && write(fd, "CEND", 4) == 4)
		(void)!cbt_restore_incremental(d, fd, point, since, err, sizeof(err));
	close(fd);
}

/* The replica store's directory: flat, its files only. */
static void rm_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(path);
}

static void fuzz_replica(const char *dir, const uint8_t *data, size_t size)
{
	uint64_t one = htole64(IMG);
	char path[128], err[256];
	struct replica *r;
	uint8_t *buf;
	int fd;

	snprintf(path, sizeof(path), "%s/rep", dir);
	if (size >= 4 && data[0] == 0x28 && data[1] == 0xb5 && data[2] == 0x2f && data[3] == 0xfd) {
		/* As it came over the wire: compressed (zstd), bounded. */
		fd = memfd_with("zset", data, size);
		if (fd >= 0 && !replica_open(&r, path, true, err, sizeof(err))) {
			(void)!replica_add_any(r, fd, 4u << 20, NULL, err, sizeof(err));
			replica_close(r);
		}
		if (fd >= 0)
			close(fd);
		rm_dir(path);
		return;
	}
	if (size < 24 || !(buf = malloc(size)))
		return;
	memcpy(buf, data, size);
	memcpy(buf + 16, &one, 8);
	fd = memfd_with("set", buf, size);
	free(buf);
	if (fd < 0)
		return;
	{
		uint8_t tail[8];
		uint32_t crc;

		/* The checksum over what the memfd holds (the size patched). */
		buf = malloc(size);
		if (buf && pread(fd, buf, size, 0) == (ssize_t)size) {
			crc = htole32((uint32_t)crc32(0, buf, (uInt)size));
			memcpy(tail, &crc, 4);
			memcpy(tail + 4, "CEND", 4);
			(void)!write(fd, tail, 8);
		}
		free(buf);
	}
	if (!replica_open(&r, path, true, err, sizeof(err))) {
		(void)!replica_add(r, fd, NULL, err, sizeof(err));
		(void)!replica_add(r, fd, NULL, err, sizeof(err));
		(void)!replica_merge_oldest(r, err, sizeof(err));
		replica_close(r);
	}
	close(fd);
	rm_dir(path);
}

static void fuzz_cbt(const char *img_path, const uint8_t *data, size_t size)
{
	char path[128], err[256];
	struct cbt *c;
	FILE *f;

	snprintf(path, sizeof(path), "%s.cbt", img_path);
	f = fopen(path, "w");
	if (!f)
		return;
	fwrite(data, 1, size, f);
	fclose(f);
	if (cbt_open(&c, img_path, IMG, err, sizeof(err)))
		return;
	cbt_mark(c, 4096, 200000);
	{
		const char *names[CBT_MAX_POINTS];
		bool valid[CBT_MAX_POINTS];
		unsigned n = cbt_points(c, names, valid);
		int e;

		for (unsigned i = 0; i < n; i++)
			(void)cbt_point_bits(c, names[i], &e);
	}
	(void)!cbt_point_start(c, "fuzz");
	cbt_close(c, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/dev/shm/cella-fuzz-backup-XXXXXX", img[64], err[256];
	struct disk_create_opts o = { .fmt = DISK_FMT_RAW, .size = IMG };
	struct disk *d;

	if (!size || !mkdtemp(dir))
		return 0;
	snprintf(img, sizeof(img), "%s/img", dir);
	if (!disk_create(img, &o, err, sizeof(err))) {
		if (data[0] % 3 == 1) {
			fuzz_cbt(img, data + 1, size - 1);
		} else if (data[0] % 3 == 2) {
			fuzz_replica(dir, data + 1, size - 1);
		} else if (!disk_open(&d, img, DISK_FMT_RAW, 0, err, sizeof(err))) {
			fuzz_restore(d, data + 1, size - 1);
			disk_close(d);
		}
	}
	snprintf(err, sizeof(err), "%s/img.cbt", dir);
	unlink(err);
	unlink(img);
	rmdir(dir);
	return 0;
}
