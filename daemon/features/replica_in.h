/* replica_in.h: the target's replica records (replica_in.c), shared with
 * replica_ops_in.c (what each point is: its cut time and consistency;
 * retention by age). All under s->rep_lock. */
#ifndef CELLA_REPLICA_IN_H
#define CELLA_REPLICA_IN_H

#include "sup_priv.h"

#include "replica.h"

/* replica_in.c: replica.json of replica name (NULL with e), written back,
 * and one disk's point store. */
json_t *rep_in_rec_load(struct sup *s, const char *name, struct cerr *e);
int rep_in_rec_save(struct sup *s, const char *name, json_t *rec, struct cerr *e) __must_check;
int rep_in_store_open(struct sup *s, const char *name, const char *disk, struct replica **r,
		      struct cerr *e) __must_check;

/* replica_ops_in.c. Creation's fields owned here (keep_for_s): whether key
 * is one, their check (0, or -1 with e), and the record of them (and of
 * the points old, the earlier record, described). */
bool rep_in_ops_create_key(const char *key);
int rep_in_ops_create_check(json_t *body, struct cerr *e) __must_check;
void rep_in_ops_create_record(json_t *body, json_t *old, json_t *rec);
/* A point's entry in the replica's status: its cut_at and consistency. */
void rep_in_ops_point_json(json_t *rec, json_t *point);

#endif
