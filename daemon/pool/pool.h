/* pool.h: this host and its pool (docs/pool.md): creating a pool and
 * joining one (certificates from the pool's CA, join tokens), its host
 * record in etcd kept alive by a lease it renews, the pool's view of every
 * host and VM, and requests forwarded to a VM's owner. Built on the etcd
 * client (store/etcd.h), beside the store; the core reaches it through
 * sup_conf.pool only. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cerr.h"
#include "fence.h"
#include "compiler.h"
#include "role.h"
#include "store.h"

#define POOL_LEASE_TTL_DEFAULT_S (FENCE_DEFAULT_TTL_MS / 1000)
#define POOL_TOKEN_TTL_DEFAULT_S 3600
#define POOL_HA_BACKOFF_DEFAULT_MS 2000

struct pool_conf {
	/* The store's members, TLS files, prefix and host: NULL when this
	 * host is in no pool (yet: create and join make it a member). */
	const struct store_etcd_conf *etcd;
	const char *address;  /* this host's API (https://ADDR:PORT), or NULL */
	unsigned lease_ttl_s; /* the host's lease (2-300) */
	/* HA fencing (fence.h): checked by fence_settings_check, ttl_ms ==
	 * lease_ttl_s * 1000; all 0: fence.c's defaults on lease_ttl_s. */
	struct fence_settings fence;
	/* How long a host that placement did not choose waits before it tries
	 * to take an HA VM over itself (ha.c); 0: at once (every host races). */
	uint32_t ha_backoff_ms;
	uint64_t memory_mib;  /* capacity this host offers */
	unsigned cpus;
	/* Where the files of create and join go (state_dir/pool/: pool.json,
	 * ca.pem, host.pem, host.key, and ca.key on hosts that admit others). */
	const char *state_dir;
	/* With pool files: the pool's CA key, if this host holds it, and the
	 * CA and this host's certificate (forwarding, mutual TLS). */
	const char *ca_key, *ca, *cert, *key;
	/* Whether this host's pool came from pool files (create, join): only
	 * then may leave remove them. */
	bool from_files;
};

struct pool;

/* A pool member (conf->etcd): record this host (P/members/HOST: address,
 * capacity, state; kept when there), make it alive (P/alive/HOST on a
 * fresh lease), renew the lease from a thread (a lease that lapsed is
 * granted again), and watch the pool's VMs and hosts. Without conf->etcd
 * a host that may create or join one. 0, or -errno with err. */
int pool_start(struct pool **out, const struct pool_conf *conf, char *err,
	       size_t errlen) __must_check;
/* Stop renewing and revoke the lease: the host shows as down at once (its
 * VMs keep running; a later cellad makes it up again). */
void pool_stop(struct pool *p);

/* {pool, host, hosts: [{name, address, state, memory_mib, cpus, vms: [names],
 * since}]}: up (alive), maintenance (alive, kept off), down (no live lease). */
int pool_status(struct pool *p, json_t **out, struct cerr *e) __must_check;
/* Take this host out of the pool: refused (conflict) while it owns VMs;
 * then its record and lease go and it is no longer kept alive; pool files
 * are put aside (*restart: cellad starts again without the pool). */
int pool_leave(struct pool *p, bool *restart, struct cerr *e) __must_check;

/* join.c ------------------------------------------------------------------ */
/* Create a pool (body {name, host?, etcd: [URL...], ca_cert, ca_key, address,
 * lease_ttl_s?, token_ttl_s?}): this host's certificate from the CA, the
 * pool record in etcd, the pool files, a first join token (*out {pool,
 * host, token, expires_at}); *restart: cellad starts again on the pool. */
int pool_create(struct pool *p, json_t *body, json_t **out, bool *restart,
		struct cerr *e) __must_check;
/* A join token (body {ttl_s?} or NULL): *out {token, expires_at}. */
int pool_token_new(struct pool *p, json_t *body, json_t **out, struct cerr *e) __must_check;
/* Join the pool of the host at body.to with body.token (body {to, token,
 * host?, address?}): key and request made here, the certificate from there
 * (its CA checked against the token's hash), the pool files written;
 * *restart: cellad starts again on the pool. */
int pool_join(struct pool *p, json_t *body, json_t **out, bool *restart,
	      struct cerr *e) __must_check;
/* The admitting side of a join (a request with a token, from the network):
 * *out {cert, ca, pool: {name, prefix, endpoints, lease_ttl_s}}. */
int pool_admit(struct pool *p, json_t *body, json_t **out, struct cerr *e) __must_check;
/* {ca: PEM}: the pool's CA certificate (public), for a joining host to
 * check against its token's hash. */
int pool_ca_get(struct pool *p, json_t **out, struct cerr *e) __must_check;

/* vms.c ------------------------------------------------------------------- */
/* The pool's VMs owned by other hosts (from a cache the watch keeps):
 * [{name, uuid, host, state, cpus, memory_mib}]. */
json_t *pool_remote_vms(struct pool *p);
/* The host that owns the VM called name if it is not this one: 1 (host and
 * its address filled), 0 (no other owner known), -1 with e. */
int pool_owner_of(struct pool *p, const char *name, char *host, size_t hlen, char *address,
		  size_t alen, struct cerr *e) __must_check;
/* Whether cn names a host of the pool (a certificate's subject). */
bool pool_host_known(struct pool *p, const char *cn);
/* Send the request to the owner of its VM over mutual TLS (this host's
 * certificate), with the caller's role and name (docs/pool.md): 0 with the
 * owner's status and JSON reply, or -1 with e (peer failure). */
int pool_forward(struct pool *p, const char *host, const char *address, const char *method,
		 const char *url, const char *body, enum role role, const char *who,
		 long *status, json_t **reply, struct cerr *e) __must_check;

/* Where the pool's events go (fn NULL: nowhere): pool-host-up and
 * pool-host-down (a host's lease began, or ended: lapsed or revoked),
 * pool-host-joined and pool-host-left (its record came or went), each
 * with the host's name, as the watch sees them. fn runs on the watch's
 * thread. */
void pool_set_events(struct pool *p, void (*fn)(void *opaque, const char *event,
						  const char *detail), void *opaque);

/* lease.c ----------------------------------------------------------------- */
/* What the lease's threads ask of the core about its HA VMs (opaque: the
 * core's). extend and fence run on the pool's threads. */
struct pool_ha_ops {
	/* After each confirmed renewal: every HA worker must now die by
	 * CLOCK_BOOTTIME until_ns unless extended again (lease-extend). */
	void (*extend)(void *opaque, uint64_t until_ns);
	/* Fence: SIGKILL every HA worker now; returns (CLOCK_BOOTTIME ms) once
	 * each has exited (event vm-fenced). */
	uint64_t (*fence)(void *opaque, const char *reason);
	/* This host took the HA VM def over from host `from` (its owner key
	 * is this host's now): load it, and start it if it was up there
	 * (event vm-failed-over). */
	void (*take)(void *opaque, const struct vmdef *def, const char *from, const char *reason,
		     bool start);
	/* The VM uuid is owned by another host: forget it here if this host
	 * has it and it does not run (a host back after being fenced). */
	void (*drop)(void *opaque, const char *uuid, const char *owner);
	/* place_start.c: whether the core has VM uuid; load def, given to
	 * this host by another (its owner key names this host now). */
	bool (*has)(void *opaque, const char *uuid);
	void (*adopt)(void *opaque, const struct vmdef *def);
	/* retake.c: the uuids of the HA VMs whose workers run here (at most
	 * max into uuids); how many there are. */
	size_t (*running)(void *opaque, char (*uuids)[40], size_t max);
};
void pool_set_ha(struct pool *p, const struct pool_ha_ops *ops, void *opaque);
/* keep: HA workers outlive this cellad; pool_stop leaves the lease to
 * lapse (their deadline comes first) instead of revoking it. */
void pool_keep_lease(struct pool *p, bool keep);
/* The deadline to give an HA worker started now (CLOCK_BOOTTIME ns): the
 * current fence time; 1 (already past) once fenced; 0 outside a pool. */
uint64_t pool_ha_deadline_ns(struct pool *p);

/* maint.c: moves inside the pool, maintenance mode and balance --------- */
/* host's record from the cache: address and state ("up", "maintenance",
 * "down"): 0, or -ENOENT (no such host, or not in a pool). */
int pool_member_get(struct pool *p, const char *host, char *address, size_t alen, char *state,
		    size_t slen) __must_check;
/* Set host's record's state ("up", "maintenance") by compare-and-swap on
 * the record (tried again if it changed meanwhile). 0, or -1 with e. */
int pool_member_state_set(struct pool *p, const char *host, const char *state,
			  struct cerr *e) __must_check;
/* The VM's owner key from `from` to this host (compare: it names from), on
 * this host's lease if on_lease (an HA VM). 0, -EAGAIN (it does not name
 * from), -ENOLINK (no lease now) or the store's -errno. */
int pool_owner_pass(struct pool *p, const char *uuid, const char *from,
		    bool on_lease) __must_check;
/* Delete this host's runtime record of the VM (it moved away). */
int pool_runtime_drop(struct pool *p, const char *uuid) __must_check;
/* The VM's definition from etcd (vmdef_free it): 0 or -errno. */
struct vmdef;
int pool_vm_def(struct pool *p, const char *uuid, struct vmdef *def) __must_check;
/* A plan over the pool's cache (plan.h): evacuate NULL: balance; else the
 * evacuation of that host. 0, or -1 with e. */
int pool_plan(struct pool *p, const char *evacuate, json_t **out, struct cerr *e) __must_check;

/* For sup_conf.pool (core/sup.h). */
extern const struct sup_pool_ops pool_sup_ops;
