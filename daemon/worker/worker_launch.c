/* worker_launch.c: starting a VM's worker: spawn, the start handshake over
 * its control socket (status, console, HA deadline, start), the started
 * event, and the same from a detached thread for automatic restarts. */
#include "sup_priv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "log_tail.h"
#include "standby_pool.h"
#include "wctl.h"

static bool start_settled(struct vmrt *vm, unsigned gen)
{
	return vm->gen != gen || vm->state != VS_STARTING;
}

/* Gives the starting worker on fd the HA deadline the pool has now, when
 * it is later than *until (the first call: whatever it is). */
static int handshake_extend(struct sup *s, int fd, int pidfd, uint64_t *until)
{
	uint64_t now = sup_ha_deadline_ns(s);
	json_t *req, *reply = NULL;
	int ret;

	if (*until == UINT64_MAX ? !now : now <= *until) {
		if (*until == UINT64_MAX)
			*until = 0; /* no pool deadline: none to give */
		return 0;
	}
	*until = now;
	req = json_pack("{s:s, s:I}", "cmd", "lease-extend", "until_boottime_ns", (json_int_t)*until);
	ret = wctl_call(fd, req, (int)s->conf.start_timeout_s * 1000, pidfd, &reply);
	json_decref(req);
	if (!ret && !json_is_true(json_object_get(reply, "ok")))
		ret = -EPROTO;
	json_decref(reply);
	return ret;
}

/* The started event's detail for a restore: whether it went through a
 * standby worker, and the worker's own restore-to-running figure (its
 * log's "restore: vCPUs ..." line, written before it answered "status";
 * held until "start" under cellad, so: to ready). */
static void restore_detail(struct sup *s, struct vmrt *vm, double spawn_ms, char *out, size_t len)
{
	char logp[600], fig[96] = "";
	double ms;

	snprintf(logp, sizeof(logp), "%s/logs/%s.log", s->conf.state_dir, vm->def.name);
	ms = log_restore_ms(logp);
	if (ms >= 0)
		snprintf(fig, sizeof(fig), "; vCPUs ready %.3f ms after the restore began", ms);
	/* cellad's own view: from its worker's spawn (or take) to "status"
	 * answered, exec and all. */
	if (vm->via_standby)
		snprintf(out, len, "restored from saved state through standby worker %d%s, "
			 "%.3f ms after cellad took it", (int)vm->via_standby, fig, spawn_ms);
	else
		snprintf(out, len, "restored from saved state (worker started cold)%s, %.3f ms "
			 "after cellad spawned it", fig, spawn_ms);
}

int sup_launch(struct sup *s, struct vmrt *vm, struct cerr *e)
{
	char ctl_path[512], detail[320];
	uint64_t t_spawn, t_ready = 0;
	json_t *reply = NULL, *req;
	uint64_t ha_until;
	unsigned gen;
	int fd, pidfd, ret;

	pthread_mutex_lock(&vm->lock);
	gen = ++vm->gen;
	if (vm->stop_requested) {
		/* Turned off before the worker existed (an automatic restart). */
		lifecycle_fire(s, vm, EV_START_CANCELLED, "turned off before it started");
		pthread_mutex_unlock(&vm->lock);
		return cerr_set(e, CERR_STATE, "state", "turned off before it started");
	}
	t_spawn = sup_mono_ns();
	if (sup_spawn(s, vm, e)) {
		standby_pool_refill(s->standby); /* a standby it took is gone */
		snprintf(vm->exit_reason, sizeof(vm->exit_reason), "%.250s", e->reason);
		lifecycle_fire(s, vm, EV_START_FAILED, e->reason);
		pthread_mutex_unlock(&vm->lock);
		return -1;
	}
	sup_persist(s, vm);
	pidfd = dup(vm->pidfd);
	sup_paths(s, vm, ".ctl", ctl_path, sizeof(ctl_path));
	ha_until = vm->def.ha ? UINT64_MAX : 0; /* handshake_extend: the first, whatever */
	pthread_mutex_unlock(&vm->lock);

	/* Handshake: "status" answers once the VM is set up (its console socket
	 * exists); connect the console; an HA VM gets its deadline (the
	 * pool's lease, docs/pool.md) before it runs; then "start" opens the
	 * gate. */
	fd = wctl_connect(ctl_path);
	ret = fd < 0 ? fd : 0;
	req = json_pack("{s:s}", "cmd", "status");
	if (!ret)
		ret = wctl_call(fd, req, (int)s->conf.start_timeout_s * 1000, pidfd, &reply);
	json_decref(req);
	json_decref(reply);
	reply = NULL;
	t_ready = sup_mono_ns();
	if (!ret) {
		pthread_mutex_lock(&vm->lock);
		ret = vm->gen == gen ? sup_console_attach(s, vm) : -ESRCH;
		pthread_mutex_unlock(&vm->lock);
	}
	/* The deadline as it is now (renewals during the spawn and the
	 * status call moved it on; sup_ha_extend skips starting workers). */
	if (!ret && ha_until)
		ret = handshake_extend(s, fd, pidfd, &ha_until);
	req = json_pack("{s:s}", "cmd", "start");
	if (!ret)
		ret = wctl_call(fd, req, (int)s->conf.start_timeout_s * 1000, pidfd, &reply);
	json_decref(req);
	if (!ret && !json_is_true(json_object_get(reply, "ok")))
		ret = -EPROTO;
	json_decref(reply);
	/* And once more if a renewal came during the start call: until the
	 * VM is running, the lease's sweeps pass it by (a loaded host's
	 * worker died by its handshake deadline, 1 s after starting). */
	if (!ret && ha_until)
		ret = handshake_extend(s, fd, pidfd, &ha_until);
	if (fd >= 0)
		close(fd);
	close(pidfd);
	/* The restore's work is done: the standby it took may be replaced. */
	standby_pool_refill(s->standby);

	pthread_mutex_lock(&vm->lock);
	if (!ret && vm->stop_requested && vm->pid)
		kill(vm->pid, SIGTERM); /* a kill came during the handshake */
	else if (!ret && vm->gen == gen && vm->state == VS_STARTING && vm->pid) {
		clock_gettime(CLOCK_MONOTONIC, &vm->started_mono);
		vm->started_at = sup_now_wall();
		bool restored = vm->restore;

		if (restored) {
			char saved[512];

			/* The worker maps the file: unlinking it keeps its pages. */
			sup_saved_path(s, vm, saved, sizeof(saved));
			unlink(saved);
			vm->restore = false;
		}
		if (restored)
			restore_detail(s, vm, (double)(t_ready - t_spawn) / 1e6, detail,
				       sizeof(detail));
		lifecycle_fire(s, vm, EV_STARTED, restored ? detail : NULL);
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	if (vm->stop_requested) {
		pthread_mutex_unlock(&vm->lock);
		return cerr_set(e, CERR_STATE, "state", "turned off while starting");
	}
	if (vm->gen == gen && vm->state == VS_STARTING && vm->pid) {
		log_warn("vm %s: start handshake failed (%s); killing the worker", vm->def.name,
			 strerror(-ret));
		kill(vm->pid, SIGKILL);
	}
	/* The monitor settles the exit; report its reason. */
	if (!start_settled(vm, gen)) {
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 10;
		while (!start_settled(vm, gen) &&
		       pthread_cond_timedwait(&vm->changed, &vm->lock, &dl) != ETIMEDOUT)
			;
	}
	cerr_set(e, CERR_INTERNAL, "", "the VM failed to start: %s", vm->exit_reason);
	snprintf(e->state, sizeof(e->state), "%s", vm_state_name(vm->state));
	pthread_mutex_unlock(&vm->lock);
	return -1;
}

struct launch_arg {
	struct sup *s;
	struct vmrt *vm;
};

static void *launch_thread(void *opaque)
{
	struct launch_arg *a = opaque;
	struct cerr e = { 0 };

	if (sup_launch(a->s, a->vm, &e))
		log_warn("vm %s: automatic start failed: %s", a->vm->def.name, e.reason);
	sup_vm_unref(a->s, a->vm);
	free(a);
	return NULL;
}

void sup_launch_async(struct sup *s, struct vmrt *vm)
{
	struct launch_arg *a = malloc(sizeof(*a));
	pthread_attr_t attr;
	pthread_t t;

	if (!a)
		goto fail;
	a->s = s;
	a->vm = vm;
	sup_vm_ref(s, vm);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, launch_thread, a) == 0) {
		pthread_attr_destroy(&attr);
		return;
	}
	pthread_attr_destroy(&attr);
	sup_vm_unref(s, vm);
	free(a);
fail:
	snprintf(vm->exit_reason, sizeof(vm->exit_reason), "cannot create a start thread");
	lifecycle_fire(s, vm, EV_START_FAILED, vm->exit_reason);
}
