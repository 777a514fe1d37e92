/* move_pool.h: moves between hosts of one pool (docs/pool.md, "Moves
 * inside a pool"), the parts move.c (source) and incoming.c (destination)
 * call. A pool host is reached at its host record's address, over mutual
 * TLS with the pool's CA and this host's pool certificate, as an admin
 * vouched for by that certificate (the forwarding headers); the VM's
 * records are the pool's already: the destination registers it without
 * writing them, and ownership passes at commit by a compare-and-swap of its
 * owner key from the source to the destination. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cerr.h"
#include "compiler.h"

struct sup;
struct vmrt;
struct peer;

/* This host's name in its pool, or NULL outside one. */
const char *move_pool_me(struct sup *s);

/* Source: whether `to` names another host of this host's pool. 1: *host
 * {name, url} (owned by the caller); 0: not a pool host (a peer from cella
 * host add, maybe); -1 with e: this host, or (new_move) a host down or in
 * maintenance; a move being recovered talks to it whatever its state. */
int move_pool_dest(struct sup *s, const char *to, bool new_move, json_t **host,
		   struct cerr *e) __must_check;
/* Source: the headers that make a pool peer call an admin's (buf keeps
 * the strings; hdrs is NULL-terminated, for struct peer). */
void move_pool_headers(struct sup *s, char buf[3][128], const char *hdrs[4]);
/* Source, after the move (lock held): forget the VM here, drop this host's
 * runtime record, keep the pool's records (the destination owns them). */
void move_pool_forget(struct sup *s, struct vmrt *vm, const char *detail);

/* Destination: refuse (conflict naming the state) while this host is in
 * maintenance: what it would do ("take VMs moved here", "start VMs"). */
int move_pool_refuse_maint(struct sup *s, const char *what, struct cerr *e) __must_check;
/* Destination, prepare: the VM's owner key must name `from` (the source). */
int move_pool_in_check(struct sup *s, const char *uuid, const char *from,
		       struct cerr *e) __must_check;
/* Destination, commit (lock held, the VM runs here): an HA VM's worker gets
 * this host's deadline; then the owner key passes from `from` to this host
 * (on its lease for an HA VM), and with storage the definition (its new
 * paths) is written. A key that no longer names `from`: the copy here is
 * killed (another host owns the VM), -1 with e. etcd away: -1 with e (503),
 * the VM runs on here, the source may commit again. */
int move_pool_in_commit(struct sup *s, struct vmrt *vm, const char *from, bool storage,
			struct cerr *e) __must_check;
/* Destination: a pool move that did not complete (lock held): forget the
 * VM here and drop this host's runtime record; the pool's records stay. */
void move_pool_in_drop(struct sup *s, struct vmrt *vm, const char *why);
