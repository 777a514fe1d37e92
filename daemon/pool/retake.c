/* retake.c: riding through an isolation longer than the lease's TTL
 * (docs/pool.md, "High availability", "Riding through past the TTL").
 *
 * With the ride-through policy an isolated host keeps its HA VMs running
 * until its fence time, which may be long after its lease expired in etcd
 * (TTL 5 s, ride-through 240 s as Hyper-V's default): the lease took the
 * VMs' owner keys with it, and the other hosts wait the ride-through time
 * from the moment they saw the keys go before they may take a VM over.
 * When etcd answers again before the fence time, the host asks for a new
 * lease and, in one transaction, puts its alive key and creates the owner
 * key of every HA VM it still runs, each only if absent (a compare on its
 * version), on that lease. All or nothing:
 * - it succeeds: nobody took any of them (a taker creates the key before
 *   it starts the VM, so an absent key is a VM nobody else runs or will),
 *   and the host holds them again: the fence is called off under the lease
 *   lock, unless the watchdog began fencing meanwhile (then the new lease
 *   is revoked, which deletes the keys it holds, and the fence goes on);
 * - it fails: some other host owns one of them (it cannot happen before
 *   the fence time by the timing argument, but the host does not rely on
 *   it): the lease is revoked and the host rides on to its fence time and
 *   fences as before.
 * Safety therefore does not depend on this path: the compare-and-swap is
 * what lets two hosts never own one VM, and the fence time what lets a
 * host that could not retake stop before anyone may start its VMs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pool_priv.h"

#define RETAKE_MAX 120 /* etcd's default --max-txn-ops is 128 (an alive put as well) */

int pool_retake(struct pool *p)
{
	char (*uuids)[40] = NULL, key[POOL_KEY_MAX], val[64];
	const struct pool_ha_ops *ha;
	struct fence_decision d;
	int64_t lease = 0, granted = 0, old;
	uint64_t sent = pool_boot_ms();
	struct etcd_txn t;
	void *opaque;
	bool ok = false, fencing;
	size_t n = 0;
	int ret;

	pthread_mutex_lock(&p->lock);
	ha = p->ha;
	opaque = p->ha_opaque;
	pthread_mutex_unlock(&p->lock);
	if (!ha || !ha->running)
		return -ENOTSUP;
	uuids = calloc(RETAKE_MAX + 1, sizeof(*uuids));
	if (!uuids)
		return -ENOMEM;
	n = ha->running(opaque, uuids, RETAKE_MAX + 1);
	if (n > RETAKE_MAX) {
		log_warn("pool: host %s runs more than %d HA VMs: it does not take their ownership "
			 "back in one transaction; it rides on to its fence time", p->host, RETAKE_MAX);
		free(uuids);
		return -E2BIG;
	}
	ret = etcd_lease_grant(p->ka, (int64_t)p->ttl_s, &lease, &granted);
	if (ret) {
		free(uuids);
		return ret;
	}
	snprintf(val, sizeof(val), "{\"since\":%lld}", (long long)time(NULL));
	etcd_txn_init(&t);
	ret = pool_key(p, key, "alive/%s", p->host) ?:
	      etcd_txn_put(&t, key, val, strlen(val), lease);
	for (size_t i = 0; i < n && !ret; i++)
		ret = pool_key(p, key, "owner/%s", uuids[i]) ?:
		      etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
		      etcd_txn_put(&t, key, p->host, strlen(p->host), lease);
	if (!ret)
		ret = etcd_txn_commit(p->ka, &t, &ok, NULL);
	etcd_txn_free(&t);
	free(uuids);
	if (ret || !ok) {
		if (etcd_lease_revoke(p->ka, lease))
			log_debug("pool: cannot revoke lease %lld", (long long)lease);
		if (!ret)
			log_warn("pool: host %s cannot take its %zu HA VMs' ownership back: another "
				 "host owns one of them; riding on to the fence time", p->host, n);
		return ret ? ret : -EEXIST;
	}
	/* Called off under the lock the watchdog fences under: either it has
	 * begun (the keys go with the revoked lease) or it never will. */
	pthread_mutex_lock(&p->lock);
	fence_step(&p->fst, pool_boot_ms(), &d);
	fencing = d.action == FENCE_STOP_BY_DEADLINE || d.action == FENCE_FENCED ||
		  p->stopping || p->left;
	old = p->lease;
	if (!fencing) {
		p->lease = lease;
		fence_lease_granted(&p->fst, sent);
		fence_step(&p->fst, pool_boot_ms(), &d);
	}
	pthread_mutex_unlock(&p->lock);
	if (fencing) {
		if (etcd_lease_revoke(p->ka, lease))
			log_debug("pool: cannot revoke lease %lld", (long long)lease);
		return -ETIMEDOUT;
	}
	if (old && old != lease && etcd_lease_revoke(p->ka, old))
		log_debug("pool: cannot revoke the old lease %lld", (long long)old);
	atomic_fetch_add(&p->ctr.retakes, 1);
	log_warn("pool: host %s rode through: alive again (lease %lld), the ownership of its %zu "
		 "running HA VMs taken back", p->host, (long long)lease, n);
	if (ha->extend) /* their deadline: the new lease's fence time */
		ha->extend(opaque, d.fence_at * 1000000u);
	if (pool_member_put(p))
		log_debug("pool: cannot refresh host %s's record", p->host);
	return 0;
}
