/* store.h: cellad's persistent state behind one interface: VM definitions
 * (with their disks and NICs), each VM's runtime record, checkpoints, peer
 * hosts, jobs in progress and host metadata. SQLite (store/sqlite.c) is the
 * first implementation; a pool's etcd store (store/etcd_store.c) is the
 * second, so every call may fail (-EIO, -ETIMEDOUT, -ECONNREFUSED, ...:
 * callers handle it),
 * changes are grouped in transactions, and others' changes can be watched.
 * Thread-safe: any thread may call; a transaction (store_begin .. store_end)
 * belongs to the thread that began it and keeps the others' calls out. */
#pragma once
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"
#include "vmdef.h"

/* What cellad needs to find a worker again after its own restart. */
struct store_runtime {
	char state[16];
	int pid;                 /* 0: no worker */
	uint64_t pid_start;      /* /proc/PID/stat starttime, against pid reuse */
	int64_t started_at;      /* wall clock, seconds */
	int exit_status;         /* -1: none yet */
	char exit_reason[256];
	unsigned restarts;
};

/* A long operation in progress (core/job.c): recorded before its first
 * step and at each phase, deleted when it ends, so that a restarted cellad
 * finishes or rolls back each one it finds. */
struct store_job {
	char id[40];
	char vm_uuid[40];
	char kind[32];          /* "save", "checkpoint-create", ... */
	char phase[32];         /* the kind's own steps */
	json_t *data;           /* what recovery needs (paths made, names); owned */
	int64_t created_at;
};

/* Called for each change another writer made (collection "vms", "runtime",
 * "checkpoints", "hosts", "jobs"; key: the VM's uuid, host name, job id). */
typedef void (*store_watch_fn)(void *opaque, const char *collection, const char *key);

struct store;
struct etcd_stats;

struct store_ops {
	const char *name;
	void (*close)(struct store *st);
	int (*load)(struct store *st, int (*fn)(void *opaque, struct vmdef *def,
						const struct store_runtime *rt), void *opaque);
	int (*vm_put)(struct store *st, const struct vmdef *def);
	int (*vm_delete)(struct store *st, const char *uuid);
	int (*runtime_put)(struct store *st, const char *uuid, const struct store_runtime *rt);
	int (*meta_get)(struct store *st, const char *key, char *value, size_t len);
	int (*meta_set)(struct store *st, const char *key, const char *value);
	int (*begin)(struct store *st);
	int (*end)(struct store *st, int ret);
	json_t *(*cp_list)(struct store *st, const char *uuid);
	int (*cp_put)(struct store *st, const char *uuid, json_t *cp);
	int (*cp_delete)(struct store *st, const char *uuid, const char *name);
	json_t *(*host_list)(struct store *st, bool with_token);
	int (*host_put)(struct store *st, const char *name, const char *url, const char *token,
			const char *tls_name);
	int (*host_delete)(struct store *st, const char *name);
	int (*job_put)(struct store *st, const struct store_job *job);
	int (*job_delete)(struct store *st, const char *id);
	int (*job_list)(struct store *st, struct store_job **jobs, unsigned *n);
	int (*watch)(struct store *st, store_watch_fn fn, void *opaque);
};

struct store {
	const struct store_ops *ops;
};

/* The SQLite store at path (created if missing; WAL, foreign keys on). */
int store_sqlite_open(struct store **out, const char *path, char *err,
		      size_t errlen) __must_check;

/* The etcd store (store/etcd_store.c, docs/pool.md): state under prefix
 * ("/cella/POOL") in an etcd cluster reached at endpoints with mutual TLS;
 * host names this cellad among the pool's (its runtime records, jobs and
 * metadata, and the VMs it owns). Fails when no member answers. */
#define STORE_ETCD_MAX_ENDPOINTS 16

struct store_etcd_conf {
	const char *endpoints[STORE_ETCD_MAX_ENDPOINTS];
	unsigned nr_endpoints;
	const char *ca, *cert, *key; /* PEM files */
	const char *prefix;
	const char *host;
	unsigned timeout_ms;         /* per request and member (0: 3000) */
	struct etcd_stats *stats;    /* requests counted there (etcd_stats.h), or NULL */
	/* This host's VMs kept in a local file (etcd_cache.h), or NULL: with
	 * one, a store opened while etcd is unreachable loads from it. */
	const char *cache_path;
	/* Watch only this host's keys (P/hosts/HOST/): a pool member, whose
	 * pool layer watches the whole pool already. */
	bool watch_own_only;
};

int store_etcd_open(struct store **out, const struct store_etcd_conf *conf, char *err,
		    size_t errlen) __must_check;

/* Whether err (from any call) says the store could not be reached, rather
 * than that it refused: callers answer "unavailable", and try later. */
static inline bool store_unreachable(int err)
{
	return err == -ECONNREFUSED || err == -ETIMEDOUT || err == -ECONNRESET ||
	       err == -EPROTO;
}

static inline const char *store_name(const struct store *st)
{
	return st->ops->name;
}

static inline void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

/* Call fn for every stored VM (definition order). fn returns 0 to go on. */
static inline int __must_check store_load(struct store *st,
					  int (*fn)(void *, struct vmdef *,
						    const struct store_runtime *),
					  void *opaque)
{
	return st->ops->load(st, fn, opaque);
}

/* Insert or replace a definition (disks and NICs included). */
static inline int __must_check store_vm_put(struct store *st, const struct vmdef *def)
{
	return st->ops->vm_put(st, def);
}

static inline int __must_check store_vm_delete(struct store *st, const char *uuid)
{
	return st->ops->vm_delete(st, uuid);
}

static inline int __must_check store_runtime_put(struct store *st, const char *uuid,
						 const struct store_runtime *rt)
{
	return st->ops->runtime_put(st, uuid, rt);
}

/* Host metadata (key/value), e.g. the boot id seen last. value: caller's
 * buffer; returns 0, -ENOENT or -EIO. */
static inline int __must_check store_meta_get(struct store *st, const char *key, char *value,
					      size_t len)
{
	return st->ops->meta_get(st, key, value, len);
}

static inline int __must_check store_meta_set(struct store *st, const char *key,
					      const char *value)
{
	return st->ops->meta_set(st, key, value);
}

/* Transactions around several calls: store_end commits when ret is 0, else
 * rolls back; it returns ret, or -EIO when the commit fails. */
static inline int __must_check store_begin(struct store *st)
{
	return st->ops->begin(st);
}

static inline int __must_check store_end(struct store *st, int ret)
{
	return st->ops->end(st, ret);
}

/* A VM's checkpoints, in creation order: objects {name, parent (null for a
 * root), kind, created_at, memory (a saved state file exists), layers
 * [{id, path}]}. */
static inline json_t *store_cp_list(struct store *st, const char *uuid)
{
	return st->ops->cp_list(st, uuid);
}

/* Insert or update one (same object shape). */
static inline int __must_check store_cp_put(struct store *st, const char *uuid, json_t *cp)
{
	return st->ops->cp_put(st, uuid, cp);
}

static inline int __must_check store_cp_delete(struct store *st, const char *uuid,
					       const char *name)
{
	return st->ops->cp_delete(st, uuid, name);
}

/* Peer hosts VMs move to: objects {name, url, tls_name} (+ token when
 * with_token; the API never shows it). */
static inline json_t *store_host_list(struct store *st, bool with_token)
{
	return st->ops->host_list(st, with_token);
}

/* Insert or replace; tls_name may be NULL. */
static inline int __must_check store_host_put(struct store *st, const char *name,
					      const char *url, const char *token,
					      const char *tls_name)
{
	return st->ops->host_put(st, name, url, token, tls_name);
}

/* 0, -ENOENT or -EIO. */
static inline int __must_check store_host_delete(struct store *st, const char *name)
{
	return st->ops->host_delete(st, name);
}

/* Insert or replace a job (by id). */
static inline int __must_check store_job_put(struct store *st, const struct store_job *job)
{
	return st->ops->job_put(st, job);
}

static inline int __must_check store_job_delete(struct store *st, const char *id)
{
	return st->ops->job_delete(st, id);
}

/* Every job recorded, oldest first: a malloc'd array (free each data with
 * json_decref, then the array with free). */
static inline int __must_check store_job_list(struct store *st, struct store_job **jobs,
					      unsigned *n)
{
	return st->ops->job_list(st, jobs, n);
}

/* Be told of changes other writers make. A store only this cellad writes
 * (SQLite) accepts the watch and never calls fn. */
static inline int __must_check store_watch(struct store *st, store_watch_fn fn, void *opaque)
{
	return st->ops->watch(st, fn, opaque);
}
