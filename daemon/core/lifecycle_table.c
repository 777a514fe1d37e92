/* lifecycle_table.c: the lifecycle as tables (see lifecycle.h): state and
 * event names, (state, event) -> state, and the states each request is
 * allowed in. Pure data and lookups, so that unit tests can walk it. */
#include "lifecycle.h"

#include <stdio.h>
#include <string.h>

#define B(st) (1u << (st))
#define OFF (B(VS_DEFINED) | B(VS_STOPPED) | B(VS_CRASHED) | B(VS_SAVED))
#define UP (B(VS_RUNNING) | B(VS_PAUSED))
#define WORKER (B(VS_STARTING) | B(VS_RUNNING) | B(VS_PAUSED) | B(VS_STOPPING))
#define ACTIVE (WORKER | B(VS_INCOMING))

static const char *const state_names[VS_COUNT] = {
	[VS_DEFINED] = "defined", [VS_STARTING] = "starting", [VS_RUNNING] = "running",
	[VS_PAUSED] = "paused",   [VS_STOPPING] = "stopping", [VS_STOPPED] = "stopped",
	[VS_CRASHED] = "crashed", [VS_SAVED] = "saved",       [VS_INCOMING] = "incoming",
	[VS_NONE] = "none",
};

/* Each event: its name in the event stream, the states it may fire in, and
 * the state it leads to. */
static const struct {
	const char *name;
	unsigned from;
	enum vm_state to;
	bool quiet; /* recorded, not announced on the event stream */
} events[EV_COUNT] = {
	[EV_DEFINE] = { "defined", B(VS_NONE), VS_DEFINED },
	[EV_MOVE_IN] = { "incoming", B(VS_NONE), VS_INCOMING },
	[EV_START] = { "starting", OFF, VS_STARTING },
	[EV_STARTED] = { "started", B(VS_STARTING) | B(VS_INCOMING), VS_RUNNING },
	[EV_START_CANCELLED] = { "stopped", B(VS_STARTING), VS_STOPPED },
	[EV_START_FAILED] = { "crashed", B(VS_STARTING), VS_CRASHED },
	[EV_STOP] = { "stopping", UP, VS_STOPPING },
	[EV_PAUSE] = { "paused", B(VS_RUNNING), VS_PAUSED },
	[EV_RESUME] = { "resumed", B(VS_PAUSED), VS_RUNNING },
	[EV_EXIT_STOPPED] = { "stopped", WORKER, VS_STOPPED },
	[EV_EXIT_CRASHED] = { "crashed", WORKER, VS_CRASHED },
	[EV_EXIT_SAVED] = { "saved", WORKER, VS_SAVED },
	[EV_EXIT_MIGRATED] = { "migrated", WORKER, VS_STOPPED },
	[EV_RESTORE_STOPPED] = { "stopped", B(VS_STARTING), VS_SAVED },
	[EV_RESTORE_CRASHED] = { "crashed", B(VS_STARTING), VS_SAVED },
	[EV_RESET] = { "reset", WORKER, VS_STARTING },
	[EV_RESTART] = { "restarting", B(VS_STOPPED) | B(VS_CRASHED), VS_STARTING },
	[EV_ADOPT_RUNNING] = { "adopted", ACTIVE, VS_RUNNING },
	[EV_ADOPT_PAUSED] = { "adopted", ACTIVE, VS_PAUSED },
	[EV_ADOPT_STOPPING] = { "adopted", ACTIVE, VS_STOPPING },
	[EV_HOST_REBOOTED] = { "host-rebooted", ACTIVE, VS_STOPPED, true },
	[EV_STATE_DELETED] = { "state-deleted", B(VS_SAVED), VS_STOPPED },
	[EV_CHECKPOINT_APPLIED] = { "checkpoint-applied", OFF, VS_STOPPED },
	[EV_CHECKPOINT_APPLIED_MEMORY] = { "checkpoint-applied", OFF, VS_SAVED },
	[EV_INCOMING_QUICK] = { "starting", B(VS_INCOMING), VS_STARTING },
	[EV_INCOMING_FAILED] = { "incoming-failed", B(VS_INCOMING), VS_STOPPED },
	[EV_STOP_CANCELLED] = { "stop-cancelled", B(VS_STOPPING), VS_RUNNING },
};

/* Each request: its verb in refusals and the states it is allowed in. */
static const struct {
	const char *verb;
	unsigned from;
} requests[REQ_COUNT] = {
	[REQ_START] = { "start", OFF },
	[REQ_STOP] = { "stop", UP },
	[REQ_KILL] = { "turn off", WORKER },
	[REQ_RESET] = { "reset", UP },
	[REQ_PAUSE] = { "pause", B(VS_RUNNING) },
	[REQ_RESUME] = { "resume", B(VS_PAUSED) },
	[REQ_SAVE] = { "save", UP },
	[REQ_DELETE_STATE] = { "discard the saved state of", B(VS_SAVED) },
	[REQ_DELETE] = { "delete", OFF },
	[REQ_MOVE_LIVE] = { "move", UP },
	[REQ_MOVE_QUICK] = { "move", UP | B(VS_SAVED) },
	[REQ_CHECKPOINT_CREATE] = { "checkpoint", OFF | UP | B(VS_INCOMING) },
	[REQ_CHECKPOINT_APPLY] = { "apply a checkpoint to", OFF | UP | B(VS_INCOMING) },
};

const char *vm_state_name(enum vm_state st)
{
	return (unsigned)st < VS_COUNT ? state_names[st] : "unknown";
}

int vm_state_parse(const char *name, enum vm_state *out)
{
	for (unsigned i = 0; i < VS_COUNT; i++) {
		if (i != VS_NONE && !strcmp(name, state_names[i])) {
			*out = (enum vm_state)i;
			return 0;
		}
	}
	return -1;
}

bool vm_state_active(enum vm_state st)
{
	return (unsigned)st < VS_COUNT && (ACTIVE & B(st));
}

const char *vm_event_name(enum vm_event ev)
{
	return (unsigned)ev < EV_COUNT ? events[ev].name : "unknown";
}

int lifecycle_next(enum vm_state st, enum vm_event ev, enum vm_state *next)
{
	if ((unsigned)st >= VS_COUNT || (unsigned)ev >= EV_COUNT || !(events[ev].from & B(st)))
		return -1;
	*next = events[ev].to;
	return 0;
}

bool vm_event_quiet(enum vm_event ev)
{
	return (unsigned)ev < EV_COUNT && events[ev].quiet;
}

const char *vm_request_verb(enum vm_request r)
{
	return (unsigned)r < REQ_COUNT ? requests[r].verb : "act on";
}

int lifecycle_request_check(enum vm_request r, enum vm_state st, struct cerr *e)
{
	if ((unsigned)r < REQ_COUNT && (unsigned)st < VS_COUNT && (requests[r].from & B(st)))
		return 0;
	cerr_set(e, CERR_STATE, "state", "cannot %s a VM that is %s", vm_request_verb(r),
		 vm_state_name(st));
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(st));
	return -1;
}
