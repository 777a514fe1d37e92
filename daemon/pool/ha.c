/* ha.c: the pool's side of high availability (docs/pool.md, "High
 * availability"). One thread, every quarter second or so:
 * - binds the owner keys of this host's HA VMs (P/owner/UUID) to its
 *   lease (compare: the key still names this host), so that etcd deletes
 *   them when the lease expires: the host died, or was cut off and has
 *   fenced itself (lease.c) before that can happen;
 * - takes over HA VMs whose owner key is gone, once the ride-through time
 *   has passed too (fence_may_start): the pool's live hosts decide with
 *   placement.c's HA batch, each on the same records, so the chosen host
 *   tries at once and the others in turn, one back-off apart each, in an
 *   order of their own per VM (in case the chosen one cannot); the take is a compare-and-swap (create the owner key only
 *   if absent, on the taker's lease): exactly one host wins. The winner's
 *   core loads the definition and starts the VM;
 * - tells the core about VMs it has that another host owns now (a host
 *   that comes back after being fenced): it drops them. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd_records.h"
#include "log.h"
#include "placement.h"
#include "worker_exit.h"
#include "pool_priv.h"

#define HA_PERIOD_MS 200

struct ha_item {
	char uuid[40], name[64], owner[64], group[64];
	bool group_hard;
	int64_t memory_mib;
	int cpus, priority;
	uint64_t ready_at;
};

/* The HA VMs whose owner key names this host but is not on lease: bound. */
static void ha_bind(struct pool *p, int64_t lease)
{
	struct ha_item *items = NULL;
	size_t n = 0;

	pthread_mutex_lock(&p->cache_lock);
	items = p->nr_vms ? calloc(p->nr_vms, sizeof(*items)) : NULL;
	for (size_t i = 0; items && i < p->nr_vms; i++) {
		struct pool_vm *v = &p->vms[i];

		if (v->ha && !strcmp(v->owner, p->host) && v->owner_lease != lease)
			snprintf(items[n++].uuid, sizeof(items[0].uuid), "%s", v->uuid);
	}
	pthread_mutex_unlock(&p->cache_lock);
	for (size_t i = 0; i < n; i++) {
		char key[POOL_KEY_MAX];
		struct etcd_txn t;
		bool ok = false;
		int ret;

		etcd_txn_init(&t);
		ret = pool_key(p, key, "owner/%s", items[i].uuid) ?:
		      etcd_txn_compare(&t, key, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, p->host) ?:
		      etcd_txn_put(&t, key, p->host, strlen(p->host), lease) ?:
		      etcd_txn_commit(p->etcd, &t, &ok, NULL);
		etcd_txn_free(&t);
		if (ret || !ok)
			log_warn("pool: cannot bind VM %s's ownership to host %s's lease: %s",
				 items[i].uuid, p->host, ret ? strerror(-ret) : "not its owner any more");
		else
			log_info("pool: VM %s's ownership is on host %s's lease %lld", items[i].uuid,
				 p->host, (long long)lease);
	}
	free(items);
}

/* Whether the VM was up on its old owner, by that host's runtime record
 * (rec: its value): an HA VM its user had stopped is taken over (it stays
 * manageable) but not started. No record, or one that cannot be read: up
 * (restart). */
static bool ha_was_up(const char *rec)
{
	static const char *const up[] = { "running", "paused", "starting", "restarting" };
	const char *st;
	bool was = true;
	json_t *j;

	if (!rec)
		return true;
	j = json_loads(rec, 0, NULL);
	st = json_string_value(json_object_get(j, "state"));
	if (st) {
		const char *why = json_string_value(json_object_get(j, "exit_reason")) ?: "";

		/* Fenced (by cellad, or by the worker's own deadline: status 18)
		 * is stopped by the pool, not by its user: it was up. */
		was = !strncmp(why, "fenced", 6) ||
		      json_integer_value(json_object_get(j, "exit_status")) == WORKER_EXIT_FENCED;
		for (size_t i = 0; i < sizeof(up) / sizeof(up[0]); i++)
			was = was || !strcmp(st, up[i]);
	}
	json_decref(j);
	return was;
}

/* A VM taken over, handed to the core (which starts it if it was up).
 * One after the other, on the HA thread: started side by side (a thread
 * each), the 64-host failover's burst of starts, etcd writes and watch
 * events made survivors late to renew their leases and fence themselves
 * (docs/benchmarks.md, "Pool scale"). */
struct ha_start {
	struct pool *p;
	struct vmdef def;
	char from[64];
	char reason[512];
	bool was_up;
};

static void ha_start(struct ha_start *hs)
{
	struct pool *p = hs->p;
	const struct pool_ha_ops *ha;
	void *opaque;

	pthread_mutex_lock(&p->lock);
	ha = p->ha;
	opaque = p->ha_opaque;
	pthread_mutex_unlock(&p->lock);
	if (ha && ha->take)
		ha->take(opaque, &hs->def, hs->from, hs->reason, hs->was_up);
	vmdef_free(&hs->def);
	free(hs);
}

/* Create the owner key if absent (on this host's lease) and read the
 * definition and the old owner's runtime record, in one transaction; then
 * hand the definition to the core. */
static void ha_take(struct pool *p, int64_t lease, const struct ha_item *it, const char *reason)
{
	char key[POOL_KEY_MAX], rt[POOL_KEY_MAX];
	struct etcd_kv got[2] = { 0 };
	struct ha_start *hs = NULL;
	struct etcd_txn t;
	bool ok = false;
	json_t *j;
	int ret;

	etcd_txn_init(&t);
	ret = pool_key(p, key, "owner/%s", it->uuid) ?:
	      etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
	      etcd_txn_put(&t, key, p->host, strlen(p->host), lease) ?:
	      pool_key(p, key, "vms/%s", it->uuid) ?:
	      etcd_txn_get(&t, key);
	/* The old owner's runtime record: hosts/OWNER/runtime/UUID (no
	 * owner known: a key nobody writes, read as absent). */
	if (!ret && snprintf(rt, sizeof(rt), "%s/hosts/%s/runtime/%s", p->prefix,
			     it->owner[0] ? it->owner : "-", it->uuid) >= (int)sizeof(rt))
		ret = -ENAMETOOLONG;
	if (!ret)
		ret = etcd_txn_get(&t, rt);
	if (!ret)
		ret = etcd_txn_commit_read(p->etcd, &t, &ok, NULL, got, 2);
	etcd_txn_free(&t);
	if (ret) {
		log_warn("pool: cannot take over VM %s: %s", it->name, strerror(-ret));
		return;
	}
	if (!ok) {
		log_info("pool: VM %s was taken over by another host first", it->name);
		return;
	}
	atomic_fetch_add(&p->ctr.failovers, 1);
	log_info("pool: host %s takes over VM %s from %s (%s)", p->host, it->name,
		 it->owner[0] ? it->owner : "?", reason);
	j = got[0].value ? json_loads(got[0].value, 0, NULL) : NULL;
	if (j && (hs = calloc(1, sizeof(*hs))) && etcd_rec_vmdef(j, &hs->def)) {
		free(hs);
		hs = NULL;
	}
	json_decref(j);
	if (!hs) {
		log_err("pool: took VM %s over but its definition is %s", it->name,
			got[0].value ? "unreadable" : "gone");
		etcd_kv_free(&got[0]);
		etcd_kv_free(&got[1]);
		return;
	}
	hs->p = p;
	hs->was_up = ha_was_up(got[1].value);
	snprintf(hs->from, sizeof(hs->from), "%s", it->owner[0] ? it->owner : "?");
	snprintf(hs->reason, sizeof(hs->reason), "%s", reason);
	etcd_kv_free(&got[0]);
	etcd_kv_free(&got[1]);
	ha_start(hs);
}

/* FNV-1a of uuid/host: a host's weight for a VM (rendezvous hashing). */
static uint64_t rv_weight(const char *uuid, const char *host)
{
	uint64_t h = 14695981039346656037ULL;

	for (const char *c = uuid; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ULL;
	h = (h ^ '/') * 1099511628211ULL;
	for (const char *c = host; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ULL;
	return h;
}

/* This host's turn among the live hosts other than the chosen one to try
 * taking the VM over: 1 for the first, 2 for the next... (hosts sorted by
 * their weight for the VM, ties by name: every host computes the same). */
static uint64_t backup_rank(const struct place_host *hosts, size_t nh, size_t chosen,
			    const char *uuid, const char *me)
{
	uint64_t mine = rv_weight(uuid, me), rank = 1;

	for (size_t k = 0; k < nh; k++) {
		uint64_t w;

		if (k == chosen || !strcmp(hosts[k].name, me))
			continue;
		w = rv_weight(uuid, hosts[k].name);
		if (w < mine || (w == mine && strcmp(hosts[k].name, me) < 0))
			rank++;
	}
	return rank;
}

static void ha_failover(struct pool *p, int64_t lease)
{
	struct ha_item *items = NULL;
	struct place_host *hosts = NULL;
	struct place_vm *pv = NULL, *running = NULL;
	struct place_result *res = NULL;
	const char *key;
	json_t *rec;
	size_t n = 0, nh = 0, nr = 0, i;
	uint64_t now = pool_boot_ms();

	pthread_mutex_lock(&p->cache_lock);
	for (i = 0; i < p->nr_vms; i++) {
		struct pool_vm *v = &p->vms[i];
		uint64_t nb;

		if (!v->ha || v->owner[0] || !v->gone_at ||
		    (v->tried_at && now < v->tried_at + p->conf.ha_backoff_ms + HA_PERIOD_MS) ||
		    !fence_may_start(&p->conf.fence, v->gone_at, now, &nb))
			continue;
		if (!items && !(items = calloc(p->nr_vms, sizeof(*items))))
			break;
		snprintf(items[n].uuid, sizeof(items[n].uuid), "%s", v->uuid);
		snprintf(items[n].name, sizeof(items[n].name), "%s", v->name);
		snprintf(items[n].owner, sizeof(items[n].owner), "%s", v->last_owner);
		items[n].memory_mib = (int64_t)pool_vm_commit_mib(v);
		items[n].cpus = v->cpus;
		items[n].priority = v->ha_priority;
		snprintf(items[n].group, sizeof(items[n].group), "%s", v->group);
		items[n].group_hard = v->group_hard;
		items[n].ready_at = nb;
		n++;
	}
	if (!n) {
		pthread_mutex_unlock(&p->cache_lock);
		free(items);
		return;
	}
	hosts = calloc(json_object_size(p->members) + 1, sizeof(*hosts));
	/* Each host's VMs, for the anti-affinity groups (valid under cache_lock). */
	running = calloc(p->nr_vms + 1, sizeof(*running));
	json_object_foreach(p->members, key, rec) {
		const char *st = json_string_value(json_object_get(rec, "state"));
		struct place_host *h;

		if (!hosts || !running || !json_object_get(p->alive, key))
			continue;
		h = &hosts[nh++];
		h->name = key; /* valid while cache_lock is held */
		h->state = st && !strcmp(st, "maintenance") ? POOL_HOST_MAINTENANCE : POOL_HOST_UP;
		h->memory_mib = (uint64_t)json_integer_value(json_object_get(rec, "memory_mib"));
		h->cpus = (uint32_t)json_integer_value(json_object_get(rec, "cpus"));
		h->vms = &running[nr];
		for (size_t k = 0; k < p->nr_vms; k++)
			if (!strcmp(p->vms[k].owner, key)) {
				h->memory_committed_mib += pool_vm_commit_mib(&p->vms[k]);
				h->vcpus_committed += (uint32_t)p->vms[k].cpus;
				running[nr].name = p->vms[k].name;
				running[nr].group = p->vms[k].group;
				running[nr].memory_mib = pool_vm_commit_mib(&p->vms[k]);
				running[nr].vcpus = (uint32_t)p->vms[k].cpus;
				nr++;
				h->nr_vms++;
			}
	}
	pv = calloc(n, sizeof(*pv));
	res = calloc(n, sizeof(*res));
	if (hosts && pv && res) {
		for (i = 0; i < n; i++) {
			pv[i].name = items[i].name;
			pv[i].memory_mib = (uint64_t)items[i].memory_mib;
			pv[i].vcpus = (uint32_t)items[i].cpus;
			pv[i].priority = items[i].priority;
			/* Its anti-affinity group, as on start (hard: never beside a
			 * member; soft: preferred apart). Its disks are on pool
			 * storage (an HA VM's must be: vmdef checks). */
			pv[i].group = items[i].group[0] ? items[i].group : NULL;
			pv[i].affinity = items[i].group_hard ? PLACE_AA_HARD : PLACE_AA_SOFT;
		}
		if (place_batch(hosts, nh, pv, n, res, NULL) < 0)
			n = 0;
	} else {
		n = 0;
	}
	/* Decide under the lock (host names point into the cache), act after. */
	for (i = 0; i < n; i++) {
		struct pool_vm *v;
		bool mine = res[i].host >= 0 && !strcmp(hosts[res[i].host].name, p->host);
		/* The chosen one did not take it: the others try in turn, one
		 * back-off apart, in an order of their own per VM (rendezvous
		 * hashing), so that a large pool does not race all at once. */
		uint64_t rank = res[i].host >= 0 ? backup_rank(hosts, nh, (size_t)res[i].host,
							       items[i].uuid, p->host) : 1;
		bool late = now >= items[i].ready_at + p->conf.ha_backoff_ms * rank;

		items[i].ready_at = (mine || (late && res[i].host >= 0)) ? 1 : 0;
		if (res[i].host < 0 && (v = vm_find_locked(p, items[i].uuid)) && !v->tried_at)
			log_warn("pool: no host can take over HA VM %s: %s", items[i].name,
				 res[i].reason);
		if ((v = vm_find_locked(p, items[i].uuid)) && (items[i].ready_at || res[i].host < 0))
			v->tried_at = now;
	}
	pthread_mutex_unlock(&p->cache_lock);
	for (i = 0; i < n; i++)
		if (items[i].ready_at)
			ha_take(p, lease, &items[i], res[i].reason);
	free(items);
	free(hosts);
	free(running);
	free(pv);
	free(res);
}

/* VMs another host owns now: the core drops those it has (not running). */
static void ha_drop_foreign(struct pool *p)
{
	const struct pool_ha_ops *ha;
	struct ha_item *items = NULL;
	void *opaque;
	size_t n = 0;

	pthread_mutex_lock(&p->lock);
	ha = p->ha;
	opaque = p->ha_opaque;
	pthread_mutex_unlock(&p->lock);
	if (!ha || !ha->drop)
		return;
	pthread_mutex_lock(&p->cache_lock);
	items = p->nr_vms ? calloc(p->nr_vms, sizeof(*items)) : NULL;
	for (size_t i = 0; items && i < p->nr_vms; i++)
		if (p->vms[i].owner[0] && strcmp(p->vms[i].owner, p->host)) {
			snprintf(items[n].uuid, sizeof(items[n].uuid), "%s", p->vms[i].uuid);
			snprintf(items[n].owner, sizeof(items[n].owner), "%s", p->vms[i].owner);
			n++;
		}
	pthread_mutex_unlock(&p->cache_lock);
	for (size_t i = 0; i < n; i++)
		ha->drop(opaque, items[i].uuid, items[i].owner);
	free(items);
}

static void *ha_thread(void *arg)
{
	struct pool *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping && !p->left) {
		struct timespec ts;
		int64_t lease;
		bool held;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += HA_PERIOD_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (p->stopping || p->left)
			break;
		lease = p->lease;
		/* Only a host that holds its lease binds or takes anything. */
		held = p->phase == FENCE_HELD && !p->fst.lease_lost && !p->fst.stopped && lease;
		pthread_mutex_unlock(&p->lock);
		if (held) {
			ha_bind(p, lease);
			ha_failover(p, lease);
		}
		ha_drop_foreign(p);
		if (held)
			pool_place_adopt(p);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_ha_start(struct pool *p)
{
	int ret = -pthread_create(&p->ha_thread, NULL, ha_thread, p);

	if (!ret)
		p->ha_started = true;
	return ret;
}

void pool_ha_stop(struct pool *p)
{
	if (p->ha_started)
		pthread_join(p->ha_thread, NULL);
	p->ha_started = false;
}
