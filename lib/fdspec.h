/* fdspec.h: "fd:N" wherever a worker takes a file name. cellad opens a VM's
 * files itself (beneath their storage location, docs/security.md) and hands
 * cella-vm the descriptors; a name still works for direct use. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "compiler.h"

/* Kinds of file an "fd:N" may be (fdspec_open's `kinds`). */
#define FDSPEC_REG (1u << 0)
#define FDSPEC_BLK (1u << 1)

/* Is spec "fd:N"? Then *fd = N (-1 when N is not a number in 0..65535). */
bool fdspec_is_fd(const char *spec, int *fd);

/* A descriptor for spec: for "fd:N", a duplicate of N (close-on-exec) after
 * checking that N is open, of one of `kinds` (0: any), and open for what
 * flags' O_ACCMODE asks (O_CREAT and the rest are ignored: the file is the
 * one given); otherwise open(spec, flags | O_CLOEXEC, mode). Returns the fd
 * or -errno with the reason in err ("fd:7: not an open descriptor", "fd:7:
 * a directory, not a regular file", "fd:7: open read-only, needed for
 * writing"). */
int fdspec_open(const char *spec, int flags, mode_t mode, unsigned kinds, char *err,
		size_t errlen) __must_check;
