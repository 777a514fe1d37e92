/* sup_pool.c: the pool layer's calls, reached through sup_conf.pool so
 * that neither the core nor the API knows the pool's internals. */
#include "sup_priv.h"

static int not_in_pool(struct cerr *e)
{
	return cerr_set(e, CERR_NOT_FOUND, "pool", "this host is not in a pool (docs/pool.md: "
			"cella pool create, cella pool join)");
}

int sup_pool_status(struct sup *s, json_t **out, struct cerr *e)
{
	*out = NULL;
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->status(s->conf.pool_ctx, out, e);
}

int sup_pool_leave(struct sup *s, struct cerr *e)
{
	if (!s->conf.pool)
		return not_in_pool(e);
	return s->conf.pool->leave(s->conf.pool_ctx, e);
}
