/* lifecycle.h: a VM's lifecycle as data: its states, the events that move
 * it between them, and the (state, event) -> state table that refuses
 * everything else. lifecycle.c's lifecycle_fire() is the only writer of a
 * VM's state; this table (lifecycle_table.c) depends on nothing, so a unit
 * test walks every pair.
 *
 *   defined --start--> starting --started--> running <--pause/resume--> paused
 *   running/paused --stop--> stopping --exit--> stopped | crashed
 *   stopping --stop-cancelled--> running  (the guest ignored it; planned failover)
 *   running/paused --save (worker exits 14)--> saved --start--> starting
 *   incoming --started--> running      (a live move in)
 */
#pragma once
#include <stdbool.h>

#include "cerr.h"

enum vm_state {
	VS_DEFINED, VS_STARTING, VS_RUNNING, VS_PAUSED, VS_STOPPING, VS_STOPPED, VS_CRASHED,
	VS_SAVED, VS_INCOMING,
	VS_NONE,        /* not registered yet: the state before define / move-in */
	VS_COUNT
};

enum vm_event {
	EV_DEFINE,            /* none -> defined */
	EV_MOVE_IN,           /* none -> incoming: a move towards this host began */
	EV_START,             /* defined/stopped/crashed/saved -> starting (also autostart) */
	EV_STARTED,           /* starting/incoming -> running */
	EV_START_CANCELLED,   /* starting -> stopped: turned off before the worker ran */
	EV_START_FAILED,      /* starting -> crashed: no worker could be spawned */
	EV_STOP,              /* running/paused -> stopping (graceful) */
	EV_PAUSE,             /* running -> paused (API or the worker itself) */
	EV_RESUME,            /* paused -> running */
	EV_EXIT_STOPPED,      /* worker gone: asked for, power-off, debug exit -> stopped */
	EV_EXIT_CRASHED,      /* worker gone otherwise -> crashed */
	EV_EXIT_SAVED,        /* worker gone after save (status 14) -> saved */
	EV_EXIT_MIGRATED,     /* worker gone after a live move out (status 16) -> stopped */
	EV_RESTORE_STOPPED,   /* a restore turned off while starting -> saved (state kept) */
	EV_RESTORE_CRASHED,   /* a restore failed -> saved (the state stays for a retry) */
	EV_RESET,             /* the guest or the API reset it: -> starting (new worker) */
	EV_RESTART,           /* restart policy after stopped/crashed -> starting */
	EV_ADOPT_RUNNING,     /* a restarted cellad found the worker running */
	EV_ADOPT_PAUSED,      /* ... paused */
	EV_ADOPT_STOPPING,    /* ... shutting down */
	EV_HOST_REBOOTED,     /* the host rebooted under an active VM -> stopped */
	EV_STATE_DELETED,     /* saved -> stopped: the saved state was discarded */
	EV_CHECKPOINT_APPLIED,        /* off -> stopped (disk-only checkpoint) */
	EV_CHECKPOINT_APPLIED_MEMORY, /* off -> saved (checkpoint with memory) */
	EV_INCOMING_QUICK,    /* incoming -> starting: a quick move's files arrived */
	EV_INCOMING_FAILED,   /* incoming -> stopped: the move in failed */
	EV_STOP_CANCELLED,    /* stopping -> running: a pending graceful stop abandoned */
	EV_COUNT
};

/* Requests the API (and later the pool) makes of a VM; each is allowed in
 * some states only (see lifecycle_request_check). */
enum vm_request {
	REQ_START, REQ_STOP, REQ_KILL, REQ_RESET, REQ_PAUSE, REQ_RESUME, REQ_SAVE,
	REQ_DELETE_STATE, REQ_DELETE, REQ_MOVE_LIVE, REQ_MOVE_QUICK, REQ_CHECKPOINT_CREATE,
	REQ_CHECKPOINT_APPLY,
	REQ_COUNT
};

const char *vm_state_name(enum vm_state st);
/* The state called name ("running", ...): 0, or -1 for no such state. */
int vm_state_parse(const char *name, enum vm_state *out);
/* Whether a worker exists (or is about to) in this state. */
bool vm_state_active(enum vm_state st);
/* The event's name, as the event stream shows it ("started", ...). */
const char *vm_event_name(enum vm_event ev);

/* Whether the event is only recorded, not announced on the event stream. */
bool vm_event_quiet(enum vm_event ev);

/* Where ev leads from st: 0 with *next set, or -1 if the table has no such
 * transition. */
int lifecycle_next(enum vm_state st, enum vm_event ev, enum vm_state *next) __must_check;
/* Whether request r is allowed in state st: 0, or -1 with e set to a
 * CERR_STATE error naming the request and the state. */
int lifecycle_request_check(enum vm_request r, enum vm_state st, struct cerr *e) __must_check;
/* The request's verb for messages ("start", "turn off", ...). */
const char *vm_request_verb(enum vm_request r);
