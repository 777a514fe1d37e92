/* pool.c: this host's membership of a pool: its host record and the lease
 * that keeps it alive, the pool's view of its hosts, leaving (pool.h). */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "atomicfile.h"
#include "log.h"
#include "pool_priv.h"
#include "sup.h"

int pool_key(const struct pool *p, char *dst, const char *fmt, const char *part)
{
	int n = snprintf(dst, POOL_KEY_MAX, "%s/", p->prefix), m;

	m = snprintf(dst + n, POOL_KEY_MAX - (size_t)n, fmt, part);
	return m < 0 || (size_t)(n + m) >= POOL_KEY_MAX ? -ENAMETOOLONG : 0;
}

int pool_write_file(const char *dir, const char *name, const char *data, mode_t mode)
{
	char tmp[PATH_MAX], path[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return atomic_file_write(path, tmp, data, mode, false);
}

char *pool_read_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *buf;
	ssize_t n;

	if (fd < 0)
		return NULL;
	buf = malloc(POOL_PEM_MAX + 1);
	n = buf ? read(fd, buf, POOL_PEM_MAX + 1) : -1;
	close(fd);
	if (n < 0 || n > (ssize_t)POOL_PEM_MAX) {
		free(buf);
		return NULL;
	}
	buf[n] = 0;
	return buf;
}

/* The host record: what other hosts need to reach this one and place on
 * it. state ("up" or "maintenance") and joined_at are kept from a record
 * that is there already. */
int pool_member_put(struct pool *p)
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
			"memory_mib", (json_int_t)p->conf.memory_mib, "cpus", (int)p->conf.cpus, "state",
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
int pool_alive_put(struct pool *p, int64_t *lease)
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

int pool_start(struct pool **out, const struct pool_conf *conf, char *err, size_t errlen)
{
	const struct store_etcd_conf *sc = conf->etcd;
	struct etcd_conf ec = { .timeout_ms = sc ? sc->timeout_ms : 0,
				.stats = sc ? sc->stats : NULL };
	struct pool *p;
	int ret = 0;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->conf = *conf;
	snprintf(p->state_dir, sizeof(p->state_dir), "%s", conf->state_dir ? conf->state_dir : ".");
	snprintf(p->address, sizeof(p->address), "%s", conf->address ? conf->address : "");
	snprintf(p->ca_key, sizeof(p->ca_key), "%s", conf->ca_key ? conf->ca_key : "");
	snprintf(p->ca, sizeof(p->ca), "%s", conf->ca ? conf->ca : sc ? sc->ca : "");
	snprintf(p->cert, sizeof(p->cert), "%s", conf->cert ? conf->cert : sc ? sc->cert : "");
	snprintf(p->key, sizeof(p->key), "%s", conf->key ? conf->key : sc ? sc->key : "");
	p->conf.address = p->address;
	p->ttl_s = conf->lease_ttl_s ? conf->lease_ttl_s : POOL_LEASE_TTL_DEFAULT_S;
	if (!p->conf.fence.ttl_ms) { /* no settings given: fence.c's defaults */
		char why[256];

		fence_settings_for_ttl(&p->conf.fence, p->ttl_s * 1000u);
		if (fence_settings_check(&p->conf.fence, why, sizeof(why))) {
			snprintf(err, errlen, "pool: %s", why);
			free(p);
			return -EINVAL;
		}
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->cache_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->wake, &ca);
		pthread_cond_init(&p->fwd_done, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (!sc) { /* not a member: may create or join a pool */
		*out = p;
		return 0;
	}
	if (sc->nr_endpoints > ETCD_MAX_ENDPOINTS || !sc->host || !sc->prefix) {
		snprintf(err, errlen, "pool: bad etcd settings");
		pool_stop(p);
		return -EINVAL;
	}
	ec.ca = sc->ca;
	ec.cert = sc->cert;
	ec.key = sc->key;
	for (unsigned i = 0; i < sc->nr_endpoints; i++)
		ec.endpoints[i] = sc->endpoints[i];
	ec.nr_endpoints = sc->nr_endpoints;
	snprintf(p->prefix, sizeof(p->prefix), "%s", sc->prefix);
	snprintf(p->host, sizeof(p->host), "%s", sc->host);
	ret = etcd_open(&p->etcd, &ec, err, errlen) ?: etcd_open(&p->ka, &ec, err, errlen);
	p->lease_sent = pool_boot_ms();
	if (!ret && (ret = pool_member_put(p) ?: pool_alive_put(p, &p->lease)) &&
	    store_unreachable(ret)) {
		/* Started while etcd is away: isolated; the keepalive thread
		 * asks for a lease until etcd answers (docs/pool.md). */
		log_warn("pool: etcd cannot be reached (%s): host %s starts isolated", strerror(-ret),
			 p->host);
		p->lease = 0;
		ret = 0;
	}
	if (ret)
		snprintf(err, errlen, "pool: cannot record host %s: %s", p->host, strerror(-ret));
	if (!ret && (ret = pool_cache_start(p)))
		snprintf(err, errlen, "pool: cannot watch the pool: %s", strerror(-ret));
	if (!ret && (ret = pool_lease_start(p)))
		snprintf(err, errlen, "pool: cannot start the lease threads: %s", strerror(-ret));
	if (ret) {
		pool_stop(p);
		return ret;
	}
	log_info("pool: host %s up in %s (lease %lld, TTL %u s, renewed every %u ms, fence "
		 "after %u ms, isolation %s %u ms)", p->host, p->prefix, (long long)p->lease, p->ttl_s,
		 p->conf.fence.renew_ms, p->conf.fence.fence_ms,
		 p->conf.fence.policy == FENCE_RIDE_THROUGH ? "ride-through" : "restart",
		 p->conf.fence.ride_through_ms);
	*out = p;
	return 0;
}

void pool_stop(struct pool *p)
{
	if (!p)
		return;
	pool_forward_streams_wait(p);
	pool_lease_stop(p);
	pool_cache_stop(p);
	/* HA workers still running keep their deadline: revoking the lease
	 * would let another host take their VMs before it passes. Let the
	 * lease lapse instead (a cellad started again renews nothing of it: it
	 * gets a new lease, docs/pool.md). */
	if (p->lease && p->etcd && p->keep_lease)
		log_info("pool: HA VMs run here: host %s's lease is left to lapse", p->host);
	else if (p->lease && p->etcd && etcd_lease_revoke(p->etcd, p->lease))
		log_debug("pool: cannot revoke host %s's lease", p->host);
	if (p->etcd)
		etcd_close(p->etcd);
	if (p->ka)
		etcd_close(p->ka);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->fwd_done);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->cache_lock);
	free(p);
}

static const char *key_tail(const char *key)
{
	const char *s = strrchr(key, '/');

	return s ? s + 1 : key;
}

int pool_range_prefix(struct pool *p, const char *what, struct etcd_kvs *out)
{
	char key[POOL_KEY_MAX], end[POOL_KEY_MAX];
	int ret = pool_key(p, key, "%s/", what);

	if (ret)
		return ret;
	etcd_prefix_end(key, end);
	return etcd_range(p->etcd, key, end, out);
}

int pool_store_cerr(struct cerr *e, int ret)
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
	ret = pool_range_prefix(p, "owner", &owners) ?: pool_range_prefix(p, "vms", &vms);
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

static int not_member(struct cerr *e)
{
	return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool (docs/pool.md: "
			"cella pool create, cella pool join)");
}

int pool_status(struct pool *p, json_t **out, struct cerr *e)
{
	struct etcd_kvs members = { 0 }, alive = { 0 };
	json_t *hosts, *owned = NULL;
	const char *own = pool_own_isolated(p);
	int ret;

	*out = NULL;
	if (!p->etcd)
		return not_member(e);
	/* Isolated (no lease held, or etcd away): the cache's view at once,
	 * rather than requests that queue behind the pool's others on a client
	 * whose every request waits out each member's timeout. */
	if (own)
		return pool_status_cached(p, out, e);
	hosts = json_array();
	if (!hosts)
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	ret = pool_range_prefix(p, "members", &members) ?: pool_range_prefix(p, "alive", &alive) ?:
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
				    json_string(own && !strcmp(name, p->host) ? own
						: !live ? "down" : state && !strcmp(state, "maintenance")
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
		/* etcd away: the cache's view, marked stale (away.c). */
		return store_unreachable(ret) ? pool_status_cached(p, out, e)
					      : pool_store_cerr(e, ret);
	}
	*out = json_pack("{s:s, s:s, s:b, s:o}", "pool", p->prefix, "host", p->host, "stale", 0,
			 "hosts", hosts);
	if (*out)
		pool_status_add_use(p, *out);
	return *out ? 0 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}

/* Pool files put aside, so that cellad starts again without the pool. */
static int files_aside(struct pool *p)
{
	char from[PATH_MAX + 8], to[PATH_MAX + 32];

	snprintf(from, sizeof(from), "%s/pool", p->state_dir);
	snprintf(to, sizeof(to), "%s/pool.left-%lld", p->state_dir, (long long)time(NULL));
	return rename(from, to) < 0 ? -errno : 0;
}

int pool_leave(struct pool *p, bool *restart, struct cerr *e)
{
	char key[POOL_KEY_MAX];
	json_t *owned = NULL, *mine;
	int64_t lease;
	int ret;

	*restart = false;
	if (!p->etcd)
		return not_member(e);
	pthread_mutex_lock(&p->lock);
	if (p->left) {
		pthread_mutex_unlock(&p->lock);
		return cerr_set(e, CERR_CONFLICT, "pool", "this host left its pool already");
	}
	pthread_mutex_unlock(&p->lock);
	ret = owned_vms(p, &owned);
	if (ret)
		return pool_store_cerr(e, ret);
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
	ret = pool_key(p, key, "members/%s", p->host) ?: etcd_delete(p->etcd, key, NULL, NULL, NULL);
	if (ret)
		return pool_store_cerr(e, ret);
	pthread_mutex_lock(&p->lock);
	p->left = true;
	lease = p->lease;
	p->lease = 0;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	if (lease && (ret = etcd_lease_revoke(p->etcd, lease)) && ret != -ENOENT)
		log_warn("pool: cannot revoke host %s's lease: %s (it lapses in %u s)", p->host,
			 strerror(-ret), p->ttl_s);
	log_info("pool: host %s left the pool", p->host);
	if (p->conf.from_files) {
		if ((ret = files_aside(p)))
			return cerr_set(e, CERR_INTERNAL, "", "left the pool, but cannot put its "
					"files aside: %s", strerror(-ret));
		*restart = true;
	}
	return 0;
}

static const char *ops_host(void *ctx)
{
	struct pool *p = ctx;
	bool left;

	pthread_mutex_lock(&p->lock);
	left = p->left;
	pthread_mutex_unlock(&p->lock);
	return p->etcd && !left ? p->host : NULL;
}

static int ops_status(void *ctx, json_t **out, struct cerr *e)
{
	return pool_status(ctx, out, e);
}

static int ops_leave(void *ctx, bool *restart, struct cerr *e)
{
	return pool_leave(ctx, restart, e);
}

static int ops_create(void *ctx, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	return pool_create(ctx, body, out, restart, e);
}

static int ops_token(void *ctx, json_t *body, json_t **out, struct cerr *e)
{
	return pool_token_new(ctx, body, out, e);
}

static int ops_join(void *ctx, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	return pool_join(ctx, body, out, restart, e);
}

static int ops_admit(void *ctx, json_t *body, json_t **out, struct cerr *e)
{
	return pool_admit(ctx, body, out, e);
}

static int ops_ca(void *ctx, json_t **out, struct cerr *e)
{
	return pool_ca_get(ctx, out, e);
}

static json_t *ops_remote_vms(void *ctx)
{
	return pool_remote_vms(ctx);
}

static int ops_owner_of(void *ctx, const char *name, char *host, size_t hlen, char *address,
			size_t alen, struct cerr *e)
{
	return pool_owner_of(ctx, name, host, hlen, address, alen, e);
}

static bool ops_host_known(void *ctx, const char *cn)
{
	return pool_host_known(ctx, cn);
}

static int ops_forward(void *ctx, const char *host, const char *address, const char *method,
		       const char *url, const char *body, enum role role, const char *who,
		       long *status, json_t **reply, struct cerr *e)
{
	return pool_forward(ctx, host, address, method, url, body, role, who, status, reply, e);
}

static int ops_owner_now(void *ctx, const char *uuid, char *owner, size_t len)
{
	struct pool *p = ctx;
	char key[POOL_KEY_MAX];
	struct etcd_kv kv;
	int ret;

	owner[0] = 0;
	if (!p->etcd)
		return 0;
	if ((ret = pool_key(p, key, "owner/%s", uuid)))
		return ret;
	ret = etcd_get(p->etcd, key, &kv);
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return ret;
	snprintf(owner, len, "%.*s", (int)kv.value_len, kv.value);
	etcd_kv_free(&kv);
	return 0;
}

static char *ops_metrics(void *ctx)
{
	return pool_metrics_text(ctx);
}

static uint64_t ops_ha_deadline_ns(void *ctx)
{
	return pool_ha_deadline_ns(ctx);
}

static int ops_member(void *ctx, const char *host, char *address, size_t alen, char *state,
		      size_t slen)
{
	return pool_member_get(ctx, host, address, alen, state, slen);
}

static int ops_member_state_set(void *ctx, const char *host, const char *state, struct cerr *e)
{
	return pool_member_state_set(ctx, host, state, e);
}

static int ops_owner_pass(void *ctx, const char *uuid, const char *from, bool on_lease)
{
	return pool_owner_pass(ctx, uuid, from, on_lease);
}

static int ops_runtime_drop(void *ctx, const char *uuid)
{
	return pool_runtime_drop(ctx, uuid);
}

static int ops_vm_def(void *ctx, const char *uuid, struct vmdef *def)
{
	return pool_vm_def(ctx, uuid, def);
}

static int ops_plan(void *ctx, const char *evacuate, json_t **out, struct cerr *e)
{
	return pool_plan(ctx, evacuate, out, e);
}

const struct sup_pool_ops pool_sup_ops = {
	.status = ops_status, .leave = ops_leave, .create = ops_create, .token = ops_token,
	.join = ops_join, .admit = ops_admit, .ca = ops_ca, .remote_vms = ops_remote_vms,
	.host = ops_host, .owner_of = ops_owner_of, .host_known = ops_host_known,
	.forward = ops_forward, .forward_raw = pool_forward_raw_op, .ha_deadline_ns = ops_ha_deadline_ns, .owner_now = ops_owner_now,
	.place = pool_place_op, .give = pool_give_op, .uuid_of = pool_uuid_of_op,
	.member = ops_member, .member_state_set = ops_member_state_set, .owner_pass = ops_owner_pass,
	.runtime_drop = ops_runtime_drop, .vm_def = ops_vm_def,
	.plan = ops_plan,
	.metrics = ops_metrics,
};
