/* cbt_backup.c: full and incremental backups driven by change tracking, and
 * restoring incrementals onto a full image (format in cbt.h). */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "cbt.h"
#include "disk.h"
#include "disk_priv.h"

#define CHUNK    (1u << 20)
#define HDR_SIZE (8 + 4 + 4 + 8 + 8 + 8 + CBT_NAME_MAX * 2)
#define TRAILER  "CEND"

static int write_all(int fd, const void *buf, size_t len, uLong *crc)
{
	const uint8_t *p = buf;

	if (crc)
		*crc = crc32(*crc, buf, (uInt)len);
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENODATA;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return !n || (!p[0] && !memcmp(p, p + 1, n - 1));
}

static int start_point(struct cbt *c, int out_fd, const char *point, char *err, size_t errlen)
{
	int ret;

	if (fsync(out_fd) < 0)
		return disk_errf(err, errlen, -errno, "cannot sync the backup: %s",
		                 strerror(errno));
	ret = cbt_point_start(c, point);
	if (ret)
		return disk_errf(err, errlen, ret, "cannot start point '%s': %s", point,
		                 ret == -EINVAL ? "name must be 1-31 bytes" : strerror(-ret));
	return 0;
}

int cbt_backup_full(struct disk *d, struct cbt *c, const char *point, int out_fd, uint64_t *bytes,
                    char *err, size_t errlen)
{
	uint64_t size = disk_size(d);
	uint8_t *buf = malloc(CHUNK);
	int ret = 0;

	*bytes = 0;
	if (!buf)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	if (ftruncate(out_fd, 0) < 0 || ftruncate(out_fd, (off_t)size) < 0) {
		ret = disk_errf(err, errlen, -errno, "cannot size the backup: %s", strerror(errno));
		goto out;
	}
	for (uint64_t off = 0; off < size && !ret; off += CHUNK) {
		size_t n = (size_t)(size - off < CHUNK ? size - off : CHUNK);

		ret = disk_progress_report(d, off, size) ?: disk_pread(d, buf, n, off);
		if (ret) {
			ret = disk_errf(err, errlen, ret, "read at %llu: %s",
			                (unsigned long long)off, disk_error(d));
			break;
		}
		if (all_zero(buf, n))
			continue; /* a hole in the backup reads as zeroes */
		if (pwrite(out_fd, buf, n, (off_t)off) != (ssize_t)n)
			ret = disk_errf(err, errlen, -EIO, "write: %s", strerror(errno));
		*bytes += n;
	}
	if (!ret)
		ret = start_point(c, out_fd, point, err, errlen);
out:
	free(buf);
	return ret;
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* Runs of set bits: extents, clipped to the disk size. */
static uint64_t incr_extents(const uint8_t *bits, uint64_t nr_blocks, unsigned ubits, uint64_t size,
                             uint64_t *ext, uint64_t *data)
{
	uint64_t n = 0;

	*data = 0;
	for (uint64_t b = 0; b < nr_blocks;) {
		uint64_t e;

		if (!(bits[b / 8] & (1u << (b & 7)))) {
			b++;
			continue;
		}
		for (e = b; e < nr_blocks && (bits[e / 8] & (1u << (e & 7))); e++)
			;
		if (ext) {
			uint64_t off = b << ubits, end = e << ubits;

			if (end > size)
				end = size;
			ext[2 * n] = off;
			ext[2 * n + 1] = end - off;
			*data += end - off;
		}
		n++;
		b = e;
	}
	return n;
}

int cbt_incr_meta(const uint8_t *bits, uint64_t nr_blocks, uint64_t size, const char *point,
                  const char *since, uint8_t **meta, size_t *meta_len, uint64_t *data)
{
	return cbt_incr_meta_grain(bits, nr_blocks, CBT_BLOCK_BITS, size, point, since, meta,
	                           meta_len, data);
}

static bool block_size_ok(uint32_t bs)
{
	return bs == CBT_BLOCK || bs == CBT_FINE_BLOCK;
}

int cbt_incr_block_size(int fd)
{
	uint8_t hdr[16];
	uint32_t bs;

	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || memcmp(hdr, CBT_INCR_MAGIC, 8))
		return -EINVAL;
	memcpy(&bs, hdr + 12, 4);
	bs = le32toh(bs);
	return block_size_ok(bs) ? (int)bs : -EINVAL;
}

int cbt_incr_meta_grain(const uint8_t *bits, uint64_t nr_blocks, unsigned ubits, uint64_t size,
                        const char *point, const char *since, uint8_t **meta, size_t *meta_len,
                        uint64_t *data)
{
	uint64_t nr = incr_extents(bits, nr_blocks, ubits, size, NULL, data), *ext;
	uint8_t *hdr;

	if (strlen(point) >= CBT_NAME_MAX || !point[0])
		return -EINVAL;
	if (nr > (SIZE_MAX - HDR_SIZE) / 32)
		return -ENOMEM;
	hdr = calloc(1, HDR_SIZE + nr * 16);
	ext = malloc((nr ? nr : 1) * 16);
	if (!hdr || !ext) {
		free(hdr);
		free(ext);
		return -ENOMEM;
	}
	incr_extents(bits, nr_blocks, ubits, size, ext, data);
	memcpy(hdr, CBT_INCR_MAGIC, 8);
	{
		uint32_t v = htole32(CBT_INCR_VERSION), bs = htole32(1u << ubits);

		memcpy(hdr + 8, &v, 4);
		memcpy(hdr + 12, &bs, 4);
	}
	put64(hdr + 16, size);
	put64(hdr + 24, nr);
	put64(hdr + 32, *data);
	memcpy(hdr + 40, point, strlen(point));
	memcpy(hdr + 40 + CBT_NAME_MAX, since, strnlen(since, CBT_NAME_MAX - 1));
	for (uint64_t i = 0; i < nr; i++) {
		put64(hdr + HDR_SIZE + 16 * i, ext[2 * i]);
		put64(hdr + HDR_SIZE + 16 * i + 8, ext[2 * i + 1]);
	}
	free(ext);
	*meta = hdr;
	*meta_len = HDR_SIZE + nr * 16;
	return 0;
}

void cbt_incr_trailer(uint32_t crc, uint8_t out[8])
{
	uint32_t v = htole32(crc);

	memcpy(out, &v, 4);
	memcpy(out + 4, TRAILER, 4);
}

int cbt_backup_incremental(struct disk *d, struct cbt *c, const char *since, const char *point,
                           int out_fd, uint64_t *bytes, char *err, size_t errlen)
{
	uint8_t *meta = NULL, *buf = NULL;
	size_t meta_len = 0;
	uint64_t size = disk_size(d), data, nr;
	const uint8_t *bits;
	uLong crc = crc32(0, NULL, 0);
	int ret;

	*bytes = 0;
	bits = cbt_point_bits(c, since, &ret);
	if (!bits)
		return disk_errf(err, errlen, ret,
		                 ret == -ESTALE
		                     ? "point '%s' is invalid (the host crashed while the "
		                       "disk was in use): take a full backup"
		                     : "no point '%s' in the tracking file",
		                 since);
	ret = cbt_incr_meta(bits, cbt_nr_blocks(c), size, point, since, &meta, &meta_len, &data);
	if (ret)
		return disk_errf(err, errlen, ret, ret == -EINVAL ? "point name must be 1-31 bytes"
		                                                   : "out of memory");
	nr = (meta_len - HDR_SIZE) / 16;
	buf = malloc(CHUNK);
	if (!buf) {
		ret = disk_errf(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (ftruncate(out_fd, 0) < 0 || (ret = write_all(out_fd, meta, meta_len, &crc)))
		goto werr;
	for (uint64_t i = 0, done = 0; i < nr; i++) {
		uint64_t eoff = get64(meta + HDR_SIZE + 16 * i), elen = get64(meta + HDR_SIZE + 16 * i + 8);

		for (uint64_t off = 0; off < elen; off += CHUNK) {
			size_t n = (size_t)(elen - off < CHUNK ? elen - off : CHUNK);

			ret = disk_progress_report(d, done, data) ?: disk_pread(d, buf, n, eoff + off);
			done += n;
			if (ret) {
				ret = disk_errf(err, errlen, ret, "read: %s", disk_error(d));
				goto out;
			}
			if ((ret = write_all(out_fd, buf, n, &crc)))
				goto werr;
		}
	}
	{
		uint8_t t[8];

		cbt_incr_trailer((uint32_t)crc, t);
		if ((ret = write_all(out_fd, t, sizeof(t), NULL)))
			goto werr;
	}
	*bytes = data;
	ret = start_point(c, out_fd, point, err, errlen);
	goto out;
werr:
	ret = disk_errf(err, errlen, ret ? ret : -errno, "cannot write the backup: %s",
	                strerror(ret ? -ret : errno));
out:
	free(meta);
	free(buf);
	return ret;
}

/* Header and extent list of an incremental: validated against the file. */
static int incr_read_meta(int fd, uint64_t disk_sz, uint64_t **extp, uint64_t *nrp, char *point,
                          char *since, char *err, size_t errlen)
{
	uint8_t hdr[HDR_SIZE];
	uint32_t ver, bs;
	uint64_t size, nr, data, sum = 0, prev_end = 0, *ext;
	struct stat st;
	int ret;

	if (fstat(fd, &st) < 0)
		return disk_errf(err, errlen, -errno, "%s", strerror(errno));
	if (lseek(fd, 0, SEEK_SET) < 0 || read_all(fd, hdr, sizeof(hdr)) ||
	    memcmp(hdr, CBT_INCR_MAGIC, 8))
		return disk_errf(err, errlen, -EINVAL, "not an incremental backup (bad magic)");
	memcpy(&ver, hdr + 8, 4);
	memcpy(&bs, hdr + 12, 4);
	size = get64(hdr + 16);
	nr = get64(hdr + 24);
	data = get64(hdr + 32);
	if (le32toh(ver) != CBT_INCR_VERSION || !block_size_ok(le32toh(bs)))
		return disk_errf(err, errlen, -EINVAL, "unsupported version %u or block size %u",
		                 le32toh(ver), le32toh(bs));
	if (size != disk_sz)
		return disk_errf(err, errlen, -EINVAL, "backup of a %llu-byte disk, image has %llu",
		                 (unsigned long long)size, (unsigned long long)disk_sz);
	if (!memchr(hdr + 40, 0, CBT_NAME_MAX) || !memchr(hdr + 40 + CBT_NAME_MAX, 0, CBT_NAME_MAX))
		return disk_errf(err, errlen, -EINVAL, "point names are not terminated");
	memcpy(point, hdr + 40, CBT_NAME_MAX);
	memcpy(since, hdr + 40 + CBT_NAME_MAX, CBT_NAME_MAX);
	if (nr > size / le32toh(bs) + 1 || data > size ||
	    (uint64_t)st.st_size != HDR_SIZE + nr * 16 + data + 8)
		return disk_errf(err, errlen, -EINVAL,
		                 "extent count or data size do not match the "
		                 "file size (truncated?)");
	ext = malloc((nr ? nr : 1) * 16);
	if (!ext)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < nr; i++) {
		uint8_t e[16];

		if ((ret = read_all(fd, e, sizeof(e)))) {
			free(ext);
			return disk_errf(err, errlen, ret, "cannot read extent %llu",
			                 (unsigned long long)i);
		}
		ext[2 * i] = get64(e);
		ext[2 * i + 1] = get64(e + 8);
		if (ext[2 * i] < prev_end || !ext[2 * i + 1] || ext[2 * i] > size ||
		    ext[2 * i + 1] > size - ext[2 * i]) {
			free(ext);
			return disk_errf(err, errlen, -EINVAL, "extent %llu out of order or range",
			                 (unsigned long long)i);
		}
		prev_end = ext[2 * i] + ext[2 * i + 1];
		sum += ext[2 * i + 1];
	}
	if (sum != data) {
		free(ext);
		return disk_errf(err, errlen, -EINVAL,
		                 "extents add up to %llu bytes, header says %llu",
		                 (unsigned long long)sum, (unsigned long long)data);
	}
	*extp = ext;
	*nrp = nr;
	return 0;
}

int cbt_incr_header(int fd, uint64_t *disk_sz, char *point, char *since, char *err,
		    size_t errlen)
{
	uint8_t hdr[HDR_SIZE];
	uint32_t ver, bs;

	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr) || memcmp(hdr, CBT_INCR_MAGIC, 8))
		return disk_errf(err, errlen, -EINVAL, "not an incremental backup (bad magic)");
	memcpy(&ver, hdr + 8, 4);
	memcpy(&bs, hdr + 12, 4);
	if (le32toh(ver) != CBT_INCR_VERSION || !block_size_ok(le32toh(bs)))
		return disk_errf(err, errlen, -EINVAL, "unsupported version %u or block size %u",
		                 le32toh(ver), le32toh(bs));
	if (!memchr(hdr + 40, 0, CBT_NAME_MAX) || !memchr(hdr + 40 + CBT_NAME_MAX, 0, CBT_NAME_MAX))
		return disk_errf(err, errlen, -EINVAL, "point names are not terminated");
	*disk_sz = get64(hdr + 16);
	memcpy(point, hdr + 40, CBT_NAME_MAX);
	memcpy(since, hdr + 40 + CBT_NAME_MAX, CBT_NAME_MAX);
	return 0;
}

static int incr_check_crc(int fd, uint8_t *buf, char *err, size_t errlen)
{
	struct stat st;
	uLong crc = crc32(0, NULL, 0);
	uint8_t t[8];
	uint32_t want;
	uint64_t left;

	if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return disk_errf(err, errlen, -errno, "%s", strerror(errno));
	for (left = (uint64_t)st.st_size - 8; left;) {
		size_t n = (size_t)(left < CHUNK ? left : CHUNK);

		if (read_all(fd, buf, n))
			return disk_errf(err, errlen, -EIO, "short read");
		crc = crc32(crc, buf, (uInt)n);
		left -= n;
	}
	if (read_all(fd, t, 8) || memcmp(t + 4, TRAILER, 4))
		return disk_errf(err, errlen, -EINVAL, "missing trailer (truncated?)");
	memcpy(&want, t, 4);
	if (le32toh(want) != (uint32_t)crc)
		return disk_errf(err, errlen, -EINVAL, "checksum mismatch: the file is corrupt");
	return 0;
}

int cbt_restore_incremental(struct disk *d, int in_fd, char *point, char *since, char *err,
                            size_t errlen)
{
	uint64_t *ext = NULL, nr = 0;
	uint8_t *buf = malloc(CHUNK);
	int ret;

	if (!buf)
		return disk_errf(err, errlen, -ENOMEM, "out of memory");
	/* Whole file checked before the first byte is written. */
	ret = incr_check_crc(in_fd, buf, err, errlen);
	if (!ret)
		ret = incr_read_meta(in_fd, disk_size(d), &ext, &nr, point, since, err, errlen);
	for (uint64_t i = 0; i < nr && !ret; i++) {
		for (uint64_t off = 0; off < ext[2 * i + 1] && !ret; off += CHUNK) {
			size_t n =
			    (size_t)(ext[2 * i + 1] - off < CHUNK ? ext[2 * i + 1] - off : CHUNK);

			if (read_all(in_fd, buf, n))
				ret = disk_errf(err, errlen, -EIO, "short read of the data");
			else if ((ret = disk_pwrite(d, buf, n, ext[2 * i] + off)))
				ret = disk_errf(err, errlen, ret, "write: %s", disk_error(d));
		}
	}
	if (!ret && (ret = disk_flush(d)))
		ret = disk_errf(err, errlen, ret, "flush: %s", disk_error(d));
	free(ext);
	free(buf);
	return ret;
}
