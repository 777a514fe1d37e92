/* deadline.h: absolute deadlines for pthread_cond_timedwait (which waits
 * until a CLOCK_REALTIME time unless told otherwise). */
#pragma once
#include <time.h>

/* Now plus ms, on CLOCK_REALTIME. */
static inline struct timespec deadline_after_ms(long ms)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	return dl;
}
