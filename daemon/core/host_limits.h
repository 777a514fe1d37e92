/* host_limits.h: process limits cellad raises for itself at start, so
 * that hundreds of VMs fit (docs/cellad.md, "Scale"). */
#pragma once

#include <stddef.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit: cellad holds a few
 * descriptors per VM (pidfd, console, control connections, API clients),
 * and systemd and most shells start services at a soft 1024, which about
 * 450 running VMs would exhaust. Never lowers it. Returns the soft limit
 * now in force, or -errno (with a reason in why) if it could not be read
 * or raised. */
long host_raise_nofile(char *why, size_t whylen);
