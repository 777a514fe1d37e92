/* sandbox.h: least privilege for cella-vm once its VM is set up: a private
 * mount namespace whose root is an empty read-only tmpfs (every file the VM
 * needs is already open), a switch to an unprivileged user, and a seccomp
 * allowlist inherited by the vCPU threads created afterwards. */
#pragma once
#include <stdbool.h>

#include "compiler.h"

/* Enter a private mount namespace rooted at an empty read-only tmpfs, then
 * become `user` (NULL: keep the current ids). Needs CAP_SYS_ADMIN and
 * CAP_SETUID/CAP_SETGID; call after every file and socket is open and
 * before any thread is created. Sets PR_SET_NO_NEW_PRIVS. Returns 0 or
 * -errno (logged). */
int sandbox_enter(const char *user) __must_check;

/* Install the system-call allowlist for this process and the threads it
 * creates later. A call outside the list ends the worker: its number is
 * logged and the process exits with status 4 (VMM error). Returns 0 or
 * -errno. */
int sandbox_seccomp_install(void) __must_check;
