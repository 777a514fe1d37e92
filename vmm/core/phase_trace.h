/* phase_trace.h: a fine clock over the steps of a worker's start (restore
 * to running), for finding where the milliseconds go. Off unless the
 * environment has CELLA_TRACE_RESTORE=1; then each step's CLOCK_MONOTONIC
 * time is kept and phase_trace_report logs one line with them all. */
#pragma once
#include <stdbool.h>
#include <time.h>

#define PHASE_TRACE_MAX 48

struct phase_trace {
	unsigned n;
	struct {
		const char *name; /* a string literal */
		struct timespec t;
	} p[PHASE_TRACE_MAX];
};

/* Whether the environment asks for the trace (CELLA_TRACE_RESTORE=1). */
bool phase_trace_wanted(void);
/* Record that the step `name` (a string literal) ended now. tr NULL: nothing;
 * past PHASE_TRACE_MAX steps the last one is overwritten. Not thread-safe:
 * the worker's main thread only. */
void phase_mark(struct phase_trace *tr, const char *name);
/* Log "<what> trace: start=<CLOCK_MONOTONIC ns of the first mark>, then each
 * step as name=<ms since the previous step>" and the total, one line
 * (bench/restore.py lines the start up with its own spawn time). */
void phase_trace_report(const struct phase_trace *tr, const char *what);
