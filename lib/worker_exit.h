/* worker_exit.h: how a cella-vm worker ended. These are cella-vm's exit
 * statuses (README), shared by the worker, which sets them, and cellad,
 * which decodes them. A debug-exit write of v gives (v << 1) | 1 (odd);
 * everything else is even. */
#pragma once
#include <stdbool.h>

enum worker_exit {
	WORKER_EXIT_NONE = -1,        /* still running */
	WORKER_EXIT_POWEROFF = 0,     /* guest powered off */
	WORKER_EXIT_CONFIG = 2,       /* bad configuration; no VM was created */
	WORKER_EXIT_ERROR = 4,        /* VMM error (KVM failure, internal error) */
	WORKER_EXIT_CRASH = 6,        /* guest crash: triple fault / KVM shutdown */
	WORKER_EXIT_RESET = 8,        /* guest asked for a reset (i8042 0xFE, port 0xCF9) */
	WORKER_EXIT_UNHANDLED = 10,   /* an instruction the VMM cannot handle stopped the VM */
	WORKER_EXIT_STOPPED = 12,     /* stopped from the host (SIGTERM/SIGINT) */
	WORKER_EXIT_SAVED = 14,       /* state saved to a file (save), the VM ends here */
	WORKER_EXIT_MIGRATED = 16,    /* moved to another host (live migration) */
	WORKER_EXIT_FENCED = 18,      /* its HA deadline passed unextended (docs/pool.md) */
};

/* The exit status of a debug-exit write of v. */
static inline int worker_exit_debug(unsigned v)
{
	return (int)((v << 1) | 1);
}

/* Whether status is a guest debug-exit write (odd, below the 128+signal
 * range cellad uses for workers killed by a signal). */
static inline bool worker_exit_is_debug(int status)
{
	return status >= 0 && status < 128 && (status & 1);
}

/* Whether the guest or the host ended the VM cleanly: power-off, a host
 * stop, or a debug-exit write. */
static inline bool worker_exit_is_clean(int status)
{
	return status == WORKER_EXIT_POWEROFF || status == WORKER_EXIT_STOPPED ||
	       worker_exit_is_debug(status);
}

/* A short name for an exit status ("guest power-off", "debug exit", ...). */
const char *worker_exit_kind(int status);
