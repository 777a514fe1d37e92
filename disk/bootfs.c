/* bootfs.c: read an image's default boot entry through libext2fs, whose
 * I/O goes through the disk library (bootfs.h). Paths are resolved here,
 * one component at a time, so a symlink or ".." cannot leave the file
 * system's root. */
#include "bootfs.h"

#include <errno.h>
#include <ext2fs/ext2_err.h>
#include <ext2fs/ext2fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bootcfg.h"
#include "disk.h"
#include "parttab.h"

#define LINKS_MAX 40
#define DEPTH_MAX 64
#define BLS_MAX   256
/* try_fs: a file the configuration names is missing (an -ENOENT that stops
 * the search instead of moving on to the next partition). */
#define BOOTFS_MISSING (-ENOENT - 1000)

struct chan {
	struct disk *d;
	uint64_t off, len; /* the partition, bytes */
};

static errcode_t bio_read64(io_channel c, unsigned long long block, int count, void *data)
{
	struct chan *p = c->private_data;
	uint64_t size = count < 0 ? (uint64_t)-(int64_t)count : (uint64_t)count * (uint64_t)c->block_size;
	uint64_t off = block * (uint64_t)c->block_size;

	if (off > p->len || size > p->len - off)
		return EXT2_ET_SHORT_READ;
	return disk_pread(p->d, data, (size_t)size, p->off + off) < 0 ? EXT2_ET_SHORT_READ : 0;
}

static errcode_t bio_read(io_channel c, unsigned long block, int count, void *data)
{
	return bio_read64(c, block, count, data);
}

static errcode_t bio_write(io_channel c, unsigned long block, int count, const void *data)
{
	(void)c, (void)block, (void)count, (void)data;
	return EROFS;
}

static errcode_t bio_write64(io_channel c, unsigned long long block, int count, const void *data)
{
	(void)c, (void)block, (void)count, (void)data;
	return EROFS;
}

static errcode_t bio_set_blksize(io_channel c, int blksize)
{
	c->block_size = blksize;
	return 0;
}

static errcode_t bio_flush(io_channel c)
{
	(void)c;
	return 0;
}

static errcode_t bio_close(io_channel c)
{
	if (--c->refcount > 0)
		return 0;
	free(c->name);
	free(c);
	return 0;
}

static errcode_t bio_open(const char *name, int flags, io_channel *out);

/* libext2fs wants a mutable io_manager; nothing writes it. */
static const struct struct_io_manager bootfs_io = {
	.magic = EXT2_ET_MAGIC_IO_MANAGER,
	.name = "cella disk library",
	.open = bio_open,
	.close = bio_close,
	.set_blksize = bio_set_blksize,
	.read_blk = bio_read,
	.write_blk = bio_write,
	.flush = bio_flush,
	.read_blk64 = bio_read64,
	.write_blk64 = bio_write64,
};

/* The channel's context travels in its name ("cella-bootfs:%p"): the only
 * argument ext2fs_open2 passes to the manager's open. */
static errcode_t bio_open(const char *name, int flags, io_channel *out)
{
	void *p = NULL;
	io_channel c;

	if (sscanf(name, "cella-bootfs:%p", &p) != 1 || !p)
		return EXT2_ET_BAD_DEVICE_NAME;
	if (flags & IO_FLAG_RW)
		return EROFS;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->name = strdup(name))) {
		free(c);
		return ENOMEM;
	}
	c->magic = EXT2_ET_MAGIC_IO_CHANNEL;
	c->manager = (io_manager)(uintptr_t)&bootfs_io;
	c->block_size = 1024;
	c->refcount = 1;
	c->private_data = p;
	*out = c;
	return 0;
}

struct ctx {
	ext2_filsys fs;
	const char *label; /* "partition 2 (ext4)" */
	char *err;
	size_t errlen;
};

static int cfail(struct ctx *x, int ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfail(struct ctx *x, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(x->err, x->errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static int read_link(struct ctx *x, ext2_ino_t ino, struct ext2_inode *in, char *buf, size_t buflen)
{
	uint64_t size = EXT2_I_SIZE(in);
	ext2_file_t f;
	unsigned got = 0;
	errcode_t rc;

	if (size == 0 || size >= buflen)
		return -EINVAL;
	if (ext2fs_is_fast_symlink(in)) {
		memcpy(buf, (const char *)in->i_block, (size_t)size);
	} else if (in->i_flags & EXT4_INLINE_DATA_FL) {
		size_t sz = 0;
		char tmp[EXT2_N_BLOCKS * 4 + 256];

		if (size > sizeof(tmp) || ext2fs_inline_data_size(x->fs, ino, &sz) || sz > sizeof(tmp) ||
		    ext2fs_inline_data_get(x->fs, ino, in, tmp, &sz) || sz < size)
			return -EIO;
		memcpy(buf, tmp, (size_t)size);
	} else {
		if (ext2fs_file_open(x->fs, ino, 0, &f))
			return -EIO;
		rc = ext2fs_file_read(f, buf, (unsigned)size, &got);
		ext2fs_file_close(f);
		if (rc || got != size)
			return -EIO;
	}
	buf[size] = '\0';
	return memchr(buf, '\0', (size_t)size) ? -EINVAL : 0;
}

/* path -> inode, following symlinks inside the file system only. */
static int resolve(struct ctx *x, const char *path, ext2_ino_t *out, struct ext2_inode *in)
{
	ext2_ino_t stack[DEPTH_MAX];
	unsigned depth = 0, links = 0;
	char rem[8192], target[4096];

	stack[0] = EXT2_ROOT_INO;
	if (strlen(path) >= sizeof(rem))
		return cfail(x, -ENAMETOOLONG, "%s: path too long", path);
	strcpy(rem, path);
	for (;;) {
		char *c = rem, *rest;
		size_t n;
		ext2_ino_t ino;

		while (*c == '/')
			c++;
		if (!*c)
			break;
		n = strcspn(c, "/");
		rest = c + n;
		if (n == 1 && c[0] == '.') {
			memmove(rem, rest, strlen(rest) + 1);
			continue;
		}
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (!depth)
				return cfail(x, -EXDEV, "%s escapes the file system (\"..\" above its "
					     "root)", path);
			depth--;
			memmove(rem, rest, strlen(rest) + 1);
			continue;
		}
		if (ext2fs_lookup(x->fs, stack[depth], c, (int)n, NULL, &ino))
			return -ENOENT;
		if (ext2fs_read_inode(x->fs, ino, in))
			return cfail(x, -EIO, "%s: cannot read its inode", path);
		if (LINUX_S_ISLNK(in->i_mode)) {
			size_t tl;

			if (++links > LINKS_MAX)
				return cfail(x, -ELOOP, "%s: more than %d symbolic links", path, LINKS_MAX);
			if (read_link(x, ino, in, target, sizeof(target)))
				return cfail(x, -EIO, "%s: an unreadable symbolic link", path);
			tl = strlen(target);
			if (tl + strlen(rest) + 2 > sizeof(rem))
				return cfail(x, -ENAMETOOLONG, "%s: path too long", path);
			if (target[0] == '/')
				depth = 0;
			memmove(rem + tl + 1, rest, strlen(rest) + 1);
			memcpy(rem, target, tl);
			rem[tl] = '/';
			continue;
		}
		if (depth + 1 >= DEPTH_MAX)
			return cfail(x, -ELOOP, "%s: nested too deep", path);
		stack[++depth] = ino;
		memmove(rem, rest, strlen(rest) + 1);
	}
	*out = stack[depth];
	return ext2fs_read_inode(x->fs, *out, in) ? cfail(x, -EIO, "%s: cannot read its inode",
							  path) : 0;
}

static bool is_dir(struct ctx *x, const char *path)
{
	struct ext2_inode in;
	ext2_ino_t ino;

	return !resolve(x, path, &ino, &in) && LINUX_S_ISDIR(in.i_mode);
}

/* A regular file, whole, appended to *buf (at most max bytes in all).
 * -ENOENT when it does not exist (err not set). */
static int read_file(struct ctx *x, const char *what, const char *path, uint64_t max,
		     uint8_t **buf, size_t *len)
{
	struct ext2_inode in;
	ext2_ino_t ino;
	ext2_file_t f;
	uint64_t size, done = 0;
	uint8_t *nb;
	int ret = resolve(x, path, &ino, &in);

	if (ret)
		return ret;
	if (!LINUX_S_ISREG(in.i_mode))
		return cfail(x, -EINVAL, "%s %s: not a regular file", what, path);
	size = EXT2_I_SIZE(&in);
	if (size > max || *len + size > max)
		return cfail(x, -EFBIG, "%s %s: %llu bytes, more than the limit of %llu MiB", what,
			     path, (unsigned long long)size, (unsigned long long)(max >> 20));
	nb = realloc(*buf, *len + (size_t)size + 1);
	if (!nb)
		return cfail(x, -ENOMEM, "%s %s: out of memory", what, path);
	*buf = nb;
	if (ext2fs_file_open(x->fs, ino, 0, &f))
		return cfail(x, -EIO, "%s %s: cannot open it", what, path);
	while (done < size) {
		unsigned got = 0, want = size - done > (1u << 30) ? 1u << 30 : (unsigned)(size - done);

		if (ext2fs_file_read(f, nb + *len + done, want, &got) || !got) {
			ext2fs_file_close(f);
			return cfail(x, -EIO, "%s %s: read error", what, path);
		}
		done += got;
	}
	ext2fs_file_close(f);
	*len += (size_t)size;
	nb[*len] = '\0';
	return 0;
}

/* A small text file ("" read as NULL, *len 0) or -ENOENT. */
static int read_text(struct ctx *x, const char *path, char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	return read_file(x, "file", path, BOOTCFG_MAX_SIZE, (uint8_t **)buf, len);
}

static void load_grubenv(struct ctx *x, const char *dir, struct boot_vars *vars)
{
	char path[512], *buf, e[128];
	size_t len;

	snprintf(path, sizeof(path), "%s/grubenv", dir);
	if (!read_text(x, path, &buf, &len) && grubenv_parse(vars, buf, len, e, sizeof(e)))
		boot_vars_init(vars); /* not an environment block: ignored, as GRUB does */
	if (!len) /* read_text set no err on success; clear a stale one */
		x->err[0] = '\0';
	free(buf);
}

struct bls_list {
	unsigned nr;
	char *name[BLS_MAX];
};

static int bls_dirent(struct ext2_dir_entry *de, int offset, int blocksize, char *buf, void *priv)
{
	struct bls_list *l = priv;
	unsigned n = ext2fs_dirent_name_len(de);

	(void)offset, (void)blocksize, (void)buf;
	if (n > 5 && n < 256 && !memcmp(de->name + n - 5, ".conf", 5) && l->nr < BLS_MAX &&
	    !memchr(de->name, '\0', n) && !memchr(de->name, '/', n))
		l->name[l->nr++] = strndup(de->name, n);
	return 0;
}

static int try_bls(struct ctx *x, const char *p, struct boot_entry *e, char *from, size_t fromlen)
{
	struct bls_list l = { 0 };
	struct boot_vars *vars = malloc(sizeof(*vars));
	struct ext2_inode in;
	ext2_ino_t dir;
	char path[512], want[256] = "", *buf = NULL;
	size_t len;
	int ret = -ENOENT, pick;

	snprintf(path, sizeof(path), "%s/loader/entries", p);
	if (!vars)
		return cfail(x, -ENOMEM, "out of memory");
	boot_vars_init(vars);
	if (resolve(x, path, &dir, &in) || !LINUX_S_ISDIR(in.i_mode))
		goto out;
	if (ext2fs_dir_iterate(x->fs, dir, 0, NULL, bls_dirent, &l)) {
		ret = cfail(x, -EIO, "%s: cannot read the directory", path);
		goto out;
	}
	if (!l.nr)
		goto out;
	snprintf(path, sizeof(path), "%s/grub2", p);
	load_grubenv(x, path, vars);
	if (!boot_vars_get(vars, "saved_entry")) {
		snprintf(path, sizeof(path), "%s/grub", p);
		load_grubenv(x, path, vars);
	}
	if (boot_vars_get(vars, "saved_entry")) {
		snprintf(want, sizeof(want), "%s", boot_vars_get(vars, "saved_entry"));
	} else {
		snprintf(path, sizeof(path), "%s/loader/loader.conf", p);
		if (!read_text(x, path, &buf, &len))
			bls_loader_default(buf, len, want, sizeof(want));
		free(buf);
		buf = NULL;
	}
	pick = bls_pick_default((const char *const *)l.name, l.nr, want);
	snprintf(path, sizeof(path), "%s/loader/entries/%s", p, l.name[pick]);
	if ((ret = read_text(x, path, &buf, &len))) {
		if (ret == -ENOENT)
			ret = cfail(x, -EIO, "%s: unreadable", path);
		goto out;
	}
	ret = bls_entry_parse(buf, len, path, vars, e, x->err, x->errlen);
	snprintf(from, fromlen, "%.200s, entry \"%.150s\"", path, e->title);
out:
	for (unsigned i = 0; i < l.nr; i++)
		free(l.name[i]);
	free(buf);
	free(vars);
	return ret;
}

static int try_grub(struct ctx *x, const char *p, struct boot_entry *e, char *from, size_t fromlen)
{
	static const char *const dirs[] = { "grub", "grub2" };

	for (unsigned i = 0; i < 2; i++) {
		struct boot_vars *vars;
		char path[512], *buf;
		size_t len;
		int ret;

		snprintf(path, sizeof(path), "%s/%s/grub.cfg", p, dirs[i]);
		ret = read_text(x, path, &buf, &len);
		if (ret == -ENOENT)
			continue;
		if (ret)
			return ret;
		if (!(vars = malloc(sizeof(*vars)))) {
			free(buf);
			return cfail(x, -ENOMEM, "out of memory");
		}
		boot_vars_init(vars);
		snprintf(path, sizeof(path), "%s/%s", p, dirs[i]);
		load_grubenv(x, path, vars);
		ret = grubcfg_default_entry(buf ? buf : "", len, vars, e, x->err, x->errlen);
		if (ret) { /* name the file in the message */
			char msg[384];

			snprintf(msg, sizeof(msg), "%s", x->err);
			cfail(x, -EINVAL, "%s/%s/%s", p, dirs[i], msg);
		}
		snprintf(from, fromlen, "%s/%s/grub.cfg, entry \"%s\"", p, dirs[i], e->title);
		free(vars);
		free(buf);
		return ret ? -EINVAL : 0;
	}
	return -ENOENT;
}

/* Debian's links: /vmlinuz and /initrd.img (or in /boot). */
static int try_links(struct ctx *x, const char *p, struct boot_entry *e, char *from, size_t fromlen)
{
	const char *dirs[2] = { p[0] ? "" : NULL, p };

	for (unsigned i = 0; i < 2; i++) {
		struct ext2_inode in;
		ext2_ino_t ino;

		if (!dirs[i])
			continue;
		memset(e, 0, sizeof(*e));
		snprintf(e->kernel, sizeof(e->kernel), "%s/vmlinuz", dirs[i]);
		if (resolve(x, e->kernel, &ino, &in) == -ENOENT)
			continue;
		snprintf(e->initrd[0], sizeof(e->initrd[0]), "%s/initrd.img", dirs[i]);
		e->nr_initrd = resolve(x, e->initrd[0], &ino, &in) == -ENOENT ? 0 : 1;
		snprintf(e->title, sizeof(e->title), "%.200s", e->kernel);
		snprintf(from, fromlen, "%.300s", e->kernel);
		x->err[0] = '\0';
		return 0;
	}
	return -ENOENT;
}

/* The default entry of one ext file system: 0, -ENOENT with err saying why
 * there is nothing to boot here, or another -errno (stop looking). */
static int try_fs(struct ctx *x, uint64_t max_kernel, uint64_t max_initrd, struct bootfs_result *r)
{
	struct boot_entry *e = calloc(1, sizeof(*e));
	char from[384] = "";
	const char *p = is_dir(x, "/boot") ? "/boot" : "";
	int ret;

	if (!e)
		return cfail(x, -ENOMEM, "out of memory");
	x->err[0] = '\0';
	ret = try_bls(x, p, e, from, sizeof(from));
	if (ret == -ENOENT)
		ret = try_grub(x, p, e, from, sizeof(from));
	if (ret == -ENOENT)
		ret = try_links(x, p, e, from, sizeof(from));
	if (ret == -ENOENT) {
		if (p[0])
			cfail(x, -ENOENT, "no kernel: /boot has no loader/entries, grub/grub.cfg, "
			      "grub2/grub.cfg or vmlinuz");
		else
			cfail(x, -ENOENT, "no /boot (and no boot loader files at the root)");
		goto out;
	}
	if (ret)
		goto out;
	ret = read_file(x, "kernel", e->kernel, max_kernel, &r->kernel, &r->kernel_len);
	if (ret == -ENOENT)
		ret = cfail(x, -ENOENT, "no kernel: %s (from %s) not found", e->kernel, from);
	for (unsigned i = 0; !ret && i < e->nr_initrd; i++) {
		ret = read_file(x, "initrd", e->initrd[i], max_initrd, &r->initrd, &r->initrd_len);
		if (ret == -ENOENT)
			ret = cfail(x, -ENOENT, "no initrd: %s (from %s) not found", e->initrd[i], from);
	}
	if (ret) {
		if (ret == -ENOENT) /* a named file is missing: do not look further */
			ret = BOOTFS_MISSING;
		goto out;
	}
	if (!r->kernel_len) {
		ret = cfail(x, -EINVAL, "kernel %s: empty file", e->kernel);
		goto out;
	}
	snprintf(r->cmdline, sizeof(r->cmdline), "%s", e->options);
	snprintf(r->from, sizeof(r->from), "%.60s: %.250s: %.190s", x->label, from, e->kernel);
out:
	free(e);
	return ret;
}

static int disk_rd(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct disk *d = ctx;

	if (off > disk_size(d) || len > disk_size(d) - off)
		return -EINVAL;
	return disk_pread(d, buf, len, off) < 0 ? -EIO : 0;
}

/* Open the ext file system at [off, off+len) and look in it. */
static int try_ext(struct disk *d, uint64_t off, uint64_t len, const char *label, uint64_t max_kernel,
		   uint64_t max_initrd, struct bootfs_result *r, char *err, size_t errlen)
{
	struct chan ch = { .d = d, .off = off, .len = len };
	struct ctx x = { .label = label, .err = err, .errlen = errlen };
	char name[64];
	errcode_t rc;
	int ret;

	snprintf(name, sizeof(name), "cella-bootfs:%p", (void *)&ch);
	rc = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS, 0, 0, (io_manager)(uintptr_t)&bootfs_io, &x.fs);
	if (rc) {
		snprintf(err, errlen, "%s: cannot read the file system: %s", label, error_message(rc));
		return -EINVAL;
	}
	ret = try_fs(&x, max_kernel, max_initrd, r);
	ext2fs_close_free(&x.fs);
	return ret;
}

static bool is_ext(const char *fs)
{
	return fs && !strncmp(fs, "ext", 3);
}

int bootfs_read(struct disk *d, uint64_t max_kernel, uint64_t max_initrd, struct bootfs_result *r,
		char *err, size_t errlen)
{
	uint64_t size = disk_size(d);
	struct parttab *pt;
	const char *fs;
	char why[384], seen[1024] = "";
	size_t n = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	max_kernel = max_kernel ? max_kernel : BOOTFS_KERNEL_MAX;
	max_initrd = max_initrd ? max_initrd : BOOTFS_INITRD_MAX;
	initialize_ext2_error_table();
	fs = fs_probe(disk_rd, d, 0, size);
	if (fs && !is_ext(fs)) {
		snprintf(err, errlen, "unsupported filesystem: %s (cella reads the kernel from ext2, "
			 "ext3 or ext4)", fs);
		return -EINVAL;
	}
	if (fs) {
		char label[32];

		snprintf(label, sizeof(label), "the disk (%s)", fs);
		ret = try_ext(d, 0, size, label, max_kernel, max_initrd, r, err, errlen);
		goto out;
	}
	if (!(pt = malloc(sizeof(*pt))))
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	ret = parttab_read(disk_rd, d, size, pt, why, sizeof(why));
	if (ret == -ENOENT)
		snprintf(err, errlen, "no partition table and no file system cella recognises on the "
			 "disk");
	else if (ret)
		snprintf(err, errlen, "%s", why);
	else if (!pt->nr)
		snprintf(err, errlen, "the %s partition table lists no partition", pt->kind);
	for (unsigned i = 0; !ret && i < pt->nr; i++) {
		char label[48];

		fs = fs_probe(disk_rd, d, pt->p[i].off, pt->p[i].len);
		snprintf(label, sizeof(label), "partition %u (%s)", pt->p[i].number, fs ? fs : "?");
		if (!is_ext(fs)) {
			snprintf(why, sizeof(why), fs ? "unsupported filesystem: %s" :
				 "no file system recognised", fs);
		} else {
			ret = try_ext(d, pt->p[i].off, pt->p[i].len, label, max_kernel, max_initrd, r, why,
				      sizeof(why));
			if (ret != -ENOENT) { /* booted, or a fault that stops the search */
				if (ret)
					snprintf(err, errlen, "%s", why);
				break;
			}
			ret = 0;
		}
		n += (size_t)snprintf(seen + n, sizeof(seen) - n, "%s%s: %s", n ? "; " : "", label,
				      why);
		if (n >= sizeof(seen))
			n = sizeof(seen) - 1;
		if (i + 1 == pt->nr) {
			ret = -ENOENT;
			snprintf(err, errlen, "nothing to boot in the %s partition table: %s", pt->kind,
				 seen);
		}
	}
	free(pt);
out:
	if (ret == BOOTFS_MISSING)
		ret = -ENOENT;
	if (ret)
		bootfs_result_free(r);
	return ret;
}

void bootfs_result_free(struct bootfs_result *r)
{
	free(r->kernel);
	free(r->initrd);
	r->kernel = r->initrd = NULL;
	r->kernel_len = r->initrd_len = 0;
}
