/* feature_jobs.h: what the features (checkpoints, moves, metrics) hand to
 * cellad's main besides the operations in core/sup.h: the kinds of jobs
 * they run, for the core to recover after a crash (core/job.h). */
#pragma once
#include "job.h"
#include "sup.h"

extern const struct job_kind checkpoint_create_job;
extern const struct job_kind checkpoint_delete_job;
extern const struct job_kind checkpoint_apply_job;
extern const struct job_kind move_out_job;
extern const struct job_kind move_in_job;

/* What features attach to VMs (core/sup.h). */
extern const struct sup_hooks incoming_hooks;
