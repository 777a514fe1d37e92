/* job.h: long operations (save, checkpoint create and delete, ...) as jobs
 * whose phase is recorded in the store before each step, so that a cellad
 * that died in the middle is followed by one that finishes or rolls back
 * each job it finds (job_recover_all at startup). A job also marks its VM
 * busy for its whole length (no other action interleaves) and holds a
 * reference to it.
 *
 * Each kind of job is declared by the feature that runs it (struct
 * job_kind) and handed to the core through sup_conf.job_kinds by cellad's
 * main: the core knows no feature. */
#pragma once
#include <stdbool.h>

#include <jansson.h>

#include "cerr.h"

struct sup;
struct vmrt;
struct store_job;

/* How a recovery ended, for the event that reports it. */
enum job_outcome { JOB_FINISHED, JOB_ROLLED_BACK, JOB_FAILED };

struct job_kind {
	const char *name; /* "save", "checkpoint-create", ... */
	/* Called at startup, after workers were re-adopted or settled, with
	 * the lock held, for a job of this kind left by an earlier cellad:
	 * finish it or roll it back (detail: what was done, for the event). */
	enum job_outcome (*recover)(struct sup *s, struct vmrt *vm, const struct store_job *job,
				    char *detail, size_t len);
	/* Also recover a job whose VM is gone (vm NULL): its files may be left. */
	bool without_vm;
};

struct job {
	char id[40];
	char kind[32];
	char phase[32];
	struct vmrt *vm;
	json_t *data; /* what recovery needs; owned, persisted with each phase */
	bool took_busy;
	/* In memory only, for GET /v1/jobs and the job-phase events: */
	int64_t started_at;   /* wall seconds */
	char vm_name[64];     /* (the definition may be replaced while it runs) */
	uint64_t done, total; /* progress in the job's own unit; total 0: unknown */
	struct job *live_next; /* s->jobs_live (s->jobs_lock) */
};

/* A finished job as GET /v1/jobs lists it (the last SUP_JOBS_DONE). */
struct job_done {
	char id[40];
	char kind[32];
	char phase[32]; /* the last one it recorded */
	char vm[64];
	int64_t started_at, ended_at;
	int percent; /* at the end, -1: unknown */
};
#define SUP_JOBS_DONE 32

/* Record a job on vm in phase "begun" with data (a reference is taken;
 * NULL: {}), without marking the VM busy: for a job that spans several
 * requests (a move in). 0, or -1 with e set. job_close forgets it. vm may
 * be NULL for a job on no VM (an image's convert or backup: its kind is
 * then recovered without_vm, with vm NULL); job_begin and job_end need one. */
int job_open(struct sup *s, struct vmrt *vm, const char *kind, json_t *data, struct job *j,
	     struct cerr *e) __must_check;
void job_close(struct sup *s, struct job *j);

/* Begin a job on vm (lock held; vm idle): job_open, and mark vm busy. 0,
 * or -1 with e set (the store failed: the operation must not start). */
int job_begin(struct sup *s, struct vmrt *vm, const char *kind, json_t *data, struct job *j,
	      struct cerr *e) __must_check;
/* Record the next phase (and j->data as it is now) before its step runs.
 * 0, or -1 with e set. */
int job_phase(struct sup *s, struct job *j, const char *phase, struct cerr *e) __must_check;
/* The job is over (done or failed and cleaned up): forget it, vm idle. */
void job_end(struct sup *s, struct job *j);

/* How far the job is (done of total, in a unit of its own: layers merged,
 * bytes sent), kept in memory for GET /v1/jobs' percent. The next
 * job-phase event carries it too. */
void job_progress(struct sup *s, struct job *j, uint64_t done, uint64_t total);
/* At startup (no lock held): recover every recorded job, newest first,
 * each with its VM locked, then forget it. */
void job_recover_all(struct sup *s);
