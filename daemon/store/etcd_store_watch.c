/* etcd_store_watch.c: others' changes, from the etcd store's watch, to
 * store_watch's callback as (collection, key); a watch that reconnects
 * catches the runtime records up (docs/pool.md). */
#include "etcd_store_priv.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* The collection and key a changed etcd key stands for (see docs/pool.md). */
static bool es_collection(struct es *es, const char *k, const char **coll, char *id, size_t len)
{
	static const struct {
		const char *prefix, *coll;
		bool per_host;
	} map[] = {
		{ "vms/", "vms", false }, { "owner/", "vms", false },
		{ "checkpoints/", "checkpoints", false }, { "peers/", "hosts", false },
		{ "runtime/", "runtime", true }, { "jobs/", "jobs", true }, { "meta/", "meta", true },
	};
	size_t pl = strlen(es->prefix);

	if (strncmp(k, es->prefix, pl) || k[pl] != '/')
		return false;
	k += pl + 1;
	if (!strncmp(k, "hosts/", 6)) {
		k = strchr(k + 6, '/');
		if (!k)
			return false;
		k++;
	} else {
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (!strncmp(k, map[i].prefix, strlen(map[i].prefix)) && map[i].per_host)
				return false;
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		size_t n = strlen(map[i].prefix);

		if (strncmp(k, map[i].prefix, n))
			continue;
		*coll = map[i].coll;
		snprintf(id, len, "%.*s", (int)strcspn(k + n, "/"), k + n);
		return id[0] != 0;
	}
	return false;
}

static void es_watch_event(void *opaque, const struct etcd_event *ev)
{
	struct es *es = opaque;
	const char *coll;
	char id[256];
	bool own = false;
	store_watch_fn fn;
	void *fn_opaque;

	pthread_mutex_lock(&es->wlock);
	for (unsigned i = 0; i < ES_OWN_REVS; i++)
		own |= es->own_revs[i] == ev->kv.mod_rev;
	pthread_mutex_unlock(&es->wlock);
	if (own || !es_collection(es, ev->kv.key, &coll, id, sizeof(id)))
		return;
	pthread_mutex_lock(&es->fn_lock);
	fn = es->fn;
	fn_opaque = es->fn_opaque;
	pthread_mutex_unlock(&es->fn_lock);
	if (fn)
		fn(fn_opaque, coll, id);
}

static void es_watch_state(void *opaque, enum etcd_watch_state state, int err)
{
	struct es *es = opaque;

	switch (state) {
	case ETCD_WATCH_LOST:
		log_warn("store: the etcd watch broke (%s): reconnecting; local VMs keep running, "
			 "changes wait for etcd", strerror(-err));
		pthread_mutex_lock(&es->mu); /* es_runtime_put reads it */
		es->lost = true;
		pthread_mutex_unlock(&es->mu);
		break;
	case ETCD_WATCH_CONNECTED:
		pthread_mutex_lock(&es->mu);
		if (es->lost)
			log_info("store: watching etcd again: catching up");
		es->lost = false;
		pthread_mutex_unlock(&es->mu);
		es_flush_pending(es);
		if (es_back_online(es)) {
			store_watch_fn fn;
			void *fn_opaque;

			/* Started from the cache: others' changes meanwhile are unknown. */
			pthread_mutex_lock(&es->fn_lock);
			fn = es->fn;
			fn_opaque = es->fn_opaque;
			pthread_mutex_unlock(&es->fn_lock);
			if (fn)
				fn(fn_opaque, "*", "*");
		}
		break;
	case ETCD_WATCH_RESYNC: {
		store_watch_fn fn;
		void *fn_opaque;

		/* Changes were missed: every collection may have changed. */
		pthread_mutex_lock(&es->fn_lock);
		fn = es->fn;
		fn_opaque = es->fn_opaque;
		pthread_mutex_unlock(&es->fn_lock);
		if (fn)
			fn(fn_opaque, "*", "*");
		break;
	}
	}
}

const struct etcd_watch_ops es_watch_ops = {
	.event = es_watch_event,
	.state = es_watch_state,
};
