/* host_limits.h: process limits cellad raises for itself at start, so
 * that hundreds of VMs fit (docs/cellad.md, "Scale"). */
#pragma once

#include <stddef.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit: cellad holds about two
 * descriptors per running VM (pidfd, console) besides API clients and
 * control connections, and systemd and most shells start services at a
 * soft 1024, which about 500 running VMs exhaust. Never lowers it. Returns the soft limit
 * now in force, or -errno (with a reason in why) if it could not be read
 * or raised. */
long host_raise_nofile(char *why, size_t whylen);
