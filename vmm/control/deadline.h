/* deadline.h: the HA deadline a worker enforces on itself (docs/pool.md,
 * "High availability"). cellad holds the pool lease that an HA VM's
 * ownership is bound to; it may crash or hang while the worker runs, so the
 * worker must stop by itself before that lease can expire elsewhere. A
 * POSIX timer on CLOCK_BOOTTIME raises a signal at the deadline whose
 * handler records the exit (WORKER_EXIT_FENCED) and ends the process
 * (_exit: every thread, whatever it was doing, a vCPU in KVM_RUN or a stuck
 * event loop). Not SIGKILL as the timer's signal: the sandboxed worker is
 * the init of its PID namespace, and init ignores a SIGKILL raised from
 * inside its namespace. cellad moves the deadline on at every lease
 * renewal (lease-extend). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "compiler.h"

struct ha_deadline {
	timer_t timer;
	bool ok;            /* the timer exists */
	uint64_t until_ns;  /* CLOCK_BOOTTIME; 0: disarmed */
};

/* Create the (disarmed) timer and install its handler, on the thread that
 * will run the event loop (the signal goes to it); before the sandbox.
 * exit_fd: where the exit record goes (-1: none). 0 or -errno. */
int ha_deadline_create(struct ha_deadline *d, int exit_fd) __must_check;
/* End the process at CLOCK_BOOTTIME until_ns (a time already past: at
 * once); 0 disarms. 0 or -errno. */
int ha_deadline_set(struct ha_deadline *d, uint64_t until_ns) __must_check;
