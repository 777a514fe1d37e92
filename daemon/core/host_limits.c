/* host_limits.c: process limits cellad raises for itself at start. */
#include "host_limits.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

long host_raise_nofile(char *why, size_t whylen)
{
	struct rlimit rl;

	int err;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		err = errno;
		snprintf(why, whylen, "getrlimit(RLIMIT_NOFILE): %s", strerror(err));
		return -err;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return (long)rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		err = errno;
		snprintf(why, whylen, "setrlimit(RLIMIT_NOFILE, %llu): %s",
			 (unsigned long long)rl.rlim_max, strerror(err));
		return -err;
	}
	return (long)rl.rlim_cur;
}
