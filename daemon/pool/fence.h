/* fence.h: HA fencing by lease timing (issue 13). Each host holds an etcd
 * lease that its ownership of VMs is bound to; this is the state machine a
 * host runs about its own lease (renew, keep running, stop its HA VMs by a
 * deadline, fenced), with the pool's isolation policy (restart, or ride
 * through N s like Hyper-V's compute resiliency), and the other side's rule
 * for when a surviving host may start a VM whose owner's lease is gone.
 *
 * The timing argument that makes "no VM ever runs twice" hold is in
 * docs/pool.md, "Fencing: the timing argument"; fence_settings_check()
 * refuses settings that break its inequality. Pure: times are the caller's
 * clock in milliseconds, no I/O, no clock reads. That clock must be
 * CLOCK_BOOTTIME: monotonic like CLOCK_MONOTONIC, but it counts time
 * suspended, so a host that wakes from a suspend knows its lease is gone. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FENCE_MUST_CHECK __attribute__((warn_unused_result))

enum fence_policy {
	FENCE_RESTART = 0,     /* fail over as fast as safety allows */
	FENCE_RIDE_THROUGH,    /* an isolated host keeps its VMs ride_through_ms longer; others wait as long */
};

/* Defaults: failover (host death to the lease gone) within
 * renew + ttl + etcd's expiry check (500 ms), about 6.5 s; see docs. */
#define FENCE_DEFAULT_TTL_MS      5000
#define FENCE_DEFAULT_RENEW_MS    1000
#define FENCE_DEFAULT_KILL_MS     1500
#define FENCE_DEFAULT_MARGIN_MS   500
#define FENCE_DEFAULT_DRIFT_PPM   1000

struct fence_settings {
	uint32_t ttl_ms;          /* the lease's TTL; etcd counts whole seconds */
	uint32_t renew_ms;        /* a keepalive every renew_ms */
	uint32_t kill_ms;         /* bound on stopping every HA VM (SIGKILL, reaped) */
	uint32_t margin_ms;       /* late timer wake-ups, scheduling */
	uint32_t drift_ppm;       /* bound on any host's (and etcd leader's) monotonic clock rate error */
	enum fence_policy policy;
	uint32_t ride_through_ms; /* FENCE_RIDE_THROUGH only */
	/* When to start fencing, after the send time of the last successful
	 * renewal, before any ride-through; 0: the latest safe time
	 * (fence_max_ms). A value past it is refused. */
	uint32_t fence_ms;
};

/* The defaults above, policy restart, fence_ms resolved. */
void fence_settings_default(struct fence_settings *s);
/* The defaults for a lease of ttl_ms: those above from the default TTL up;
 * below it renew, kill and margin scaled down with the TTL (1/5, 3/10,
 * 1/10 of it), so a short test TTL (2-4 s) still passes the check.
 * fence_ms resolved when the result passes fence_settings_check. */
void fence_settings_for_ttl(struct fence_settings *s, uint32_t ttl_ms);

/* The latest safe fence_ms for s (ignoring s->fence_ms): the largest F with
 *   (F + R) / (1 - p) + K + M  <  (T + R) / (1 + p)
 * (T ttl, R ride-through or 0, K kill, M margin, p drift), or a negative
 * number when no F >= 0 satisfies it. */
int64_t fence_max_ms(const struct fence_settings *s);

/* Check s and resolve fence_ms (0 -> fence_max_ms). Returns 0, or -EINVAL
 * with the reason in err (naming the setting and the bound). */
int fence_settings_check(struct fence_settings *s, char *err, size_t err_size) FENCE_MUST_CHECK;

/* Upper bound on the time from a host's death (its last keepalive) to the
 * moment a survivor may start its VMs: renew_ms + ttl (drift-stretched) +
 * etcd's expiry check period + ride-through. */
uint64_t fence_failover_bound_ms(const struct fence_settings *s);

enum fence_action {
	FENCE_KEEP_RUNNING = 0, /* nothing to do before `next` */
	FENCE_RENEW_NOW,        /* send a keepalive now (fence_renew_sent) */
	FENCE_STOP_BY_DEADLINE, /* stop every HA VM now, all gone by `deadline`; then fence_stopped */
	FENCE_FENCED,           /* HA VMs stopped; only a fresh lease (fence_lease_granted) ends it */
};

enum fence_phase {
	FENCE_HELD = 0,   /* renewals go through */
	FENCE_LATE,       /* a renewal is overdue: the host is isolated (pool status) */
	FENCE_RIDING,     /* ride-through: past the restart policy's fence time, VMs kept */
	FENCE_FENCING,
	FENCE_STOPPED,
};

struct fence_state {
	struct fence_settings s;  /* checked */
	uint64_t last_ok_sent;    /* send time of the last renewal etcd confirmed */
	uint64_t last_attempt;    /* send time of the last keepalive */
	bool lease_lost;          /* etcd said the lease is gone */
	uint64_t fence_now_at;    /* revoked under us: fence from this time (UINT64_MAX: not) */
	bool stopped;             /* the caller stopped the HA VMs */
	uint64_t stopped_at;
};

struct fence_decision {
	enum fence_action action;
	enum fence_phase phase;
	bool renew;          /* also send a keepalive now (true with FENCE_RENEW_NOW) */
	bool regrant;        /* the lease is gone: ask for a new one and take back the VMs
			      * whose owner key is absent (compare-and-swap), fence_lease_granted */
	uint64_t next;       /* call fence_step again at this time at the latest */
	uint64_t fence_at;   /* when fencing starts (the caller's clock) */
	uint64_t deadline;   /* HA VMs all stopped by then: fence_at + kill_ms */
	int64_t late_ms;     /* how far past fence_at a fence was asked for (0 if not) */
	char reason[200];
};

/* A lease granted (at first, or again after a fence) by a request sent at
 * sent_at: renewals start over. s must have passed fence_settings_check. */
void fence_init(struct fence_state *st, const struct fence_settings *s, uint64_t sent_at);
void fence_lease_granted(struct fence_state *st, uint64_t sent_at);
/* A keepalive left at sent_at. */
void fence_renew_sent(struct fence_state *st, uint64_t sent_at);
/* The reply to the keepalive sent at sent_at: renewed, with the TTL etcd
 * reports (one below the settings' does not count: the argument assumed
 * more). A keepalive that failed (timeout, no member) needs no call: only
 * confirmed renewals move the deadline. */
void fence_renew_ok(struct fence_state *st, uint64_t sent_at, uint32_t ttl_ms);
/* etcd said the lease does not exist (at now). With the restart policy, or
 * before the restart policy's fence time, the lease was revoked under us:
 * fence at once. Later, with ride-through, it expired as expected: keep
 * riding through until fence_at and try for a new lease (decision.regrant). */
void fence_renew_gone(struct fence_state *st, uint64_t now);
/* Every HA VM stopped (reaped) at now. */
void fence_stopped(struct fence_state *st, uint64_t now);

/* What to do at now. */
void fence_step(const struct fence_state *st, uint64_t now, struct fence_decision *d);

/* The survivor's side: the lease of a VM's owner was seen gone (deleted in
 * etcd: the watch event, or a read that found it absent) at seen_gone, on
 * this host's clock. May this host take the VM over and start it at now?
 * Returns true, or false with *not_before set to when it may. */
bool fence_may_start(const struct fence_settings *s, uint64_t seen_gone, uint64_t now,
		     uint64_t *not_before);

const char *fence_action_name(enum fence_action a);
const char *fence_phase_name(enum fence_phase p);
