/* atomicfile.h: a small file written whole or not at all: into a temporary
 * name beside it (O_NOFOLLOW), synced, renamed over the file. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "compiler.h"

/* data (NUL-terminated) into tmp, synced (data_only: fdatasync, else
 * fsync), renamed to path; tmp is removed on failure. 0 or -errno. */
int atomic_file_write(const char *path, const char *tmp, const char *data, mode_t mode,
		      bool data_only) __must_check;
