/* move_pool.c: moves between hosts of one pool (move_pool.h; docs/pool.md,
 * "Moves inside a pool"). */
#include "move_pool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "sup_priv.h"
#include "wctl.h"

#define HA_CTL_TIMEOUT_MS 2000

const char *move_pool_me(struct sup *s)
{
	const struct sup_pool_ops *ops = s->conf.pool;

	return ops && ops->host ? ops->host(s->conf.pool_ctx) : NULL;
}

int move_pool_dest(struct sup *s, const char *to, bool new_move, json_t **host,
		   struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	const char *me = move_pool_me(s);
	char addr[256], state[32];

	*host = NULL;
	if (!me || !ops->member || ops->member(s->conf.pool_ctx, to, addr, sizeof(addr), state,
					       sizeof(state)))
		return 0;
	if (!strcmp(to, me))
		return cerr_set(e, CERR_CONFLICT, "to", "the VM is on %s already", to);
	if (new_move && !strcmp(state, "maintenance"))
		return cerr_set(e, CERR_CONFLICT, "to", "host %s is in maintenance: it takes no VMs "
				"(cella host maintenance %s off)", to, to);
	if (new_move && strcmp(state, "up"))
		return cerr_set(e, CERR_CONFLICT, "to", "host %s is %s", to, state);
	if (strncmp(addr, "https://", 8))
		return cerr_set(e, CERR_CONFLICT, "to", "host %s has no address in its record "
				"(pool.address)", to);
	*host = json_pack("{s:s, s:s, s:b}", "name", to, "url", addr, "pool", 1);
	return *host ? 1 : cerr_set(e, CERR_INTERNAL, "", "out of memory");
}

void move_pool_headers(struct sup *s, char buf[3][128], const char *hdrs[4])
{
	snprintf(buf[0], 128, "X-Cella-Forwarded-Role: admin");
	snprintf(buf[1], 128, "X-Cella-Forwarded-For: a pool move");
	snprintf(buf[2], 128, "X-Cella-Forwarded-By: %.64s", move_pool_me(s) ?: "?");
	for (int i = 0; i < 3; i++)
		hdrs[i] = buf[i];
	hdrs[3] = NULL;
}

static void drop_runtime(struct sup *s, struct vmrt *vm)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	int ret;

	if (ops && ops->runtime_drop &&
	    (ret = ops->runtime_drop(s->conf.pool_ctx, vm->def.uuid)) && ret != -ENOENT)
		log_warn("vm %s: cannot delete this host's runtime record: %s", vm->def.name,
			 strerror(-ret));
}

void move_pool_forget(struct sup *s, struct vmrt *vm, const char *detail)
{
	sup_forget(s, vm, "moved", detail);
	drop_runtime(s, vm);
}

int move_pool_refuse_maint(struct sup *s, const char *what, struct cerr *e)
{
	return sup_pool_refuse_maint(s, what, e);
}

int move_pool_in_check(struct sup *s, const char *uuid, const char *from, struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char owner[64] = "";
	int ret;

	if (!move_pool_me(s) || !ops->owner_now)
		return cerr_set(e, CERR_CONFLICT, "pool_from", "this host is not in a pool");
	if (!uuid)
		return cerr_set(e, CERR_INVALID, "vm.uuid", "required for a move inside a pool");
	ret = ops->owner_now(s->conf.pool_ctx, uuid, owner, sizeof(owner));
	if (ret)
		return sup_store_cerr(s, e, ret, "cannot read the VM's owner");
	if (strcmp(owner, from))
		return cerr_set(e, CERR_CONFLICT, "pool_from", "the pool says host %s owns the VM, "
				"not %.64s", owner[0] ? owner : "(nobody)", from);
	return 0;
}

/* An HA worker here gets this host's deadline before it owns the VM. */
static int ha_extend_one(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	uint64_t until = sup_ha_deadline_ns(s);
	char path[512];
	json_t *req, *reply = NULL;
	int ret;

	if (!vm->def.ha || !vm->pid)
		return 0;
	if (!until)
		return cerr_set(e, CERR_CONFLICT, "", "this host holds no lease: it cannot run HA "
				"VM %s now", vm->def.name);
	sup_paths(s, vm, ".ctl", path, sizeof(path));
	req = json_pack("{s:s, s:I}", "cmd", "lease-extend", "until_boottime_ns", (json_int_t)until);
	pthread_mutex_unlock(&vm->lock);
	ret = wctl_request(path, req, HA_CTL_TIMEOUT_MS, &reply);
	pthread_mutex_lock(&vm->lock);
	json_decref(req);
	if (!ret && !json_is_true(json_object_get(reply, "ok")))
		ret = -EPROTO;
	json_decref(reply);
	if (ret)
		return cerr_set(e, CERR_INTERNAL, "", "cannot give HA VM %s its deadline here: %s",
				vm->def.name, strerror(-ret));
	return 0;
}

int move_pool_in_commit(struct sup *s, struct vmrt *vm, const char *from, bool storage,
			struct cerr *e)
{
	const struct sup_pool_ops *ops = s->conf.pool;
	char detail[160];
	int ret;

	if (!ops || !ops->owner_pass)
		return cerr_set(e, CERR_CONFLICT, "", "this host is not in a pool");
	if (ha_extend_one(s, vm, e))
		return -1;
	ret = ops->owner_pass(s->conf.pool_ctx, vm->def.uuid, from, vm->def.ha);
	if (ret == -EAGAIN && ops->owner_now) {
		/* A commit again (its first answer was lost): ours already? */
		char owner[64] = "";

		if (!ops->owner_now(s->conf.pool_ctx, vm->def.uuid, owner, sizeof(owner)) &&
		    !strcmp(owner, move_pool_me(s)))
			ret = 0;
	}
	if (ret == -EAGAIN || ret == -ENOLINK) {
		/* Somebody else owns it (or nobody, and the pool may be
		 * starting it elsewhere): this copy must not run on. */
		log_err("vm %s: arrived, but its owner key no longer names %s: ending the copy here",
			vm->def.name, from);
		if (vm->pid)
			kill(vm->pid, SIGKILL);
		return cerr_set(e, CERR_CONFLICT, "", "the VM's owner key no longer names %s: the "
				"copy on this host was ended", from);
	}
	if (ret)
		return sup_store_cerr(s, e, ret, "cannot take the VM's ownership");
	if (storage && (ret = store_vm_put(s->db, &vm->def)))
		log_err("vm %s: owned here now, but its definition (new disk paths) could not be "
			"written: %s", vm->def.name, strerror(-ret));
	sup_persist(s, vm);
	snprintf(detail, sizeof(detail), "from %.64s: the pool's owner key names this host now", from);
	sup_emit(s, vm, "vm-owned", detail);
	return 0;
}

void move_pool_in_drop(struct sup *s, struct vmrt *vm, const char *why)
{
	sup_forget(s, vm, "deleted", why);
	drop_runtime(s, vm);
}
