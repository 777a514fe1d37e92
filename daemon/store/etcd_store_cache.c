/* etcd_store_cache.c: the etcd store's local cache of this host's VMs
 * (etcd_cache.h for the file): kept up to date from the store's own
 * commits, runtime records and reads of etcd, and read back when cellad
 * starts while etcd cannot be reached (docs/pool.md, "When etcd is away"). */
#include "etcd_store_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomicfile.h"
#include "etcd_cache.h"
#include "etcd_records.h"
#include "log.h"

static int write_whole(const char *path, const char *data)
{
	char tmp[PATH_MAX + 8];

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return atomic_file_write(path, tmp, data, 0600, true);
}

/* mu held. */
static void cache_save(struct es *es)
{
	char *s;
	int ret;

	if (!es->cache_path[0] || !es->cache)
		return;
	s = etcd_cache_dump(es->prefix, es->host, es->cache);
	ret = s ? write_whole(es->cache_path, s) : -ENOMEM;
	free(s);
	if (ret)
		log_warn("store: cannot write the local cache %s: %s", es->cache_path,
			 strerror(-ret));
}

int es_cache_open(struct es *es, const char *path)
{
	unsigned skipped = 0;
	json_t *vms = NULL;
	char *buf;
	FILE *f;
	size_t n;
	int ret;

	es->cache = json_object();
	if (!es->cache)
		return -ENOMEM;
	if (!path)
		return 0;
	if (snprintf(es->cache_path, sizeof(es->cache_path), "%s", path) >=
	    (int)sizeof(es->cache_path))
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return 0; /* none yet */
	buf = malloc(ETCD_CACHE_MAX + 1);
	n = buf ? fread(buf, 1, ETCD_CACHE_MAX + 1, f) : 0;
	fclose(f);
	if (!buf)
		return -ENOMEM;
	ret = etcd_cache_parse(buf, n, es->prefix, es->host, &vms, &skipped);
	free(buf);
	if (ret) {
		log_warn("store: the local cache %s is not this host's (or not a cache): ignored",
			 path);
		return 0;
	}
	if (skipped)
		log_warn("store: %u entries of the local cache %s ignored (not whole)", skipped,
			 path);
	json_decref(es->cache);
	es->cache = vms;
	es->cache_read = true;
	return 0;
}

/* The uuid a key of the batch stands for, if it is one we cache:
 * 'v' (P/vms/UUID) or 'r' (P/hosts/HOST/runtime/UUID). */
static char key_kind(struct es *es, const char *key, char *uuid, size_t len)
{
	size_t pl = strlen(es->prefix), hl = strlen(es->host);
	const char *k = key;

	if (strncmp(k, es->prefix, pl) || k[pl] != '/')
		return 0;
	k += pl + 1;
	if (!strncmp(k, "vms/", 4) && !strchr(k + 4, '/')) {
		snprintf(uuid, len, "%s", k + 4);
		return 'v';
	}
	if (!strncmp(k, "hosts/", 6) && !strncmp(k + 6, es->host, hl) && k[6 + hl] == '/' &&
	    !strncmp(k + 7 + hl, "runtime/", 8) && !strchr(k + 15 + hl, '/')) {
		snprintf(uuid, len, "%s", k + 15 + hl);
		return 'r';
	}
	return 0;
}

void es_cache_commit(struct es *es)
{
	bool changed = false;

	for (size_t i = 0; es->cache && i < es->nr_ops; i++) {
		const struct es_op *op = &es->ops[i];
		char uuid[64];
		char kind = op->range_end ? 0 : key_kind(es, op->key, uuid, sizeof(uuid));
		json_t *v, *e;

		if (!kind)
			continue;
		v = op->value ? json_loadb(op->value, op->len, 0, NULL) : NULL;
		if (op->value && !json_is_object(v)) { /* not a record: not ours to keep */
			json_decref(v);
			continue;
		}
		e = json_object_get(es->cache, uuid);
		if (kind == 'v' && !v) {
			json_object_del(es->cache, uuid);
		} else if (kind == 'v') {
			if (!e)
				json_object_set_new(es->cache, uuid, e = json_pack("{s:n}", "runtime"));
			json_object_set(e, "vm", v);
		} else if (e) {
			json_object_set(e, "runtime", v ? v : json_null());
		}
		json_decref(v);
		changed = true;
	}
	if (changed)
		cache_save(es);
}

/* A VM this host runs but the cache does not hold (one HA took over:
 * registered from etcd, not written here): its definition from etcd. */
static json_t *cache_fetch(struct es *es, const char *uuid)
{
	char key[ES_KEY_MAX];
	struct etcd_kv kv;
	json_t *vm, *e = NULL;
	bool mine;

	if (es_key(es, key, "owner/%s", uuid) || etcd_get(es->etcd, key, &kv))
		return NULL;
	mine = !strcmp(kv.value, es->host);
	etcd_kv_free(&kv);
	if (!mine || es_key(es, key, "vms/%s", uuid) || etcd_get(es->etcd, key, &kv))
		return NULL;
	vm = json_loadb(kv.value, kv.value_len, 0, NULL);
	etcd_kv_free(&kv);
	if (json_is_object(vm))
		json_object_set_new(es->cache, uuid, e = json_pack("{s:O, s:n}", "vm", vm, "runtime"));
	json_decref(vm);
	return e;
}

void es_cache_runtime(struct es *es, const char *uuid, json_t *rec, bool reachable)
{
	json_t *e = es->cache ? json_object_get(es->cache, uuid) : NULL;

	if (!e && es->cache && reachable)
		e = cache_fetch(es, uuid);
	if (!e || json_equal(json_object_get(e, "runtime"), rec))
		return;
	json_object_set(e, "runtime", rec);
	cache_save(es);
}

void es_cache_replace(struct es *es, json_t *vms)
{
	const char *uuid;
	json_t *e, *rec;

	if (!vms)
		return;
	/* A runtime record etcd did not take yet is newer than etcd's. */
	json_object_foreach(vms, uuid, e)
		if ((rec = json_object_get(es->pending, uuid)))
			json_object_set(e, "runtime", rec);
	json_decref(es->cache);
	es->cache = vms;
	cache_save(es);
}

int es_cache_load(struct es *es, int (*fn)(void *, struct vmdef *, const struct store_runtime *),
		  void *opaque)
{
	const char *uuid;
	json_t *e;
	int ret = 0;

	log_warn("store: etcd cannot be reached: loading this host's %zu VMs from its local "
		 "cache %s", json_object_size(es->cache), es->cache_path);
	json_object_foreach(es->cache, uuid, e) {
		struct store_runtime rt = { .exit_status = -1 };
		json_t *r = json_object_get(e, "runtime");
		struct vmdef d;

		snprintf(rt.state, sizeof(rt.state), "defined");
		if (etcd_rec_vmdef(json_object_get(e, "vm"), &d) ||
		    (json_is_object(r) && etcd_rec_runtime(r, &rt))) {
			vmdef_free(&d); /* checked at open: cannot happen */
			continue;
		}
		ret = fn(opaque, &d, &rt);
		vmdef_free(&d);
		if (ret)
			break;
	}
	return ret;
}
