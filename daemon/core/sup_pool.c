/* sup_pool.c: the pool layer's calls, reached through sup_conf.pool so
 * that neither the core nor the API knows the pool's internals; the core
 * adds what it owns: its VMs. */
#include <string.h>

#include "sup_priv.h"

static int not_in_pool(struct cerr *e)
{
	return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool (docs/pool.md: "
			"cella pool create, cella pool join)");
}

static bool has_vms(struct sup *s)
{
	json_t *list = sup_list(s);
	bool any = json_array_size(list) > 0;

	json_decref(list);
	return any;
}

int sup_pool_status(struct sup *s, json_t **out, struct cerr *e)
{
	*out = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->status(s->conf.pool_ctx, out, e);
}

int sup_pool_leave(struct sup *s, bool *restart, struct cerr *e)
{
	*restart = false;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->leave(s->conf.pool_ctx, restart, e);
}

/* A host with VMs of its own (on SQLite) would leave them behind. */
static int no_vms(struct sup *s, const char *what, struct cerr *e)
{
	if (has_vms(s))
		return cerr_set(e, CERR_CONFLICT, "", "this host has VMs: it can %s a pool only "
				"without any (move or delete them first)", what);
	return 0;
}

/* Without the pool layer cellad runs on a store its configuration names
 * (a store section without a pool section). */
static int store_by_hand(struct cerr *e)
{
	return cerr_set(e, CERR_CONFLICT, "pool", "this host's store is set by its configuration "
			"(a store section): add a pool section there to make it a pool member");
}

int sup_pool_create(struct sup *s, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	*out = NULL;
	*restart = false;
	if (!s->conf.pool)
		return store_by_hand(e);
	return no_vms(s, "create", e) ?:
	       s->conf.pool->create(s->conf.pool_ctx, body, out, restart, e);
}

int sup_pool_token(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	*out = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->token(s->conf.pool_ctx, body, out, e);
}

int sup_pool_join(struct sup *s, json_t *body, json_t **out, bool *restart, struct cerr *e)
{
	*out = NULL;
	*restart = false;
	if (!s->conf.pool)
		return store_by_hand(e);
	return no_vms(s, "join", e) ?: s->conf.pool->join(s->conf.pool_ctx, body, out, restart, e);
}

int sup_pool_admit(struct sup *s, json_t *body, json_t **out, struct cerr *e)
{
	*out = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->admit(s->conf.pool_ctx, body, out, e);
}

int sup_pool_ca(struct sup *s, json_t **out, struct cerr *e)
{
	*out = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->ca(s->conf.pool_ctx, out, e);
}

json_t *sup_pool_list(struct sup *s)
{
	json_t *list = sup_list(s), *remote, *v;
	const char *me = s->conf.pool ? s->conf.pool->host(s->conf.pool_ctx) : NULL;
	size_t i;

	if (!me)
		return list;
	json_array_foreach(list, i, v)
		json_object_set_new(v, "host", json_string(me));
	remote = s->conf.pool->remote_vms(s->conf.pool_ctx);
	json_array_extend(list, remote);
	json_decref(remote);
	return list;
}

int sup_pool_forward_target(struct sup *s, const char *name, char *host, size_t hlen,
			    char *address, size_t alen)
{
	struct cerr e;
	struct vmrt *vm;

	if (!s->conf.pool || !s->conf.pool->host(s->conf.pool_ctx))
		return 0;
	vm = sup_vm_lock_name(s, name, &e);
	if (vm) { /* ours: answered here */
		sup_vm_unlock(s, vm);
		return 0;
	}
	return s->conf.pool->owner_of(s->conf.pool_ctx, name, host, hlen, address, alen, &e) > 0;
}

bool sup_pool_host_known(struct sup *s, const char *cn)
{
	return s->conf.pool && s->conf.pool->host_known(s->conf.pool_ctx, cn);
}

int sup_pool_forward(struct sup *s, const char *host, const char *address, const char *method,
		     const char *url, const char *body, enum role role, const char *who,
		     long *status, json_t **reply, struct cerr *e)
{
	*reply = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->forward(s->conf.pool_ctx, host, address, method, url, body, role,
				     who, status, reply, e);
}

int sup_pool_forward_raw(struct sup *s, const char *host, const char *address,
			 const struct sup_fwd_req *req, long *status, json_t **reply,
			 struct sup_stream **st, struct cerr *e)
{
	const struct sup_stream_src *src = NULL;
	void *ctx = NULL;

	*reply = NULL;
	*st = NULL;
	if (!s->conf.pool || !s->conf.pool->forward_raw)
		return not_in_pool(e);
	if (s->conf.pool->forward_raw(s->conf.pool_ctx, host, address, req, status, reply, &src,
				      &ctx, e))
		return -1;
	if (src && !(*st = sup_stream_of_src(s, src, ctx)))
		return cerr_set(e, CERR_INTERNAL, "", "out of memory");
	return 0;
}

void sup_pool_event(struct sup *s, const char *event, const char *detail)
{
	sup_emit(s, NULL, event, detail);
}
