/* worker_clone.h: creating a worker process (worker_clone.c): the clone
 * into a user and a PID namespace of its own behind a gate, the uid and
 * gid maps that release it, and what the child does behind the gate. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "compiler.h"

/* Sandboxed: a child in new user and PID namespaces (gate[] made here, the
 * child to wait on gate[0] with worker_child_ids until worker_release);
 * else a plain fork (gate untouched). As fork: 0 in the child, its pid, or
 * -1 with errno. */
pid_t worker_clone(bool sandbox, int gate[2]);
/* Map the child's uid and gid 0 to uid and gid outside, and open its gate
 * (write end). 0 or -errno. */
int worker_release(pid_t pid, int gate, uid_t uid, gid_t gid) __must_check;
/* In the child (async-signal-safe): wait on the gate's read end, then
 * become uid and gid 0 of the namespace with no supplementary groups. 0 or
 * -1 (cellad gave up on it). */
int worker_child_ids(int gate);
/* In the child (async-signal-safe), what every worker does first: behind
 * the gate (gate >= 0: worker_child_ids), its own session, so that it
 * outlives cellad and its terminal, the stop signals blocked (cella-vm reads
 * them from a signalfd; PID 1 of a namespace drops a signal that has no
 * handler, so one sent before cella-vm's main would be lost), SIGPIPE to its
 * default. 0 or -1 (the child is to _exit). */
int worker_child_start(int gate);
/* pidfd_open(2), or -1 with errno. */
int worker_pidfd_open(pid_t pid);
