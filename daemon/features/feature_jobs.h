/* feature_jobs.h: what the features (checkpoints, moves, metrics) hand to
 * cellad's main besides the operations in core/sup.h: the kinds of jobs
 * they run, for the core to recover after a crash (core/job.h). */
#pragma once
#include "job.h"

extern const struct job_kind checkpoint_create_job;
extern const struct job_kind checkpoint_delete_job;
