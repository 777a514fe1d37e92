/* storage.c: storage locations and the check of the paths callers give
 * (storage.h). */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "disk.h"

const char *role_name(enum role r)
{
	static const char *const names[] = { "none", "viewer", "operator", "admin" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

int storage_open(struct storage *st, char *err, size_t errlen)
{
	for (unsigned i = 0; i < st->nr; i++) {
		st->locs[i].dirfd = open(st->locs[i].path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (st->locs[i].dirfd < 0) {
			int ret = -errno;

			snprintf(err, errlen, "storage '%s': %s: %s", st->locs[i].name,
				 st->locs[i].path, strerror(errno));
			storage_close(st);
			return ret;
		}
	}
	return 0;
}

void storage_close(struct storage *st)
{
	for (unsigned i = 0; i < st->nr; i++) {
		if (st->locs[i].dirfd >= 0)
			close(st->locs[i].dirfd);
		st->locs[i].dirfd = -1;
	}
}

/* path relative to root when it starts with root + "/" (NULL otherwise). */
static const char *beneath(const char *root, const char *path)
{
	size_t n = strlen(root);

	if (strncmp(path, root, n) || path[n] != '/')
		return NULL;
	while (path[n] == '/')
		n++;
	return path + n;
}

/* Open rel beneath the location (O_RDONLY; O_PATH for what may not be
 * readable to us). -errno; -EXDEV when it leads out of the location. */
static int open_beneath(const struct storage_loc *l, const char *rel)
{
	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, l->dirfd, rel, &how, sizeof(how));

	return fd < 0 ? -errno : fd;
}

/* The backing chain of the image open on fd (rel: its path in l), each
 * file beneath l too. */
static int check_chain(const struct storage_loc *l, const char *field, int fd, const char *rel,
		       struct cerr *e)
{
	char cur[8192], err[256];
	dev_t seen_dev[DISK_MAX_CHAIN];
	ino_t seen_ino[DISK_MAX_CHAIN];

	snprintf(cur, sizeof(cur), "%s", rel);
	for (unsigned depth = 0;; depth++) {
		struct disk_info info;
		struct disk *d;
		struct stat stt;
		char proc[64], dir[8192], next[8192];
		int ret;

		if (fstat(fd, &stt) < 0) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "%s/%s: %s", l->path, cur,
					strerror(errno));
		}
		for (unsigned i = 0; i < depth; i++) {
			if (seen_dev[i] == stt.st_dev && seen_ino[i] == stt.st_ino) {
				close(fd);
				return cerr_set(e, CERR_INVALID, field, "the backing chain of %s "
						"loops", rel);
			}
		}
		if (depth >= DISK_MAX_CHAIN) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "backing chain deeper than %d",
					DISK_MAX_CHAIN);
		}
		seen_dev[depth] = stt.st_dev;
		seen_ino[depth] = stt.st_ino;
		/* The file just opened, not whatever its name points at now. */
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		ret = disk_open(&d, proc, -1, DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING, err,
				sizeof(err));
		close(fd);
		if (ret)
			return cerr_set(e, CERR_INVALID, field, "%s/%s: %s", l->path, cur, err);
		ret = disk_get_info(d, &info);
		disk_close(d);
		if (ret)
			return cerr_set(e, CERR_INVALID, field, "%s/%s: cannot read its header",
					l->path, cur);
		if (!info.backing[0])
			return 0;
		/* A relative backing name is relative to the image's directory. */
		snprintf(dir, sizeof(dir), "%s", cur);
		if (info.backing[0] == '/') {
			const char *r = beneath(l->path, info.backing);

			if (!r)
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s/%s "
						"is outside storage '%s'", info.backing, l->path, cur,
						l->name);
			snprintf(next, sizeof(next), "%s", r);
		} else {
			if ((size_t)snprintf(next, sizeof(next), "%s/%s", dirname(dir), info.backing) >=
			    sizeof(next))
				return cerr_set(e, CERR_INVALID, field, "backing path too long");
		}
		fd = open_beneath(l, next);
		if (fd == -EXDEV || fd == -ELOOP)
			return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s/%s leads "
					"out of storage '%s'", info.backing, l->path, cur, l->name);
		if (fd < 0)
			return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s/%s: %s",
					info.backing, l->path, cur, strerror(-fd));
		memcpy(cur, next, sizeof(cur));
	}
}

int storage_check(const struct storage *st, enum role role, const char *field, const char *path,
		  bool disk, struct cerr *e)
{
	bool outside = true;

	if (st->owned_dir && beneath(st->owned_dir, path))
		return 0; /* cellad's own files (checkpoint overlays) */
	for (unsigned i = 0; i < st->nr; i++) {
		const struct storage_loc *l = &st->locs[i];
		const char *rel = beneath(l->path, path);
		struct stat stt;
		int fd;

		if (!rel || !*rel)
			continue;
		outside = false;
		if (role < l->role)
			continue;
		fd = open_beneath(l, rel);
		if (fd == -EXDEV || fd == -ELOOP)
			return cerr_set(e, CERR_INVALID, field, "%s leads out of storage '%s' (a "
					"symlink or '..')", path, l->name);
		if (fd < 0)
			return cerr_set(e, CERR_INVALID, field, "%s: %s", path, strerror(-fd));
		if (fstat(fd, &stt) < 0 || !S_ISREG(stt.st_mode)) {
			close(fd);
			if (role >= ROLE_ADMIN)
				return 0;
			return cerr_set(e, CERR_INVALID, field, "%s: not a regular file (block "
					"devices are for admins)", path);
		}
		if (!disk) {
			close(fd);
			return 0;
		}
		return check_chain(l, field, fd, rel, e);
	}
	if (role >= ROLE_ADMIN)
		return 0; /* an admin may name any host file */
	if (!outside)
		return cerr_set(e, CERR_INVALID, field, "%s: in a storage location your role (%s) "
				"may not use", path, role_name(role));
	return cerr_set(e, CERR_INVALID, field, "%s is not in a storage location (only an admin "
			"may use a host path)", path);
}
