/* etcd_stats.h: counters of an etcd client's requests (by kind), their
 * failures, watch restarts and whether etcd answered last: the pool's
 * metrics (pool/metrics.c, docs/pool.md "When etcd is away"). One set is
 * owned by cellad's main and shared by its clients (the store's and the
 * pool's); every field is atomic, updated by any thread. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum etcd_req_kind {
	ETCD_REQ_RANGE,
	ETCD_REQ_PUT,
	ETCD_REQ_DELETE,
	ETCD_REQ_TXN,
	ETCD_REQ_LEASE_GRANT,
	ETCD_REQ_LEASE_KEEPALIVE,
	ETCD_REQ_LEASE_REVOKE,
	ETCD_REQ_OTHER,
	ETCD_REQ_KINDS
};

struct etcd_stats {
	atomic_uint_fast64_t requests[ETCD_REQ_KINDS];
	atomic_uint_fast64_t errors[ETCD_REQ_KINDS]; /* no member answered, or one refused */
	atomic_uint_fast64_t watch_restarts;        /* a watch stream lost and taken up again */
	atomic_int unreachable;                     /* the last request found no member: 1 */
	atomic_uint_fast64_t away_since_ms;         /* CLOCK_BOOTTIME ms unreachable began (0: not) */
};

/* The kind of a gateway path ("/v3/kv/range" ...). */
enum etcd_req_kind etcd_req_kind_of(const char *path);
/* "range", "put", "delete", "txn", "lease-grant", "lease-keepalive",
 * "lease-revoke", "other". */
const char *etcd_req_kind_name(enum etcd_req_kind k);
/* Count one request of path that ended with ret (0 or -errno);
 * unreachable: whether ret says no member could be reached. */
void etcd_stats_count(struct etcd_stats *st, const char *path, int ret, bool unreachable);
/* Whether etcd answered the last request (true before any). */
bool etcd_stats_reachable(struct etcd_stats *st);
