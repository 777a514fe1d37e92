/* log.c: leveled logging to stderr, one line per call (atomic for short lines). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_enabled(enum log_level level)
{
	const char *env;

	if (level != LOG_DEBUG)
		return 1;
	/* Read each time rather than cached: no mutable file-scope state. */
	env = getenv("CELLA_DEBUG");
	return env && *env && strcmp(env, "0") != 0;
}

/* CELLA_LOG_TIME=1: each line starts with the monotonic clock's seconds
 * (journald and syslog stamp lines themselves; benchmarks line several
 * processes' logs up with this). */
static int log_time_enabled(void)
{
	const char *env = getenv("CELLA_LOG_TIME");

	return env && *env && strcmp(env, "0") != 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const prefix[] = { "error", "warning", "info", "debug" };
	char line[1024];
	int n;
	va_list ap;

	if (!log_enabled(level))
		return;
	n = 0;
	if (log_time_enabled()) { /* CLOCK_MONOTONIC, to line logs up with other processes' */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		n = snprintf(line, sizeof(line), "[%lld.%03ld] ", (long long)ts.tv_sec,
			     ts.tv_nsec / 1000000L);
	}
	n += snprintf(line + n, sizeof(line) - (size_t)n, "cella: %s: ", prefix[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	if (n == 0 || line[n - 1] != '\n') {
		line[n++] = '\n';
		line[n] = '\0';
	}
	fputs(line, stderr);
}
