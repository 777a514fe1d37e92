/* pool_priv.h: what pool.c (membership), join.c (create, join, admit) and
 * vms.c (the pool's VMs, forwarding) share. */
#pragma once
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "etcd.h"
#include "fence.h"
#include "pool.h"

#define POOL_KEY_MAX 256

/* One VM of the pool as the watch last saw it. */
struct pool_vm {
	char uuid[40];
	char name[64];
	char owner[64];  /* "" : nobody (yet) */
	char state[16];  /* from the owner's runtime record; "" : none */
	int cpus;
	int64_t memory_mib;
	int64_t memory_max_mib; /* hot-plug ceiling, 0: none (pool_vm_commit_mib) */
	bool ha;
	int ha_priority;
	char last_owner[64];   /* the owner before the key went */
	int64_t owner_lease;   /* the owner key's lease (0: none) */
	uint64_t gone_at;      /* CLOCK_BOOTTIME ms the owner key was seen gone (0: owned) */
	uint64_t tried_at;     /* this host's last takeover attempt */
	char group[64];        /* anti-affinity group ("" none); place_start.c */
	bool group_hard;
	uint64_t adopt_tried_at; /* place_start.c: last load of a VM given to this host */
};

/* The memory a VM commits on its host, as placement counts it: its
 * hot-plug ceiling where virtio-mem can grow it, else its startup memory
 * (docs/memory.md, "Admission and placement"). */
static inline uint64_t pool_vm_commit_mib(const struct pool_vm *v)
{
	return (uint64_t)(v->memory_max_mib > v->memory_mib ? v->memory_max_mib : v->memory_mib);
}

struct pool {
	struct pool_conf conf; /* strings copied below */
	struct etcd *etcd;     /* NULL: not a member */
	/* The lease keepalive's own client and connection (lease.c): a
	 * renewal never waits behind the pool's other requests (HA binds,
	 * ownership reads, status) on etcd's lock; bench/pool_scale.py. */
	struct etcd *ka;
	char prefix[128], host[64], address[256];
	char state_dir[PATH_MAX];
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], ca_key[PATH_MAX];
	unsigned ttl_s;
	pthread_t thread, watchdog; /* lease.c */
	bool thread_started, watchdog_started;
	struct fence_state fst;  /* the lease's fencing state (lock) */
	enum fence_phase phase;  /* as the watchdog saw it last (lock) */
	uint64_t lease_sent;     /* CLOCK_BOOTTIME ms when the first lease was asked for */
	const struct pool_ha_ops *ha;
	bool keep_lease;
	void *ha_opaque;
	pthread_mutex_t lock; /* lease, stopping, left, busy */
	pthread_cond_t wake;
	int64_t lease;
	bool stopping, left;
	bool busy; /* a create or join runs */
	unsigned fwd_streams;    /* (lock) forward_stream.c: consoles forwarded, their transfers */
	pthread_cond_t fwd_done; /* (lock) one of them ended */
	/* The watch's cache of the pool (cache_lock, a leaf). */
	pthread_mutex_t cache_lock;
	struct pool_vm *vms;
	size_t nr_vms;
	json_t *members; /* name -> host record */
	json_t *alive;   /* name -> true: hosts whose lease lives */
	pthread_t ha_thread; /* ha.c */
	bool ha_started;
	struct etcd_watch *watch;
	void (*ev_fn)(void *opaque, const char *event, const char *detail);
	void *ev_opaque;
	/* When etcd is away (away.c, metrics.c): the watch of the pool lost
	 * etcd (cache_lock), and this host's counters (atomics). */
	bool watch_lost;
	bool need_load; /* started while etcd was away: read it all once back */
	struct pool_counters {
		atomic_uint_fast64_t renewals, renew_failures, fences, failovers;
		atomic_uint_fast64_t retakes; /* retake.c: rode through past the TTL */
		/* placement on start (place_start.c): decisions, refusals */
		atomic_uint_fast64_t placed, placed_elsewhere, place_refused;
	} ctr;
};

/* prefix + "/" + fmt(part): 0 or -ENAMETOOLONG. */
int pool_key(const struct pool *p, char *dst, const char *fmt, const char *part);
int pool_range_prefix(struct pool *p, const char *what, struct etcd_kvs *out) __must_check;
/* A store error as the API's: unavailable when etcd cannot be reached. */
int pool_store_cerr(struct cerr *e, int ret);
/* A file written whole (mode), via a temporary name. 0 or -errno. */
int pool_write_file(const char *dir, const char *name, const char *data, mode_t mode);
/* A whole file (at most POOL_PEM_MAX bytes), malloc'd, or NULL. */
char *pool_read_file(const char *path);

/* pool.c: the host record, and P/alive/HOST on a fresh lease. */
int pool_member_put(struct pool *p) __must_check;
int pool_alive_put(struct pool *p, int64_t *lease) __must_check;
/* retake.c: riding through with the lease gone, a new lease and the owner
 * keys of every HA VM this host runs taken back (all or none). 0, or
 * -errno (the fence goes on as before). */
int pool_retake(struct pool *p) __must_check;

/* lease.c: the keepalive and watchdog threads (fence.c on CLOCK_BOOTTIME). */
uint64_t pool_boot_ms(void);
int pool_lease_start(struct pool *p) __must_check;
void pool_lease_stop(struct pool *p);

/* ha.c: binding this host's HA VMs' owner keys to its lease, and taking
 * over the HA VMs of hosts whose lease expired. */
int pool_ha_start(struct pool *p) __must_check;
void pool_ha_stop(struct pool *p);

/* place_start.c: load the VMs whose owner key names this host but that
 * its core does not have (given to it by another host; ha.c's thread). */
void pool_place_adopt(struct pool *p);
/* sup_pool_ops.place, .give, .uuid_of (core/sup.h). */
struct sup_place_req;
struct sup_place_out;
int pool_place(struct pool *p, const struct sup_place_req *req, struct sup_place_out *out,
	       struct cerr *e);
int pool_give(struct pool *p, const char *uuid, const char *to);
int pool_uuid_of(struct pool *p, const char *name, char *uuid, size_t len);
int pool_place_op(void *ctx, const struct sup_place_req *req, struct sup_place_out *out,
		  struct cerr *e);
int pool_give_op(void *ctx, const char *uuid, const char *to);
int pool_uuid_of_op(void *ctx, const char *name, char *uuid, size_t len);
/* away.c: pool_status's answer from the cache when etcd cannot be reached
 * (this host isolated, every record marked stale). */
int pool_status_cached(struct pool *p, json_t **out, struct cerr *e) __must_check;
/* This host's own state for pool status: "isolated" while its lease is
 * not held (renewals late, fencing, fenced) or etcd is away, else NULL. */
const char *pool_own_isolated(struct pool *p);
/* usage.c: each host's "use" (the vCPUs and memory of its running and
 * paused VMs, its VMs by state, its HA VMs) from the cache, and this
 * host's "lease" phase, added to a status answer. */
void pool_status_add_use(struct pool *p, json_t *status);
/* metrics.c: the pool's Prometheus series (malloc'd text). */
char *pool_metrics_text(struct pool *p);

/* vms.c: the cache, filled from etcd then kept by a watch. */
int pool_cache_start(struct pool *p) __must_check;
/* The cached VM (cache_lock held), or NULL. */
struct pool_vm *vm_find_locked(struct pool *p, const char *uuid);
void pool_cache_stop(struct pool *p);
/* Forwarding (vms.c): the peer for host at address (its certificate check
 * and this host's) and the X-Cella-Forwarded-* headers for role and who,
 * in h (which the peer points into); -1 with e when host cannot be
 * forwarded to. */
struct peer;
struct pool_fwd_hdrs {
	char role[64], fwd_for[160], by[96];
	const char *list[4];
};
int pool_fwd_peer(struct pool *p, const char *host, const char *address, enum role role,
		  const char *who, struct pool_fwd_hdrs *h, struct peer *peer, struct cerr *e);
/* forward_stream.c: sup_pool_ops.forward_raw (core/sup.h); pool_stop
 * waits for the transfers still ending. */
struct sup_fwd_req;
struct sup_stream_src;
int pool_forward_raw_op(void *ctx, const char *host, const char *address,
			const struct sup_fwd_req *req, long *status, json_t **reply,
			const struct sup_stream_src **src, void **src_ctx, struct cerr *e);
void pool_forward_streams_wait(struct pool *p);
