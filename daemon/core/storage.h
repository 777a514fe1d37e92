/* storage.h: storage locations: the directories VM files (kernels, initrds,
 * disks and their backing files) may come from, each with the least role
 * that may use it (docs/security.md). A path a caller gives is accepted
 * when it resolves beneath a location its role may use, with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): no "..", no symlink
 * out of it; a qcow2 image's whole backing chain must stay beneath the same
 * location. Only an admin may name a host path outside every location, or a
 * block device. The check runs when a definition is made or changed, and
 * again before every start. */
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

/* May a caller with `role` use the file at `path` (the field `field` of a
 * definition)? 0, or -1 with e set (CERR_INVALID naming the field; a path
 * outside every location the role may use, a symlink or ".." out of one, a
 * block device, or a backing file outside the image's location, with the
 * file that broke the rule). `disk`: check a qcow2 backing chain too. */
int storage_check(const struct storage *st, enum role role, const char *field, const char *path,
		  bool disk, struct cerr *e) __must_check;
