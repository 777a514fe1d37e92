/* etcd_store_batch.c: the etcd store's writes: batched between store_begin
 * and store_end, committed in one etcd transaction whose compares hold only
 * while this host owns the VMs it changes; runtime records etcd could not
 * take are written when it is back (docs/pool.md, "Writes and
 * transactions"). */
#include "etcd_store_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int es_key(struct es *es, char *dst, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(dst, ES_KEY_MAX, "%s/", es->prefix), m;

	va_start(ap, fmt);
	m = vsnprintf(dst + n, ES_KEY_MAX - (size_t)n, fmt, ap);
	va_end(ap);
	return m < 0 || (size_t)(n + m) >= ES_KEY_MAX ? -ENAMETOOLONG : 0;
}

/* Names that become key components: no slash, so that one cannot reach
 * another's keys. */
bool es_part_ok(const char *s)
{
	return s && *s && !strchr(s, '/') && strlen(s) < 200;
}

void es_batch_clear(struct es *es)
{
	for (size_t i = 0; i < es->nr_ops; i++) {
		free(es->ops[i].key);
		free(es->ops[i].range_end);
		free(es->ops[i].value);
	}
	free(es->ops);
	free(es->owned);
	es->ops = NULL;
	es->owned = NULL;
	es->nr_ops = es->nr_owned = 0;
	es->nr_absent = 0;
}

/* etcd refuses two writes of one key in a transaction: the later replaces
 * the earlier. */
int es_add(struct es *es, const char *key, const char *range_end, const char *value,
		  size_t len)
{
	struct es_op *op = NULL, *grown;

	for (size_t i = 0; i < es->nr_ops && !range_end; i++)
		if (!es->ops[i].range_end && !strcmp(es->ops[i].key, key))
			op = &es->ops[i];
	if (!op) {
		grown = realloc(es->ops, (es->nr_ops + 1) * sizeof(*es->ops));
		if (!grown)
			return -ENOMEM;
		es->ops = grown;
		op = &es->ops[es->nr_ops++];
		memset(op, 0, sizeof(*op));
		op->key = strdup(key);
		op->range_end = range_end ? strdup(range_end) : NULL;
		if (!op->key || (range_end && !op->range_end))
			return -ENOMEM;
	}
	free(op->value);
	op->value = NULL;
	if (value) {
		op->value = malloc(len + 1);
		if (!op->value)
			return -ENOMEM;
		memcpy(op->value, value, len);
		op->value[len] = 0;
	}
	op->len = len;
	return 0;
}

int es_add_json(struct es *es, const char *key, json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	int ret = s ? es_add(es, key, NULL, s, strlen(s)) : -ENOMEM;

	free(s);
	json_decref(v);
	return ret;
}

int es_own(struct es *es, const char *uuid, bool deleting)
{
	struct es_owned *grown;

	for (size_t i = 0; i < es->nr_owned; i++) {
		if (!strcmp(es->owned[i].uuid, uuid)) {
			es->owned[i].deleting |= deleting;
			return 0;
		}
	}
	grown = realloc(es->owned, (es->nr_owned + 1) * sizeof(*es->owned));
	if (!grown)
		return -ENOMEM;
	es->owned = grown;
	snprintf(es->owned[es->nr_owned].uuid, sizeof(es->owned[0].uuid), "%s", uuid);
	es->owned[es->nr_owned++].deleting = deleting;
	return 0;
}

void es_own_rev(struct es *es, int64_t rev)
{
	es->own_revs[es->own_next++ % ES_OWN_REVS] = rev;
}

/* One etcd transaction of the batch. free_owners: VMs nobody owns yet,
 * which this host takes (their owner key must still be absent). */
static int es_try_commit(struct es *es, const bool *free_owners, bool *succeeded)
{
	struct etcd_txn t;
	char key[ES_KEY_MAX];
	int64_t rev = 0;
	int ret = 0;

	etcd_txn_init(&t);
	for (size_t i = 0; !ret && i < es->nr_owned; i++) {
		ret = es_key(es, key, "owner/%s", es->owned[i].uuid);
		if (!ret && free_owners[i])
			ret = etcd_txn_compare(&t, key, ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL);
		else if (!ret)
			ret = etcd_txn_compare(&t, key, ETCD_CMP_VALUE, ETCD_CMP_EQUAL, 0, es->host);
		if (!ret && free_owners[i] && !es->owned[i].deleting)
			ret = etcd_txn_put(&t, key, es->host, strlen(es->host), 0);
	}
	for (size_t i = 0; !ret && i < es->nr_absent; i++)
		ret = etcd_txn_compare(&t, es->absent[i], ETCD_CMP_VERSION, ETCD_CMP_EQUAL, 0, NULL);
	for (size_t i = 0; !ret && i < es->nr_ops; i++) {
		const struct es_op *op = &es->ops[i];

		ret = op->value ? etcd_txn_put(&t, op->key, op->value, op->len, 0)
				: etcd_txn_delete(&t, op->key, op->range_end);
	}
	if (!ret) {
		pthread_mutex_lock(&es->wlock);
		ret = etcd_txn_commit(es->etcd, &t, succeeded, &rev);
		if (!ret && *succeeded)
			es_own_rev(es, rev);
		pthread_mutex_unlock(&es->wlock);
	}
	etcd_txn_free(&t);
	return ret;
}

/* Commit the batch in one etcd transaction, then forget it. A VM owned by
 * another host is -EPERM: its data is that host's to change. */
int es_commit(struct es *es)
{
	bool free_owners[64] = { false }, ok = false;
	int ret;

	if (!es->nr_ops) {
		es_batch_clear(es);
		return 0;
	}
	if (es->nr_owned > 64) {
		es_batch_clear(es);
		return -E2BIG;
	}
	ret = es_try_commit(es, free_owners, &ok);
	if (!ret && !ok && es->nr_owned) {
		/* Some VM is not ours: unowned ones we take, others refuse. */
		for (size_t i = 0; !ret && i < es->nr_owned; i++) {
			char key[ES_KEY_MAX];
			struct etcd_kv kv;
			int r;

			ret = es_key(es, key, "owner/%s", es->owned[i].uuid);
			r = ret ? ret : etcd_get(es->etcd, key, &kv);
			if (r == -ENOENT) {
				free_owners[i] = true;
			} else if (!r) {
				if (strcmp(kv.value, es->host)) {
					log_warn("store: VM %s belongs to host %s", es->owned[i].uuid,
						 kv.value);
					ret = -EPERM;
				}
				etcd_kv_free(&kv);
			} else {
				ret = r;
			}
		}
		if (!ret)
			ret = es_try_commit(es, free_owners, &ok);
	}
	if (!ret && !ok)
		ret = es_absent_taken(es) ?: -EAGAIN; /* raced with another writer: the caller may try again */
	if (!ret)
		es_cache_commit(es);
	es_batch_clear(es);
	return ret;
}

/* Each write: inside a transaction it joins the batch; alone, it is a
 * batch of its own. Called with mu held. */
int es_done(struct es *es, int ret)
{
	if (es->depth)
		return ret;
	if (ret) {
		es_batch_clear(es);
		return ret;
	}
	return es_commit(es);
}

/* Runtime records etcd did not take (it was unreachable): written when it
 * is back, so the pool catches up with what happened meanwhile. */
void es_flush_pending(struct es *es)
{
	const char *uuid;
	json_t *rec, *tmp;

	pthread_mutex_lock(&es->mu);
	if (es->depth) {
		pthread_mutex_unlock(&es->mu);
		return;
	}
	json_object_foreach_safe(es->pending, tmp, uuid, rec) {
		char key[ES_KEY_MAX];
		int ret = es_key(es, key, "hosts/%s/runtime/%s", es->host, uuid);

		if (!ret)
			ret = es_add_json(es, key, json_incref(rec));
		ret = es_done(es, ret);
		if (ret == -EPERM || ret == -ENAMETOOLONG || !ret)
			json_object_del(es->pending, uuid);
		else
			break;
	}
	if (json_object_size(es->pending) == 0)
		log_debug("store: runtime records caught up");
	pthread_mutex_unlock(&es->mu);
}
