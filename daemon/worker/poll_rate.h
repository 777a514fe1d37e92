/* poll_rate.h: how often the status poller goes round the workers
 * (worker/poller.c). Each round asks every running or paused worker for
 * its status, one connection each: every 500 ms while that stays under
 * POLL_MAX_PER_S requests a second, then less often, so that cellad and
 * hundreds of idle workers do not spend their CPU answering it (at 500
 * VMs a round every 2.5 s rather than 1,000 requests a second). What the
 * poller notices (a worker that paused itself on a storage error or an
 * instruction it could not emulate, and resumed) is then seen a little
 * later; API actions never wait on it. */
#pragma once

#include <stddef.h>

#define POLL_INTERVAL_MS 500
#define POLL_MAX_PER_S   200

/* Milliseconds from one round's start to the next for nvms workers. */
static inline unsigned poll_round_ms(size_t nvms)
{
	size_t ms = nvms * 1000 / POLL_MAX_PER_S;

	return ms < POLL_INTERVAL_MS ? POLL_INTERVAL_MS : ms > 60000 ? 60000 : (unsigned)ms;
}
