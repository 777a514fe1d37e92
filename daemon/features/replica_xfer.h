/* replica_xfer.h: resumable change-set transfers (docs/replica.md,
 * "Resuming a cut transfer"), between replica_out.c (the source) and
 * replica_in.c (the target).
 *
 * The source keeps each set it could not deliver (its spool file and point
 * name) until the target confirms it, and sends it with
 * PUT /v1/replicas/NAME/disks/DISK?id=ID&total=T&offset=O: ID names the
 * byte stream (the point and a random nonce), T its length, O where this
 * request's body starts. The target keeps what arrived in disk-DISK.part
 * (with disk-DISK.part.json: id, total) and tells how far it got on
 * GET /v1/replicas/NAME/disks/DISK; once it has T bytes, the set is checked
 * whole and made a point, as a one-piece upload is. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cerr.h"
#include "compiler.h"
#include "peer.h"

struct sup;

/* Target (replica_xfer_in.c) -------------------------------------------------------------- */

/* replica_in.c, rep_lock held: the most bytes a set of disk may have; 0,
 * or -1 with e (no such replica or disk, failed over). */
int replica_in_set_limit(struct sup *s, const char *name, const char *disk, uint64_t *max,
			 struct cerr *e) __must_check;
/* rep_lock held: forget the partial upload of disk (NULL: of every disk). */
void replica_xfer_in_drop(struct sup *s, const char *name, const char *disk);

/* Source (replica_xfer_out.c) ------------------------------------------------------------- */

/* The host `to` as a peer to call: a host of this host's pool (its
 * certificate says who calls), else a peer of cella host add. */
struct rep_peer {
	struct peer p;
	json_t *host; /* keeps p's strings */
	char hdr[3][128];
	const char *hdrs[4];
	char url[256]; /* the address chosen from a list (replica_broker.c) */
};
int rep_peer_find(struct sup *s, const char *to, struct rep_peer *rp,
		  struct cerr *e) __must_check;
void rep_peer_put(struct rep_peer *rp);
/* replica_broker.c: a peer entry listing several addresses (a pool's
 * members, comma-separated): rp->p.url becomes the first that answers GET
 * /v1/host, and is put first in the stored entry when the ones before it did
 * not answer. 0 (also for a single address), or -1 with e (none answers). */
int rep_broker_pick(struct sup *s, struct rep_peer *rp, struct cerr *e) __must_check;

/* A set waiting to be delivered: state_dir/vms/UUID/replica-DISK.xfer (the
 * bytes as they go on the wire) and replica-DISK.xfer.json (point, since,
 * id, total, data bytes; done once the target has it). */
struct rep_spool {
	char point[32], since[32], id[64];
	uint64_t total, data;
	bool done;
	int fd; /* -1: not open */
	int64_t cut_ms; /* wall ms of the round that cut it (0: not known) */
	bool flushed;   /* cut after flush-disks */
};
/* The spool of disk for (since, point): 1 with sp filled (fd open unless
 * done), 0 when there is none or another one (then it is removed). */
int rep_spool_load(struct sup *s, const char *uuid, const char *disk, const char *since,
		   const char *point, struct rep_spool *sp);
/* The pending point of this VM's disks since `since`, if any: 1 with
 * point filled, else 0. */
int rep_spool_pending(struct sup *s, const char *uuid, const char *const *disks, unsigned n,
		      const char *since, char *point, size_t len);
/* When the pending set (since, point) was cut: the earliest cut_ms among
 * the disks' spools of it, and whether every one was flushed. 1 with
 * *cut_ms and *flushed, else 0 (none, or from before cut times were kept). */
int rep_spool_cut(struct sup *s, const char *uuid, const char *const *disks, unsigned n,
		  const char *since, const char *point, int64_t *cut_ms, bool *flushed);
/* The spool path of disk (suffix "" or ".json"); 0 or -ENAMETOOLONG. */
int rep_spool_path(struct sup *s, const char *uuid, const char *disk, const char *suffix,
		   char *out, size_t len);
/* sp->fd (the whole file) recorded as disk's spool: a new id; 0, or -1 with e. */
int rep_spool_save(struct sup *s, const char *uuid, const char *disk, struct rep_spool *sp,
		   struct cerr *e) __must_check;
/* The target has the set: the file goes, the record says done. */
void rep_spool_done(struct sup *s, const char *uuid, const char *disk, struct rep_spool *sp);
/* Remove disk's spool (NULL: every disk's of the VM). */
void rep_spool_drop(struct sup *s, const char *uuid, const char *disk);

/* What one delivery did (counters for the status). */
struct rep_xfer_stats {
	uint64_t sent;     /* bytes put on the wire, all tries */
	uint64_t skipped;  /* bytes the target had already (resumed) */
	uint64_t from;     /* where the last try started */
	unsigned resumed;  /* tries that started past 0 */
	unsigned refused;  /* whole sets the target refused (corrupt): sent again from 0 */
};
/* Deliver sp to the target's url (query: more of its parameters, "?a=b&c=d"
 * or "a=b", or NULL): resumed from what it has, re-sent from
 * 0 once if the target refuses the assembled set. 0 with *answer (the
 * target's 201 body); else -1 with e: CERR_CONFLICT (the target's latest
 * point is not sp->since), CERR_INVALID (the target refuses these bytes:
 * the spool is bad, make the set again), others (try again later). */
int rep_xfer_send(struct sup *s, struct rep_peer *rp, const char *url, const char *query,
		  struct rep_spool *sp, uint64_t max_bps, struct rep_xfer_stats *st,
		  json_t **answer, struct cerr *e) __must_check;
