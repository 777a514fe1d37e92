/* storage.h: storage locations: the directories VM files (kernels, initrds,
 * disks and their backing files) may come from, each with the least role
 * that may use it (docs/security.md). A path a caller gives is accepted
 * when it resolves beneath a location its role may use, with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): no "..", no symlink
 * out of it; a qcow2 image's whole backing chain must stay beneath the same
 * location. Only an admin may name a host path outside every location, or a
 * block device. The check runs when a definition is made or changed; at
 * every start cellad opens the files the same way and passes the
 * descriptors to the worker, which opens nothing by name. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "cerr.h"
#include "role.h"

#define STORAGE_MAX 16

struct storage_loc {
	const char *name;
	const char *path;  /* absolute, no trailing slash */
	enum role role;    /* the least role that may use it */
	int dirfd;         /* O_PATH of path, or -1 */
	/* Pool storage: the same directory, mounted at the same path, on
	 * every host of the pool (NFS, a cluster file system): where an HA
	 * VM's disks must be, so a surviving host can run it. */
	bool pool;
};

struct storage {
	struct storage_loc locs[STORAGE_MAX];
	unsigned nr;
	const char *owned_dir; /* cellad's own files (state_dir/vms): always accepted */
};

/* Open every location's directory. 0, or -errno naming the one that failed
 * in err. */
int storage_open(struct storage *st, char *err, size_t errlen) __must_check;
void storage_close(struct storage *st);

/* storage_open_file flags */
#define STORAGE_DISK   (1u << 0) /* an image: its backing chain too */
#define STORAGE_RDWR   (1u << 1) /* the file read-write (backing files always read-only) */
#define STORAGE_CREATE (1u << 2) /* create it (0640) if missing */

#define STORAGE_FILE_MAX 64 /* DISK_MAX_CHAIN */

/* A file a worker needs, opened by cellad: fd[0] the file, then (a disk)
 * each file of its backing chain in chain order; name[0] its path,
 * name[i] the backing name the image above gives in its header (what
 * cella-vm's disk library compares before it uses the descriptor). */
struct storage_file {
	unsigned nr;
	int fd[STORAGE_FILE_MAX];
	char *name[STORAGE_FILE_MAX];
	/* After a failure: -errno when a file could not be opened or read (it
	 * is gone, say), 0 when the rules refused it. */
	int err;
};

/* Check AND open the file at `path` (the field `field` of a definition) for
 * a caller with `role`, so that what is checked is what is passed on: one
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from its location's
 * directory, and with STORAGE_DISK every backing file the same way (each
 * header read from the descriptor just opened; the top image's format is
 * fmt, -1 to probe), with the storage's rights: in a location a user owns,
 * that user's uid and gid (setfsuid for this thread), not root's. A file
 * outside every location (an admin's) or in
 * cellad's own directory is opened by name, its chain too. 0 with f filled
 * (storage_file_close), or -1 with e set: CERR_INVALID naming the field (a
 * path outside every location the role may use, a symlink or ".." out of
 * one, a block device for a non-admin, a backing file outside the image's
 * location, with the file that broke the rule), nothing left open. */
int storage_open_file(const struct storage *st, enum role role, const char *field,
		      const char *path, int fmt, unsigned flags, struct storage_file *f,
		      struct cerr *e) __must_check;
void storage_file_close(struct storage_file *f);

/* Whether path lies beneath a pool storage location (lexically, as given:
 * storage_check has checked that it resolves beneath its location). */
bool storage_on_pool(const struct storage *st, const char *path);

/* May a caller with `role` use the file at `path`? storage_open_file, the
 * files closed again; an admin's file outside every location and cellad's
 * own files are opened (and their chains followed) only at start. 0 or -1
 * with e set. `disk`: check a qcow2 backing chain too (top format fmt). */
int storage_check(const struct storage *st, enum role role, const char *field, const char *path,
		  int fmt, bool disk, struct cerr *e) __must_check;

/* For the images API (core/images.c): the location called name (NULL:
 * none); open rel beneath l with l's rights and openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS): an fd, or -errno (-EXDEV,
 * -ELOOP: it leads out, or is a symlink); O_CREAT makes it 0640. unlink:
 * the name beneath l, with l's rights (a symlink itself, never its
 * target). */
const struct storage_loc *storage_loc_find(const struct storage *st, const char *name);
int storage_loc_open(const struct storage_loc *l, const char *rel, int oflags);
int storage_loc_unlink(const struct storage_loc *l, const char *rel);
