/* fdspec.c: "fd:N" file specifications (fdspec.h). */
#include "fdspec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool fdspec_is_fd(const char *spec, int *fd)
{
	char *end;
	long n;

	if (strncmp(spec, "fd:", 3))
		return false;
	errno = 0;
	n = strtol(spec + 3, &end, 10);
	*fd = (errno || end == spec + 3 || *end || spec[3] == '-' || spec[3] == '+' || n < 0 ||
	       n > 65535) ? -1 : (int)n;
	return true;
}

static const char *kind_name(mode_t m)
{
	return S_ISREG(m) ? "a regular file" : S_ISBLK(m) ? "a block device" : S_ISDIR(m) ? "a directory"
	       : S_ISCHR(m) ? "a character device" : S_ISFIFO(m) ? "a pipe" : S_ISSOCK(m) ? "a socket"
	       : "not a file";
}

int fdspec_open(const char *spec, int flags, mode_t mode, unsigned kinds, char *err, size_t errlen)
{
	struct stat st;
	int fd, fl, acc = flags & O_ACCMODE;

	if (!fdspec_is_fd(spec, &fd)) {
		fd = open(spec, flags | O_CLOEXEC, mode);
		if (fd < 0) {
			int ret = -errno;

			snprintf(err, errlen, "%s: %s", spec, strerror(errno));
			return ret;
		}
		return fd;
	}
	if (fd < 0) {
		snprintf(err, errlen, "%s: expected fd:N, N a descriptor number", spec);
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: not an open descriptor", spec);
		return -EBADF;
	}
	if (kinds && !((kinds & FDSPEC_REG) && S_ISREG(st.st_mode)) &&
	    !((kinds & FDSPEC_BLK) && S_ISBLK(st.st_mode))) {
		snprintf(err, errlen, "%s: %s, not %s", spec, kind_name(st.st_mode),
			 kinds & FDSPEC_REG ? (kinds & FDSPEC_BLK ? "a regular file or a block device"
							   : "a regular file")
					    : "a block device");
		return -EINVAL;
	}
	if (((fl & O_ACCMODE) == O_RDONLY && acc != O_RDONLY) ||
	    ((fl & O_ACCMODE) == O_WRONLY && acc != O_WRONLY)) {
		snprintf(err, errlen, "%s: open %s, needed for %s", spec,
			 (fl & O_ACCMODE) == O_RDONLY ? "read-only" : "write-only",
			 acc == O_RDONLY ? "reading" : acc == O_WRONLY ? "writing"
					 : "reading and writing");
		return -EBADF;
	}
	fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		int ret = -errno;

		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		return ret;
	}
	return fd;
}
