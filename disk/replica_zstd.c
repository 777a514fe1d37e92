/* replica_zstd.c: change sets on the wire compressed with zstd (libzstd's
 * streaming API), for replication's transport (replica.h): the source
 * compresses a set before it sends it, the target turns what it received
 * back into a plain set, bounded, before making a point of it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "disk_priv.h"
#include "replica.h"

#define ZCHUNK (1u << 17)

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

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

bool replica_set_compressed(int fd)
{
	uint8_t m[4];

	/* A zstd frame's magic, little-endian (a plain set starts "CELLAINC"). */
	return pread(fd, m, sizeof(m), 0) == (ssize_t)sizeof(m) &&
	       (uint32_t)(m[0] | m[1] << 8 | m[2] << 16 | (uint32_t)m[3] << 24) == ZSTD_MAGICNUMBER;
}

int replica_set_compress(int in_fd, int out_fd, int level, uint64_t *out, char *err,
			 size_t errlen)
{
	ZSTD_CCtx *cx = ZSTD_createCCtx();
	void *ib = malloc(ZCHUNK), *ob = malloc(ZSTD_CStreamOutSize());
	size_t olen = ZSTD_CStreamOutSize();
	off_t off = 0;
	int ret = 0;

	*out = 0;
	if (!cx || !ib || !ob) {
		ret = disk_errf(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	if (ZSTD_isError(ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 1))) {
		ret = disk_errf(err, errlen, -EINVAL, "zstd: level %d refused", level);
		goto done;
	}
	for (bool last = false; !last && !ret;) {
		ssize_t n = pread(in_fd, ib, ZCHUNK, off);
		ZSTD_inBuffer in = { ib, n > 0 ? (size_t)n : 0, 0 };

		if (n < 0) {
			ret = disk_errf(err, errlen, -errno, "read: %s", strerror(errno));
			break;
		}
		off += n;
		last = n == 0;
		for (size_t rem = 1; !ret && (in.pos < in.size || (last && rem));) {
			ZSTD_outBuffer o = { ob, olen, 0 };

			rem = ZSTD_compressStream2(cx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
			if (ZSTD_isError(rem))
				ret = disk_errf(err, errlen, -EIO, "zstd: %s", ZSTD_getErrorName(rem));
			else if ((ret = write_all(out_fd, ob, o.pos)))
				disk_errf(err, errlen, ret, "write: %s", strerror(-ret));
			*out += o.pos;
			if (!last && in.pos == in.size)
				break;
		}
	}
done:
	ZSTD_freeCCtx(cx);
	free(ib);
	free(ob);
	return ret;
}

int replica_set_decompress(int in_fd, int out_fd, uint64_t max, uint64_t *out, char *err,
			   size_t errlen)
{
	ZSTD_DCtx *dx = ZSTD_createDCtx();
	void *ib = malloc(ZSTD_DStreamInSize()), *ob = malloc(ZSTD_DStreamOutSize());
	size_t ilen = ZSTD_DStreamInSize(), olen = ZSTD_DStreamOutSize(), hint = 1;
	off_t off = 0;
	int ret = 0;

	*out = 0;
	if (!dx || !ib || !ob) {
		ret = disk_errf(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	/* A window past 128 MiB is not ours: refuse what would need more memory. */
	ZSTD_DCtx_setParameter(dx, ZSTD_d_windowLogMax, 27);
	for (;;) {
		ssize_t n = pread(in_fd, ib, ilen, off);
		ZSTD_inBuffer in = { ib, n > 0 ? (size_t)n : 0, 0 };

		if (n < 0) {
			ret = disk_errf(err, errlen, -errno, "read: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			if (hint)
				ret = disk_errf(err, errlen, -EINVAL, "zstd: the stream ends inside a "
						"frame (truncated?)");
			break;
		}
		off += n;
		while (in.pos < in.size && !ret) {
			ZSTD_outBuffer o = { ob, olen, 0 };

			hint = ZSTD_decompressStream(dx, &o, &in);
			if (ZSTD_isError(hint)) {
				ret = disk_errf(err, errlen, -EINVAL, "zstd: %s",
						ZSTD_getErrorName(hint));
			} else if (*out + o.pos > max) {
				ret = disk_errf(err, errlen, -EFBIG, "the change set decompresses to "
						"more than %llu bytes", (unsigned long long)max);
			} else if ((ret = write_all(out_fd, ob, o.pos))) {
				disk_errf(err, errlen, ret, "write: %s", strerror(-ret));
			}
			*out += o.pos;
		}
		if (ret)
			break;
	}
done:
	ZSTD_freeDCtx(dx);
	free(ib);
	free(ob);
	return ret;
}

int replica_add_any(struct replica *r, int in_fd, uint64_t max, struct replica_point *added,
		    char *err, size_t errlen)
{
	uint64_t n;
	int fd, ret;

	if (!replica_set_compressed(in_fd))
		return replica_add(r, in_fd, added, err, errlen);
	/* An unnamed file in the store's directory: nothing left on a crash. */
	fd = openat(replica_dirfd(r), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return disk_errf(err, errlen, -errno, "a file for the change set: %s",
				 strerror(errno));
	ret = replica_set_decompress(in_fd, fd, max, &n, err, errlen);
	if (!ret)
		ret = replica_add(r, fd, added, err, errlen);
	close(fd);
	return ret;
}
