/* vms.c: the pool's VMs and hosts as this host sees them (read once, then
 * kept by a watch: no polling), and requests forwarded to a VM's owner
 * over mutual TLS (pool.h; docs/pool.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "peer.h"
#include "pool_priv.h"

/* The part of key after the prefix ("vms/UUID", ...), or NULL. */
static const char *rel_key(const struct pool *p, const char *key)
{
	size_t n = strlen(p->prefix);

	return strncmp(key, p->prefix, n) || key[n] != '/' ? NULL : key + n + 1;
}

/* cache_lock held. */
static struct pool_vm *vm_slot(struct pool *p, const char *uuid, bool add)
{
	struct pool_vm *v;

	for (size_t i = 0; i < p->nr_vms; i++)
		if (!strcmp(p->vms[i].uuid, uuid))
			return &p->vms[i];
	if (!add || strlen(uuid) >= sizeof(v->uuid))
		return NULL;
	v = realloc(p->vms, (p->nr_vms + 1) * sizeof(*v));
	if (!v)
		return NULL;
	p->vms = v;
	v = &p->vms[p->nr_vms++];
	memset(v, 0, sizeof(*v));
	snprintf(v->uuid, sizeof(v->uuid), "%s", uuid);
	return v;
}

struct pool_vm *vm_find_locked(struct pool *p, const char *uuid)
{
	return vm_slot(p, uuid, false);
}

static void vm_drop(struct pool *p, const char *uuid)
{
	struct pool_vm *v = vm_slot(p, uuid, false);

	if (v) {
		*v = p->vms[--p->nr_vms];
	}
}

static void emit(struct pool *p, const char *event, const char *host)
{
	if (p->ev_fn)
		p->ev_fn(p->ev_opaque, event, host);
}

/* One key's value (NULL: deleted) into the cache; cache_lock held. Keys
 * that are not the pool's VMs, owners, runtime records or hosts are not
 * kept. live: a change the watch saw (announced as an event), not the
 * first read. */
static void cache_apply(struct pool *p, const char *key, const char *value, int64_t lease,
			bool live)
{
	const char *k = rel_key(p, key);
	char host[64], uuid[64];
	json_t *j;

	if (!k)
		return;
	if (!strncmp(k, "vms/", 4) && !strchr(k + 4, '/')) {
		struct pool_vm *v;

		if (!value) {
			vm_drop(p, k + 4);
			return;
		}
		if (!(v = vm_slot(p, k + 4, true)))
			return;
		j = json_loads(value, 0, NULL);
		snprintf(v->name, sizeof(v->name), "%s",
			 json_string_value(json_object_get(j, "name")) ?: "");
		v->cpus = (int)json_integer_value(json_object_get(j, "cpus"));
		v->memory_mib = json_integer_value(json_object_get(j, "memory_mib"));
		v->memory_max_mib = json_integer_value(json_object_get(j, "memory_max_mib"));
		v->ha = json_is_true(json_object_get(j, "ha"));
		v->ha_priority = (int)json_integer_value(json_object_get(j, "ha_priority"));
		snprintf(v->group, sizeof(v->group), "%s",
			 json_string_value(json_object_get(j, "anti_affinity")) ?: "");
		v->group_hard = json_is_true(json_object_get(j, "anti_affinity_hard"));
		if (v->ha && !v->owner[0] && !v->gone_at)
			v->gone_at = pool_boot_ms(); /* no owner: as if gone now */
		json_decref(j);
	} else if (!strncmp(k, "owner/", 6) && !strchr(k + 6, '/')) {
		struct pool_vm *v = vm_slot(p, k + 6, value != NULL);

		if (v && value) {
			snprintf(v->owner, sizeof(v->owner), "%s", value);
			snprintf(v->last_owner, sizeof(v->last_owner), "%s", value);
			v->owner_lease = lease;
			v->gone_at = 0;
		} else if (v) {
			/* The owner's lease expired (or it left the VM): an HA
			 * VM may be taken over after the ride-through time. */
			v->owner[0] = 0;
			v->owner_lease = 0;
			v->gone_at = pool_boot_ms();
		}
	} else if (sscanf(k, "hosts/%63[^/]/runtime/%63[^/]", host, uuid) == 2) {
		struct pool_vm *v = vm_slot(p, uuid, value != NULL);

		j = value ? json_loads(value, 0, NULL) : NULL;
		/* The owner's record says the state; a host the VM left may
		 * keep an old one. */
		if (v && (!v->owner[0] || !strcmp(v->owner, host)))
			snprintf(v->state, sizeof(v->state), "%s",
				 json_string_value(json_object_get(j, "state")) ?: "");
		json_decref(j);
	} else if (!strncmp(k, "members/", 8) && !strchr(k + 8, '/')) {
		bool known = json_object_get(p->members, k + 8) != NULL;

		if (!value) {
			json_object_del(p->members, k + 8);
			if (live && known)
				emit(p, "pool-host-left", k + 8);
		} else if ((j = json_loads(value, 0, NULL)) && json_is_object(j)) {
			json_object_set_new(p->members, k + 8, j);
			if (live && !known)
				emit(p, "pool-host-joined", k + 8);
		} else {
			json_decref(j);
		}
	} else if (!strncmp(k, "alive/", 6) && !strchr(k + 6, '/')) {
		if (value)
			json_object_set_new(p->alive, k + 6, json_true());
		else
			json_object_del(p->alive, k + 6);
		if (live)
			emit(p, value ? "pool-host-up" : "pool-host-down", k + 6);
	}
}

/* Everything under the prefix, read again (at start, and when the watch
 * says changes were compacted away). Returns the revision read. */
static int cache_load(struct pool *p, int64_t *rev)
{
	char key[POOL_KEY_MAX], end[POOL_KEY_MAX];
	struct etcd_kvs all = { 0 };
	int ret;

	snprintf(key, sizeof(key), "%s/", p->prefix);
	etcd_prefix_end(key, end);
	ret = etcd_range(p->etcd, key, end, &all);
	if (ret)
		return ret;
	pthread_mutex_lock(&p->cache_lock);
	free(p->vms);
	p->vms = NULL;
	p->nr_vms = 0;
	json_object_clear(p->members);
	json_object_clear(p->alive);
	for (size_t i = 0; i < all.n; i++)
		cache_apply(p, all.kv[i].key, all.kv[i].value, all.kv[i].lease, false);
	pthread_mutex_unlock(&p->cache_lock);
	*rev = all.revision;
	etcd_kvs_free(&all);
	return 0;
}

static void on_event(void *opaque, const struct etcd_event *ev)
{
	struct pool *p = opaque;

	pthread_mutex_lock(&p->cache_lock);
	cache_apply(p, ev->kv.key, ev->deleted ? NULL : ev->kv.value, ev->kv.lease, true);
	pthread_mutex_unlock(&p->cache_lock);
}

static void on_state(void *opaque, enum etcd_watch_state st, int err)
{
	struct pool *p = opaque;
	int64_t rev;

	if (st == ETCD_WATCH_RESYNC && cache_load(p, &rev))
		log_warn("pool: cannot read the pool again after a compaction");
	else if (st == ETCD_WATCH_LOST)
		log_warn("pool: the watch of the pool lost etcd (%s); the pool's view is stale "
			 "until it is back", strerror(err > 0 ? err : -err));
	/* The event stream says when etcd went and came back (docs/pool.md,
	 * "When etcd is away"); the watch resumes from its revision. */
	pthread_mutex_lock(&p->cache_lock);
	if (st == ETCD_WATCH_LOST && !p->watch_lost) {
		p->watch_lost = true;
		emit(p, "pool-etcd-away", p->host);
	} else if (st == ETCD_WATCH_CONNECTED && p->watch_lost) {
		p->watch_lost = false;
		emit(p, "pool-etcd-back", p->host);
	}
	pthread_mutex_unlock(&p->cache_lock);
	/* Started while etcd was away: the pool read once it answers (the
	 * watch runs from the revision it connected at: events it repeats
	 * after this read apply again, in order). */
	if (st == ETCD_WATCH_CONNECTED && p->need_load) {
		if (cache_load(p, &rev))
			log_warn("pool: cannot read the pool now that etcd is back");
		else
			p->need_load = false;
	}
}

static const struct etcd_watch_ops watch_ops = { .event = on_event, .state = on_state };

int pool_cache_start(struct pool *p)
{
	char key[POOL_KEY_MAX];
	int64_t rev = 0;
	int ret;

	p->members = json_object();
	p->alive = json_object();
	if (!p->members || !p->alive)
		return -ENOMEM;
	ret = cache_load(p, &rev);
	if (ret && store_unreachable(ret)) { /* etcd away: read once it is back */
		p->watch_lost = p->need_load = true;
		rev = -1;
		ret = 0;
	}
	snprintf(key, sizeof(key), "%s/", p->prefix);
	if (!ret)
		ret = etcd_watch_start(p->etcd, key, rev + 1, &watch_ops, p, &p->watch);
	return ret;
}

void pool_cache_stop(struct pool *p)
{
	if (p->watch)
		etcd_watch_stop(p->watch);
	p->watch = NULL;
	free(p->vms);
	p->vms = NULL;
	p->nr_vms = 0;
	json_decref(p->members);
	p->members = NULL;
	json_decref(p->alive);
	p->alive = NULL;
}

void pool_set_events(struct pool *p, void (*fn)(void *opaque, const char *event,
						  const char *detail), void *opaque)
{
	pthread_mutex_lock(&p->cache_lock);
	p->ev_fn = fn;
	p->ev_opaque = opaque;
	pthread_mutex_unlock(&p->cache_lock);
}

json_t *pool_remote_vms(struct pool *p)
{
	json_t *list = json_array();

	if (!p->etcd || !list)
		return list;
	pthread_mutex_lock(&p->cache_lock);
	for (size_t i = 0; i < p->nr_vms; i++) {
		const struct pool_vm *v = &p->vms[i];

		if (!v->owner[0] || !strcmp(v->owner, p->host) || !v->name[0])
			continue;
		/* stale: as the watch saw it before it lost etcd. */
		json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:b}", "name",
						      v->name, "uuid", v->uuid, "host", v->owner,
						      "state", v->state[0] ? v->state : "unknown",
						      "cpus", v->cpus, "memory_mib",
						      (json_int_t)v->memory_mib, "stale",
						      p->watch_lost));
	}
	pthread_mutex_unlock(&p->cache_lock);
	return list;
}

int pool_owner_of(struct pool *p, const char *name, char *host, size_t hlen, char *address,
		  size_t alen, struct cerr *e)
{
	int found = 0;

	(void)e;
	if (!p->etcd)
		return 0;
	pthread_mutex_lock(&p->cache_lock);
	for (size_t i = 0; i < p->nr_vms && !found; i++) {
		const struct pool_vm *v = &p->vms[i];
		json_t *rec;

		if (strcmp(v->name, name) || !v->owner[0] || !strcmp(v->owner, p->host))
			continue;
		rec = json_object_get(p->members, v->owner);
		snprintf(host, hlen, "%s", v->owner);
		snprintf(address, alen, "%s",
			 json_string_value(json_object_get(rec, "address")) ?: "");
		found = 1;
	}
	pthread_mutex_unlock(&p->cache_lock);
	return found;
}

bool pool_host_known(struct pool *p, const char *cn)
{
	bool known;

	if (!p->etcd)
		return false;
	pthread_mutex_lock(&p->cache_lock);
	known = json_object_get(p->members, cn) != NULL;
	pthread_mutex_unlock(&p->cache_lock);
	return known;
}

/* For a header: printable ASCII only. */
static void header_safe(char *dst, size_t len, const char *src)
{
	size_t i = 0;

	for (; src && *src && i + 1 < len; src++)
		dst[i++] = *src >= 0x20 && *src < 0x7f ? *src : '?';
	dst[i] = 0;
}

int pool_fwd_peer(struct pool *p, const char *host, const char *address, enum role role,
		  const char *who, struct pool_fwd_hdrs *h, struct peer *peer, struct cerr *e)
{
	char safe[96];

	if (!address || strncmp(address, "https://", 8))
		return cerr_set(e, CERR_PEER, "", "host %s owns this VM but has no address to "
				"forward to (its pool.address)", host);
	if (!p->cert[0] || !p->key[0] || !p->ca[0])
		return cerr_set(e, CERR_PEER, "", "host %s owns this VM, and this host has no "
				"pool certificate to forward with", host);
	snprintf(h->role, sizeof(h->role), "X-Cella-Forwarded-Role: %s", role_name(role));
	header_safe(safe, sizeof(safe), who);
	snprintf(h->fwd_for, sizeof(h->fwd_for), "X-Cella-Forwarded-For: %s", safe);
	snprintf(h->by, sizeof(h->by), "X-Cella-Forwarded-By: %s", p->host);
	h->list[0] = h->role;
	h->list[1] = h->fwd_for;
	h->list[2] = h->by;
	h->list[3] = NULL;
	*peer = (struct peer){ .name = host, .url = address, .token = NULL, .cert = p->cert,
			       .key = p->key, .ca = p->ca, .headers = h->list };
	return 0;
}

int pool_forward(struct pool *p, const char *host, const char *address, const char *method,
		 const char *url, const char *body, enum role role, const char *who,
		 long *status, json_t **reply, struct cerr *e)
{
	struct pool_fwd_hdrs hdrs;
	struct peer peer;
	char err[512];
	json_t *jbody = NULL;
	int ret;

	*reply = NULL;
	if (pool_fwd_peer(p, host, address, role, who, &hdrs, &peer, e))
		return -1;
	if (body && *body && !(jbody = json_loads(body, 0, NULL)))
		return cerr_set(e, CERR_INVALID, "", "the request body is not JSON");
	ret = peer_call(&peer, method, url, jbody, 60, status, reply, err, sizeof(err));
	json_decref(jbody);
	if (ret)
		return cerr_set(e, CERR_PEER, "", "forwarding to the VM's owner: %s", err);
	log_info("pool: %s %s forwarded to %s: %ld", method, url, host, *status);
	return 0;
}
