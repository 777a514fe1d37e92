/* pool.h: this host's membership of a pool (docs/pool.md): its host
 * record in etcd, kept alive by a lease it renews, the pool's view of every
 * host (state, capacity, VMs) and leaving the pool. Built on the etcd
 * client (store/etcd.h), beside the store; the core reaches it through
 * sup_conf.pool only. */
#pragma once
#include <stdint.h>

#include <jansson.h>

#include "cerr.h"
#include "compiler.h"
#include "store.h"

#define POOL_LEASE_TTL_DEFAULT_S 10

struct pool_conf {
	const struct store_etcd_conf *etcd; /* the store's members, TLS files, prefix, host */
	const char *address;  /* this host's API (https://ADDR:PORT), or NULL */
	unsigned lease_ttl_s; /* the host record's lease (2-300; renewed every third) */
	uint64_t memory_mib;  /* capacity this host offers */
	unsigned cpus;
};

struct pool;

/* Record this host (P/members/HOST: address, capacity, state; kept when
 * there) and make it alive (P/alive/HOST on a fresh lease), then renew the
 * lease from a thread; a lease that lapsed (etcd away longer than its TTL)
 * is granted again and the record made alive again. 0, or -errno with err. */
int pool_start(struct pool **out, const struct pool_conf *conf, char *err,
	       size_t errlen) __must_check;
/* Stop renewing and revoke the lease: the host shows as down at once (its
 * VMs keep running; a later cellad makes it up again). */
void pool_stop(struct pool *p);

/* {pool, host, hosts: [{name, address, state, memory_mib, cpus, vms: [names],
 * since}]}: up (alive), maintenance (alive, kept off), down (no live lease). */
int pool_status(struct pool *p, json_t **out, struct cerr *e) __must_check;
/* Take this host out of the pool: refused (conflict) while it owns VMs;
 * then its record and lease go and it is no longer kept alive. */
int pool_leave(struct pool *p, struct cerr *e) __must_check;

/* For sup_conf.pool (core/sup.h): status and leave on a struct pool. */
extern const struct sup_pool_ops pool_sup_ops;
