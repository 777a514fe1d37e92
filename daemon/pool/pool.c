/* pool.c: this host's membership of a pool: its host record and the lease
 * that keeps it alive, the pool's view of its hosts, leaving (pool.h). */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "log.h"
#include "sup.h"

#define POOL_KEY_MAX 256

struct pool {
	struct etcd *etcd;
	char prefix[128], host[64], address[256];
	unsigned ttl_s;
	uint64_t memory_mib;
	unsigned cpus;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock; /* lease, stopping, left */
	pthread_cond_t wake;
	int64_t lease;
	bool stopping, left;
};

static int pool_key(const struct pool *p, char *dst, const char *fmt, const char *part)
{
	int n = snprintf(dst, POOL_KEY_MAX, "%s/", p->prefix), m;

	m = snprintf(dst + n, POOL_KEY_MAX - (size_t)n, fmt, part);
	return m < 0 || (size_t)(n + m) >= POOL_KEY_MAX ? -ENAMETOOLONG : 0;
}

/* The host record: what other hosts need to reach this one and place on
 * it. state ("up" or "maintenance") and joined_at are kept from a record
 * that is there already. */
static int member_put(struct pool *p)
{
	char key[POOL_KEY_MAX], *s;
	struct etcd_kv kv;
	json_t *old = NULL, *rec;
	const char *state = "up";
	json_int_t joined = (json_int_t)time(NULL);
	int ret;

	if ((ret = pool_key(p, key, "members/%s", p->host)))
		return ret;
	ret = etcd_get(p->etcd, key, &kv);
	if (ret && ret != -ENOENT)
		return ret;
	if (!ret) {
		old = json_loads(kv.value, 0, NULL);
		etcd_kv_free(&kv);
		if (json_string_value(json_object_get(old, "state")))
			state = json_string_value(json_object_get(old, "state"));
		if (json_is_integer(json_object_get(old, "joined_at")))
			joined = json_integer_value(json_object_get(old, "joined_at"));
	}
	rec = json_pack("{s:s, s:s, s:I, s:i, s:s, s:I}", "name", p->host, "address", p->address,
			"memory_mib", (json_int_t)p->memory_mib, "cpus", (int)p->cpus, "state",
			state, "joined_at", joined);
	json_decref(old);
	s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!s)
		return -ENOMEM;
	ret = etcd_put(p->etcd, key, s, strlen(s), 0, NULL);
	free(s);
	return ret;
}

/* A fresh lease and P/alive/HOST on it. Lock not held. */
static int alive_put(struct pool *p, int64_t *lease)
{
	char key[POOL_KEY_MAX], val[64];
	int64_t granted = 0;
	int ret;

	if ((ret = pool_key(p, key, "alive/%s", p->host)) ||
	    (ret = etcd_lease_grant(p->etcd, (int64_t)p->ttl_s, lease, &granted)))
		return ret;
	snprintf(val, sizeof(val), "{\"since\":%lld}", (long long)time(NULL));
	ret = etcd_put(p->etcd, key, val, strlen(val), *lease, NULL);
	if (ret && etcd_lease_revoke(p->etcd, *lease))
		log_debug("pool: cannot revoke lease %lld", (long long)*lease);
	return ret;
}

/* Renew every third of the TTL, so that two renewals can fail (a slow or
 * failed-over member) before the lease lapses. */
static void *keepalive_thread(void *arg)
{
	struct pool *p = arg;
	bool lost = false;

	pthread_mutex_lock(&p->lock);
	while (!p->stopping && !p->left) {
		struct timespec ts;
		int64_t lease = p->lease, ttl = 0;
		int ret;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(p->ttl_s * 1000u / 3u % 1000u) * 1000000L;
		ts.tv_sec += p->ttl_s / 3 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (p->stopping || p->left)
			break;
		pthread_mutex_unlock(&p->lock);
		ret = lease ? etcd_lease_keepalive(p->etcd, lease, &ttl) : -ENOENT;
		if (ret == -ENOENT) {
			/* The lease lapsed (etcd away longer than the TTL): the
			 * others saw this host down; it is up again now. */
			lease = 0;
			ret = member_put(p) ?: alive_put(p, &lease);
			if (!ret)
				log_info("pool: host %s alive again (lease %lld)", p->host,
					 (long long)lease);
		}
		if (ret && !lost)
			log_warn("pool: cannot renew host %s's lease: %s", p->host, strerror(-ret));
		lost = ret != 0;
		pthread_mutex_lock(&p->lock);
		if (!ret && lease != p->lease) {
			if (p->left || p->stopping) { /* left meanwhile: drop the new lease */
				pthread_mutex_unlock(&p->lock);
				if (etcd_lease_revoke(p->etcd, lease))
					log_debug("pool: cannot revoke lease");
				pthread_mutex_lock(&p->lock);
			} else {
				p->lease = lease;
			}
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int pool_start(struct pool **out, const struct pool_conf *conf, char *err, size_t errlen)
{
	const struct store_etcd_conf *sc = conf->etcd;
	struct etcd_conf ec = { .ca = sc->ca, .cert = sc->cert, .key = sc->key,
				.timeout_ms = sc->timeout_ms };
	struct pool *p;
	int ret;

	*out = NULL;
	if (sc->nr_endpoints > ETCD_MAX_ENDPOINTS || !sc->host || !sc->prefix) {
		snprintf(err, errlen, "pool: bad etcd settings");
		return -EINVAL;
	}
	for (unsigned i = 0; i < sc->nr_endpoints; i++)
		ec.endpoints[i] = sc->endpoints[i];
	ec.nr_endpoints = sc->nr_endpoints;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	snprintf(p->prefix, sizeof(p->prefix), "%s", sc->prefix);
	snprintf(p->host, sizeof(p->host), "%s", sc->host);
	snprintf(p->address, sizeof(p->address), "%s", conf->address ? conf->address : "");
	p->ttl_s = conf->lease_ttl_s ? conf->lease_ttl_s : POOL_LEASE_TTL_DEFAULT_S;
	p->memory_mib = conf->memory_mib;
	p->cpus = conf->cpus;
	pthread_mutex_init(&p->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	ret = etcd_open(&p->etcd, &ec, err, errlen);
	if (!ret && (ret = member_put(p) ?: alive_put(p, &p->lease)))
		snprintf(err, errlen, "pool: cannot record host %s: %s", p->host, strerror(-ret));
	if (!ret && (ret = -pthread_create(&p->thread, NULL, keepalive_thread, p)))
		snprintf(err, errlen, "pool: cannot start the lease thread: %s", strerror(-ret));
	if (ret) {
		pool_stop(p);
		return ret;
	}
	p->thread_started = true;
	log_info("pool: host %s up in %s (lease %lld, TTL %u s)", p->host, p->prefix,
		 (long long)p->lease, p->ttl_s);
	*out = p;
	return 0;
}

void pool_stop(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	if (p->lease && p->etcd && etcd_lease_revoke(p->etcd, p->lease))
		log_debug("pool: cannot revoke host %s's lease", p->host);
	etcd_close(p->etcd);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static const char *key_tail(const char *key)
{
	const char *s = strrchr(key, '/');

	return s ? s + 1 : key;
}

static int range_prefix(struct pool *p, const char *what, struct etcd_kvs *out)
{
	char key[POOL_KEY_MAX], end[POOL_KEY_MAX];
	int ret = pool_key(p, key, "%s/", what);

	if (ret)
		return ret;
	etcd_prefix_end(key, end);
	return etcd_range(p->etcd, key, end, out);
}

static int store_cerr(struct cerr *e, int ret)
{
	return cerr_set(e, store_unreachable(ret) ? CERR_UNAVAILABLE : CERR_INTERNAL, "",
			"the pool's etcd store: %s", strerror(-ret));
}

/* The names of the VMs each host owns: {host: [names]}. */
static int owned_vms(struct pool *p, json_t **out)
{
	struct etcd_kvs owners = { 0 }, vms = { 0 };
	json_t *by = json_object();
	int ret;

	*out = NULL;
	if (!by)
		return -ENOMEM;
	ret = range_prefix(p, "owner", &owners) ?: range_prefix(p, "vms", &vms);
	for (size_t i = 0; !ret && i < owners.n; i++) {
		const char *uuid = key_tail(owners.kv[i].key), *name = uuid;
		json_t *def = NULL, *list;

		for (size_t k = 0; k < vms.n; k++)
			if (!strcmp(key_tail(vms.kv[k].key), uuid))
				def = json_loads(vms.kv[k].value, 0, NULL);
		if (json_string_value(json_object_get(def, "name")))
			name = json_string_value(json_object_get(def, "name"));
		list = json_object_get(by, owners.kv[i].value);
		if (!list)
			json_object_set_new(by, owners.kv[i].value, list = json_array());
		json_array_append_new(list, json_string(name));
		json_decref(def);
	}
	etcd_kvs_free(&owners);
	etcd_kvs_free(&vms);
	if (ret)
		json_decref(by);
	else
		*out = by;
	return ret;
}

int pool_status(struct pool *p, json_t **out, struct cerr *e)
{
	struct etcd_kvs members = { 0 }, alive = { 0 };
	json_t *hosts = json_array(), *owned = NULL;
	int ret;

	*out = NULL;
	if (!hosts)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	ret = range_prefix(p, "members", &members) ?: range_prefix(p, "alive", &alive) ?:
	      owned_vms(p, &owned);
	for (size_t i = 0; !ret && i < members.n; i++) {
		json_t *rec = json_loads(members.kv[i].value, 0, NULL), *vms, *live = NULL;
		const char *name = key_tail(members.kv[i].key);
		const char *state = json_string_value(json_object_get(rec, "state"));

		if (!json_is_object(rec)) {
			json_decref(rec);
			continue; /* not ours to show */
		}
		for (size_t k = 0; k < alive.n; k++)
			if (!strcmp(key_tail(alive.kv[k].key), name))
				live = json_loads(alive.kv[k].value, 0, NULL);
		json_object_set_new(rec, "name", json_string(name));
		json_object_set_new(rec, "state",
				    json_string(!live ? "down" : state && !strcmp(state, "maintenance")
							       ? "maintenance" : "up"));
		if (json_object_get(live, "since"))
			json_object_set(rec, "since", json_object_get(live, "since"));
		vms = json_object_get(owned, name);
		json_object_set(rec, "vms", vms ? vms : json_array());
		if (!vms)
			json_decref(json_object_get(rec, "vms"));
		json_array_append_new(hosts, rec);
		json_decref(live);
	}
	etcd_kvs_free(&members);
	etcd_kvs_free(&alive);
	json_decref(owned);
	if (ret) {
		json_decref(hosts);
		return store_cerr(e, ret);
	}
	*out = json_pack("{s:s, s:s, s:o}", "pool", p->prefix, "host", p->host, "hosts", hosts);
	return *out ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}

int pool_leave(struct pool *p, struct cerr *e)
{
	char key[POOL_KEY_MAX];
	json_t *owned = NULL, *mine;
	int64_t lease;
	int ret = owned_vms(p, &owned);

	if (ret)
		return store_cerr(e, ret);
	mine = json_object_get(owned, p->host);
	if (json_array_size(mine)) {
		char *names = json_dumps(mine, JSON_COMPACT);

		cerr_set(e, CERR_CONFLICT, "", "host %s still owns %zu VMs (%.200s): move or delete "
			 "them before it leaves the pool", p->host, json_array_size(mine),
			 names ? names : "?");
		free(names);
		json_decref(owned);
		return -1;
	}
	json_decref(owned);
	pthread_mutex_lock(&p->lock);
	p->left = true;
	lease = p->lease;
	p->lease = 0;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	ret = pool_key(p, key, "members/%s", p->host) ?: etcd_delete(p->etcd, key, NULL, NULL, NULL);
	if (!ret && lease)
		ret = etcd_lease_revoke(p->etcd, lease);
	if (ret == -ENOENT)
		ret = 0;
	if (ret)
		return store_cerr(e, ret);
	log_info("pool: host %s left the pool", p->host);
	return 0;
}

static int ops_status(void *ctx, json_t **out, struct cerr *e)
{
	return pool_status(ctx, out, e);
}

static int ops_leave(void *ctx, struct cerr *e)
{
	return pool_leave(ctx, e);
}

const struct sup_pool_ops pool_sup_ops = { .status = ops_status, .leave = ops_leave };
