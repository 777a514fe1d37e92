/* job.c: long operations recorded in the store phase by phase (job.h). */
#include "sup_priv.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler.h"
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

/* Start and stop have events of their own (starting, started, stopping,
 * ...) and are short: their phases are not announced. */
static bool job_quiet(const struct job *j)
{
	return !strcmp(j->kind, "start") || !strcmp(j->kind, "stop");
}

static int job_percent(const struct job *j)
{
	return j->total ? (int)(MIN(j->done, j->total) * 100 / j->total) : -1;
}

/* The job-phase event: the job's id, kind, phase and percent (where
 * known) as fields of their own, and a line for people in the detail. */
static void job_announce(struct sup *s, const struct job *j, const char *phase)
{
	int pct = job_percent(j);
	char detail[128];
	json_t *extra;

	if (job_quiet(j))
		return;
	extra = json_pack("{s:s, s:s, s:s}", "job", j->id, "kind", j->kind, "phase", phase);
	if (pct >= 0) {
		json_object_set_new(extra, "percent", json_integer(pct));
		snprintf(detail, sizeof(detail), "%s: %s (%d%%)", j->kind, phase, pct);
	} else {
		snprintf(detail, sizeof(detail), "%s: %s", j->kind, phase);
	}
	sup_emit_extra(s, j->vm_name, j->vm ? vm_state_name(j->vm->state) : "", "job-phase", detail, extra);
}

static json_t *job_json(const char *id, const char *kind, const char *vm, const char *phase,
			int64_t started_at)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", id, "kind", kind, "vm", vm, "phase",
			 phase, "started_at", (json_int_t)started_at);
}

json_t *sup_jobs_list(struct sup *s, const char *vm)
{
	json_t *arr = json_array();

	pthread_mutex_lock(&s->jobs_lock);
	/* Running ones are linked newest first. */
	for (const struct job *j = s->jobs_live; j; j = j->live_next) {
		json_t *o;
		int pct = job_percent(j);

		if (vm && strcmp(vm, j->vm_name))
			continue;
		o = job_json(j->id, j->kind, j->vm_name, j->phase, j->started_at);
		json_object_set_new(o, "running", json_true());
		if (pct >= 0)
			json_object_set_new(o, "percent", json_integer(pct));
		json_array_append_new(arr, o);
	}
	for (unsigned i = 0; i < MIN(s->jobs_done_n, SUP_JOBS_DONE); i++) {
		const struct job_done *d = &s->jobs_done[(s->jobs_done_n - 1 - i) % SUP_JOBS_DONE];
		json_t *o;

		if (vm && strcmp(vm, d->vm))
			continue;
		o = job_json(d->id, d->kind, d->vm, d->phase, d->started_at);
		json_object_set_new(o, "running", json_false());
		json_object_set_new(o, "ended_at", json_integer(d->ended_at));
		if (d->percent >= 0)
			json_object_set_new(o, "percent", json_integer(d->percent));
		json_array_append_new(arr, o);
	}
	pthread_mutex_unlock(&s->jobs_lock);
	return json_pack("{s:o}", "jobs", arr);
}

void job_progress(struct sup *s, struct job *j, uint64_t done, uint64_t total)
{
	pthread_mutex_lock(&s->jobs_lock);
	j->done = done;
	j->total = total;
	pthread_mutex_unlock(&s->jobs_lock);
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
	if (vm) {
		json_object_set_new(j->data, "vm", json_string(vm->def.name));
		snprintf(j->vm_name, sizeof(j->vm_name), "%s", vm->def.name);
	}
	j->started_at = sup_now_wall();
	if (job_store(s, j, e)) {
		json_decref(j->data);
		j->data = NULL;
		return -1;
	}
	pthread_mutex_lock(&s->jobs_lock);
	j->live_next = s->jobs_live;
	s->jobs_live = j;
	pthread_mutex_unlock(&s->jobs_lock);
	job_announce(s, j, j->phase);
	return 0;
}

void job_close(struct sup *s, struct job *j)
{
	int ret;

	if (!j->data)
		return; /* never opened, or closed already */
	pthread_mutex_lock(&s->jobs_lock);
	for (struct job **p = &s->jobs_live; *p; p = &(*p)->live_next) {
		if (*p == j) {
			struct job_done *d = &s->jobs_done[s->jobs_done_n++ % SUP_JOBS_DONE];

			*p = j->live_next;
			snprintf(d->id, sizeof(d->id), "%s", j->id);
			snprintf(d->kind, sizeof(d->kind), "%s", j->kind);
			snprintf(d->phase, sizeof(d->phase), "%s", j->phase);
			snprintf(d->vm, sizeof(d->vm), "%s", j->vm_name);
			d->started_at = j->started_at;
			d->ended_at = sup_now_wall();
			d->percent = job_percent(j);
			break;
		}
	}
	pthread_mutex_unlock(&s->jobs_lock);
	job_announce(s, j, "ended");
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
	pthread_mutex_lock(&s->jobs_lock);
	snprintf(j->phase, sizeof(j->phase), "%s", phase);
	pthread_mutex_unlock(&s->jobs_lock);
	if (job_store(s, j, e))
		return -1;
	job_announce(s, j, phase);
	return 0;
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
