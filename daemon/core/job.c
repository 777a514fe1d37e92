/* job.c: long operations recorded in the store phase by phase (job.h). */
#include "sup_priv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Tests only (config "test_crash_at": "KIND:PHASE"): cellad kills itself
 * once that phase is recorded, as a crash or kill -9 would at that point. */
static void crash_point(struct sup *s, const struct job *j)
{
	char want[80];

	if (!s->conf.test_crash_at)
		return;
	snprintf(want, sizeof(want), "%s:%s", j->kind, j->phase);
	if (strcmp(want, s->conf.test_crash_at))
		return;
	log_warn("test_crash_at %s: killing cellad", want);
	kill(getpid(), SIGKILL);
	pause();
}

static int job_store(struct sup *s, struct job *j, struct cerr *e)
{
	struct store_job rec = { .data = j->data, .created_at = sup_now_wall() };
	int ret;

	snprintf(rec.id, sizeof(rec.id), "%s", j->id);
	snprintf(rec.vm_uuid, sizeof(rec.vm_uuid), "%s", j->vm ? j->vm->def.uuid : "");
	snprintf(rec.kind, sizeof(rec.kind), "%s", j->kind);
	snprintf(rec.phase, sizeof(rec.phase), "%s", j->phase);
	ret = store_job_put(s->db, &rec);
	if (ret) {
		char what[64];

		snprintf(what, sizeof(what), "cannot record the %s job", j->kind);
		return sup_store_cerr(s, e, ret, what);
	}
	crash_point(s, j);
	return 0;
}

int job_open(struct sup *s, struct vmrt *vm, const char *kind, json_t *data, struct job *j,
	     struct cerr *e)
{
	memset(j, 0, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s-%lld-%llu", kind, (long long)sup_now_wall(),
		 (unsigned long long)++s->next_job);
	snprintf(j->kind, sizeof(j->kind), "%s", kind);
	snprintf(j->phase, sizeof(j->phase), "begun");
	j->vm = vm;
	j->data = data ? json_incref(data) : json_object();
	/* Named in the events of a recovery even if the VM is gone by then. */
	if (vm)
		json_object_set_new(j->data, "vm", json_string(vm->def.name));
	if (job_store(s, j, e)) {
		json_decref(j->data);
		j->data = NULL;
		return -1;
	}
	return 0;
}

void job_close(struct sup *s, struct job *j)
{
	int ret;

	if (!j->data)
		return; /* never opened, or closed already */
	ret = store_job_delete(s->db, j->id);
	if (ret)
		log_warn("vm %s: cannot forget the %s job: %s", j->vm ? j->vm->def.name : "-", j->kind,
			 strerror(-ret));
	json_decref(j->data);
	j->data = NULL;
}

int job_begin(struct sup *s, struct vmrt *vm, const char *kind, json_t *data, struct job *j,
	      struct cerr *e)
{
	if (job_open(s, vm, kind, data, j, e))
		return -1;
	j->took_busy = !vm->busy;
	vm->busy = true;
	sup_vm_ref(s, vm);
	vm->acts++;
	return 0;
}

int job_phase(struct sup *s, struct job *j, const char *phase, struct cerr *e)
{
	snprintf(j->phase, sizeof(j->phase), "%s", phase);
	return job_store(s, j, e);
}

void job_end(struct sup *s, struct job *j)
{
	job_close(s, j);
	j->vm->acts++;
	if (j->took_busy)
		j->vm->busy = false;
	sup_vm_changed(j->vm);
	sup_vm_unref(s, j->vm);
}

static const struct job_kind *kind_find(struct sup *s, const char *name)
{
	for (const struct job_kind *const *k = s->conf.job_kinds; k && *k; k++)
		if (!strcmp((*k)->name, name))
			return *k;
	return NULL;
}

void job_recover_all(struct sup *s)
{
	static const char *const outcome[] = {
		[JOB_FINISHED] = "job-finished", [JOB_ROLLED_BACK] = "job-rolled-back",
		[JOB_FAILED] = "job-failed",
	};
	struct store_job *jobs;
	unsigned n;
	int ret = store_job_list(s->db, &jobs, &n);

	if (ret) {
		log_err("cannot read the jobs of the last run: %s", strerror(-ret));
		return;
	}
	/* Newest first: a job that runs inside another (the save of a quick
	 * move) settles before the one that started it. */
	for (unsigned i = n; i-- > 0;) {
		const struct job_kind *k = kind_find(s, jobs[i].kind);
		struct vmrt *vm = NULL;
		char detail[384] = "", ev[512];
		enum job_outcome o = JOB_FAILED;

		pthread_mutex_lock(&s->reg_lock);
		for (struct vmrt *v = s->vms; v && !vm; v = v->next)
			if (!strcmp(v->def.uuid, jobs[i].vm_uuid))
				vm = v;
		if (vm)
			vm->refs++; /* under reg_lock: sup_vm_unlock drops it */
		pthread_mutex_unlock(&s->reg_lock);
		if (vm)
			pthread_mutex_lock(&vm->lock);
		if (!k)
			snprintf(detail, sizeof(detail), "unknown kind of job");
		else if (!vm && !k->without_vm)
			snprintf(detail, sizeof(detail), "its VM is gone");
		else
			o = k->recover(s, vm, &jobs[i], detail, sizeof(detail));
		snprintf(ev, sizeof(ev), "%s at phase %s%s%s", jobs[i].kind, jobs[i].phase,
			 detail[0] ? ": " : "", detail);
		log_info("vm %s: recovered %s: %s", vm ? vm->def.name : jobs[i].vm_uuid, ev,
			 outcome[o]);
		if (vm) {
			/* Pinned above: a recovery may remove the VM (a move that
			 * finished), the monitor frees it only once unpinned. */
			sup_emit(s, vm, outcome[o], ev);
			sup_vm_unlock(s, vm);
		} else {
			sup_emit_named(s, json_string_value(json_object_get(jobs[i].data, "vm")) ?: "",
				       "", outcome[o], ev);
		}
		if (store_job_delete(s->db, jobs[i].id))
			log_warn("cannot forget job %s", jobs[i].id);
		json_decref(jobs[i].data);
	}
	free(jobs);
}
