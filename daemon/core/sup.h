/* sup.h: the supervisor: cellad's registry of VMs (definitions from SQLite,
 * runtime state), the lifecycle state machine, one worker per running VM,
 * and re-adoption of workers after cellad restarts. Every function is
 * thread-safe (HTTP requests run on their own threads). API errors come
 * back in a struct cerr (HTTP status, field, reason, current state). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "compiler.h"
#include "cerr.h"
#include "role.h"

struct store;
struct sup;
struct sup_stream;
struct job_kind;
struct storage;
struct vmdef;

struct sup_conf {
	const char *state_dir;      /* logs/ lives here */
	const char *run_dir;        /* control and console sockets, exit records */
	const char *worker_path;    /* cella-vm */
	const char *passt_path;     /* passt for user NICs; NULL: /usr/bin/passt (or $PATH) */
	bool sandbox;               /* mount-namespace sandbox for workers */
	const char *sandbox_user;   /* one user for every worker; NULL: a uid each */
	/* Without sandbox_user each worker runs as its own uid (and gid) from
	 * [base, base + count) (docs/security.md). */
	uint32_t sandbox_uid_base, sandbox_uid_count;
	/* Standby workers kept ready for restores (docs/cellad.md); -1: one
	 * where /dev/kvm opens, else none. */
	int standby_workers;
	bool seccomp;
	bool test_probe;            /* tests only: workers accept probe-open */
	const char *test_crash_at;  /* tests only: "KIND:PHASE" where a job kills cellad */
	/* The kinds of jobs the features run (NULL-terminated; core/job.h). */
	const struct job_kind *const *job_kinds;
	/* What features attach to VMs, reached without knowing the feature. */
	const struct sup_hooks *hooks;
	/* Where VM files may come from (core/storage.h); opened by main. */
	const struct storage *storage;
	const char *cgroup_parent;  /* e.g. "cella" */
	uint64_t memory_overhead_mib;
	/* Admission: a start is refused when the guest memory (plus the
	 * overhead) of the VMs that run would pass capacity x ratio.
	 * memory_capacity_mib 0: the host's memory. */
	uint64_t memory_capacity_mib;
	double memory_overcommit;
	unsigned shutdown_timeout_s;
	unsigned start_timeout_s;
	const char *boot_id_path;   /* /proc/sys/kernel/random/boot_id */
	size_t console_history;     /* bytes of console output kept per VM */
	/* Moves: this host's certificate and key and the CA of its peers (PEM
	 * files; NULL: no live moves), and how long one may take. */
	const char *tls_cert, *tls_key, *tls_ca;
	unsigned move_timeout_s;
	/* The pool this host is a member of (daemon/pool/, docs/pool.md), or
	 * NULL: a single host. Reached through these calls only. */
	const struct sup_pool_ops *pool;
	void *pool_ctx;
};

/* Placement on start (core/sup_place.c, pool/place_start.c; docs/pool.md,
 * "Placement on start"): the VM to place, and the host chosen. */
struct sup_place_req {
	const char *uuid, *name;
	uint64_t memory_mib;
	uint64_t memory_max_mib; /* hot-plug ceiling (virtio-mem), 0: none; placed by
				  * it when larger (docs/memory.md) */
	unsigned cpus;
	const char *group;  /* anti-affinity group, "" or NULL: none */
	bool hard;          /* the group is a hard rule */
	bool local_only;    /* a disk (or a saved state) only this host has */
	const char *host;   /* --host: only this host; NULL: any */
};

struct sup_place_out {
	char host[64];
	char address[256]; /* the chosen host's API (https://...) */
	char reason[512];  /* placement's words */
};

/* A stream whose bytes come from elsewhere (a console forwarded to its
 * owner): the sup_stream_* calls on it call these (peer_stream_*'s
 * contract, features/peer.h; read's -2: the source broke off). */
struct sup_stream_src {
	ssize_t (*read)(void *ctx, char *buf, size_t max, int timeout_ms);
	void (*set_wake)(void *ctx, void (*fn)(void *arg), void *arg);
	bool (*arm)(void *ctx);
	bool (*disarm)(void *ctx);
	void (*close)(void *ctx);
};

/* A request forwarded as is to a VM's owner (the console, docs/pool.md). */
struct sup_fwd_req {
	const char *method, *path; /* path with its query */
	const void *body;          /* NULL: none */
	size_t len;
	bool stream;               /* a 200 answer streams */
	enum role role;            /* the caller's, and who it is */
	const char *who;
};

/* The pool layer's calls (daemon/pool/pool.h says what each does); the
 * core adds what it knows (its VMs) in sup_pool_*. */
struct sup_pool_ops {
	int (*status)(void *ctx, json_t **out, struct cerr *e);
	int (*leave)(void *ctx, bool *restart, struct cerr *e);
	int (*create)(void *ctx, json_t *body, json_t **out, bool *restart, struct cerr *e);
	int (*token)(void *ctx, json_t *body, json_t **out, struct cerr *e);
	int (*join)(void *ctx, json_t *body, json_t **out, bool *restart, struct cerr *e);
	int (*admit)(void *ctx, json_t *body, json_t **out, struct cerr *e);
	int (*ca)(void *ctx, json_t **out, struct cerr *e);
	json_t *(*remote_vms)(void *ctx);
	const char *(*host)(void *ctx); /* this host's name in its pool, or NULL */
	int (*owner_of)(void *ctx, const char *name, char *host, size_t hlen, char *address,
			size_t alen, struct cerr *e);
	bool (*host_known)(void *ctx, const char *cn);
	int (*forward)(void *ctx, const char *host, const char *address, const char *method,
		       const char *url, const char *body, enum role role, const char *who,
		       long *status, json_t **reply, struct cerr *e);
	/* The console forwarded (pool/forward_stream.c): a raw body (input) or
	 * a streamed answer (stream: a 200 gives *src and *src_ctx). */
	int (*forward_raw)(void *ctx, const char *host, const char *address,
			   const struct sup_fwd_req *req, long *status, json_t **reply,
			   const struct sup_stream_src **src, void **src_ctx, struct cerr *e);
	/* The deadline (CLOCK_BOOTTIME ns) to give an HA worker now: 0 none. */
	uint64_t (*ha_deadline_ns)(void *ctx);
	/* The VM's owner as etcd says now ("" nobody): 0, or -errno. */
	int (*owner_now)(void *ctx, const char *uuid, char *owner, size_t len);
	/* Placement on start: the host for req (0), or -1 with e (no host can
	 * take it: capacity, naming each host's reason; an unknown --host:
	 * not found). */
	int (*place)(void *ctx, const struct sup_place_req *req, struct sup_place_out *out,
		     struct cerr *e);
	/* Hand the VM's ownership to host `to` (compare-and-swap: only while
	 * this host owns it). 0, -EPERM (not this host's), or -errno. */
	int (*give)(void *ctx, const char *uuid, const char *to);
	/* The uuid of the pool's VM called name (from the cache): 1, or 0. */
	int (*uuid_of)(void *ctx, const char *name, char *uuid, size_t len);
	/* Moves inside the pool, maintenance, balance (pool/maint.c, pool.h). */
	int (*member)(void *ctx, const char *host, char *address, size_t alen, char *state,
		      size_t slen);
	int (*member_state_set)(void *ctx, const char *host, const char *state, struct cerr *e);
	int (*owner_pass)(void *ctx, const char *uuid, const char *from, bool on_lease);
	int (*runtime_drop)(void *ctx, const char *uuid);
	int (*vm_def)(void *ctx, const char *uuid, struct vmdef *def);
	int (*plan)(void *ctx, const char *evacuate, json_t **out, struct cerr *e);
	/* The pool's Prometheus series (malloc'd), or NULL. May be NULL. */
	char *(*metrics)(void *ctx);
};

/* Calls from the core into features that attached data to a VM (a move
 * in: vm->incoming). Each may be NULL. Lock held. */
struct sup_incoming;
struct vmrt;
struct sup_hooks {
	/* The worker of a VM still incoming ended: the move failed. */
	void (*incoming_worker_ended)(struct sup *s, struct vmrt *vm, const char *detail);
	/* Free what the feature attached (the VM is being freed). */
	void (*incoming_free)(struct sup_incoming *in);
	/* The pool names another host (owner) the owner of a VM moving in
	 * (a move inside the pool whose ownership has not passed yet: the
	 * feature may try again to take it). */
	void (*incoming_owned_elsewhere)(struct sup *s, struct vmrt *vm, const char *owner);
};

/* The core's own kinds of job; features declare theirs. */
extern const struct job_kind start_job, stop_job, save_job;
/* An image's convert and backup (core/images_job.c): on no VM. */
extern const struct job_kind image_convert_job, image_backup_job;

/* Load the definitions, re-adopt live workers, settle the rest, autostart
 * after a host boot, and start the monitor thread. 0 or -errno. */
int sup_create(struct sup **out, const struct sup_conf *conf, struct store *db) __must_check;
/* End every stream (readers return end-of-stream); call before the HTTP
 * server stops, so that its threads can be joined. */
void sup_quiesce(struct sup *s);
/* Stop supervising. Workers keep running: a later cellad re-adopts them. */
void sup_destroy(struct sup *s);

/* High availability (core/sup_ha.c, docs/pool.md): what the pool's lease
 * threads ask of the core. Every HA worker gets the deadline until_ns
 * (lease-extend); fence: SIGKILL every HA worker and wait until each has
 * exited (returns when, CLOCK_BOOTTIME ms), event vm-fenced once its exit
 * is recorded; whether any HA worker runs. */
void sup_ha_extend(struct sup *s, uint64_t until_ns);
uint64_t sup_ha_fence(struct sup *s, const char *reason); /* CLOCK_BOOTTIME ms: all gone */
bool sup_ha_running(struct sup *s);
/* The uuids of the HA VMs whose workers run here (not moving in), at most
 * max into uuids; returns how many there are. */
size_t sup_ha_running_uuids(struct sup *s, char (*uuids)[40], size_t max);
/* A takeover won (the owner key is this host's): register def here and,
 * if start (it ran on its old host), start it (event vm-failed-over,
 * detail "from A to B: reason"). */
struct vmdef;
void sup_ha_take(struct sup *s, const struct vmdef *def, const char *from, const char *reason,
		 bool start);
/* Another host owns uuid: forget it here if it does not run (event
 * vm-owned-elsewhere). */
void sup_ha_drop(struct sup *s, const char *uuid, const char *owner);
/* The deadline to hand an HA worker being started (0: none). */
uint64_t sup_ha_deadline_ns(struct sup *s);

/* Start a VM in a pool (core/sup_place.c): body {host?, uuid?} (uuid:
 * sent by an owner handing the VM over, so that the new owner loads it
 * from the pool's records even before its watch brings it). Placement
 * chooses the host; this one starts it, or hands it over to the chosen
 * host and forwards the start there (as role/who). *status: the HTTP
 * status to answer with *out (a forwarded reply is passed on), which
 * carries "placement": {host, reason}. Outside a pool: sup_action. 0, or
 * -1 with e. */
int sup_place_start(struct sup *s, const char *name, json_t *body, enum role role,
		    const char *who, long *status, json_t **out, bool *pending,
		    struct cerr *e) __must_check;
/* The pool's side of a hand-over (pool/place_start.c via pool_ha_ops):
 * whether uuid is registered here; load def (given to this host) unless a
 * VM with its uuid is registered already. */
bool sup_place_has(struct sup *s, const char *uuid);
struct vmdef;
void sup_place_adopt(struct sup *s, const struct vmdef *def);

json_t *sup_list(struct sup *s);
/* Switches (core/sup_switch.c, docs/networking.md). */
json_t *sup_switch_list(struct sup *s);
int sup_switch_get(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
int sup_switch_create(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_switch_delete(struct sup *s, const char *name, struct cerr *e) __must_check;
/* A switch NIC's port policy and VLAN ({"policy": {...}, "vlan": N}), applied
 * at once to a running VM's port. */
int sup_nic_set(struct sup *s, const char *name, unsigned nic, json_t *body, json_t **out,
		struct cerr *e) __must_check;
int sup_get(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
/* Define or change a VM for a caller with `role`: the host files its
 * definition names must be in storage locations that role may use (an
 * admin may name any; core/storage.h). */
int sup_define(struct sup *s, json_t *body, enum role role, json_t **out,
	       struct cerr *e) __must_check;
int sup_change(struct sup *s, const char *name, json_t *body, enum role role, json_t **out,
	       struct cerr *e) __must_check;
int sup_delete(struct sup *s, const char *name, struct cerr *e) __must_check;

enum sup_action { SUP_START, SUP_STOP, SUP_KILL, SUP_RESET, SUP_PAUSE, SUP_RESUME, SUP_SAVE,
		  SUP_DELETE_STATE };
/* Run a lifecycle action. *pending is true when the action goes on after
 * the call (a graceful stop the guest is still carrying out); *out is the VM
 * after it. */
int sup_action(struct sup *s, const char *name, enum sup_action a, json_t *body, json_t **out,
	       bool *pending, struct cerr *e) __must_check;

/* Change one disk's live settings (body {"qos": {...}}): applied to the
 * running worker (set-qos) and stored. *out is the disk. */
int sup_disk_change(struct sup *s, const char *name, const char *disk, json_t *body, json_t **out,
		    struct cerr *e) __must_check;

/* Checkpoints (checkpoint.c): list (tree), create (body {name, kind}),
 * apply and delete. */
int sup_cp_list(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
int sup_cp_create(struct sup *s, const char *name, json_t *body, json_t **out,
		  struct cerr *e) __must_check;
int sup_cp_apply(struct sup *s, const char *name, const char *cp, json_t **out,
		 struct cerr *e) __must_check;
int sup_cp_delete(struct sup *s, const char *name, const char *cp, struct cerr *e) __must_check;

/* Images of the storage locations (core/images*.c, docs/disks.md "Images
 * in cellad"), for a caller with role: list ({locations: [{name, path,
 * role, pool, writable, images: [...]}], jobs: [...]}, only `location`
 * when not NULL or ""; NULL with e), one image (location "" : the one
 * visible location holding it), create (body {location, name, format,
 * size, backing, cluster_size}), resize (body {size}: grow only), delete,
 * and convert and backup (body {target, location, format, cluster_size,
 * point, since}) as jobs: *out {job} once it runs (202), its progress in
 * the image's "job" and the list's "jobs". */
json_t *sup_images_list(struct sup *s, enum role role, const char *location, struct cerr *e);
int sup_image_get(struct sup *s, enum role role, const char *location, const char *name,
		  json_t **out, struct cerr *e) __must_check;
int sup_image_create(struct sup *s, enum role role, json_t *body, json_t **out,
		     struct cerr *e) __must_check;
int sup_image_resize(struct sup *s, enum role role, const char *location, const char *name,
		     json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_image_delete(struct sup *s, enum role role, const char *location, const char *name,
		     struct cerr *e) __must_check;
int sup_image_convert(struct sup *s, enum role role, const char *location, const char *name,
		      json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_image_backup(struct sup *s, enum role role, const char *location, const char *name,
		     json_t *body, json_t **out, struct cerr *e) __must_check;

/* Peer hosts (move targets): list ({hosts: [...]}, tokens hidden), add
 * (body {name, url, token, tls_name}), remove. */
json_t *sup_hosts_list(struct sup *s);
int sup_host_add(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_host_remove(struct sup *s, const char *host, struct cerr *e) __must_check;

/* Move a VM to another host (body {to, include_storage, quick, downtime_ms,
 * max_bandwidth}): live migration, or save + transfer + restore (quick).
 * *out: {name, to, mode, total_ms, downtime_ms, rounds, bytes, vm}. */
/* Set a running VM's balloon target (body {target_mib}, 0..memory_mib): the
 * VM must have "balloon": true. *out: the worker's balloon status. */
int sup_balloon_set(struct sup *s, const char *name, json_t *body, json_t **out,
		    struct cerr *e) __must_check;
/* features/vmem.c: a change that is memory_mib alone (wants) on a running
 * or paused VM resizes it through virtio-mem, within memory_max_mib: 0
 * with *out the VM (and "virtio_mem", the worker's status), -1 with e, or
 * 1 when the VM is not running (the ordinary change applies). */
bool sup_vmem_wants(json_t *body);
int sup_vmem_resize(struct sup *s, const char *name, json_t *body, json_t **out,
		    struct cerr *e) __must_check;
/* features/cpuhp.c: a change that is cpus alone (wants) on a running or
 * paused VM hot-plugs vCPUs through ACPI, within cpus_max, and stores the
 * new count: 0 with *out the VM (and "cpu_hotplug", the worker's status),
 * -1 with e, or 1 when the VM is not running (the ordinary change). */
bool sup_cpuhp_wants(json_t *body);
int sup_cpuhp_set(struct sup *s, const char *name, json_t *body, json_t **out,
		  struct cerr *e) __must_check;

int sup_move(struct sup *s, const char *name, json_t *body, json_t **out,
	     struct cerr *e) __must_check;

/* The destination's side of a move (incoming.c). local_addr: this host's
 * address the request came in on ("" for the Unix socket). */
int sup_incoming_prepare(struct sup *s, json_t *body, const char *local_addr, json_t **out,
			 struct cerr *e) __must_check;
int sup_incoming_commit(struct sup *s, const char *name, json_t **out,
			struct cerr *e) __must_check;
int sup_incoming_abort(struct sup *s, const char *name, struct cerr *e) __must_check;
/* Streamed uploads of a quick move: the saved state (disk NULL) or a disk
 * image. open gives the file to write and the most bytes accepted; done
 * (fd closed there, ok false: discard) puts it in place. */
int sup_incoming_upload_open(struct sup *s, const char *name, const char *disk, int *fd,
			     uint64_t *max, struct cerr *e) __must_check;
int sup_incoming_upload_done(struct sup *s, const char *name, const char *disk, int fd,
			     uint64_t bytes, bool ok, struct cerr *e) __must_check;

int sup_metrics(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
/* core/job.c: the jobs running now and the last finished ones, newest first, only VM
 * vm's when vm is not NULL: {"jobs": [{id, kind, vm, phase, started_at,
 * running, percent (where known), ended_at (when finished)}]}. */
json_t *sup_jobs_list(struct sup *s, const char *vm);
/* worker/log_tail.c: the last tail lines of the VM's worker log:
 * {name, size, truncated, lines}. 0, or -1 with e set (no such VM). */
int sup_vm_log(struct sup *s, const char *name, unsigned tail, json_t **out,
	       struct cerr *e) __must_check;
/* Prometheus text exposition for every VM and the daemon (malloc'd). */
char *sup_prometheus(struct sup *s);
json_t *sup_host(struct sup *s);

/* The pool (sup_conf.pool, docs/pool.md). Not in a pool: not found.
 * status: its hosts with their state, capacity and VMs. leave, create and
 * join set *restart when cellad must start again (on the pool's store, or
 * without it); create and join are refused while this host has VMs. token:
 * a new join token; admit: the admitting side of a join (the token is the
 * credential); ca: the pool's CA certificate. */
int sup_pool_status(struct sup *s, json_t **out, struct cerr *e) __must_check;
int sup_pool_leave(struct sup *s, bool *restart, struct cerr *e) __must_check;
int sup_pool_create(struct sup *s, json_t *body, json_t **out, bool *restart,
		    struct cerr *e) __must_check;
int sup_pool_token(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_pool_join(struct sup *s, json_t *body, json_t **out, bool *restart,
		  struct cerr *e) __must_check;
int sup_pool_admit(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_pool_ca(struct sup *s, json_t **out, struct cerr *e) __must_check;
/* Every VM of the pool: sup_list's, each with "host", and the other hosts'
 * (from the pool's cache); sup_list's alone outside a pool. */
json_t *sup_pool_list(struct sup *s);
/* A request on VM name that its owner must answer: 1 when no VM here is
 * called name and another host owns one (host, address filled), else 0. */
int sup_pool_forward_target(struct sup *s, const char *name, char *host, size_t hlen,
			    char *address, size_t alen);
/* An event of the pool (a host up, down, joined, left: detail names it) on
 * the event stream, with no VM. */
void sup_pool_event(struct sup *s, const char *event, const char *detail);
/* Whether cn (a client certificate's subject) names a host of the pool. */
bool sup_pool_host_known(struct sup *s, const char *cn);
/* Forward a request to host (docs/pool.md: how the role travels). */
int sup_pool_forward(struct sup *s, const char *host, const char *address, const char *method,
		     const char *url, const char *body, enum role role, const char *who,
		     long *status, json_t **reply, struct cerr *e) __must_check;

/* Forward req to host as is (a console stream, console input): 0 with
 * *status and either *st (a 200 of a streamed request: the owner's bytes
 * as they come) or *reply (JSON or NULL); -1 with e (the owner cannot be
 * reached: a peer failure; too many forwarded streams: unavailable). */
int sup_pool_forward_raw(struct sup *s, const char *host, const char *address,
			 const struct sup_fwd_req *req, long *status, json_t **reply,
			 struct sup_stream **st, struct cerr *e) __must_check;

/* Maintenance mode and balance (features/maint.c, docs/pool.md).
 * maintenance: body {state: "on"|"off"} for this host (host must name it:
 * sup_pool_host_target says where another host's request goes); on: the
 * record's state by compare-and-swap, then every VM evacuated by the plan
 * (*out {host, state, plan, results}); off: up again. balance: body
 * {dry_run?}: *out the plan (and results unless dry_run). load: this host
 * owns VM uuid now (handed over): register it if it is not here. */
int sup_maintenance(struct sup *s, const char *host, json_t *body, json_t **out,
		    struct cerr *e) __must_check;
int sup_balance(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
int sup_pool_load(struct sup *s, const char *uuid, json_t **out, struct cerr *e) __must_check;
/* At start: a host in maintenance that still runs VMs carries its
 * evacuation on, from a thread (NULL: nothing to do); stop waits for the
 * batch under way and starts no other (before sup_quiesce's callers stop
 * the API). */
struct maint_resume;
struct maint_resume *sup_maint_resume_start(struct sup *s);
void sup_maint_resume_stop(struct maint_resume *r);
/* 1 when host is another host of the pool (its address filled), else 0. */
int sup_pool_host_target(struct sup *s, const char *host, char *address, size_t alen);

/* Console: a reader over the VM's output history (the last `history`
 * bytes, up to the buffer size) and what follows. */
int sup_console_open(struct sup *s, const char *name, size_t history, bool follow,
		     struct sup_stream **out, struct cerr *e) __must_check;
int sup_console_input(struct sup *s, const char *name, const void *data, size_t len,
		      struct cerr *e) __must_check;
/* Events (JSON lines) after sequence number `since` (-1: only new ones);
 * without `follow` the stream ends once the backlog is sent. */
int sup_events_open(struct sup *s, int64_t since, const char *vm_filter, bool follow,
		    struct sup_stream **out) __must_check;
/* Copy what is available, waiting up to timeout_ms for more. Returns the
 * byte count, 0 when nothing came in time, -1 at the end of the stream, or
 * -2 when a forwarded stream's owner broke it off. */
ssize_t sup_stream_read(struct sup_stream *r, char *buf, size_t max, int timeout_ms);
void sup_stream_close(struct sup_stream *r);
/* For readers that do not wait in sup_stream_read (an event loop): fn(arg)
 * is called, once per sup_stream_arm, when the stream may have more to
 * read (new output or events, its VM gone, cellad stopping). fn runs on the
 * core's threads with its locks held: it must only schedule (resume). */
void sup_stream_set_wake(struct sup_stream *r, void (*fn)(void *arg), void *arg);
/* Ask to be woken. Returns false when the stream has something to read
 * already (then no wake comes: read again). */
bool sup_stream_arm(struct sup_stream *r);
/* Take back an armed wake: true when it was still armed (no wake came and
 * none will), false when a wake came or is coming. */
bool sup_stream_disarm(struct sup_stream *r);

/* Replication (docs/replica.md). The source (features/replica_out.c):
 * replicate VM name to a peer host (body {to, interval_ms?, keep?,
 * max_bandwidth?}), stop, and its status. */
int sup_replica_enable(struct sup *s, const char *name, json_t *body, json_t **out,
		       struct cerr *e) __must_check;
int sup_replica_disable(struct sup *s, const char *name, struct cerr *e) __must_check;
int sup_replica_status(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
/* Shippers of the VMs whose replica.json says so, at start; all stopped. */
void sup_replica_out_resume(struct sup *s);
/* At start (features/replica_vmdef.c): each replica kept here matched with
 * its VM definition, a change cut short by a crash completed. */
void sup_replica_in_resume(struct sup *s);
void sup_replica_out_stop_all(struct sup *s);
/* The target (features/replica_in.c): a replica made or updated by its
 * source (body {vm, disk_sizes, keep?, from?}), listed, shown, deleted,
 * failed over (body {point?, start?}: the VM defined here on layers over
 * the point, and started), and a change set's upload (a point once whole). */
int sup_replica_in_create(struct sup *s, json_t *body, json_t **out, struct cerr *e) __must_check;
json_t *sup_replica_in_list(struct sup *s);
int sup_replica_in_get(struct sup *s, const char *name, json_t **out, struct cerr *e) __must_check;
int sup_replica_in_delete(struct sup *s, const char *name, struct cerr *e) __must_check;
int sup_replica_in_failover(struct sup *s, const char *name, json_t *body, json_t **out,
			    struct cerr *e) __must_check;
/* End a test failover (body test: true): its VM turned off and deleted, its
 * layers removed; the replica's points stay. */
int sup_replica_in_test_stop(struct sup *s, const char *name, struct cerr *e) __must_check;
int sup_replica_in_upload_open(struct sup *s, const char *name, const char *disk, int *fd,
			       uint64_t *max, struct cerr *e) __must_check;
/* A request on the replica called name reaching this pool member
 * (features/replica_broker.c): a replica whose owner is down is taken over
 * here, so the request is answered here rather than forwarded to it. */
void sup_replica_broker_route(struct sup *s, const char *name);
int sup_replica_in_upload_done(struct sup *s, const char *name, const char *disk, int fd,
			       uint64_t bytes, bool ok, json_t **out, struct cerr *e) __must_check;
/* Resumable uploads (features/replica_xfer_in.c, docs/replica.md): the
 * partial upload of disk (*out {disk, upload: {id, total, bytes} or null});
 * open: the body of a request (query id, total, offset) continues the set
 * id from offset (0: a new set, replacing any partial); done: the request
 * ended whole; once the set has every byte, it is made a point as
 * sup_replica_in_upload_done does. */
int sup_replica_in_upload_state(struct sup *s, const char *name, const char *disk, json_t **out,
				struct cerr *e) __must_check;
int sup_replica_in_part_open(struct sup *s, const char *name, const char *disk, const char *id,
			     const char *total, const char *offset, int *fd, uint64_t *max,
			     struct cerr *e) __must_check;
int sup_replica_in_part_done(struct sup *s, const char *name, const char *disk, int fd,
			     const char *id, json_t **out, struct cerr *e) __must_check;
/* Operating replication (features/replica_ops.c, replica_ops_in.c,
 * replica_metrics.c): pause or resume a VM's replication (its status
 * after); on the target, what a made point's upload said of it (cut_at:
 * wall ms of its cut or 0, consistency "flushed" or "crash"), recorded,
 * then retention by age (keep_for_s); the replication series of /metrics
 * (NULL: none). */
int sup_replica_pause(struct sup *s, const char *name, bool pause, json_t **out,
		      struct cerr *e) __must_check;
void sup_replica_in_point_made(struct sup *s, const char *name, const char *point,
			       int64_t cut_at, const char *consistency);
char *sup_replica_metrics(struct sup *s);
/* Planned failover, on the source (features/replica_planned.c; body
 * {planned: true, timeout_s?, start?, reverse?, reverse_to?}): the guest shut
 * down, the last set sent, the target failed over to it, replication
 * reversed. Reverse replication (features/replica_reverse.c): on the host a
 * VM was failed over to (body {to?, interval_ms?, keep?, compression?,
 * max_bandwidth?}), and the old primary's side (adopt: its VM, off, made
 * the replica; body {from, uuid, point?, keep?, disk_sizes}). */
int sup_replica_planned_failover(struct sup *s, const char *name, json_t *body, json_t **out,
				 struct cerr *e) __must_check;
int sup_replica_reverse(struct sup *s, const char *name, json_t *body, json_t **out,
			struct cerr *e) __must_check;
int sup_replica_adopt(struct sup *s, const char *name, json_t *body, json_t **out,
		      struct cerr *e) __must_check;
