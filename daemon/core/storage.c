/* storage.c: storage locations and the check of the paths callers give
 * (storage.h). */
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <linux/openat2.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "disk.h"
#include "log.h"

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

/* The location path lies beneath (*rel: its path there), or NULL. */
static const struct storage_loc *location_of(const struct storage *st, const char *path,
					     const char **rel)
{
	for (unsigned i = 0; st && i < st->nr; i++) {
		const char *r = beneath(st->locs[i].path, path);

		if (r && *r) {
			*rel = r;
			return &st->locs[i];
		}
	}
	return NULL;
}

bool storage_on_pool(const struct storage *st, const char *path)
{
	const char *rel;
	const struct storage_loc *l = location_of(st, path, &rel);

	return l && l->pool;
}

/* Open rel beneath the location: no "..", no symlink out of it, no magic
 * link. -errno; -EXDEV (or -ELOOP) when it leads out of the location. */
static int open_beneath(const struct storage_loc *l, const char *rel, int oflags)
{
	struct open_how how = { .flags = (uint64_t)oflags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
				.mode = (oflags & O_CREAT) ? 0640 : 0,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
	int fd = (int)syscall(SYS_openat2, l->dirfd, rel, &how, sizeof(how));

	return fd < 0 ? -errno : fd;
}

/* A file outside every location (an admin's, or cellad's own): by name. */
static int open_plain(const char *path, int oflags)
{
	int fd = open(path, oflags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0640);

	return fd < 0 ? -errno : fd;
}

static int storage_oflags(unsigned flags)
{
	return ((flags & STORAGE_RDWR) ? O_RDWR : O_RDONLY) | ((flags & STORAGE_CREATE) ? O_CREAT : 0);
}

void storage_file_close(struct storage_file *f)
{
	for (unsigned i = 0; i < f->nr; i++) {
		if (f->fd[i] >= 0)
			close(f->fd[i]);
		free(f->name[i]);
		f->fd[i] = -1;
		f->name[i] = NULL;
	}
	f->nr = 0;
}

/* Add fd (owned by f from now on) as the next link, named `name`. */
static int file_push(struct storage_file *f, int fd, const char *name)
{
	char *n = strdup(name);

	if (!n) {
		close(fd);
		return -ENOMEM;
	}
	f->fd[f->nr] = fd;
	f->name[f->nr++] = n;
	return 0;
}

/* The storage's rights: a location owned by a user is opened with that
 * user's uid, gid and supplementary groups for the file-system checks, so
 * root does not read for a location what its owner may not. setfsuid,
 * setfsgid and the raw setgroups system call act on the calling thread
 * only (glibc's setgroups() would change every thread), and a fsuid other
 * than 0 drops root's file capabilities meanwhile. A location root owns
 * keeps root's rights. */
#define FS_GROUPS_MAX 64

struct fs_ids {
	bool set;
	uid_t uid;
	gid_t gid;
	int ngroups;            /* the thread's own groups, put back after */
	gid_t groups[FS_GROUPS_MAX];
};

/* The owner's groups (its primary one included), or just its gid when it
 * has no passwd entry or too many groups. */
static int owner_groups(uid_t uid, gid_t gid, gid_t *groups, int max)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int n = max;

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) || !res ||
	    getgrouplist(pw.pw_name, gid, groups, &n) < 0) {
		groups[0] = gid;
		return 1;
	}
	return n;
}

static struct fs_ids rights_enter(const struct storage_loc *l)
{
	struct fs_ids was = { .set = false };
	gid_t groups[FS_GROUPS_MAX];
	struct stat st;
	int n;

	/* A cellad that is not root has its own rights already. */
	if (geteuid() != 0 || fstat(l->dirfd, &st) < 0 || st.st_uid == 0)
		return was;
	was.ngroups = getgroups(FS_GROUPS_MAX, was.groups);
	n = owner_groups(st.st_uid, st.st_gid, groups, FS_GROUPS_MAX);
	/* The owner's groups, else none at all rather than root's; when the
	 * thread's own cannot be saved (over FS_GROUPS_MAX), they stay. */
	if (was.ngroups < 0)
		log_warn("storage %s: cellad has over %d groups: opened with them", l->name,
			 FS_GROUPS_MAX);
	else if (syscall(SYS_setgroups, (size_t)n, groups) < 0 &&
		 syscall(SYS_setgroups, (size_t)0, NULL) < 0)
		log_warn("storage %s: cannot take its owner's groups: %s", l->name, strerror(errno));
	was.gid = (gid_t)setfsgid(st.st_gid); /* while still root */
	was.uid = (uid_t)setfsuid(st.st_uid);
	was.set = true;
	return was;
}

static void rights_leave(struct fs_ids was)
{
	if (!was.set)
		return;
	setfsuid(was.uid);
	setfsgid(was.gid);
	if (was.ngroups >= 0 && syscall(SYS_setgroups, (size_t)was.ngroups, was.groups) < 0)
		log_err("storage: cannot put cellad's groups back: %s", strerror(errno));
}

/* A backing file beneath l, read-only, with l's rights (the chain may have
 * come into l from a file outside it). */
static int open_beneath_as(const struct storage_loc *l, const char *rel)
{
	struct fs_ids was = rights_enter(l);
	int fd = open_beneath(l, rel, O_RDONLY);

	rights_leave(was);
	return fd;
}

/* The backing chain of the image open on fd (cur: its path in l, or its
 * host path when l is NULL), each file beneath l too (and, for a file
 * outside every location, each one from the first in a location on
 * beneath that one); every file opened goes into f, in chain order. The top image's format is fmt (-1: probe),
 * a backing file's the one its upper image names (probed if none), as
 * cella-vm's disk library reads them. */
static int walk_chain(const struct storage *st, const struct storage_loc *l, const char *field,
		      int fd, const char *shown, const char *top, int fmt, struct storage_file *f,
		      struct cerr *e)
{
	char cur[8192], err[256], link[4096];
	dev_t seen_dev[DISK_MAX_CHAIN];
	ino_t seen_ino[DISK_MAX_CHAIN];
	const char *lp = l ? l->path : "", *sep = l ? "/" : "";

	snprintf(cur, sizeof(cur), "%s", top);
	snprintf(link, sizeof(link), "%s", shown);
	for (unsigned depth = 0;; depth++) {
		struct disk_fd_chain one = { .nr = 1 };
		struct disk_info info;
		struct disk *d;
		struct stat stt;
		char dir[8192], next[8192];
		const char *r_in;
		int ret;

		if (fstat(fd, &stt) < 0) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "%s%s%s: %s", lp, sep, cur,
					strerror(errno));
		}
		for (unsigned i = 0; i < depth; i++) {
			if (seen_dev[i] == stt.st_dev && seen_ino[i] == stt.st_ino) {
				close(fd);
				return cerr_set(e, CERR_INVALID, field, "the backing chain of %s "
						"loops", top);
			}
		}
		if (depth >= DISK_MAX_CHAIN) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "backing chain deeper than %d",
					DISK_MAX_CHAIN);
		}
		seen_dev[depth] = stt.st_dev;
		seen_ino[depth] = stt.st_ino;
		/* Named as cella-vm will find it in the upper image's header. */
		if (file_push(f, fd, link))
			return cerr_set(e, CERR_INTERNAL, field, "out of memory");
		/* The file just opened, not whatever its name points at now. */
		one.fd[0] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		one.name[0] = cur;
		if (one.fd[0] < 0)
			return cerr_set(e, CERR_INTERNAL, field, "dup: %s", strerror(errno));
		ret = disk_open_fds(&d, &one, fmt, DISK_RDONLY | DISK_NO_LOCK | DISK_NO_BACKING, err,
				    sizeof(err));
		if (ret) {
			f->err = ret;
			return cerr_set(e, CERR_INVALID, field, "%s%s%s: %s", lp, sep, cur, err);
		}
		ret = disk_get_info(d, &info);
		disk_close(d);
		if (ret)
			return cerr_set(e, CERR_INVALID, field, "%s%s%s: cannot read its header", lp,
					sep, cur);
		if (!info.backing[0])
			return 0;
		fmt = info.backing_fmt_set ? (int)info.backing_fmt : -1;
		snprintf(link, sizeof(link), "%s", info.backing);
		/* A relative backing name is relative to the image's directory. */
		snprintf(dir, sizeof(dir), "%s", cur);
		if (info.backing[0] == '/' && l) {
			const char *r = beneath(l->path, info.backing);

			if (!r)
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s/%s "
						"is outside storage '%s'", info.backing, l->path, cur,
						l->name);
			snprintf(next, sizeof(next), "%s", r);
		} else if (info.backing[0] == '/') {
			snprintf(next, sizeof(next), "%s", info.backing);
		} else {
			if ((size_t)snprintf(next, sizeof(next), "%s/%s", dirname(dir), info.backing) >=
			    sizeof(next))
				return cerr_set(e, CERR_INVALID, field, "backing path too long");
		}
		if (!l && location_of(st, next, &r_in)) {
			/* A file by name (cellad's overlay, an admin's image) backed
			 * by one in a storage location: from here on the chain is
			 * that location's, opened beneath it with its rights. */
			const struct storage_loc *in = location_of(st, next, &r_in);

			memmove(next, r_in, strlen(r_in) + 1);
			fd = open_beneath_as(in, next);
			if (fd == -EXDEV || fd == -ELOOP)
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s leads "
						"out of storage '%s'", info.backing, cur, in->name);
			if (fd < 0 && (f->err = fd))
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s: %s",
						info.backing, cur, strerror(-fd));
			l = in;
			lp = l->path;
			sep = "/";
		} else {
			fd = l ? open_beneath_as(l, next) : open_plain(next, O_RDONLY);
			if (l && (fd == -EXDEV || fd == -ELOOP))
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s/%s "
						"leads out of storage '%s'", info.backing, l->path, cur,
						l->name);
			if (fd < 0 && (f->err = fd))
				return cerr_set(e, CERR_INVALID, field, "the backing file %s of %s%s%s: "
						"%s", info.backing, lp, sep, cur, strerror(-fd));
		}
		memcpy(cur, next, sizeof(cur));
	}
}

/* fd is open on `shown` (owned by f from now on): what it may be, and its
 * chain. */
static int open_found(const struct storage *st, const struct storage_loc *l, enum role role,
		      const char *field, const char *shown, const char *cur, int fd, int fmt,
		      unsigned flags, struct storage_file *f, struct cerr *e)
{
	struct stat stt;

	if (fstat(fd, &stt) < 0 || !S_ISREG(stt.st_mode)) {
		bool blk = fstat(fd, &stt) == 0 && S_ISBLK(stt.st_mode);

		if (role < ROLE_ADMIN) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "%s: not a regular file (block "
					"devices are for admins)", shown);
		}
		if (!blk) {
			close(fd);
			return cerr_set(e, CERR_INVALID, field, "%s: neither a regular file nor a "
					"block device", shown);
		}
		flags &= ~STORAGE_DISK; /* a device has no backing chain */
	}
	if (!(flags & STORAGE_DISK))
		return file_push(f, fd, shown) ? cerr_set(e, CERR_INTERNAL, field, "out of memory")
					       : 0;
	if (walk_chain(st, l, field, fd, shown, cur, fmt, f, e)) {
		storage_file_close(f);
		return -1;
	}
	return 0;
}

/* path is rel beneath l: open it there with the location's rights. */
static int open_in_location(const struct storage *st, const struct storage_loc *l,
			    enum role role, const char *field,
			    const char *path, const char *rel, int fmt, unsigned flags,
			    struct storage_file *f, struct cerr *e)
{
	struct fs_ids was = rights_enter(l);
	int fd = open_beneath(l, rel, storage_oflags(flags)), ret;

	if (fd == -EXDEV || fd == -ELOOP)
		ret = cerr_set(e, CERR_INVALID, field, "%s leads out of storage '%s' (a symlink or "
			       "'..')", path, l->name);
	else if (fd < 0 && (f->err = fd))
		ret = cerr_set(e, CERR_INVALID, field, "%s: %s", path, strerror(-fd));
	else
		ret = open_found(st, l, role, field, path, rel, fd, fmt, flags, f, e);
	rights_leave(was);
	return ret;
}

int storage_open_file(const struct storage *st, enum role role, const char *field,
		      const char *path, int fmt, unsigned flags, struct storage_file *f,
		      struct cerr *e)
{
	bool outside = true;
	int fd;

	memset(f, 0, sizeof(*f));
	if (st->owned_dir && beneath(st->owned_dir, path)) {
		role = ROLE_ADMIN; /* cellad's own files (checkpoint overlays): by name */
	} else {
		for (unsigned i = 0; i < st->nr; i++) {
			const struct storage_loc *l = &st->locs[i];
			const char *rel = beneath(l->path, path);

			if (!rel || !*rel)
				continue;
			outside = false;
			if (role >= l->role)
				return open_in_location(st, l, role, field, path, rel, fmt, flags, f,
							e);
		}
		if (role < ROLE_ADMIN && !outside)
			return cerr_set(e, CERR_INVALID, field, "%s: in a storage location your role "
					"(%s) may not use", path, role_name(role));
		if (role < ROLE_ADMIN)
			return cerr_set(e, CERR_INVALID, field, "%s is not in a storage location (only "
					"an admin may use a host path)", path);
	}
	/* An admin may name any host file. */
	fd = open_plain(path, storage_oflags(flags));
	if (fd < 0 && (f->err = fd))
		return cerr_set(e, CERR_INVALID, field, "%s: %s", path, strerror(-fd));
	return open_found(st, NULL, role, field, path, path, fd, fmt, flags, f, e);
}

int storage_check(const struct storage *st, enum role role, const char *field, const char *path,
		  int fmt, bool disk, struct cerr *e)
{
	struct storage_file f;

	/* cellad's own files, and an admin's outside every location: as
	 * before, taken as they are here; opened (their chains followed) at
	 * start. */
	if (st->owned_dir && beneath(st->owned_dir, path))
		return 0;
	if (role >= ROLE_ADMIN && !location_of(st, path, &(const char *){ NULL }))
		return 0;
	/* The replicas a pool keeps (replicas/ of pool storage, docs/replica.md
	 * "A pool as target"): cellad's own files too; a store's directory
	 * stands for a disk before its first point. */
	if (role >= ROLE_ADMIN && storage_on_pool(st, path)) {
		const char *rel = NULL;

		location_of(st, path, &rel);
		if (rel && !strncmp(rel, "replicas/", 9) && !strstr(rel, ".."))
			return 0;
	}
	if (storage_open_file(st, role, field, path, fmt, disk ? STORAGE_DISK : 0, &f, e))
		return -1;
	storage_file_close(&f);
	return 0;
}

const struct storage_loc *storage_loc_find(const struct storage *st, const char *name)
{
	for (unsigned i = 0; st && i < st->nr; i++)
		if (!strcmp(st->locs[i].name, name))
			return &st->locs[i];
	return NULL;
}

int storage_loc_open(const struct storage_loc *l, const char *rel, int oflags)
{
	struct open_how how = { .flags = (uint64_t)oflags | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
				.mode = (oflags & O_CREAT) ? 0640 : 0,
				.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
					   RESOLVE_NO_SYMLINKS };
	struct fs_ids was = rights_enter(l);
	int fd = (int)syscall(SYS_openat2, l->dirfd, rel, &how, sizeof(how));

	fd = fd < 0 ? -errno : fd;
	rights_leave(was);
	return fd;
}

int storage_loc_unlink(const struct storage_loc *l, const char *rel)
{
	struct fs_ids was = rights_enter(l);
	int ret = unlinkat(l->dirfd, rel, 0) < 0 ? -errno : 0;

	rights_leave(was);
	return ret;
}
