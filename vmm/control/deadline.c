/* deadline.c: the worker's own HA deadline (deadline.h). */
#include "control/deadline.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker_exit.h"

/* What the signal handler needs, set once before the timer can fire: a
 * handler has no argument to carry it, hence file scope (one worker, one
 * VM per process). */
static int deadline_exit_fd = -1;
static char deadline_record[160];
static size_t deadline_record_len;

static void deadline_fired(int sig)
{
	(void)sig;
	/* Async-signal-safe only: the record was formatted in advance. */
	if (deadline_exit_fd >= 0 &&
	    pwrite(deadline_exit_fd, deadline_record, deadline_record_len, 0) < 0)
		_exit(WORKER_EXIT_FENCED);
	_exit(WORKER_EXIT_FENCED);
}

static int deadline_signal(void)
{
	return SIGRTMAX - 1; /* glibc keeps the lowest RT signals; nothing else uses this one */
}

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

int ha_deadline_create(struct ha_deadline *d, int exit_fd)
{
	/* To this (the main, event loop) thread: its seccomp filter allows
	 * the handler's pwrite and exit_group, a vCPU thread's may not. */
	struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = deadline_signal(),
				.sigev_notify_thread_id = gettid() };
	struct sigaction sa = { .sa_handler = deadline_fired };
	int n;

	memset(d, 0, sizeof(*d));
	n = snprintf(deadline_record, sizeof(deadline_record),
		     "{\"status\":%d,\"kind\":\"%s\",\"reason\":\"the HA deadline passed: the "
		     "pool lease was not renewed in time\"}", WORKER_EXIT_FENCED,
		     worker_exit_kind(WORKER_EXIT_FENCED));
	deadline_record_len = n > 0 && (size_t)n < sizeof(deadline_record) ? (size_t)n : 0;
	deadline_exit_fd = exit_fd;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sev.sigev_signo, &sa, NULL))
		return -errno;
	if (timer_create(CLOCK_BOOTTIME, &sev, &d->timer))
		return -errno;
	d->ok = true;
	return 0;
}

int ha_deadline_set(struct ha_deadline *d, uint64_t until_ns)
{
	struct itimerspec its = { 0 };

	if (!d->ok)
		return -ENODEV;
	if (until_ns) {
		its.it_value.tv_sec = (time_t)(until_ns / 1000000000u);
		its.it_value.tv_nsec = (long)(until_ns % 1000000000u);
	}
	if (timer_settime(d->timer, TIMER_ABSTIME, &its, NULL))
		return -errno;
	d->until_ns = until_ns;
	return 0;
}
