/* replica_priv.h: what replica_in.c and replica_out.c lend to
 * replica_planned.c (planned failover and reverse replication). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct sup;
struct cerr;

/* replica_in.c (rep_lock held by the caller for the record functions) */
/* replica_broker.c: where the replicas kept here live: a pool member's
 * first pool storage location's replicas/ (every member sees the same
 * files), else state_dir/replicas. 0 or -ENAMETOOLONG. */
int rep_in_root(struct sup *s, char *out, size_t len);
/* On a pool member, the pool's replica VM called name (marked a replica in
 * etcd) owned by another host is taken over: its owner key passed here by
 * compare-and-swap, its definition loaded (only_if_down: only when its
 * owner is down; otherwise the request is its owner's; want_uuid: only the
 * replica of that VM). Owned here: loaded
 * if it was not. 0 (also: no such replica in the pool, not in a pool), or
 * -1 with e. */
int rep_broker_claim(struct sup *s, const char *name, const char *want_uuid, bool only_if_down,
		     struct cerr *e);
/* Whether the pool's replica called name is another host's. */
bool rep_broker_foreign(struct sup *s, const char *name);
/* REPLICAS_ROOT/NAME[/file]. 0 or -ENAMETOOLONG. */
int rep_in_dir(struct sup *s, const char *name, const char *file, char *out, size_t len);
/* The record (replica.json), or NULL with e (not found, bad name). */
json_t *rep_in_rec_load(struct sup *s, const char *name, struct cerr *e);
int rep_in_rec_save(struct sup *s, const char *name, json_t *rec, struct cerr *e);
/* The status of a replica as GET /v1/replicas/NAME shows it. */
json_t *rep_in_status(struct sup *s, const char *name, json_t *rec);

/* replica_out.c */
/* Stop VM name's shipper and take it off the list, leaving its settings
 * file: *conf gets {to, interval_ms, keep, max_bandwidth, compression, last,
 * seq}. 0, or -1 with e (not replicated). */
int rep_out_detach(struct sup *s, const char *name, json_t **conf, struct cerr *e);
/* Start VM name's shipper again from its settings file. 0, or -1 with e. */
int rep_out_attach(struct sup *s, const char *name, struct cerr *e);

/* replica_planned.c */
/* A failover's run layer (path, a disk of size bytes) given a change
 * tracking file that starts at `point`, so that the VM's first set back
 * to the old primary is an incremental since it. 0 or -errno (logged). */
int rep_track_from(const char *path, uint64_t size, const char *point);
/* A call to peer host `to`; 0 with a 2xx answer in *reply, else -1 with e
 * (CERR_CONFLICT for a 409; *status 0 when no answer came). */
int rep_peer_call(struct sup *s, const char *to, const char *method, const char *path,
		  json_t *body, long timeout_s, json_t **reply, long *status, struct cerr *e);
