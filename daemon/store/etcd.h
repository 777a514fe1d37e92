/* etcd.h: a client of etcd's v3 API through its JSON gateway (etcd 3.4:
 * POST /v3/kv/range, put, deleterange, txn, /v3/lease/grant, keepalive,
 * revoke, and the /v3/watch stream), over HTTPS with client certificates,
 * with failover across the cluster's members. docs/pool.md says why the
 * gateway and not gRPC.
 *
 * Keys and values are bytes on the wire (base64 in the JSON); here keys are
 * C strings and values are (pointer, length). Every call may fail with
 * -ECONNREFUSED (no member could be reached), -ETIMEDOUT (a member took too
 * long), -EPROTO (TLS refused: certificates), -EIO (a reply we cannot read,
 * or a server error), -ENOENT (a lease that is gone) or -ENOMEM.
 * Thread-safe: unary calls share one connection under a lock; each watch
 * has its own thread and connection. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "compiler.h"

#define ETCD_MAX_ENDPOINTS 16

struct etcd_stats;

struct etcd_conf {
	const char *endpoints[ETCD_MAX_ENDPOINTS]; /* "https://HOST:PORT" (http:// allowed) */
	unsigned nr_endpoints;
	const char *ca, *cert, *key; /* PEM files; cert and key go together */
	unsigned timeout_ms;         /* per request and member (0: 3000) */
	struct etcd_stats *stats;    /* counted into (may be NULL; etcd_stats.h) */
};

struct etcd;

/* One key-value as etcd returns it (owned by the array that holds it). */
struct etcd_kv {
	char *key;
	char *value; /* NUL-terminated too, for JSON values */
	size_t value_len;
	int64_t create_rev, mod_rev, version, lease;
};

struct etcd_kvs {
	struct etcd_kv *kv;
	size_t n;
	int64_t revision; /* the store's revision when it was read */
	bool more;
};

void etcd_kvs_free(struct etcd_kvs *kvs);

/* The members to use: copies conf; no connection is made yet. */
int etcd_open(struct etcd **out, const struct etcd_conf *conf, char *err,
	      size_t errlen) __must_check;
void etcd_close(struct etcd *e);

/* The end of the range of every key that starts with prefix (etcd's
 * range_end): prefix with its last byte incremented. dst: at least
 * strlen(prefix) + 1 bytes. */
void etcd_prefix_end(const char *prefix, char *dst);

/* Keys from key up to range_end (NULL: key alone), sorted by key. */
int etcd_range(struct etcd *e, const char *key, const char *range_end,
	       struct etcd_kvs *out) __must_check;
/* The value of one key: 0 (kv filled, free with etcd_kv_free) or -ENOENT. */
int etcd_get(struct etcd *e, const char *key, struct etcd_kv *kv) __must_check;
void etcd_kv_free(struct etcd_kv *kv);
/* rev (may be NULL): the revision of the write. lease: 0 for none. */
int etcd_put(struct etcd *e, const char *key, const void *value, size_t len, int64_t lease,
	     int64_t *rev) __must_check;
/* deleted (may be NULL): how many keys went. */
int etcd_delete(struct etcd *e, const char *key, const char *range_end, int64_t *deleted,
		int64_t *rev) __must_check;

/* A transaction: if every compare holds, the ops run, else none does. */
enum etcd_cmp_target { ETCD_CMP_VERSION, ETCD_CMP_CREATE, ETCD_CMP_MOD, ETCD_CMP_VALUE };
enum etcd_cmp_result { ETCD_CMP_EQUAL, ETCD_CMP_NOT_EQUAL };

struct etcd_txn {
	json_t *compare, *success; /* built by the calls below; etcd_txn_free */
};

void etcd_txn_init(struct etcd_txn *t);
void etcd_txn_free(struct etcd_txn *t);
/* target VERSION, CREATE, MOD: compare with n; VALUE: with value (a string). */
int etcd_txn_compare(struct etcd_txn *t, const char *key, enum etcd_cmp_target target,
		     enum etcd_cmp_result result, int64_t n, const char *value) __must_check;
int etcd_txn_put(struct etcd_txn *t, const char *key, const void *value, size_t len,
		 int64_t lease) __must_check;
int etcd_txn_delete(struct etcd_txn *t, const char *key, const char *range_end) __must_check;
/* A read of one key among the ops (its answer: etcd_txn_commit_read). */
int etcd_txn_get(struct etcd_txn *t, const char *key) __must_check;
size_t etcd_txn_ops(const struct etcd_txn *t);
/* succeeded: whether the compares held (the ops ran). */
int etcd_txn_commit(struct etcd *e, const struct etcd_txn *t, bool *succeeded,
		    int64_t *rev) __must_check;
/* The same, and the answers of its etcd_txn_get ops, in their order, into
 * got[0..n) (a key that is absent, or compares that failed: an empty kv,
 * key NULL); the caller frees each with etcd_kv_free. */
int etcd_txn_commit_read(struct etcd *e, const struct etcd_txn *t, bool *succeeded,
			 int64_t *rev, struct etcd_kv *got, size_t n) __must_check;

/* Forget the history before rev (keys' current values stay); watches
 * that needed it are told to read again (ETCD_WATCH_RESYNC). */
int etcd_compact(struct etcd *e, int64_t rev) __must_check;

/* Leases: granted for ttl_s seconds (granted: what etcd gave); keepalive
 * renews one (ttl: what is left, -ENOENT when it is gone); revoke ends it
 * and deletes its keys. */
int etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id, int64_t *granted) __must_check;
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl) __must_check;
int etcd_lease_revoke(struct etcd *e, int64_t id) __must_check;

/* Watches ------------------------------------------------------------------
 * A thread streams /v3/watch for every key under a prefix from a revision
 * on, and calls fn for each event, in revision order. When the stream
 * breaks (a member died, etcd is unreachable) it tries the next member,
 * with back-off, and resumes after the last revision it delivered, so no
 * change is missed or repeated; state tells the caller when it is
 * connected again or lost. If the revisions it needs were compacted away,
 * state(ETCD_WATCH_RESYNC) tells the caller to read everything again, and
 * the watch goes on from the oldest revision etcd still has (so a change
 * may be reported twice, but none is missed). */
struct etcd_event {
	bool deleted;
	struct etcd_kv kv; /* deleted: only key and mod_rev */
};

enum etcd_watch_state { ETCD_WATCH_CONNECTED, ETCD_WATCH_LOST, ETCD_WATCH_RESYNC };

struct etcd_watch_ops {
	void (*event)(void *opaque, const struct etcd_event *ev);
	void (*state)(void *opaque, enum etcd_watch_state st, int err);
};

struct etcd_watch;

/* from_rev: the first revision to deliver (0: from now). */
int etcd_watch_start(struct etcd *e, const char *prefix, int64_t from_rev,
		     const struct etcd_watch_ops *ops, void *opaque,
		     struct etcd_watch **out) __must_check;
/* Stops the thread (after its callback returns) and frees w. Not from a
 * callback. */
void etcd_watch_stop(struct etcd_watch *w);

/* The JSON side, without HTTP (etcd_json.c; fuzzed) ------------------------ */

/* Base64 (the gateway's bytes): malloc'd, NUL-terminated; NULL on failure. */
char *etcd_b64_encode(const void *data, size_t len);
/* dst: malloc'd, NUL-terminated; len set. -EINVAL on bad input. */
int etcd_b64_decode(const char *s, char **dst, size_t *len) __must_check;

/* int64 fields come as strings ("5") or numbers; absent is 0. -EINVAL if
 * the field is something else. */
int etcd_json_int64(json_t *obj, const char *field, int64_t *out) __must_check;
/* One kv object ({key, value, create_revision, ...}). */
int etcd_json_kv(json_t *obj, struct etcd_kv *kv) __must_check;
/* A range reply (also a txn's response_range). */
int etcd_json_range(json_t *reply, struct etcd_kvs *out) __must_check;
/* A write reply's header revision. */
int etcd_json_revision(json_t *reply, int64_t *rev) __must_check;
/* A txn reply. */
int etcd_json_txn(json_t *reply, bool *succeeded, int64_t *rev) __must_check;
/* A transaction reply's range answers, in order, into got[0..n) (each the
 * first key of its range, or empty). */
int etcd_json_txn_reads(json_t *reply, struct etcd_kv *got, size_t n) __must_check;

/* One message of the watch stream ({"result": {...}} or {"error": ...}). */
struct etcd_watch_msg {
	bool created, canceled;
	int64_t revision;          /* header revision */
	int64_t compact_revision;  /* > 0: what we asked for is gone */
	struct etcd_event *events; /* malloc'd */
	size_t nr_events;
};

int etcd_json_watch_msg(const char *line, size_t len, struct etcd_watch_msg *msg) __must_check;
void etcd_watch_msg_free(struct etcd_watch_msg *msg);
