/* sup_ha.c: the core's side of HA fencing (docs/pool.md, "High
 * availability"): hand every HA worker the deadline the pool's lease allows
 * (lease-extend: the worker's own timer kills it then, cellad or not), and
 * stop them all when the host fences itself. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sup_priv.h"
#include "wctl.h"

#define HA_CTL_TIMEOUT_MS 500
#define HA_REAP_TIMEOUT_MS 5000

static bool ha_worker(const struct vmrt *vm)
{
	return vm->def.ha && vm->pid && state_active(vm->state);
}

uint64_t sup_ha_deadline_ns(struct sup *s)
{
	const struct sup_pool_ops *ops = s->conf.pool;

	return ops && ops->ha_deadline_ns ? ops->ha_deadline_ns(s->conf.pool_ctx) : 0;
}

void sup_ha_extend(struct sup *s, uint64_t until_ns)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);

	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];
		char path[512], name[sizeof(vm->def.name)];
		json_t *req, *reply = NULL;
		int ret;

		pthread_mutex_lock(&vm->lock);
		if (!ha_worker(vm) || vm->state == VS_STARTING) {
			/* A starting worker gets its deadline in the start
			 * handshake, before its gate opens. */
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		sup_paths(s, vm, ".ctl", path, sizeof(path));
		snprintf(name, sizeof(name), "%s", vm->def.name);
		pthread_mutex_unlock(&vm->lock);
		req = json_pack("{s:s, s:I}", "cmd", "lease-extend", "until_boottime_ns",
				(json_int_t)until_ns);
		ret = wctl_request(path, req, HA_CTL_TIMEOUT_MS, &reply);
		json_decref(req);
		if (!ret && !json_is_true(json_object_get(reply, "ok")))
			ret = -EPROTO;
		json_decref(reply);
		/* Not fatal: the worker keeps its earlier deadline and dies by
		 * it if no later extension reaches it. */
		if (ret)
			log_warn("vm %s: cannot extend its HA deadline: %s", name, strerror(-ret));
	}
	sup_vm_unpin_all(s, all, n);
}

static uint64_t boot_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t sup_ha_fence(struct sup *s, const char *reason)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);
	int *pidfds = calloc(n ? n : 1, sizeof(*pidfds));
	uint64_t gone;

	/* SIGKILL every HA worker first, so that they die in parallel. */
	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];

		pidfds[i] = -1;
		pthread_mutex_lock(&vm->lock);
		if (ha_worker(vm)) {
			vm->stop_requested = true; /* no restart policy brings it back here */
			vm->ha_fenced = true;
			kill(vm->pid, SIGKILL);
			pidfds[i] = vm->pidfd >= 0 ? dup(vm->pidfd) : -1;
		}
		pthread_mutex_unlock(&vm->lock);
	}
	/* Gone: a pidfd is readable once its process has exited (its files,
	 * io_uring included, released), before anyone reaps it. */
	for (size_t i = 0; i < n; i++) {
		struct pollfd pfd = { .fd = pidfds[i], .events = POLLIN };

		if (pidfds[i] < 0)
			continue;
		if (poll(&pfd, 1, HA_REAP_TIMEOUT_MS) != 1)
			log_err("vm %s: fenced worker not gone after %d ms", all[i]->def.name,
				HA_REAP_TIMEOUT_MS);
		close(pidfds[i]);
	}
	gone = boot_ms();
	free(pidfds);
	for (size_t i = 0; i < n; i++) {
		struct vmrt *vm = all[i];
		char detail[300];

		pthread_mutex_lock(&vm->lock);
		if (!vm->ha_fenced) {
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		vm->ha_fenced = false;
		/* The monitor records the exit (a store write that may wait
		 * for etcd): the event comes after it. */
		if (!sup_wait_until(s, vm, sup_worker_gone, vm->gen, HA_REAP_TIMEOUT_MS))
			log_warn("vm %s: fenced worker's exit not recorded yet", vm->def.name);
		snprintf(detail, sizeof(detail), "%.280s", reason);
		log_warn("vm %s: fenced (%s)", vm->def.name, reason);
		sup_emit(s, vm, "vm-fenced", detail);
		pthread_mutex_unlock(&vm->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return gone;
}

bool sup_ha_running(struct sup *s)
{
	size_t n;
	struct vmrt **all = sup_vm_pin_all(s, &n);
	bool any = false;

	for (size_t i = 0; i < n && !any; i++) {
		pthread_mutex_lock(&all[i]->lock);
		any = ha_worker(all[i]);
		pthread_mutex_unlock(&all[i]->lock);
	}
	sup_vm_unpin_all(s, all, n);
	return any;
}
