/* phase_trace.c: the worker's start-up trace (phase_trace.h). */
#include "phase_trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

bool phase_trace_wanted(void)
{
	const char *v = getenv("CELLA_TRACE_RESTORE");

	return v && *v && strcmp(v, "0") != 0;
}

void phase_mark(struct phase_trace *tr, const char *name)
{
	unsigned i;

	if (!tr)
		return;
	i = tr->n < PHASE_TRACE_MAX ? tr->n++ : PHASE_TRACE_MAX - 1;
	tr->p[i].name = name;
	clock_gettime(CLOCK_MONOTONIC, &tr->p[i].t);
}

static double ms_since(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

void phase_trace_report(const struct phase_trace *tr, const char *what)
{
	char line[900];
	size_t n;

	if (!tr || !tr->n)
		return;
	n = (size_t)snprintf(line, sizeof(line), "%s trace: start=%lld%09ld", what,
			     (long long)tr->p[0].t.tv_sec, tr->p[0].t.tv_nsec);
	for (unsigned i = 1; i < tr->n && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%.3f", tr->p[i].name,
				      ms_since(&tr->p[i - 1].t, &tr->p[i].t));
	if (n < sizeof(line))
		snprintf(line + n, sizeof(line) - n, " total=%.3f ms",
			 ms_since(&tr->p[0].t, &tr->p[tr->n - 1].t));
	log_info("%s", line);
}
