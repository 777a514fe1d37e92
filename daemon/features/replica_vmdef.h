/* replica_vmdef.h: the replica as a VM definition on the target
 * (replica_vmdef.c). All with s->rep_lock held. */
#pragma once
#include <stdbool.h>

#include <jansson.h>

#include "compiler.h"

struct sup;
struct cerr;

/* Before a new replica's record is written: VM name here, if any, must be
 * this replica's definition (uuid), and no other VM may have uuid. 0, or
 * -1 with e (409). */
int rep_vmdef_check(struct sup *s, const char *name, const char *uuid, struct cerr *e) __must_check;
/* Define (or redefine in place) replica name's VM from its record rec:
 * off, marked, on the latest point's layers. adopt: an ordinary VM of the
 * same UUID (off) may be made the replica (reverse replication). 0, or -1
 * with e. */
int rep_vmdef_define(struct sup *s, const char *name, json_t *rec, bool adopt,
		     struct cerr *e) __must_check;
/* After a point: the definition shows the latest point every disk has
 * (a store write when it changed; failures logged). */
void rep_vmdef_point(struct sup *s, const char *name, json_t *rec);
/* A failover: the replica's definition becomes vmj (an ordinary VM, the
 * same UUID); defined anew when there is none. 0, or -1 with e. */
int rep_vmdef_release(struct sup *s, const char *name, json_t *vmj, const char *detail,
		      struct cerr *e) __must_check;
/* replica delete: the definition goes, if it is this replica's (uuid). */
void rep_vmdef_remove(struct sup *s, const char *name, const char *uuid);
/* The record's definition on the failover's run layers of point. */
json_t *rep_vmdef_run_body(struct sup *s, const char *name, json_t *rec, const char *point);
