/* etcd_store.c: the etcd store (store/store.h), cellad's state in an etcd
 * cluster under a prefix, shared by the hosts of a pool. The key layout,
 * what is pool-wide and what is one host's, and how transactions map to
 * etcd's are in docs/pool.md ("Key layout"). */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_records.h"
#include "etcd_store_priv.h"
#include "log.h"

/* Reads ------------------------------------------------------------------------- */

static int kv_by_create(const void *a, const void *b)
{
	const struct etcd_kv *x = a, *y = b;

	return x->create_rev < y->create_rev ? -1 : x->create_rev > y->create_rev;
}

/* Every key under prefix (which ends with '/'), in creation order. */
static int es_list(struct es *es, const char *prefix, struct etcd_kvs *out)
{
	char end[ES_KEY_MAX];
	int ret;

	etcd_prefix_end(prefix, end);
	ret = etcd_range(es->etcd, prefix, end, out);
	if (!ret && out->n > 1)
		qsort(out->kv, out->n, sizeof(out->kv[0]), kv_by_create);
	return ret;
}

static json_t *kv_json(const struct etcd_kv *kv)
{
	json_t *j = json_loadb(kv->value, kv->value_len, 0, NULL);

	if (!json_is_object(j)) {
		log_warn("store: %s: not a JSON object: ignored", kv->key);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* The store's operations --------------------------------------------------------- */

static int es_load(struct store *st, int (*fn)(void *, struct vmdef *, const struct store_runtime *),
		   void *opaque)
{
	struct es *es = ES(st);
	struct etcd_kvs vms, owners, rts;
	char p[ES_KEY_MAX];
	json_t *cache = json_object(); /* what etcd says, for the local cache */
	int ret;

	ret = es_key(es, p, "vms/");
	if (!ret)
		ret = es_list(es, p, &vms);
	if (ret && store_unreachable(ret) && es->cache_read) {
		/* Started while etcd is away: this host's VMs from its cache
		 * (docs/pool.md, "When etcd is away"). */
		json_decref(cache);
		pthread_mutex_lock(&es->mu);
		ret = es_cache_load(es, fn, opaque);
		pthread_mutex_unlock(&es->mu);
		return ret;
	}
	if (ret) {
		json_decref(cache);
		return ret;
	}
	ret = es_key(es, p, "owner/") ?: es_list(es, p, &owners);
	if (ret) {
		etcd_kvs_free(&vms);
		json_decref(cache);
		return ret;
	}
	ret = es_key(es, p, "hosts/%s/runtime/", es->host) ?: es_list(es, p, &rts);
	if (ret) {
		etcd_kvs_free(&vms);
		etcd_kvs_free(&owners);
		json_decref(cache);
		return ret;
	}
	for (size_t i = 0; !ret && i < vms.n; i++) {
		const char *uuid = strrchr(vms.kv[i].key, '/') + 1;
		struct store_runtime rt = { .exit_status = -1 };
		bool mine = false;
		struct vmdef d;
		json_t *j;

		/* This host's VMs only: the others are their owners' to run. */
		for (size_t k = 0; k < owners.n; k++)
			if (!strcmp(strrchr(owners.kv[k].key, '/') + 1, uuid))
				mine = !strcmp(owners.kv[k].value, es->host);
		if (!mine)
			continue;
		j = kv_json(&vms.kv[i]);
		if (!j || etcd_rec_vmdef(j, &d) || strcmp(d.uuid, uuid)) {
			log_warn("store: %s: not a VM definition: ignored", vms.kv[i].key);
			if (j)
				vmdef_free(&d);
			json_decref(j);
			continue;
		}
		json_t *entry = json_pack("{s:O, s:n}", "vm", j, "runtime");

		json_decref(j);
		snprintf(rt.state, sizeof(rt.state), "defined");
		for (size_t k = 0; k < rts.n; k++) {
			if (strcmp(strrchr(rts.kv[k].key, '/') + 1, uuid))
				continue;
			j = kv_json(&rts.kv[k]);
			if (j && etcd_rec_runtime(j, &rt))
				log_warn("store: %s: not a runtime record: ignored", rts.kv[k].key);
			else if (j && entry)
				json_object_set(entry, "runtime", j);
			json_decref(j);
		}
		if (entry && cache)
			json_object_set_new(cache, uuid, entry);
		else
			json_decref(entry);
		ret = fn(opaque, &d, &rt);
		vmdef_free(&d);
	}
	etcd_kvs_free(&vms);
	etcd_kvs_free(&owners);
	etcd_kvs_free(&rts);
	pthread_mutex_lock(&es->mu);
	if (!ret)
		es_cache_replace(es, cache);
	else
		json_decref(cache);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_vm_put(struct store *st, const struct vmdef *def)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(def->uuid))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "vms/%s", def->uuid) ?:
	      es_own(es, def->uuid, false) ?: es_name_claim(es, def) ?:
	      es_add_json(es, key, etcd_rec_vmdef_json(def));
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_vm_delete(struct store *st, const char *uuid)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX], end[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(uuid))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_own(es, uuid, true) ?: es_name_release(es, uuid) ?:
	      es_key(es, key, "vms/%s", uuid) ?: es_add(es, key, NULL, NULL, 0) ?:
	      es_key(es, key, "owner/%s", uuid) ?: es_add(es, key, NULL, NULL, 0) ?:
	      es_key(es, key, "hosts/%s/runtime/%s", es->host, uuid) ?:
	      es_add(es, key, NULL, NULL, 0) ?:
	      es_key(es, key, "checkpoints/%s/", uuid);
	if (!ret) {
		etcd_prefix_end(key, end);
		ret = es_add(es, key, end, NULL, 0);
	}
	ret = es_done(es, ret);
	if (!ret)
		json_object_del(es->pending, uuid);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_runtime_put(struct store *st, const char *uuid, const struct store_runtime *rt)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	json_t *rec;
	int ret;

	if (!es_part_ok(uuid))
		return -EINVAL;
	rec = etcd_rec_runtime_json(rt);
	pthread_mutex_lock(&es->mu);
	if (es->lost && !es->depth) {
		/* etcd is away (the watch lost it): kept for the watch's
		 * reconnection, which writes it (es_flush_pending), rather than
		 * waiting timeout_ms on every member under the VM's lock. */
		ret = -ECONNREFUSED;
	} else {
		ret = es_key(es, key, "hosts/%s/runtime/%s", es->host, uuid) ?:
		      es_add_json(es, key, json_incref(rec));
		ret = es_done(es, ret);
	}
	/* Kept for later if etcd could not be reached; the latest wins. */
	if (ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -ECONNRESET)
		json_object_set(es->pending, uuid, rec);
	else if (!ret)
		json_object_del(es->pending, uuid);
	/* The local cache has the latest either way: a cellad started while
	 * etcd is away finds the worker by it. */
	if (!ret || json_object_get(es->pending, uuid))
		es_cache_runtime(es, uuid, rec, !ret);
	pthread_mutex_unlock(&es->mu);
	json_decref(rec);
	return ret;
}

static int es_meta_get(struct store *st, const char *k, char *value, size_t len)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	struct etcd_kv kv;
	int ret;

	if (!es_part_ok(k))
		return -EINVAL;
	ret = es_key(es, key, "hosts/%s/meta/%s", es->host, k) ?: etcd_get(es->etcd, key, &kv);
	if (ret)
		return ret;
	snprintf(value, len, "%s", kv.value);
	etcd_kv_free(&kv);
	return 0;
}

static int es_meta_set(struct store *st, const char *k, const char *value)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(k))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "hosts/%s/meta/%s", es->host, k) ?:
	      es_add(es, key, NULL, value, strlen(value));
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_begin(struct store *st)
{
	struct es *es = ES(st);

	pthread_mutex_lock(&es->mu); /* held until es_end */
	es->depth++;
	return 0;
}

static int es_end(struct store *st, int ret)
{
	struct es *es = ES(st);

	if (--es->depth == 0) {
		if (ret)
			es_batch_clear(es);
		else
			ret = es_commit(es);
	}
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static json_t *es_cp_list(struct store *st, const char *uuid)
{
	struct es *es = ES(st);
	char p[ES_KEY_MAX];
	struct etcd_kvs kvs;
	json_t *arr = json_array();

	if (!es_part_ok(uuid) || es_key(es, p, "checkpoints/%s/", uuid) || es_list(es, p, &kvs))
		return arr;
	for (size_t i = 0; i < kvs.n; i++) {
		json_t *j = kv_json(&kvs.kv[i]);

		if (j)
			json_array_append_new(arr, etcd_rec_checkpoint(j));
		json_decref(j);
	}
	etcd_kvs_free(&kvs);
	return arr;
}

static int es_cp_put(struct store *st, const char *uuid, json_t *cp)
{
	struct es *es = ES(st);
	const char *name = json_string_value(json_object_get(cp, "name"));
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(uuid) || !es_part_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "checkpoints/%s/%s", uuid, name) ?:
	      es_own(es, uuid, false) ?:
	      es_add_json(es, key, etcd_rec_checkpoint(cp));
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_cp_delete(struct store *st, const char *uuid, const char *name)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(uuid) || !es_part_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "checkpoints/%s/%s", uuid, name) ?:
	      es_own(es, uuid, false) ?: es_add(es, key, NULL, NULL, 0);
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static json_t *es_host_list(struct store *st, bool with_token)
{
	struct es *es = ES(st);
	char p[ES_KEY_MAX];
	struct etcd_kvs kvs;
	json_t *arr = json_array();

	char end[ES_KEY_MAX];

	if (es_key(es, p, "peers/"))
		return arr;
	etcd_prefix_end(p, end);
	if (etcd_range(es->etcd, p, end, &kvs))
		return arr;
	/* etcd sorts by key: by name, like sqlite.c. */
	for (size_t i = 0; i < kvs.n; i++) {
		json_t *j = kv_json(&kvs.kv[i]), *h;

		if (!j)
			continue;
		h = etcd_rec_host(j, with_token);
		if (h)
			json_array_append_new(arr, h);
		json_decref(j);
	}
	etcd_kvs_free(&kvs);
	return arr;
}

static int es_host_put(struct store *st, const char *name, const char *url, const char *token,
		       const char *tls_name)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(name))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "peers/%s", name) ?:
	      es_add_json(es, key, json_pack("{s:s, s:s, s:s, s:o}", "name", name, "url", url,
					     "token", token, "tls_name",
					     tls_name ? json_string(tls_name) : json_null()));
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_host_delete(struct store *st, const char *name)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int64_t deleted = 0, rev = 0;
	int ret;

	if (!es_part_ok(name))
		return -EINVAL;
	ret = es_key(es, key, "peers/%s", name);
	if (ret)
		return ret;
	/* Not batched: it answers whether there was one. */
	pthread_mutex_lock(&es->mu);
	pthread_mutex_lock(&es->wlock);
	ret = etcd_delete(es->etcd, key, NULL, &deleted, &rev);
	if (!ret && deleted)
		es_own_rev(es, rev);
	pthread_mutex_unlock(&es->wlock);
	pthread_mutex_unlock(&es->mu);
	return ret ? ret : deleted ? 0 : -ENOENT;
}

static int es_job_put(struct store *st, const struct store_job *job)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(job->id))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "hosts/%s/jobs/%s", es->host, job->id) ?:
	      es_add_json(es, key, etcd_rec_job_json(job));
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_job_delete(struct store *st, const char *id)
{
	struct es *es = ES(st);
	char key[ES_KEY_MAX];
	int ret;

	if (!es_part_ok(id))
		return -EINVAL;
	pthread_mutex_lock(&es->mu);
	ret = es_key(es, key, "hosts/%s/jobs/%s", es->host, id) ?: es_add(es, key, NULL, NULL, 0);
	ret = es_done(es, ret);
	pthread_mutex_unlock(&es->mu);
	return ret;
}

static int es_job_list(struct store *st, struct store_job **out, unsigned *n)
{
	struct es *es = ES(st);
	char p[ES_KEY_MAX];
	struct etcd_kvs kvs;
	struct store_job *jobs;
	unsigned count = 0;
	int ret;

	*out = NULL;
	*n = 0;
	ret = es_key(es, p, "hosts/%s/jobs/", es->host) ?: es_list(es, p, &kvs);
	if (ret)
		return ret;
	jobs = calloc(kvs.n ? kvs.n : 1, sizeof(*jobs));
	if (!jobs) {
		etcd_kvs_free(&kvs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < kvs.n; i++) {
		json_t *j = kv_json(&kvs.kv[i]);

		if (j && !etcd_rec_job(j, &jobs[count]))
			count++;
		else
			log_warn("store: %s: not a job record: ignored", kvs.kv[i].key);
		json_decref(j);
	}
	etcd_kvs_free(&kvs);
	*out = jobs;
	*n = count;
	return 0;
}

static int es_watch(struct store *st, store_watch_fn fn, void *opaque)
{
	struct es *es = ES(st);

	pthread_mutex_lock(&es->fn_lock);
	es->fn = fn;
	es->fn_opaque = opaque;
	pthread_mutex_unlock(&es->fn_lock);
	return 0;
}

static void es_close(struct store *st)
{
	struct es *es = ES(st);

	if (!es)
		return;
	etcd_watch_stop(es->watch);
	es_batch_clear(es);
	json_decref(es->pending);
	json_decref(es->cache);
	etcd_close(es->etcd);
	pthread_mutex_destroy(&es->mu);
	pthread_mutex_destroy(&es->wlock);
	pthread_mutex_destroy(&es->fn_lock);
	free(es);
}

static const struct store_ops etcd_ops = {
	.name = "etcd",
	.close = es_close,
	.load = es_load,
	.vm_put = es_vm_put,
	.vm_delete = es_vm_delete,
	.runtime_put = es_runtime_put,
	.meta_get = es_meta_get,
	.meta_set = es_meta_set,
	.begin = es_begin,
	.end = es_end,
	.cp_list = es_cp_list,
	.cp_put = es_cp_put,
	.cp_delete = es_cp_delete,
	.host_list = es_host_list,
	.host_put = es_host_put,
	.host_delete = es_host_delete,
	.job_put = es_job_put,
	.job_delete = es_job_delete,
	.job_list = es_job_list,
	.watch = es_watch,
};

/* The layout's version: written by the first cellad, checked by the others
 * (a compare-and-swap: two first ones cannot both write it). */
static int es_check_version(struct es *es, char *err, size_t errlen)
{
	char key[ES_KEY_MAX];
	struct etcd_txn t;
	struct etcd_kv kv;
	bool ok = false;
	int ret = es_key(es, key, "meta/version");

	if (ret)
		return ret;
	etcd_txn_init(&t);
	ret = etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL) ?:
	      etcd_txn_put(&t, key, ES_VERSION, strlen(ES_VERSION), 0) ?:
	      etcd_txn_commit(es->etcd, &t, &ok, &es->open_rev);
	etcd_txn_free(&t);
	if (!ret && !ok) {
		ret = etcd_get(es->etcd, key, &kv);
		if (!ret) {
			if (strcmp(kv.value, ES_VERSION)) {
				snprintf(err, errlen, "%s holds layout version %s; this cellad knows %s",
					 es->prefix, kv.value, ES_VERSION);
				ret = -EPROTO;
			}
			etcd_kv_free(&kv);
		}
	}
	if (ret && !err[0])
		snprintf(err, errlen, "etcd (%s): %s", es->prefix, strerror(-ret));
	return ret;
}

static int load_none(void *opaque, struct vmdef *def, const struct store_runtime *rt)
{
	(void)opaque;
	(void)def;
	(void)rt;
	return 0;
}

bool es_back_online(struct es *es)
{
	char err[256] = "";
	int ret;

	pthread_mutex_lock(&es->mu);
	if (!es->offline) {
		pthread_mutex_unlock(&es->mu);
		return false;
	}
	es->offline = false;
	pthread_mutex_unlock(&es->mu);
	ret = es_check_version(es, err, sizeof(err));
	if (ret)
		log_err("store: etcd is back, but: %s", err);
	/* etcd wins for definitions: the cache becomes what it says. */
	if (!ret && (ret = es_load(&es->base, load_none, NULL)))
		log_warn("store: cannot read this host's VMs back from etcd: %s", strerror(-ret));
	if (!ret)
		log_info("store: etcd is back: the local cache is etcd's again");
	return true;
}

int store_etcd_open(struct store **out, const struct store_etcd_conf *conf, char *err,
		    size_t errlen)
{
	struct etcd_conf ec = { .ca = conf->ca, .cert = conf->cert, .key = conf->key,
				.timeout_ms = conf->timeout_ms, .stats = conf->stats };
	pthread_mutexattr_t a;
	struct es *es;
	int ret;

	*out = NULL;
	err[0] = 0;
	if (!conf->prefix || conf->prefix[0] != '/' || strlen(conf->prefix) >= 100 ||
	    conf->prefix[strlen(conf->prefix) - 1] == '/' || !es_part_ok(conf->host) ||
	    strlen(conf->host) >= 64) {
		snprintf(err, errlen, "etcd: expected a prefix such as /cella/POOL and a host name");
		return -EINVAL;
	}
	if (conf->nr_endpoints > ETCD_MAX_ENDPOINTS) {
		snprintf(err, errlen, "etcd: at most %d endpoints", ETCD_MAX_ENDPOINTS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < conf->nr_endpoints; i++)
		ec.endpoints[i] = conf->endpoints[i];
	ec.nr_endpoints = conf->nr_endpoints;
	es = calloc(1, sizeof(*es));
	if (!es)
		return -ENOMEM;
	es->base.ops = &etcd_ops;
	snprintf(es->prefix, sizeof(es->prefix), "%s", conf->prefix);
	snprintf(es->host, sizeof(es->host), "%s", conf->host);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&es->mu, &a);
	pthread_mutexattr_destroy(&a);
	pthread_mutex_init(&es->wlock, NULL);
	pthread_mutex_init(&es->fn_lock, NULL);
	es->pending = json_object();
	ret = es_cache_open(es, conf->cache_path);
	if (ret)
		snprintf(err, errlen, "etcd: the local cache %s: %s", conf->cache_path,
			 strerror(-ret));
	if (!ret)
		ret = etcd_open(&es->etcd, &ec, err, errlen);
	if (!ret)
		ret = es_check_version(es, err, errlen);
	if (ret && store_unreachable(ret) && es->cache_read) {
		/* No member answers: start from the local cache, and check
		 * the layout once etcd is back (etcd_store_watch.c). */
		log_warn("store: %s; starting from this host's local cache", err);
		err[0] = 0;
		es->offline = true;
		es->lost = true; /* runtime records wait for the watch */
		es->open_rev = -1; /* the watch starts from whatever is current */
		ret = 0;
	}
	if (!ret) {
		char p[ES_KEY_MAX];

		/* From the revision we opened at: nothing after it is missed.
		 * A pool member's store watches only its host's keys: the pool
		 * layer watches the whole pool already (pool/vms.c), and a
		 * second such watch doubled what etcd sends every host for
		 * every change in the pool (at 64 hosts each VM start went out
		 * 128 times). It is still there for the connection's state
		 * (es_watch_state: runtime writes held while etcd is away go
		 * out when it is back) and others' changes to this host's keys. */
		if (conf->watch_own_only)
			snprintf(p, sizeof(p), "%s/hosts/%s/", es->prefix, es->host);
		else
			snprintf(p, sizeof(p), "%s/", es->prefix);
		ret = etcd_watch_start(es->etcd, p, es->open_rev + 1, &es_watch_ops, es,
				       &es->watch);
		if (ret)
			snprintf(err, errlen, "etcd: cannot start the watch: %s", strerror(-ret));
	}
	if (ret) {
		es_close(&es->base);
		return ret;
	}
	*out = &es->base;
	return 0;
}
