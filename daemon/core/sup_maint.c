/* sup_maint.c: the core's side of maintenance mode (docs/pool.md,
 * "Maintenance mode"): a host in maintenance starts no VM and takes no VM
 * moved to it; its state is the pool's (its host record), reached through
 * sup_conf.pool. */
#include <stdio.h>
#include <string.h>

#include "sup_priv.h"

int sup_pool_refuse_maint(struct sup *s, const char *what, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	const char *me = ops && ops->host ? ops->host(s->conf.pool_ctx) : NULL;
	char addr[256], state[32];

	if (!me || !ops->member ||
	    ops->member(s->conf.pool_ctx, me, addr, sizeof(addr), state, sizeof(state)) ||
	    strcmp(state, "maintenance"))
		return 0;
	cerr_set(e, CERR_CONFLICT, "", "host %s is in maintenance: it does not %s (cella host "
		 "maintenance %s off)", me, what, me);
	snprintf(e->state, sizeof(e->state), "maintenance");
	return -1;
}
