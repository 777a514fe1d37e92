/* sup_priv.h: the core's internals, shared by core/, worker/ and
 * features/ (never by api/, which sees core/sup.h only).
 *
 * Locking. Each VM has its own lock (vm->lock) over its fields, and its own
 * condition (vm->changed) for waiting on them; an operation on one VM never
 * blocks another. The registry lock (s->reg_lock) covers only the lists of
 * VMs and the references that pin a VM (vm->refs); the event lock
 * (s->ev_lock) covers the event ring. Both are leaves: nothing else is
 * locked while holding them, so a VM's lock may be held while taking
 * either (vm->lock -> reg_lock, vm->lock -> ev_lock), never the other way.
 * A thread that uses a VM holds a reference (sup_vm_pin or
 * sup_vm_lock_name), so the monitor frees removed VMs only once nobody
 * does. The store locks itself (store.h). */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "cgroup.h"
#include "uidpool.h"
#include "store.h"
#include "job.h"
#include "lifecycle.h"
#include "sup.h"
#include "vmdef.h"


#define SUP_EVENTS        1024  /* events kept for late readers */
#define SUP_RESTART_BURST 5     /* automatic restarts allowed ... */
#define SUP_RESTART_WINDOW 60   /* ... per this many seconds */

enum watch_kind { WATCH_PID, WATCH_CONSOLE };

struct watch {
	enum watch_kind kind;
	struct vmrt *vm;
	bool armed;
};

/* Console output history: a ring indexed by absolute byte count. */
struct conbuf {
	char *data;
	size_t cap;
	uint64_t total;
};

struct vmrt {
	pthread_mutex_t lock;   /* the fields below */
	pthread_cond_t changed; /* any of them changed, or console output came */
	struct vmdef def;
	enum vm_state state;
	bool busy;             /* an API action is in flight */
	bool ha_taken;         /* just taken over by compare-and-swap: the next
				* start needs no owner check (sup_ha_take) */
	bool stop_requested;   /* the API asked for the exit: no restart */
	bool ha_fenced;        /* sup_ha_fence killed its worker, not reaped yet */
	bool reset_requested;
	pid_t pid;             /* 0: no worker */
	/* The switch of each NIC whose port (tap) is on the host now; "" none. */
	char port_sw[VMDEF_MAX_NICS][VMDEF_SWITCH_MAX + 1];
	uint32_t sandbox_uid;  /* the worker's own uid and gid (uidpool), 0: none */
	/* passt of each user NIC (core/sup_usernet.c): pid and start time, 0 none. */
	pid_t passt_pid[VMDEF_MAX_NICS];
	uint64_t passt_start[VMDEF_MAX_NICS];
	uint64_t pid_start;
	int pidfd;
	bool is_child;         /* spawned by this cellad (waitpid works) */
	unsigned gen;          /* worker generation */
	int64_t started_at;
	struct timespec started_mono;
	int exit_status;       /* -1 none; else cella-vm status, or 128+signal */
	char exit_reason[256];
	unsigned restarts;
	int64_t burst_start;
	unsigned burst;
	int console_fd;
	struct conbuf con;
	uint64_t start_ns;     /* CLOCK_MONOTONIC of the last start request */
	uint64_t first_out_ns; /* ... and of the first console byte after it (0: none yet) */
	struct watch w_pid, w_con;
	unsigned refs;         /* pins (s->reg_lock): lookups, streams, threads */
	bool deleted;
	bool restore;          /* this start restores the saved state */
	pid_t via_standby;     /* this start's worker was this standby worker (0: cold) */
	unsigned acts;         /* bumped around every API action (status poller) */
	char pause_reason[256]; /* "api", "storage: ID: ...", ... ("" when running) */
	uint64_t committed_mib;  /* what this VM counts in s->committed_mib (0: nothing) */
	json_t *disk_status;   /* the worker's last "disks" status (errors), or NULL */
	struct sup_stream *readers; /* console streams with a wake (worker/stream.c) */
	int incoming_fd;       /* listening socket for the next spawn's --incoming, or -1 */
	struct sup_incoming *incoming; /* a VM moving in (state incoming), or NULL */
	struct vmrt *next;
};

struct sup_event {
	int64_t seq;
	char vm[VMDEF_NAME_MAX + 1];
	char *line; /* JSON + "\n" */
};

struct sup {
	struct sup_conf conf;
	struct store *db; /* the store (store/store.h) */
	struct cgroups cg;
	struct uidpool uids;      /* per-worker uids (sandbox without sandbox_user) */
	pthread_mutex_t reg_lock; /* vms, zombies, every vm->refs (a leaf) */
	struct vmrt *vms;
	struct vmrt *zombies;    /* deleted, freed by the monitor once unreferenced */
	pthread_cond_t unpinned; /* (reg_lock) a reference was dropped */
	pthread_cond_t poll_wake; /* (reg_lock) the status poller's sleep */
	int epfd;
	int stop_efd;
	pthread_t monitor;
	bool monitor_started;
	atomic_bool shutting_down;
	pthread_mutex_t ev_lock;  /* events, next_seq (a leaf) */
	pthread_cond_t ev_changed; /* (ev_lock) a new event, or shutting down */
	struct sup_stream *ev_readers; /* (ev_lock) event streams with a wake */
	struct sup_event events[SUP_EVENTS];
	int64_t next_seq;
	atomic_ullong next_job;   /* job ids: KIND-TIME-N */
	pthread_mutex_t jobs_lock; /* jobs_live, jobs_done (a leaf) */
	struct job *jobs_live;     /* running jobs (job.c) */
	struct job_done jobs_done[SUP_JOBS_DONE]; /* a ring of finished ones */
	unsigned jobs_done_n;
	pthread_mutex_t adm_lock; /* committed_mib (a leaf) */
	uint64_t committed_mib;   /* guest memory + overhead of the active VMs */
	uint64_t capacity_mib;    /* memory_capacity_mib x memory_overcommit */
	struct timespec t0;
	int64_t started_wall;
	pthread_t poller;
	bool poller_started;
	/* Replication (features/replica_in.c, replica_out.c): the replicas kept
	 * here (their directories), and the VMs replicated from here. */
	pthread_mutex_t rep_lock;     /* the replicas' directories */
	pthread_mutex_t rep_out_lock; /* rep_out and each shipper's status */
	struct rep_out *rep_out;
	/* Switches (core/sup_switch.c, daemon/net/): name -> definition, as
	 * stored under the host's metadata key "switches". */
	pthread_mutex_t sw_lock;      /* switches (a leaf) */
	json_t *switches;
	bool ct_bridge;               /* the kernel has nf_conntrack_bridge (probed at start) */
	/* Images (core/images_ops.c): their convert and backup jobs, running
	 * and recently ended (img_lock, a leaf); img_cond: one ended. */
	pthread_mutex_t img_lock;
	pthread_cond_t img_cond;
	struct img_job *img_jobs;
	unsigned img_running;
	/* The dynamic-memory balancer (features/dynmem.c), or NULL: its
	 * decisions for the metrics. */
	struct dynmem *dynmem;
	/* Standby workers for restores (worker/standby_pool.c), or NULL. */
	struct standby_pool *standby;
};

/* sup.c: references and locks (see the top of this file). */
/* Pin vm (the caller has it from a list walk under reg_lock, or holds a
 * reference already). */
void sup_vm_ref(struct sup *s, struct vmrt *vm);
void sup_vm_unref(struct sup *s, struct vmrt *vm);
/* The VM called name, pinned and locked; NULL (e: not found) if there is
 * none. sup_vm_unlock undoes both. */
struct vmrt *sup_vm_lock_name(struct sup *s, const char *name, struct cerr *e);
void sup_vm_unlock(struct sup *s, struct vmrt *vm);
/* Every registered VM, pinned (not locked), in definition order: a
 * malloc'd array; sup_vm_unpin_all drops them. */
struct vmrt **sup_vm_pin_all(struct sup *s, size_t *n);
void sup_vm_unpin_all(struct sup *s, struct vmrt **vms, size_t n);
/* Wake whoever waits on vm (its lock held). */
void sup_vm_changed(struct vmrt *vm);
/* Free what a feature attached to vm (sup_conf.hooks). */
void sup_free_attached(struct sup *s, struct vmrt *vm);
void sup_emit(struct sup *s, struct vmrt *vm, const char *event, const char *detail);
/* The same for a VM known by name only (state: its state's name, or ""). */
void sup_emit_named(struct sup *s, const char *vm, const char *state, const char *event,
		    const char *detail);
/* The same with extra's fields in the event's JSON (extra is taken). */
void sup_emit_extra(struct sup *s, const char *vm, const char *state, const char *event,
		    const char *detail, json_t *extra);
void sup_persist(struct sup *s, struct vmrt *vm);
/* A store failure (err, -errno) as a typed error: an unreachable store
 * (etcd) is "unavailable" (503) and names it, a VM another host owns a
 * conflict, the rest internal. what: "cannot store the definition". -1. */
int sup_store_cerr(struct sup *s, struct cerr *e, int err, const char *what);
/* lifecycle.c: the only writer of vm->state. Fire ev (lock held): the
 * state moves as the table says, is persisted and announced. -1 (logged,
 * nothing changed) if the table refuses ev in the current state. */
int lifecycle_fire(struct sup *s, struct vmrt *vm, enum vm_event ev, const char *detail);
/* Set the state recorded in the store (startup only). */
void lifecycle_load(struct sup *s, struct vmrt *vm, enum vm_state st);
/* Admission (lifecycle.c): before a start or a move in, reserve the VM's
 * memory against the host's capacity: 0, or -1 with e set (CERR_CAPACITY,
 * naming what is committed and what is left). The lifecycle releases it when
 * the VM stops being active; a VM that becomes active without a reservation
 * (adopted, restarted) is counted without a check. */
int admission_reserve(struct sup *s, struct vmrt *vm, struct cerr *e);
/* Give back a reservation a start did not use (the VM is not active). */
void admission_release(struct sup *s, struct vmrt *vm);
/* Whether a VM of memory_mib would fit now (a move in, before it exists
 * here). 0, or -1 with e set like admission_reserve. */
int admission_check(struct sup *s, uint64_t memory_mib, struct cerr *e);
json_t *sup_vm_json(struct sup *s, struct vmrt *vm);
int64_t sup_now_wall(void);
uint64_t sup_mono_ns(void);

#define state_active vm_state_active
/* The VM called name, pinned and locked, unless unknown or busy (e
 * filled, NULL). Release with sup_vm_unlock. */
struct vmrt *sup_lookup_idle(struct sup *s, const char *name, struct cerr *e);
/* Turn the VM off and wait for its worker to go (lock held). */
int sup_act_kill(struct sup *s, struct vmrt *vm, struct cerr *e);
/* sup_stop.c: abandon the VM's pending graceful stop (lock held; state
 * stopping): the worker's deadline disarmed, the VM running again, event
 * stop-cancelled with why. 0, or -1 with e (no stop pending; the worker
 * refused, e.g. the guest is already powering off: it ends as a stop). */
int sup_stop_cancel(struct sup *s, struct vmrt *vm, const char *why, struct cerr *e);
int sup_refuse(struct vmrt *vm, struct cerr *e, const char *what);
/* A VM marked a replica (vm->def.replica) refuses to start or change: 409
 * saying to fail over to it or delete the replica. -1. */
int sup_refuse_replica(struct vmrt *vm, struct cerr *e);
/* Another action on the VM is in progress (vm->busy): 409 with its state. -1. */
int sup_refuse_busy(struct vmrt *vm, struct cerr *e);
/* Wait (lock held) until pred holds or timeout_ms passes. */
bool sup_wait_until(struct sup *s, struct vmrt *vm, bool (*pred)(struct vmrt *, unsigned),
		    unsigned arg, int timeout_ms);
bool sup_worker_gone(struct vmrt *vm, unsigned gen);
/* One worker command, the lock dropped around it; 0, or -1 with e set. */
int sup_worker_cmd(struct sup *s, struct vmrt *vm, json_t *req, const int *fds, unsigned nfds,
		   int timeout_ms, json_t **reply, struct cerr *e);

/* Validate a definition and add the VM through ev (EV_DEFINE or
 * EV_MOVE_IN; lock held). NULL with e set (invalid field, name or UUID
 * taken). */
struct vmrt *sup_register(struct sup *s, json_t *body, enum vm_event ev, const char *detail,
			  enum role role, struct cerr *e);
/* The same for a VM whose definition the pool's store holds already (a
 * move inside a pool): nothing is written. */
struct vmrt *sup_register_shared(struct sup *s, json_t *body, enum vm_event ev,
				 const char *detail, enum role role, struct cerr *e);
/* The host files of next (those that differ from prev, when given) against
 * the storage locations for role. 0, or -1 with e set. */
/* An HA definition (d->ha) needs a pool and every disk on pool storage:
 * 0, or -1 with e (400 naming the field). */
/* core/sup_place.c: a definition refused because another VM of the pool
 * has the name (store: -EEXIST): 409 naming the host that has it. -1. */
int sup_place_name_taken(struct sup *s, const char *name, struct cerr *e);
/* Take vm out of the registry (lock held; the store is not touched: the
 * caller deleted its records, or another host owns them), event. */
void sup_forget(struct sup *s, struct vmrt *vm, const char *event, const char *detail);
/* Register a definition as a stopped VM of this host (loaded from the
 * store: a takeover); the VM (unlocked, unpinned) or NULL. */
struct vmrt *sup_register_def(struct sup *s, const struct vmdef *def);
/* Before an HA VM starts (lock held): this host must own it in etcd (a
 * fenced host's ownership lapsed with its lease; the pool places the VM
 * again). 0, or -1 with e (conflict). */
int sup_ha_check_owner(struct sup *s, struct vmrt *vm, struct cerr *e) __must_check;
int sup_check_ha(struct sup *s, const struct vmdef *d, struct cerr *e) __must_check;
/* core/sup_switch.c: switches and their ports (daemon/net/switch.h). */
/* A definition's switch NICs: the switch exists here, the policy parses. */
int sup_nics_check(struct sup *s, const struct vmdef *d, struct cerr *e) __must_check;
/* Read the switches from the store and put their bridges back (at start). */
void sup_switches_load(struct sup *s);
/* NIC i's port (a switch NIC; vm->lock held): its tap's descriptors for
 * the worker, one per queue (the NIC's queues, fds holding
 * CONF_NET_MAX_QUEUES): their count, or -1 with e filled and nothing left
 * on the host. */
int sup_port_open(struct sup *s, struct vmrt *vm, unsigned i, int *worker_vlan, int *fds,
		  struct cerr *e);
/* Remove every port vm has on the host (its worker is gone or never ran). */
void sup_ports_remove(struct sup *s, struct vmrt *vm);
/* core/sup_usernet.c: user NICs through passt. At definition: forwards not
 * twice across NICs, host ports free, passt installed. At start: one passt
 * per user NIC (the worker's uid), returning cellad's end of a connected
 * socket pair for the worker (-1 with e set). At the worker's exit: every
 * passt of the VM stopped and reaped. After a cellad restart: re-adopted
 * from their pid files. */
int sup_usernet_check(struct sup *s, const struct vmdef *d, struct cerr *e);
/* Each forward's host port free now (409 naming it otherwise). */
int sup_usernet_probe(const struct vmdef *d, struct cerr *e);
int sup_usernet_open(struct sup *s, struct vmrt *vm, unsigned i, struct cerr *e);
void sup_usernet_stop(struct sup *s, struct vmrt *vm);
void sup_usernet_adopt(struct sup *s, struct vmrt *vm);
/* A worker cellad finds at its start had vm's switch ports: mark them as
 * the VM's, so that settling its exit (if it is gone) removes them. */
void sup_ports_mark(struct vmrt *vm);
/* An adopted worker's ports: attached again, policies re-applied. */
void sup_ports_reattach(struct sup *s, struct vmrt *vm);
/* Prometheus text of every port's counters (malloc'd; NULL when none). */
char *sup_ports_prometheus(struct sup *s);
/* core/sup_maint.c: while this host of a pool is in maintenance, refuse
 * what it would do (what: "start VMs", "take VMs moved here"): -1 with e
 * (conflict naming the state), else 0. */
int sup_pool_refuse_maint(struct sup *s, const char *what, struct cerr *e) __must_check;
int sup_check_paths(struct sup *s, const struct vmdef *next, const struct vmdef *prev,
		    enum role role, struct cerr *e);
/* Take the VM out of the registry and the database (lock held, no worker):
 * its runtime files and saved state go; streams end; freed when unreferenced.
 * 0, or the store's -errno (the VM stays). */
int sup_remove(struct sup *s, struct vmrt *vm, const char *event, const char *detail);

/* vm->incoming belongs to features/incoming.c; the core and worker/ reach
 * it through sup_conf.hooks only (core/sup.h). */
struct sup_incoming;

/* core/images_ops.c: set up the image jobs (sup_create); cancel the
 * running ones and wait for them (sup_destroy). */
void sup_images_init(struct sup *s);
void sup_images_stop(struct sup *s);
/* features/host_usage.c: what the VMs' workers use, summed (GET /v1/host's
 * "usage"): {running, cpu_ns, rss_bytes, read_bytes, write_bytes, rx_bytes,
 * tx_bytes}, from /proc and sysfs only (no worker is asked). */
json_t *sup_host_usage(struct sup *s);

/* core/save.c (the VM's lock held) */
/* state_dir/vms/<uuid> (created on demand by sup_vm_dir). */
int sup_vm_dir(struct sup *s, const struct vmrt *vm, char *out, size_t len);
void sup_saved_path(struct sup *s, const struct vmrt *vm, char *out, size_t len);
/* The disk library's format of a disk (enum disk_format), as pinned. */
int sup_disk_fmt(const struct vmdef_disk *dk);
int sup_act_save(struct sup *s, struct vmrt *vm, struct cerr *e);
int sup_act_delete_state(struct sup *s, struct vmrt *vm, struct cerr *e);

/* worker/poller.c: the status poller notices workers that pause or resume
 * themselves (storage errors); their disk status goes into the VM's JSON. */
void sup_merge_disk_status(json_t *vmjson, json_t *status);
int sup_poller_start(struct sup *s) __must_check;
void sup_poller_stop(struct sup *s);

/* worker/worker.c, sup_launch and sup_launch_async in worker_launch.c (the
 * VM's lock held unless stated) */
void sup_paths(struct sup *s, const struct vmrt *vm, const char *suffix, char *out, size_t len);
/* Spawn and start a worker for vm, whose state the caller set to
 * VS_STARTING. Called WITHOUT the lock. Returns 0 or -1 with e set. */
int sup_launch(struct sup *s, struct vmrt *vm, struct cerr *e);
/* Spawn a worker without the start handshake (lock held); with
 * vm->incoming_fd >= 0 it is an --incoming worker. 0 or -1 with e set. */
int sup_spawn(struct sup *s, struct vmrt *vm, struct cerr *e);
/* Connect cellad to the VM's console socket (lock held). 0 or -errno. */
int sup_console_attach(struct sup *s, struct vmrt *vm);
/* Same from a detached thread (automatic restarts). */
void sup_launch_async(struct sup *s, struct vmrt *vm);
/* Adopt or settle a worker recorded in the database (startup). */
void sup_adopt(struct sup *s, struct vmrt *vm, const struct store_runtime *rt);
int sup_monitor_start(struct sup *s) __must_check;
void sup_monitor_stop(struct sup *s);
void sup_unwatch(struct sup *s, struct vmrt *vm);
uint64_t proc_start_time(pid_t pid, bool *zombie);
/* Within worker/ (the VM's lock held): drain what the console has;
 * false at EOF. */
bool console_drain(struct sup *s, struct vmrt *vm);
/* The worker's uid back to the pool (no worker runs under it any more). */
void sandbox_uid_put(struct sup *s, struct vmrt *vm);
/* worker/worker_exit_settle.c (the VM's lock held): the worker is gone:
 * find out how it ended and settle the state (reset, stopped, crashed,
 * restarted as the policy says). */
void worker_exited(struct sup *s, struct vmrt *vm);

/* worker/stream.c: wake the streams that wait on vm (its lock held), on
 * the event ring (ev_lock held). */
void sup_streams_wake(struct sup_stream *head);
/* A stream over src (a forwarded console): NULL when out of memory (src
 * is closed then). */
struct sup_stream *sup_stream_of_src(struct sup *s, const struct sup_stream_src *src,
				     void *ctx);
void conbuf_append(struct conbuf *b, const char *p, size_t n);
void conbuf_free(struct conbuf *b);
