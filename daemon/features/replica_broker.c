/* replica_broker.c: a pool as a replication target (docs/replica.md, "A
 * pool as target"), Hyper-V's Replica Broker. On the pool's side the
 * replicas live on pool storage (POOL_STORAGE/replicas/NAME/: records,
 * point stores, partial uploads), so every member reads the same files;
 * the replica's VM definition is in etcd like any pool VM, owned by one
 * host. The member the source reaches takes the replica's ownership
 * (compare-and-swap on its owner key) and loads its definition: ownership
 * follows the source's traffic, so a dead owner's replica goes on at the
 * member the source turns to, from the last point on the shared stores. The
 * other replica calls are forwarded to the owner (the route table's fwd),
 * or taken over first when the owner is down. On the source's side, a peer
 * entry may list several addresses (a pool's members): each call goes to
 * the first that answers. */
#include "sup_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "move_pool.h"
#include "replica_priv.h"
#include "replica_xfer.h"
#include "storage.h"

#define BROKER_PROBE_S 5 /* a member that does not answer GET /v1/host in this: the next */

/* Whether this host is a member of a pool (it has a host name there). */
static bool in_pool(struct sup *s)
{
	return s->conf.pool && s->conf.pool->host && s->conf.pool->host(s->conf.pool_ctx);
}

/* This pool member's first pool storage location, or NULL (not in a pool,
 * or no pool storage: its replicas are its own, in state_dir). */
static const char *pool_storage(struct sup *s)
{
	const struct storage *st = s->conf.storage;

	for (unsigned i = 0; in_pool(s) && st && i < st->nr; i++)
		if (st->locs[i].pool)
			return st->locs[i].path;
	return NULL;
}

int rep_in_root(struct sup *s, char *out, size_t len)
{
	const char *shared = pool_storage(s);
	int n = shared ? snprintf(out, len, "%s/replicas", shared)
		       : snprintf(out, len, "%s/replicas", s->conf.state_dir);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* The pool's replica VM called name: its uuid and owner ("" nobody), and
 * whether the definition is marked a replica. 1 found, 0 not a pool VM (or
 * not in a pool), -errno. */
static int pool_replica(struct sup *s, const char *name, char *uuid, size_t ulen, char *owner,
			size_t olen)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	struct vmdef def;
	bool marked;
	int ret;

	/* Without pool storage the other members cannot reach the replica's
	 * files: nothing is taken over (each member is a target of its own). */
	if (!pool_storage(s) || !ops->uuid_of || !ops->owner_now || !ops->vm_def ||
	    ops->uuid_of(s->conf.pool_ctx, name, uuid, ulen) != 1)
		return 0;
	if ((ret = ops->owner_now(s->conf.pool_ctx, uuid, owner, olen)))
		return ret;
	vmdef_init(&def);
	if ((ret = ops->vm_def(s->conf.pool_ctx, uuid, &def)))
		return ret == -ENOENT ? 0 : ret;
	marked = def.replica.on && !strcmp(def.name, name);
	vmdef_free(&def);
	return marked ? 1 : 0;
}

/* Owned here: the definition loaded into this host's registry (idempotent). */
static int load_here(struct sup *s, const char *uuid, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	struct vmdef def;
	struct vmrt *vm;
	int ret;

	pthread_mutex_lock(&s->reg_lock);
	for (vm = s->vms; vm && strcmp(vm->def.uuid, uuid); vm = vm->next)
		;
	pthread_mutex_unlock(&s->reg_lock);
	if (vm)
		return 0;
	vmdef_init(&def);
	if ((ret = ops->vm_def(s->conf.pool_ctx, uuid, &def)))
		return sup_store_cerr(s, e, ret, "cannot read the replica's definition");
	vm = sup_register_def(s, &def);
	vmdef_free(&def);
	if (!vm)
		return cerr_set(e, CERR_EXISTS, "vm", "cannot register the replica's definition "
				"here (a VM of its name?)");
	return 0;
}

int rep_broker_claim(struct sup *s, const char *name, const char *want_uuid, bool only_if_down,
		     struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char uuid[40], owner[64] = "", addr[256], state[32] = "";
	const char *me;
	int ret;

	ret = pool_replica(s, name, uuid, sizeof(uuid), owner, sizeof(owner));
	if (ret <= 0)
		return ret < 0 ? sup_store_cerr(s, e, ret, "cannot read the replica's owner") : 0;
	if (want_uuid && strcmp(want_uuid, uuid))
		return 0; /* another VM's replica: the create refuses it */
	me = move_pool_me(s);
	if (!strcmp(owner, me))
		return load_here(s, uuid, e);
	if (only_if_down && owner[0] && ops->member &&
	    !ops->member(s->conf.pool_ctx, owner, addr, sizeof(addr), state, sizeof(state)) &&
	    strcmp(state, "down"))
		return 0; /* its owner answers (the request is forwarded there) */
	if (!ops->owner_pass)
		return 0;
	ret = ops->owner_pass(s->conf.pool_ctx, uuid, owner, false);
	if (ret == -EAGAIN && !ops->owner_now(s->conf.pool_ctx, uuid, addr, sizeof(addr)) &&
	    !strcmp(addr, me))
		ret = 0; /* another request here took it a moment ago */
	if (ret)
		return ret == -EAGAIN ? cerr_set(e, CERR_CONFLICT, "", "the replica of '%s' changed "
						 "hands meanwhile: try again", name)
				      : sup_store_cerr(s, e, ret, "cannot take the replica over");
	log_warn("replica %s: taken over from %s (%s)", name, owner[0] ? owner : "nobody",
		 only_if_down ? "its owner is down" : "the source reaches this host");
	if (load_here(s, uuid, e))
		return -1;
	{
		char detail[160];

		snprintf(detail, sizeof(detail), "the replica's owner is %s now (was %s)", me,
			 owner[0] ? owner : "nobody");
		sup_emit_named(s, name, "defined", "replica-taken-over", detail);
	}
	return 0;
}

bool rep_broker_foreign(struct sup *s, const char *name)
{
	char uuid[40], owner[64] = "";

	return pool_replica(s, name, uuid, sizeof(uuid), owner, sizeof(owner)) == 1 &&
	       owner[0] && strcmp(owner, move_pool_me(s));
}

/* The source ----------------------------------------------------------------------------- */

/* The member at index `first` of the peer's list answered after the ones
 * before it did not: put it first in the stored entry, so the next calls
 * try it first (a dead machine before it costs a probe's timeout each
 * time otherwise). Only if the entry is still the list probed. */
static void pick_remember(struct sup *s, struct rep_peer *rp, const char *list, size_t at,
			  size_t n)
{
	const char *name = json_string_value(json_object_get(rp->host, "name"));
	const char *token = json_string_value(json_object_get(rp->host, "token"));
	const char *tls_name = json_string_value(json_object_get(rp->host, "tls_name"));
	char order[1024];
	int len;

	if (!name || !token || json_is_true(json_object_get(rp->host, "pool")))
		return;
	/* the member, then the ones before it, then the ones after it */
	len = snprintf(order, sizeof(order), "%.*s,%.*s%s%s", (int)n, list + at, (int)(at - 1),
		       list, list[at + n] ? "," : "", list[at + n] ? list + at + n + 1 : "");
	if (len < 0 || (size_t)len >= sizeof(order))
		return;
	if (store_host_put(s->db, name, order, token, tls_name))
		log_warn("peer %s: cannot record that %.*s answers first", name, (int)n, list + at);
	else
		log_info("peer %s: %.*s answers first now (the addresses before it did not)", name,
			 (int)n, list + at);
}

int rep_broker_pick(struct sup *s, struct rep_peer *rp, struct cerr *e)
{
	const char *list = rp->p.url, *at = list;
	char why[512] = "";

	if (!list || !strchr(list, ','))
		return 0;
	while (at && *at) {
		const char *end = strchr(at, ',');
		size_t n = end ? (size_t)(end - at) : strlen(at);
		json_t *reply = NULL;
		long status = 0;
		char err[384] = "";

		if (n && n < sizeof(rp->url)) {
			memcpy(rp->url, at, n);
			rp->url[n] = 0;
			rp->p.url = rp->url;
			if (!peer_call(&rp->p, "GET", "/v1/host", NULL, BROKER_PROBE_S, &status, &reply,
				       err, sizeof(err)) && status == 200) {
				json_decref(reply);
				if (at != list)
					pick_remember(s, rp, list, (size_t)(at - list), n);
				return 0;
			}
			if (status)
				peer_error_text(&rp->p, status, reply, err, sizeof(err));
			json_decref(reply);
			snprintf(why, sizeof(why), "%s", err);
		}
		at = end ? end + 1 : NULL;
	}
	rp->p.url = list;
	return cerr_set(e, CERR_PEER, "to", "no address of %s answers (the last: %.400s)",
			rp->p.name ?: "the target", why[0] ? why : "none");
}

void sup_replica_broker_route(struct sup *s, const char *name)
{
	struct cerr e = { 0 };

	if (rep_broker_claim(s, name, NULL, true, &e))
		log_warn("replica %s: its owner is down, and this host could not take it over: %s",
			 name, e.reason);
}
