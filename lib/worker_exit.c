/* worker_exit.c: names of cella-vm's exit statuses. */
#include "worker_exit.h"

const char *worker_exit_kind(int status)
{
	if (worker_exit_is_debug(status))
		return "debug exit";
	switch (status) {
	case WORKER_EXIT_POWEROFF: return "guest power-off";
	case WORKER_EXIT_CONFIG: return "configuration error";
	case WORKER_EXIT_ERROR: return "VMM error";
	case WORKER_EXIT_CRASH: return "guest crash";
	case WORKER_EXIT_RESET: return "guest reset";
	case WORKER_EXIT_UNHANDLED: return "unhandled guest instruction";
	case WORKER_EXIT_STOPPED: return "stopped by the host";
	case WORKER_EXIT_SAVED: return "state saved";
	case WORKER_EXIT_MIGRATED: return "migrated";
	case WORKER_EXIT_FENCED: return "fenced";
	default: return "unknown";
	}
}
