/* etcd_store_priv.h: the etcd store's state, shared by etcd_store.c (the
 * store's operations), etcd_store_batch.c (writes: batches, ownership,
 * commits) and etcd_store_watch.c (others' changes). store/ only. */
#pragma once
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "etcd.h"
#include "store.h"

#define ES_KEY_MAX 512
#define ES_OWN_REVS 256
#define ES_VERSION "1"
#define ES_ABSENT_MAX 4

/* A write waiting for store_end (or the one write of a call). */
struct es_op {
	char *key, *range_end; /* range_end: a delete of a range */
	char *value;           /* NULL: a delete */
	size_t len;
};

/* A VM whose data the batch changes: the batch holds only while this host
 * owns it (owner key == host), or takes it when nobody does. */
struct es_owned {
	char uuid[40];
	bool deleting; /* the batch deletes the owner key */
};

struct es {
	struct store base; /* first: a struct store * is a struct es * */
	struct etcd *etcd;
	char prefix[128]; /* no trailing slash */
	char host[64];
	int64_t open_rev;

	/* Calls and transactions: recursive, a transaction holds it from
	 * store_begin to store_end (like sqlite.c). Covers the batch and
	 * pending. */
	pthread_mutex_t mu;
	unsigned depth;
	struct es_op *ops;
	size_t nr_ops;
	struct es_owned *owned;
	size_t nr_owned;
	json_t *pending; /* uuid -> runtime record etcd did not take yet */
	/* Keys the batch creates that must not exist (a VM's name in the
	 * pool's name index: etcd_store_names.c). */
	char absent[ES_ABSENT_MAX][ES_KEY_MAX];
	char absent_val[ES_ABSENT_MAX][40]; /* what the batch puts there (a uuid) */
	size_t nr_absent;

	/* Revisions of our own writes, so that the watch reports only others'.
	 * wlock is held across each commit, so the watch never sees a write of
	 * ours before its revision is here. */
	pthread_mutex_t wlock;
	int64_t own_revs[ES_OWN_REVS];
	unsigned own_next;

	/* The watch: its thread calls es_watch_*; fn is set by store_watch. */
	struct etcd_watch *watch;
	pthread_mutex_t fn_lock;
	store_watch_fn fn;
	void *fn_opaque;
	bool lost; /* the watch lost etcd (mu) */

	/* The local cache of this host's VMs (etcd_store_cache.c; mu). */
	char cache_path[PATH_MAX]; /* "": none */
	json_t *cache;             /* uuid -> {vm, runtime} */
	bool cache_read;           /* a cache file was read at open */
	bool offline;              /* opened without etcd: from the cache */
};

#define ES(st) ((struct es *)(st))

/* P/fmt... into dst (ES_KEY_MAX bytes); -ENAMETOOLONG. */
int es_key(struct es *es, char *dst, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A name that may become a key component (no slash, not empty). */
bool es_part_ok(const char *s);

/* The batch (mu held): writes join it; es_done commits it when no
 * transaction is open (or drops it when ret is an error). */
int es_add(struct es *es, const char *key, const char *range_end, const char *value, size_t len);
/* The same with a JSON value (consumed). */
int es_add_json(struct es *es, const char *key, json_t *v);
/* The batch changes this VM's data: it holds only while this host owns it. */
int es_own(struct es *es, const char *uuid, bool deleting);
void es_own_rev(struct es *es, int64_t rev);
void es_batch_clear(struct es *es);
int es_commit(struct es *es);
int es_done(struct es *es, int ret);
/* Write the runtime records etcd did not take (watch thread, reconnected). */
void es_flush_pending(struct es *es);

/* etcd_store_names.c: the pool-wide name index (P/names/NAME -> UUID).
 * Into the batch (mu held): def's name, created if absent (compare: it
 * still is) or kept if it is def's already; -EEXIST when another VM has
 * it. */
int es_name_claim(struct es *es, const struct vmdef *def);
/* Into the batch: drop uuid's name from the index (if it names uuid). */
int es_name_release(struct es *es, const char *uuid);
/* After a failed commit: -EEXIST if one of the batch's absent keys exists
 * now with another value (another VM took the name first), else 0 (the
 * same VM's: an ownership race, which the caller reports). */
int es_absent_taken(struct es *es);
/* etcd_store_cache.c: the local cache (mu held for all but open). */
int es_cache_open(struct es *es, const char *path);
/* The batch just committed: its definitions and runtime records. */
void es_cache_commit(struct es *es);
/* A runtime record, written (reachable) or kept for later: the cache's is
 * the latest; a VM it does not hold yet is read from etcd when reachable. */
void es_cache_runtime(struct es *es, const char *uuid, json_t *rec, bool reachable);
/* What a read of etcd found (consumed). */
void es_cache_replace(struct es *es, json_t *vms);
int es_cache_load(struct es *es, int (*fn)(void *, struct vmdef *, const struct store_runtime *),
		  void *opaque);

/* etcd_store.c: the first connection after an offline start: the layout
 * checked, this host's VMs read again (the cache refreshed). Whether the
 * store was offline. */
bool es_back_online(struct es *es);

/* etcd_store_watch.c: the callbacks of the store's etcd watch. */
extern const struct etcd_watch_ops es_watch_ops;
