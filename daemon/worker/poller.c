/* poller.c: the status poller, which notices a worker pausing or resuming
 * itself (storage errors) between API calls, and the disk status it reports. */
#include "sup_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deadline.h"
#include "log.h"
#include "poll_rate.h"
#include "wctl.h"

#define POLL_TIMEOUT_MS   2000

void sup_merge_disk_status(json_t *vmjson, json_t *status)
{
	json_t *disks = json_object_get(vmjson, "disks"), *d, *st;
	size_t i, j;

	json_array_foreach(disks, i, d) {
		const char *id = json_string_value(json_object_get(d, "id"));

		json_array_foreach(status, j, st) {
			json_t *err = json_object_get(st, "error");

			if (id && !strcmp(id, json_string_value(json_object_get(st, "id")) ?: ""))
				json_object_set(d, "error", err ? err : json_null());
		}
	}
}

/* Status poller -------------------------------------------------------------
 * The control socket is request/response, so a worker that pauses itself
 * (storage failure) or resumes on its own is noticed by asking: every VM
 * that runs or is paused is asked for its status every POLL_INTERVAL_MS,
 * less often with hundreds of VMs (poll_rate.h).
 * A reply is applied only if no API action touched the VM meanwhile. */

static void poll_apply(struct sup *s, struct vmrt *vm, json_t *reply)
{
	const char *st = json_string_value(json_object_get(reply, "state"));
	const char *why = json_string_value(json_object_get(reply, "pause_reason"));
	json_t *disks = json_object_get(reply, "disks");

	if (json_is_array(disks)) {
		json_decref(vm->disk_status);
		vm->disk_status = json_incref(disks);
	}
	if (!st)
		return;
	if (!strcmp(st, "paused") && vm->state == VS_RUNNING) {
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why ? why : "worker");
		lifecycle_fire(s, vm, EV_PAUSE, vm->pause_reason);
	} else if (!strcmp(st, "paused") && why && strcmp(why, vm->pause_reason) &&
		   strcmp(vm->pause_reason, "api")) {
		snprintf(vm->pause_reason, sizeof(vm->pause_reason), "%s", why);
		sup_emit(s, vm, "paused", why);
	} else if (!strcmp(st, "running") && vm->state == VS_PAUSED) {
		char was[256];

		snprintf(was, sizeof(was), "resumed by the worker (was: %.200s)", vm->pause_reason);
		vm->pause_reason[0] = 0;
		lifecycle_fire(s, vm, EV_RESUME, was);
	}
}

static void poll_one(struct sup *s, struct vmrt *vm)
{
	json_t *req, *reply = NULL;
	unsigned gen, acts;
	char path[512];
	int ret;

	pthread_mutex_lock(&vm->lock);
	if ((vm->state != VS_RUNNING && vm->state != VS_PAUSED) || vm->busy || !vm->pid ||
	    vm->deleted) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	gen = vm->gen;
	acts = vm->acts;
	sup_paths(s, vm, ".ctl", path, sizeof(path));
	pthread_mutex_unlock(&vm->lock);
	req = json_pack("{s:s}", "cmd", "status");
	ret = wctl_request(path, req, POLL_TIMEOUT_MS, &reply);
	json_decref(req);
	pthread_mutex_lock(&vm->lock);
	if (!ret && vm->gen == gen && vm->acts == acts && !vm->busy && !vm->deleted &&
	    json_is_true(json_object_get(reply, "ok")))
		poll_apply(s, vm, reply);
	pthread_mutex_unlock(&vm->lock);
	json_decref(reply);
}

static void *poller_main(void *opaque)
{
	struct sup *s = opaque;

	while (!s->shutting_down) {
		struct timespec dl;
		size_t n;
		struct vmrt **all = sup_vm_pin_all(s, &n);

		for (size_t i = 0; i < n && !s->shutting_down; i++)
			poll_one(s, all[i]);
		sup_vm_unpin_all(s, all, n);
		dl = deadline_after_ms(poll_round_ms(n)); /* fewer rounds with many VMs */
		pthread_mutex_lock(&s->reg_lock);
		while (!s->shutting_down &&
		       pthread_cond_timedwait(&s->poll_wake, &s->reg_lock, &dl) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&s->reg_lock);
	}
	return NULL;
}

int sup_poller_start(struct sup *s)
{
	int ret = pthread_create(&s->poller, NULL, poller_main, s);

	if (ret)
		return -ret;
	s->poller_started = true;
	return 0;
}

void sup_poller_stop(struct sup *s)
{
	if (!s->poller_started)
		return;
	pthread_mutex_lock(&s->reg_lock);
	s->shutting_down = true;
	pthread_cond_broadcast(&s->poll_wake);
	pthread_mutex_unlock(&s->reg_lock);
	pthread_join(s->poller, NULL);
	s->poller_started = false;
}
